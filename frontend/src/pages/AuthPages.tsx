import { useState, type FormEvent, type ReactNode } from 'react';
import { Link, Navigate, useLocation, useNavigate, useSearchParams } from 'react-router';
import { formErrors } from '../api/errors';
import { safeNext, useAuth } from '../auth/AuthProvider';
import { Brand, SkipLink } from '../components/Layout';
import { Alert, Button, TextField } from '../components/ui';
import { useDocumentTitle } from '../lib/useDocumentTitle';

function AuthShell({ title, children, footer }: { title: string; children: ReactNode; footer: ReactNode }) {
  return (
    <div className="min-h-dvh">
      <SkipLink />
      <main id="main" className="mx-auto flex max-w-md flex-col px-4 py-10 sm:py-16">
        <div className="mb-8 flex justify-center">
          <Brand />
        </div>
        <div className="rounded-xl bg-white p-6 shadow-sm ring-1 ring-slate-200 sm:p-8">
          <h1 tabIndex={-1} className="mb-6 text-xl font-bold tracking-tight text-slate-900 focus:outline-none">
            {title}
          </h1>
          {children}
        </div>
        <p className="mt-6 text-center text-sm text-slate-600">{footer}</p>
      </main>
    </div>
  );
}

function withNext(path: string, next: string): string {
  return next === '/' ? path : `${path}?${new URLSearchParams({ next }).toString()}`;
}

export function SignInPage() {
  useDocumentTitle('Sign in');
  const { state, signIn } = useAuth();
  const [params] = useSearchParams();
  const location = useLocation();
  const navigate = useNavigate();
  const next = safeNext(params.get('next'));
  const justSignedOut = (location.state as { signedOut?: boolean } | null)?.signedOut === true;
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [submitting, setSubmitting] = useState(false);
  const [error, setError] = useState<unknown>(null);

  if (state.status === 'signedIn' && !justSignedOut && !submitting) {
    return <Navigate to={next} replace />;
  }

  const errors = formErrors(error, ['email', 'password']);

  const onSubmit = async (event: FormEvent) => {
    event.preventDefault();
    setSubmitting(true);
    setError(null);
    try {
      await signIn(email.trim(), password);
      navigate(next, { replace: true });
    } catch (e) {
      setError(e);
      setSubmitting(false);
    }
  };

  return (
    <AuthShell
      title="Sign in to Tollgate"
      footer={
        <>
          New to Tollgate?{' '}
          <Link className="font-semibold text-brand-700 hover:underline" to={withNext('/sign-up', next)}>
            Create an account
          </Link>
        </>
      }
    >
      <form onSubmit={onSubmit} noValidate className="space-y-4" aria-label="Sign in">
        {justSignedOut && !error && <Alert tone="info">You have signed out.</Alert>}
        {params.get('expired') && !error && <Alert tone="warning">Your session ended. Sign in again to continue.</Alert>}
        {errors.general && <Alert tone="error">{errors.general}</Alert>}
        <TextField
          label="Email"
          name="email"
          type="email"
          autoComplete="email"
          required
          value={email}
          onChange={(e) => setEmail(e.target.value)}
          error={errors.fields.email}
        />
        <TextField
          label="Password"
          name="password"
          type="password"
          autoComplete="current-password"
          required
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          error={errors.fields.password}
        />
        <Button type="submit" className="w-full" busy={submitting} busyLabel="Signing in…">
          Sign in
        </Button>
      </form>
    </AuthShell>
  );
}

export function SignUpPage() {
  useDocumentTitle('Create an account');
  const { state, register } = useAuth();
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const next = safeNext(params.get('next'));
  const [name, setName] = useState('');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [submitting, setSubmitting] = useState(false);
  const [error, setError] = useState<unknown>(null);

  if (state.status === 'signedIn' && !submitting) {
    return <Navigate to={next} replace />;
  }

  const errors = formErrors(error, ['name', 'email', 'password']);

  const onSubmit = async (event: FormEvent) => {
    event.preventDefault();
    setSubmitting(true);
    setError(null);
    try {
      await register({ email: email.trim(), password, name });
      navigate(next, { replace: true });
    } catch (e) {
      setError(e);
      setSubmitting(false);
    }
  };

  return (
    <AuthShell
      title="Create your account"
      footer={
        <>
          Already have an account?{' '}
          <Link className="font-semibold text-brand-700 hover:underline" to={withNext('/sign-in', next)}>
            Sign in
          </Link>
        </>
      }
    >
      <form onSubmit={onSubmit} noValidate className="space-y-4" aria-label="Create an account">
        {errors.general && <Alert tone="error">{errors.general}</Alert>}
        <TextField
          label="Name (optional)"
          name="name"
          autoComplete="name"
          value={name}
          onChange={(e) => setName(e.target.value)}
          error={errors.fields.name}
        />
        <TextField
          label="Email"
          name="email"
          type="email"
          autoComplete="email"
          required
          value={email}
          onChange={(e) => setEmail(e.target.value)}
          error={errors.fields.email}
        />
        <TextField
          label="Password"
          name="password"
          type="password"
          autoComplete="new-password"
          required
          hint="8 to 128 characters."
          value={password}
          onChange={(e) => setPassword(e.target.value)}
          error={errors.fields.password}
        />
        <Button type="submit" className="w-full" busy={submitting} busyLabel="Creating account…">
          Create account
        </Button>
      </form>
    </AuthShell>
  );
}

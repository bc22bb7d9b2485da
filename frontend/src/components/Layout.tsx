import { useEffect, useRef, useState } from 'react';
import { NavLink, Outlet, useLocation } from 'react-router';
import { errorMessage } from '../api/errors';
import { useAuth } from '../auth/AuthProvider';
import { HeaderBalance, LiveIndicator, LowBalanceBanner } from './LiveBalance';
import { Alert, Button } from './ui';

const links = [
  { to: '/', label: 'Dashboard', end: true },
  { to: '/credits', label: 'Credits' },
  { to: '/example', label: 'Example AI' },
  { to: '/history', label: 'History' },
  { to: '/api-keys', label: 'API keys' },
];

function navClass({ isActive }: { isActive: boolean }): string {
  return [
    'whitespace-nowrap rounded-md px-3 py-2 text-sm font-medium',
    isActive ? 'bg-brand-50 text-brand-700' : 'text-slate-700 hover:bg-slate-100 hover:text-slate-900',
  ].join(' ');
}

/** Moves focus to the new page's heading after client-side navigation, for screen readers. */
function useFocusHeadingOnNavigate() {
  const location = useLocation();
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    const heading = document.querySelector<HTMLElement>('main h1');
    heading?.focus();
  }, [location.pathname]);
}

export function Brand() {
  return (
    <span className="flex items-center gap-2 text-lg font-bold tracking-tight text-slate-900">
      <svg aria-hidden="true" viewBox="0 0 24 24" className="size-7 text-brand-600" fill="currentColor">
        <path d="M4 4h16v4h-6v12h-4V8H4z" />
      </svg>
      Tollgate
    </span>
  );
}

export function SkipLink() {
  return (
    <a
      href="#main"
      className="sr-only focus:not-sr-only focus:absolute focus:left-2 focus:top-2 focus:z-50 focus:rounded-md focus:bg-white focus:px-3 focus:py-2 focus:shadow"
    >
      Skip to content
    </a>
  );
}

/** The signed-in shell: header, navigation, account, and the page. */
export function Layout() {
  const { state, signOut } = useAuth();
  const location = useLocation();
  const [signingOut, setSigningOut] = useState(false);
  const [signOutError, setSignOutError] = useState<{ error: unknown; path: string } | null>(null);
  useFocusHeadingOnNavigate();
  const user = state.status === 'signedIn' ? state.user : null;

  // Once signed out, <RequireAuth> shows sign-in ("You have signed out"). Until the server has
  // confirmed it, the user stays signed in here and is told so.
  const onSignOut = async () => {
    setSigningOut(true);
    setSignOutError(null);
    try {
      await signOut();
    } catch (error) {
      setSignOutError({ error, path: location.pathname });
      setSigningOut(false);
    }
  };

  return (
    <div className="min-h-dvh">
      <SkipLink />
      <header className="border-b border-slate-200 bg-white">
        <div className="mx-auto flex max-w-6xl flex-wrap items-center justify-between gap-x-4 gap-y-2 px-4 py-3">
          <NavLink to="/" aria-label="Tollgate dashboard">
            <Brand />
          </NavLink>
          {user && (
            <div className="flex min-w-0 items-center gap-2">
              <LiveIndicator />
              <HeaderBalance />
              <span className="hidden truncate text-sm text-slate-600 sm:inline" title={user.email}>
                {user.name || user.email}
              </span>
              <Button variant="secondary" onClick={onSignOut} busy={signingOut} busyLabel="Signing out…">
                Sign out
              </Button>
            </div>
          )}
        </div>
        <nav aria-label="Main" className="mx-auto max-w-6xl px-2 pb-2">
          <ul className="flex flex-wrap gap-1">
            {links.map((link) => (
              <li key={link.to}>
                <NavLink to={link.to} end={link.end} className={navClass}>
                  {link.label}
                </NavLink>
              </li>
            ))}
            {user?.role === 'admin' && (
              <li>
                <NavLink to="/admin" className={navClass}>
                  Admin
                </NavLink>
              </li>
            )}
          </ul>
        </nav>
      </header>
      <main id="main" className="mx-auto max-w-6xl px-4 py-6 sm:py-8">
        {/* Said on the page where it happened; moving on puts it away. */}
        {signOutError && signOutError.path === location.pathname && (
          <div className="mb-6">
            <Alert
              tone="error"
              title="Sign-out failed: you are still signed in"
              action={
                <Button variant="secondary" onClick={() => void onSignOut()} busy={signingOut} busyLabel="Signing out…">
                  Try signing out again
                </Button>
              }
            >
              {errorMessage(signOutError.error)}
            </Alert>
          </div>
        )}
        <LowBalanceBanner />
        <Outlet />
      </main>
    </div>
  );
}

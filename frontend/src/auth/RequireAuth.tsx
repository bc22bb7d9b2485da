import type { ReactNode } from 'react';
import { Navigate, useLocation } from 'react-router';
import { errorMessage } from '../api/errors';
import { Alert, Button, Loading } from '../components/ui';
import { useAuth } from './AuthProvider';

/** Renders its children for a signed-in user; sends anyone else to sign in, and back after. */
export function RequireAuth({ children }: { children: ReactNode }) {
  const { state, restoreSession } = useAuth();
  const location = useLocation();
  if (state.status === 'loading') {
    return (
      <div className="mx-auto max-w-6xl px-4 py-10">
        <Loading label="Restoring your session…" />
      </div>
    );
  }
  if (state.status === 'unreachable') {
    // Not "sign in": the session may be fine, only Tollgate did not answer.
    return (
      <div className="mx-auto max-w-6xl px-4 py-10">
        <Alert
          tone="error"
          title="Could not restore your session"
          action={
            <Button variant="secondary" onClick={restoreSession}>
              Try again
            </Button>
          }
        >
          {errorMessage(state.error)}
        </Alert>
      </div>
    );
  }
  if (state.status === 'signedOut') {
    // After "Sign out" the way back is plain sign-in, whichever page was showing when the
    // session ended (the sign-out navigation and this render may come in either order).
    if (state.byUser) return <Navigate to="/sign-in" replace state={{ signedOut: true }} />;
    const next = `${location.pathname}${location.search}${location.hash}`;
    const params = new URLSearchParams({ next });
    if (state.expired) params.set('expired', '1');
    return <Navigate to={`/sign-in?${params.toString()}`} replace />;
  }
  return <>{children}</>;
}

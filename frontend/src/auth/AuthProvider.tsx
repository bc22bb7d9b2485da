import { useQueryClient } from '@tanstack/react-query';
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from 'react';
import { api, unwrap, type User } from '../api/client';
import { onSessionLost, onSessionRefreshed, refreshSession, setAccessToken } from '../api/session';

export type AuthState =
  | { status: 'loading'; user: null }
  /** The session could not be checked: Tollgate did not answer. It may well be alive. */
  | { status: 'unreachable'; user: null; error: unknown }
  | { status: 'signedOut'; user: null; expired?: boolean; byUser?: boolean }
  | { status: 'signedIn'; user: User };

export interface RegisterInput {
  email: string;
  password: string;
  name?: string;
}

interface AuthContextValue {
  state: AuthState;
  signIn: (email: string, password: string) => Promise<User>;
  register: (input: RegisterInput) => Promise<User>;
  /** Signs out; rejects (and the user stays signed in) unless the server confirmed it. */
  signOut: () => Promise<void>;
  /** Tries again to restore the session from the refresh cookie (after `unreachable`). */
  restoreSession: () => void;
}

const AuthContext = createContext<AuthContextValue | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  const queryClient = useQueryClient();
  const [state, setState] = useState<AuthState>({ status: 'loading', user: null });

  const mounted = useRef(false);

  // Restore the session from the refresh cookie, silently.
  const restoreSession = useCallback(() => {
    setState({ status: 'loading', user: null });
    refreshSession().then(
      (tokens) => {
        if (!mounted.current) return;
        setState(tokens ? { status: 'signedIn', user: tokens.user } : { status: 'signedOut', user: null });
      },
      (error: unknown) => {
        if (mounted.current) setState({ status: 'unreachable', user: null, error });
      },
    );
  }, []);

  useEffect(() => {
    mounted.current = true;
    restoreSession();
    return () => {
      mounted.current = false;
    };
  }, [restoreSession]);

  useEffect(() => {
    const offLost = onSessionLost(() => {
      queryClient.clear();
      setState((current) =>
        current.status === 'signedIn' ? { status: 'signedOut', user: null, expired: true } : current,
      );
    });
    const offRefreshed = onSessionRefreshed((tokens) => {
      setState((current) => (current.status === 'signedIn' ? { status: 'signedIn', user: tokens.user } : current));
    });
    return () => {
      offLost();
      offRefreshed();
    };
  }, [queryClient]);

  const signIn = useCallback(
    async (email: string, password: string) => {
      const tokens = await unwrap(api.POST('/api/v1/auth/login', { body: { email, password } }));
      setAccessToken(tokens.access_token);
      queryClient.clear();
      setState({ status: 'signedIn', user: tokens.user });
      return tokens.user;
    },
    [queryClient],
  );

  const register = useCallback(
    async ({ email, password, name }: RegisterInput) => {
      await unwrap(
        api.POST('/api/v1/auth/register', { body: { email, password, name: name?.trim() ? name.trim() : null } }),
      );
      return signIn(email, password);
    },
    [signIn],
  );

  const signOut = useCallback(async () => {
    // Only the server's answer ends the session: the refresh cookie is revoked there. Had it not
    // answered, the session would come back on the next visit, so the user stays signed in here.
    await unwrap(api.POST('/api/v1/auth/logout'));
    setAccessToken(null);
    queryClient.clear();
    setState({ status: 'signedOut', user: null, byUser: true });
  }, [queryClient]);

  const value = useMemo(
    () => ({ state, signIn, register, signOut, restoreSession }),
    [state, signIn, register, signOut, restoreSession],
  );
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

export function useAuth(): AuthContextValue {
  const value = useContext(AuthContext);
  if (!value) throw new Error('useAuth must be used inside <AuthProvider>');
  return value;
}

/** The signed-in user; only for components under <RequireAuth>. */
export function useUser(): User {
  const { state } = useAuth();
  if (state.status !== 'signedIn') throw new Error('useUser needs a signed-in user');
  return state.user;
}

/** Where to go after signing in: a same-site path from `?next=`, or the dashboard. */
export function safeNext(next: string | null | undefined): string {
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\')) return '/';
  if (next.startsWith('/sign-in') || next.startsWith('/sign-up')) return '/';
  return next;
}

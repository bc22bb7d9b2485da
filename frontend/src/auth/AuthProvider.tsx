import { useQueryClient } from '@tanstack/react-query';
import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import { api, unwrap, type User } from '../api/client';
import { onSessionLost, onSessionRefreshed, refreshSession, setAccessToken } from '../api/session';

export type AuthState =
  | { status: 'loading'; user: null }
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
  signOut: () => Promise<void>;
}

const AuthContext = createContext<AuthContextValue | null>(null);

export function AuthProvider({ children }: { children: ReactNode }) {
  const queryClient = useQueryClient();
  const [state, setState] = useState<AuthState>({ status: 'loading', user: null });

  // Restore the session from the refresh cookie, silently.
  useEffect(() => {
    let active = true;
    void refreshSession().then((tokens) => {
      if (!active) return;
      setState(tokens ? { status: 'signedIn', user: tokens.user } : { status: 'signedOut', user: null });
    });
    return () => {
      active = false;
    };
  }, []);

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
    try {
      await api.POST('/api/v1/auth/logout');
    } catch {
      // Signed out locally either way; the cookie expires on its own.
    }
    setAccessToken(null);
    queryClient.clear();
    setState({ status: 'signedOut', user: null, byUser: true });
  }, [queryClient]);

  const value = useMemo(() => ({ state, signIn, register, signOut }), [state, signIn, register, signOut]);
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

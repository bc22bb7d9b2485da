// The hosted customer portal's queries. Every call goes through `hostedApi`: the portal cookie,
// never the signed-in user's token, and a 401 ends the portal rather than asking anyone to sign in.
import { useInfiniteQuery, useQuery, type QueryClient } from '@tanstack/react-query';
import { hostedApi, unwrap } from './client';
import { ApiError } from './errors';

export const hostedKeys = {
  all: ['hosted'] as const,
  session: ['hosted', 'session'] as const,
  balance: ['hosted', 'balance'] as const,
  ledger: ['hosted', 'ledger'] as const,
  usage: ['hosted', 'usage'] as const,
  subscription: ['hosted', 'subscription'] as const,
  catalog: ['hosted', 'catalog'] as const,
};

/** True when the portal session is gone: the cookie expired, or there never was one. */
export function isPortalSessionEnded(error: unknown): boolean {
  return error instanceof ApiError && error.status === 401;
}

/** Refetches what a payment changes. */
export function invalidateHostedCredits(queryClient: QueryClient): Promise<void> {
  return Promise.all([
    queryClient.invalidateQueries({ queryKey: hostedKeys.balance }),
    queryClient.invalidateQueries({ queryKey: hostedKeys.ledger }),
    queryClient.invalidateQueries({ queryKey: hostedKeys.subscription }),
  ]).then(() => undefined);
}

export function useHostedSession(enabled: boolean) {
  return useQuery({
    queryKey: hostedKeys.session,
    queryFn: () => unwrap(hostedApi.GET('/api/v1/hosted/session')),
    enabled,
    refetchOnWindowFocus: false,
  });
}

export function useHostedBalance(enabled: boolean) {
  return useQuery({
    queryKey: hostedKeys.balance,
    queryFn: () => unwrap(hostedApi.GET('/api/v1/hosted/balance')),
    enabled,
  });
}

/** The customer's history, newest first, paged by cursor. */
export function useHostedLedger(enabled: boolean) {
  return useInfiniteQuery({
    queryKey: hostedKeys.ledger,
    initialPageParam: undefined as string | undefined,
    queryFn: ({ pageParam }) =>
      unwrap(hostedApi.GET('/api/v1/hosted/ledger', { params: { query: { limit: 20, cursor: pageParam } } })),
    getNextPageParam: (last) => last.next_cursor ?? undefined,
    enabled,
  });
}

export function useHostedUsage(enabled: boolean) {
  return useQuery({
    queryKey: hostedKeys.usage,
    queryFn: () => unwrap(hostedApi.GET('/api/v1/hosted/usage', { params: { query: { group_by: 'feature' } } })),
    enabled,
  });
}

export function useHostedSubscription(enabled: boolean) {
  return useQuery({
    queryKey: hostedKeys.subscription,
    queryFn: () => unwrap(hostedApi.GET('/api/v1/hosted/subscription')),
    enabled,
  });
}

/** The public catalog, fetched without the signed-in user's token. */
export function useHostedCatalog(enabled: boolean) {
  return useQuery({
    queryKey: hostedKeys.catalog,
    queryFn: () => unwrap(hostedApi.GET('/api/v1/billing/catalog')),
    enabled,
    staleTime: 5 * 60_000,
  });
}

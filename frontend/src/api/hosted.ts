// The hosted customer portal's queries. Every call goes through `hostedApi`: the portal cookie,
// never the signed-in user's token, and a 401 ends the portal rather than asking anyone to sign in.
// The customer's live stream (`hostedStream`) keeps the balance, history, usage and subscription
// current, so nothing polls.
import { useInfiniteQuery, useQuery, type QueryClient } from '@tanstack/react-query';
import { hostedApi, unwrap, type Balance } from './client';
import { ApiError } from './errors';
import type { LiveSource } from './live';
import { useLiveStaleTime } from './liveContext';
import { liveBalance } from './queries';

export const hostedKeys = {
  all: ['hosted'] as const,
  session: ['hosted', 'session'] as const,
  balance: ['hosted', 'balance'] as const,
  ledger: ['hosted', 'ledger'] as const,
  usage: ['hosted', 'usage'] as const,
  subscription: ['hosted', 'subscription'] as const,
  catalog: ['hosted', 'catalog'] as const,
};

/** The customer's wallet's stream: the portal cookie goes with it (same origin), never a token. */
export const hostedStream: LiveSource = {
  path: '/api/v1/hosted/stream',
  // Looked up per call, as `hostedApi` does, so that tests can stub `fetch`.
  fetch: (request) => globalThis.fetch(request),
  keys: {
    balance: hostedKeys.balance,
    credits: [hostedKeys.ledger, hostedKeys.usage],
    subscription: hostedKeys.subscription,
  },
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

/** The wallet's figures: fetched once, then kept current by the stream (as `useBalance` is). */
export function useHostedBalance() {
  return useQuery({
    ...useLiveStaleTime(),
    queryKey: hostedKeys.balance,
    queryFn: async ({ client }) => {
      const writes = liveBalance.writes;
      const fresh = await unwrap(hostedApi.GET('/api/v1/hosted/balance'));
      // An event that came while this was asked for is newer than the answer: keep its figures.
      const cached = client.getQueryData<Balance>(hostedKeys.balance);
      if (liveBalance.writes === writes || !cached) return fresh;
      const { balance, available, held, debt } = cached;
      return { ...fresh, balance, available, held, debt };
    },
  });
}

/** The customer's history, newest first, paged by cursor. */
export function useHostedLedger() {
  return useInfiniteQuery({
    queryKey: hostedKeys.ledger,
    initialPageParam: undefined as string | undefined,
    queryFn: ({ pageParam }) =>
      unwrap(hostedApi.GET('/api/v1/hosted/ledger', { params: { query: { limit: 20, cursor: pageParam } } })),
    getNextPageParam: (last) => last.next_cursor ?? undefined,
  });
}

export function useHostedUsage() {
  return useQuery({
    queryKey: hostedKeys.usage,
    queryFn: () => unwrap(hostedApi.GET('/api/v1/hosted/usage', { params: { query: { group_by: 'feature' } } })),
  });
}

export function useHostedSubscription() {
  return useQuery({
    queryKey: hostedKeys.subscription,
    queryFn: () => unwrap(hostedApi.GET('/api/v1/hosted/subscription')),
  });
}

/** The public catalog, fetched without the signed-in user's token. */
export function useHostedCatalog() {
  return useQuery({
    queryKey: hostedKeys.catalog,
    queryFn: () => unwrap(hostedApi.GET('/api/v1/billing/catalog')),
    staleTime: 5 * 60_000,
  });
}

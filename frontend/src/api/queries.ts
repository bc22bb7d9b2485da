import { keepPreviousData, useInfiniteQuery, useQuery, type QueryClient } from '@tanstack/react-query';
import { api, unwrap, type Balance, type BalanceInterval, type Customer, type TransferKind } from './client';
import { useLiveStaleTime } from './liveContext';

export const keys = {
  ready: ['ready'] as const,
  me: ['me'] as const,
  balance: ['balance'] as const,
  alerts: ['alerts'] as const,
  balanceHistory: (range: BalanceRange) => ['balance-history', range] as const,
  balanceHistoryAll: ['balance-history'] as const,
  ledger: (filters: LedgerFilters) => ['ledger', filters] as const,
  ledgerAll: ['ledger'] as const,
  usage: (groupBy: UsageGroup) => ['usage', groupBy] as const,
  usageAll: ['usage'] as const,
  features: ['features'] as const,
  apiKeys: ['api-keys'] as const,
  reconcile: ['admin', 'reconcile'] as const,
};

export interface LedgerFilters {
  kind?: TransferKind;
  /** ISO date-time, inclusive. */
  from?: string;
  /** ISO date-time, exclusive. */
  to?: string;
  limit?: number;
}

/** Refetches everything a movement of credits changes. */
export function invalidateCredits(queryClient: QueryClient): Promise<void> {
  return Promise.all([
    queryClient.invalidateQueries({ queryKey: keys.balance }),
    queryClient.invalidateQueries({ queryKey: keys.alerts }),
    queryClient.invalidateQueries({ queryKey: keys.balanceHistoryAll }),
    queryClient.invalidateQueries({ queryKey: keys.ledgerAll }),
    queryClient.invalidateQueries({ queryKey: keys.usageAll }),
  ]).then(() => undefined);
}

/** GET /readyz: public; tells whether Stripe runs in sandbox mode. */
export function useReady() {
  return useQuery({
    queryKey: keys.ready,
    queryFn: () => unwrap(api.GET('/readyz')),
    staleTime: 5 * 60_000,
    retry: 1,
  });
}

/**
 * Bumped each time the live stream writes the balance into the cache (see `LiveProvider`). An
 * answer to a balance request made before an event arrived may be older than the event: the
 * event's figures are kept then, and only the rest of the answer taken.
 */
export const liveBalance = { writes: 0 };

/** The wallet's figures: fetched once, then kept current by the live stream (never polled). */
export function useBalance() {
  return useQuery({
    ...useLiveStaleTime(),
    queryKey: keys.balance,
    queryFn: async ({ client }) => {
      const writes = liveBalance.writes;
      const fresh = await unwrap(api.GET('/api/v1/credits/balance'));
      const cached = client.getQueryData<Balance>(keys.balance);
      if (liveBalance.writes === writes || !cached) return fresh;
      const { balance, available, held, debt } = cached;
      return { ...fresh, balance, available, held, debt };
    },
  });
}

/** The low-balance alerts and where the wallet stands against them (kept current by the stream). */
export function useAlerts() {
  return useQuery({
    ...useLiveStaleTime(),
    queryKey: keys.alerts,
    queryFn: () => unwrap(api.GET('/api/v1/credits/alerts')),
  });
}

/** The ranges the balance chart offers: hourly points for the short ones, daily for the rest. */
export const BALANCE_RANGES = {
  '24h': { label: '24 hours', interval: 'hour', points: 24 },
  '7d': { label: '7 days', interval: 'hour', points: 7 * 24 },
  '30d': { label: '30 days', interval: 'day', points: 30 },
  '90d': { label: '90 days', interval: 'day', points: 90 },
} as const satisfies Record<string, { label: string; interval: BalanceInterval; points: number }>;

export type BalanceRange = keyof typeof BALANCE_RANGES;

const STEP_MS: Record<BalanceInterval, number> = { hour: 3_600_000, day: 86_400_000 };

/**
 * The query for a range ending now: `points` whole hours or days (UTC), the last one the current.
 * Starting at a bucket's start keeps an hourly week within the server's 7-day limit however long
 * the request takes.
 */
export function balanceHistoryQuery(range: BalanceRange, now = new Date()): { interval: BalanceInterval; from: string } {
  const { interval, points } = BALANCE_RANGES[range];
  const step = STEP_MS[interval];
  const current = Math.floor(now.getTime() / step) * step;
  return { interval, from: new Date(current - (points - 1) * step).toISOString() };
}

/** The balance at the end of each hour or day of a range (for the dashboard's chart). */
export function useBalanceHistory(range: BalanceRange) {
  return useQuery({
    queryKey: keys.balanceHistory(range),
    queryFn: () => unwrap(api.GET('/api/v1/credits/balance-history', { params: { query: balanceHistoryQuery(range) } })),
    placeholderData: keepPreviousData,
  });
}

/** One page of history, newest first (for the dashboard). */
export function useLedgerPage(filters: LedgerFilters) {
  return useQuery({
    queryKey: [...keys.ledger(filters), 'page'],
    queryFn: () =>
      unwrap(
        api.GET('/api/v1/credits/ledger', {
          params: { query: { limit: filters.limit ?? 50, kind: filters.kind, from: filters.from, to: filters.to } },
        }),
      ),
  });
}

/** History paged by cursor (for the history page). */
export function useLedger(filters: LedgerFilters) {
  return useInfiniteQuery({
    queryKey: keys.ledger(filters),
    initialPageParam: undefined as string | undefined,
    queryFn: ({ pageParam }) =>
      unwrap(
        api.GET('/api/v1/credits/ledger', {
          params: {
            query: {
              limit: filters.limit ?? 50,
              kind: filters.kind || undefined,
              from: filters.from || undefined,
              to: filters.to || undefined,
              cursor: pageParam,
            },
          },
        }),
      ),
    getNextPageParam: (last) => last.next_cursor ?? undefined,
    placeholderData: keepPreviousData,
  });
}

/** How usage can be grouped: by day, by feature, or by LLM model (with tokens). */
export type UsageGroup = 'day' | 'feature' | 'model';

export function useUsage(groupBy: UsageGroup) {
  return useQuery({
    queryKey: keys.usage(groupBy),
    queryFn: () => unwrap(api.GET('/api/v1/usage', { params: { query: { group_by: groupBy } } })),
  });
}

export function useFeatures() {
  return useQuery({
    queryKey: keys.features,
    queryFn: () => unwrap(api.GET('/api/v1/features')),
    staleTime: 5 * 60_000,
  });
}

export function useApiKeys() {
  return useQuery({
    queryKey: keys.apiKeys,
    queryFn: () => unwrap(api.GET('/api/v1/api-keys')),
  });
}

export function useReconcile() {
  return useQuery({
    queryKey: keys.reconcile,
    queryFn: () => unwrap(api.GET('/api/v1/admin/reconcile')),
    refetchOnWindowFocus: false,
  });
}

export const billingKeys = {
  catalog: ['billing', 'catalog'] as const,
  subscription: ['billing', 'subscription'] as const,
};

/** GET /billing/catalog: public, the packs and plans on offer. */
export function useCatalog() {
  return useQuery({
    queryKey: billingKeys.catalog,
    queryFn: () => unwrap(api.GET('/api/v1/billing/catalog')),
    staleTime: 5 * 60_000,
  });
}

export function useSubscription() {
  return useQuery({
    queryKey: billingKeys.subscription,
    queryFn: () => unwrap(api.GET('/api/v1/billing/subscription')),
  });
}

/** Statuses in which a subscription still grants credits and can be managed. */
export function isLiveSubscription(status: string | undefined): boolean {
  return status === 'active' || status === 'trialing' || status === 'past_due' || status === 'unpaid';
}

export const adminKeys = {
  /** Everything about customers: the lists, each one's figures and history. */
  customersAll: ['admin', 'customers'] as const,
  customers: (q: string) => ['admin', 'customers', 'list', q] as const,
  customer: (id: string) => ['admin', 'customers', 'one', id] as const,
  customerLedger: (id: string) => ['admin', 'customers', 'one', id, 'ledger'] as const,
  serverKeys: ['admin', 'server-keys'] as const,
  webhookEndpoints: ['admin', 'webhook-endpoints'] as const,
  webhookAttempts: (id: string) => ['admin', 'webhook-endpoints', id, 'attempts'] as const,
};

/** Customers, newest first, paged by cursor; `q` is a prefix of an email or external id. */
export function useCustomers(q: string) {
  return useInfiniteQuery({
    queryKey: adminKeys.customers(q),
    initialPageParam: undefined as string | undefined,
    queryFn: ({ pageParam }) =>
      unwrap(api.GET('/api/v1/customers', { params: { query: { limit: 25, cursor: pageParam, q: q || undefined } } })),
    getNextPageParam: (last) => last.next_cursor ?? undefined,
    placeholderData: keepPreviousData,
  });
}

/** One customer by Tollgate id (admin only; works for customers without an external id). */
export function useCustomer(id: string) {
  return useQuery({
    queryKey: adminKeys.customer(id),
    queryFn: () => unwrap(api.GET('/api/v1/admin/customers/{id}', { params: { path: { id } } })),
  });
}

/** A customer's history: by external id when it has one, else through the admin route. */
export function useCustomerLedger(customer: Pick<Customer, 'id' | 'external_id'>) {
  const externalId = customer.external_id ?? null;
  return useInfiniteQuery({
    queryKey: adminKeys.customerLedger(customer.id),
    initialPageParam: undefined as string | undefined,
    queryFn: ({ pageParam }) => {
      const query = { limit: 25, cursor: pageParam };
      return unwrap(
        externalId !== null
          ? api.GET('/api/v1/customers/{external_id}/ledger', { params: { path: { external_id: externalId }, query } })
          : api.GET('/api/v1/admin/customers/{id}/ledger', { params: { path: { id: customer.id }, query } }),
      );
    },
    getNextPageParam: (last) => last.next_cursor ?? undefined,
  });
}

export function useServerKeys() {
  return useQuery({
    queryKey: adminKeys.serverKeys,
    queryFn: () => unwrap(api.GET('/api/v1/admin/server-keys')),
  });
}

export function useWebhookEndpoints() {
  return useQuery({
    queryKey: adminKeys.webhookEndpoints,
    queryFn: () => unwrap(api.GET('/api/v1/webhook-endpoints')).then((list) => list.data),
  });
}

/** An endpoint's delivery attempts, newest first, paged by cursor. */
export function useWebhookAttempts(endpointId: string) {
  return useInfiniteQuery({
    queryKey: adminKeys.webhookAttempts(endpointId),
    initialPageParam: undefined as string | undefined,
    queryFn: ({ pageParam }) =>
      unwrap(
        api.GET('/api/v1/webhook-endpoints/{id}/deliveries', {
          params: { path: { id: endpointId }, query: { limit: 20, cursor: pageParam } },
        }),
      ),
    getNextPageParam: (last) => last.next_cursor ?? undefined,
  });
}

// The signed-in user's live balance: one stream of their wallet's events per session
// (GET /api/v1/credits/stream), which keeps the query cache current, so nothing polls.
import { useQueryClient, type QueryClient } from '@tanstack/react-query';
import { useCallback, useEffect, useMemo, useRef, useState, type ReactNode } from 'react';
import { openEventStream, type StreamStatus } from '../lib/eventStream';
import type { SseMessage } from '../lib/sse';
import type { Alerts, Balance, WalletBalance } from './client';

export { useLiveStream, type LiveEvent, type LiveListener, type LiveStream };
import { LiveContext, useLiveStream, type LiveEvent, type LiveListener, type LiveStream } from './liveContext';
import { billingKeys, keys, liveBalance } from './queries';
import { apiUrl, authFetch } from './session';



const CREDIT_QUERIES = [keys.ledgerAll, keys.usageAll, keys.balanceHistoryAll] as const;

/** Whether a (parsed) message is an event with the fields every event has. */
export function parseEvent(message: SseMessage): LiveEvent | null {
  try {
    const event = JSON.parse(message.data) as LiveEvent;
    if (typeof event !== 'object' || event === null || typeof event.type !== 'string') return null;
    if (typeof event.data !== 'object' || event.data === null) event.data = {};
    return event;
  } catch {
    return null;
  }
}

/** The wallet's figures an event carries, if it carries them. */
export function eventBalance(event: LiveEvent): WalletBalance | null {
  const b = event.data.balance;
  if (!b || typeof b !== 'object') return null;
  const { balance, available, held, debt } = b;
  if ([balance, available, held, debt].some((n) => typeof n !== 'number')) return null;
  return { balance, available, held, debt };
}

/**
 * Applies one event to the cache: the balance and the alerts' standing from its figures at once,
 * the lists it changed marked for a refetch (`refetch`, batched by the caller).
 */
export function applyEvent(queryClient: QueryClient, event: LiveEvent, refetch: (key: readonly unknown[]) => void): void {
  const figures = eventBalance(event);
  if (figures) {
    liveBalance.writes++;
    queryClient.setQueryData<Balance>(keys.balance, (old) => (old ? { ...old, ...figures } : old));
    queryClient.setQueryData<Alerts>(keys.alerts, (old) =>
      old ? { ...old, available: figures.available, below: old.thresholds.filter((t) => figures.available <= t) } : old,
    );
    // The lots expiring soon (the rest of the balance's answer) change with expiries, with grants
    // that may expire (any but a pack's purchase), and with spends taking from such lots.
    const expiring = queryClient.getQueryData<Balance>(keys.balance)?.expiring_soon.length ?? 0;
    const mayExpire = event.type === 'credits.granted' && event.data.kind !== 'purchase';
    if (mayExpire || event.type === 'credits.expired' || expiring > 0) refetch(keys.balance);
  }
  if (event.type.startsWith('credits.') || event.type === 'balance.low') {
    for (const key of CREDIT_QUERIES) refetch(key);
  }
  if (event.type === 'subscription.updated' || event.type === 'checkout.completed') refetch(billingKeys.subscription);
}

/** Refetches the queries marked within `delayMs` together, once each. */
function batcher(queryClient: QueryClient, delayMs = 200) {
  const pending = new Map<string, readonly unknown[]>();
  let timer: ReturnType<typeof setTimeout> | null = null;
  return {
    mark(key: readonly unknown[]) {
      pending.set(JSON.stringify(key), key);
      timer ??= setTimeout(() => {
        timer = null;
        const keysNow = [...pending.values()];
        pending.clear();
        for (const queryKey of keysNow) void queryClient.invalidateQueries({ queryKey });
      }, delayMs);
    },
    cancel() {
      if (timer) clearTimeout(timer);
      timer = null;
      pending.clear();
    },
  };
}

/**
 * Keeps one stream open while a user is signed in (`userId` keys it: another user gets another
 * stream) and shares its events with the pages below.
 */
export function LiveProvider({ userId, children }: { userId: string; children: ReactNode }) {
  const queryClient = useQueryClient();
  const [status, setStatus] = useState<StreamStatus>('connecting');
  const [connections, setConnections] = useState(0);
  const listeners = useRef(new Set<LiveListener>());

  useEffect(() => {
    setStatus('connecting');
    const batch = batcher(queryClient);
    let opened = 0;
    const stream = openEventStream({
      url: apiUrl('/api/v1/credits/stream'),
      fetch: authFetch,
      onStatus: setStatus,
      onOpen: ({ resumed }) => {
        opened++;
        // A later connection that could not resume (no event had come yet) may have missed some.
        if (opened > 1 && !resumed) {
          for (const key of [keys.balance, keys.alerts, ...CREDIT_QUERIES, billingKeys.subscription]) batch.mark(key);
        }
        setConnections(opened);
      },
      onMessage: (message) => {
        const event = parseEvent(message);
        if (!event) return;
        applyEvent(queryClient, event, batch.mark);
        for (const listener of listeners.current) listener(event);
      },
    });
    return () => {
      stream.close();
      batch.cancel();
    };
  }, [queryClient, userId]);

  const subscribe = useCallback((listener: LiveListener) => {
    listeners.current.add(listener);
    return () => {
      listeners.current.delete(listener);
    };
  }, []);
  const value = useMemo<LiveStream>(() => ({ status, connections, subscribe }), [status, connections, subscribe]);
  return <LiveContext.Provider value={value}>{children}</LiveContext.Provider>;
}

/** Calls `listener` (its latest version) with each event of the session's stream. */
export function useLiveEvents(listener: LiveListener): void {
  const live = useLiveStream();
  const ref = useRef(listener);
  useEffect(() => {
    ref.current = listener;
  });
  const subscribe = live?.subscribe;
  useEffect(() => subscribe?.((event) => ref.current(event)), [subscribe]);
}

// A wallet's live stream: one stream of its events per page session, which keeps the query cache
// current, so nothing polls. The signed-in app reads the user's (GET /api/v1/credits/stream);
// the hosted pages read their customer's (GET /api/v1/hosted/stream, see `hostedStream`).
import { useQueryClient, type QueryClient, type QueryKey } from '@tanstack/react-query';
import { useCallback, useEffect, useMemo, useRef, useState, type ReactNode } from 'react';
import { openEventStream, type StreamStatus } from '../lib/eventStream';
import type { SseMessage } from '../lib/sse';
import type { Alerts, Balance, WalletBalance } from './client';

export { useLiveStream, type LiveEvent, type LiveListener, type LiveStream };
import { LiveContext, useLiveStream, type LiveEvent, type LiveListener, type LiveStream } from './liveContext';
import { billingKeys, keys, liveBalance } from './queries';
import { apiUrl, authFetch } from './session';

/** The queries a wallet's events keep current. */
export interface WalletKeys {
  /** The wallet's `Balance`, written from each event's figures. */
  balance: QueryKey;
  /** The low-balance alerts' standing (`Alerts`), where the page has them. */
  alerts?: QueryKey;
  /** What else a movement of credits changes: history, usage, charts (refetched). */
  credits: readonly QueryKey[];
  /** The subscription, which a checkout or a plan change changes (refetched). */
  subscription: QueryKey;
}

/** A wallet's stream: where it is read and which queries its events keep current. */
export interface LiveSource {
  /** The stream's path (`/api/v1/…/stream`). */
  path: string;
  /** Sends the stream's request with the page's credential. */
  fetch: (request: Request) => Promise<Response>;
  keys: WalletKeys;
}

/** The signed-in user's wallet: their session's token, which `authFetch` renews. */
export const signedInStream: LiveSource = {
  path: '/api/v1/credits/stream',
  fetch: authFetch,
  keys: {
    balance: keys.balance,
    alerts: keys.alerts,
    credits: [keys.ledgerAll, keys.usageAll, keys.balanceHistoryAll],
    subscription: billingKeys.subscription,
  },
};

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

/** Every query a wallet's events keep current: what a reconnection that may have missed some refetches. */
function allKeys(wallet: WalletKeys): QueryKey[] {
  return [wallet.balance, ...(wallet.alerts ? [wallet.alerts] : []), ...wallet.credits, wallet.subscription];
}

/**
 * Applies one event to the cache: the balance and the alerts' standing from its figures at once,
 * the lists it changed marked for a refetch (`refetch`, batched by the caller).
 */
export function applyEvent(
  queryClient: QueryClient,
  event: LiveEvent,
  refetch: (key: QueryKey) => void,
  wallet: WalletKeys,
): void {
  const figures = eventBalance(event);
  if (figures) {
    liveBalance.writes++;
    queryClient.setQueryData<Balance>(wallet.balance, (old) => (old ? { ...old, ...figures } : old));
    if (wallet.alerts) {
      queryClient.setQueryData<Alerts>(wallet.alerts, (old) =>
        old ? { ...old, available: figures.available, below: old.thresholds.filter((t) => figures.available <= t) } : old,
      );
    }
    // The lots expiring soon (the rest of the balance's answer) change with expiries, with grants
    // that may expire (any but a pack's purchase), and with spends taking from such lots.
    const expiring = queryClient.getQueryData<Balance>(wallet.balance)?.expiring_soon.length ?? 0;
    const mayExpire = event.type === 'credits.granted' && event.data.kind !== 'purchase';
    if (mayExpire || event.type === 'credits.expired' || expiring > 0) refetch(wallet.balance);
  }
  if (event.type.startsWith('credits.') || event.type === 'balance.low') {
    for (const key of wallet.credits) refetch(key);
  }
  if (event.type === 'subscription.updated' || event.type === 'checkout.completed') refetch(wallet.subscription);
}

/** Refetches the queries marked within `delayMs` together, once each. */
function batcher(queryClient: QueryClient, delayMs = 200) {
  const pending = new Map<string, QueryKey>();
  let timer: ReturnType<typeof setTimeout> | null = null;
  return {
    mark(key: QueryKey) {
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
 * Keeps one stream of `source`'s wallet open while mounted (key it by whose wallet it is: another
 * user or customer gets another stream) and shares its events with the pages below.
 * `onStopped` hears why the stream gave up for good (a refused credential, say).
 */
export function LiveProvider({
  source,
  onStopped,
  children,
}: {
  source: LiveSource;
  onStopped?: (error: unknown) => void;
  children: ReactNode;
}) {
  const queryClient = useQueryClient();
  const [status, setStatus] = useState<StreamStatus>('connecting');
  const [connections, setConnections] = useState(0);
  const listeners = useRef(new Set<LiveListener>());
  const onStoppedRef = useRef(onStopped);
  useEffect(() => {
    onStoppedRef.current = onStopped;
  });

  useEffect(() => {
    setStatus('connecting');
    const batch = batcher(queryClient);
    let opened = 0;
    const stream = openEventStream({
      url: apiUrl(source.path),
      fetch: source.fetch,
      onStatus: (next, error) => {
        setStatus(next);
        if (next === 'stopped') onStoppedRef.current?.(error);
      },
      onOpen: ({ resumed }) => {
        opened++;
        // A connection that did not resume starts at its registration on the server: what was
        // committed between the page's reads and then is not in it. The first connection too (the
        // page read the balance before its stream was registered), and a later one that could not
        // resume (no event had come yet).
        if (!resumed) {
          for (const key of allKeys(source.keys)) batch.mark(key);
        }
        setConnections(opened);
      },
      onMessage: (message) => {
        const event = parseEvent(message);
        if (!event) return;
        applyEvent(queryClient, event, batch.mark, source.keys);
        for (const listener of listeners.current) listener(event);
      },
    });
    return () => {
      stream.close();
      batch.cancel();
    };
  }, [queryClient, source]);

  const subscribe = useCallback((listener: LiveListener) => {
    listeners.current.add(listener);
    return () => {
      listeners.current.delete(listener);
    };
  }, []);
  const value = useMemo<LiveStream>(() => ({ status, connections, subscribe }), [status, connections, subscribe]);
  return <LiveContext.Provider value={value}>{children}</LiveContext.Provider>;
}

/** Calls `listener` (its latest version) with each event of the page's stream. */
export function useLiveEvents(listener: LiveListener): void {
  const live = useLiveStream();
  const ref = useRef(listener);
  useEffect(() => {
    ref.current = listener;
  });
  const subscribe = live?.subscribe;
  useEffect(() => subscribe?.((event) => ref.current(event)), [subscribe]);
}

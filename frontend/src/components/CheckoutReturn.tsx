import { useEffect, useRef, useState } from 'react';
import type { CatalogPrice, LedgerEntry } from '../api/client';
import { useLiveEvents, useLiveStream } from '../api/live';
import { formatCredits } from '../lib/format';
import { Alert, Button } from './ui';

interface PendingCheckout {
  startedAt: number;
  priceId: string;
  name: string;
  credits: number;
  recurring: boolean;
}

/** Notes the checkout the browser is leaving for, so the return can tell what to wait for. */
export function rememberCheckout(storageKey: string, price: CatalogPrice): void {
  const pending: PendingCheckout = {
    startedAt: Date.now(),
    priceId: price.price_id,
    name: price.name,
    credits: price.credits,
    recurring: price.kind === 'recurring',
  };
  sessionStorage.setItem(storageKey, JSON.stringify(pending));
}

function readPending(storageKey: string): PendingCheckout | null {
  try {
    const raw = sessionStorage.getItem(storageKey);
    return raw ? (JSON.parse(raw) as PendingCheckout) : null;
  } catch {
    return null;
  }
}

/** How long to wait for the payment's credits before saying they are late. */
export const LANDING_TIMEOUT_MS = 60_000;

/** The fields of a ledger entry (or a `credits.granted` event's data) that tell a payment's credits. */
interface Credited {
  kind: string;
  amount: number;
  created_at: string;
  metadata?: unknown;
}

/** What landed: the credits the payment added, when known. */
interface Landed {
  amount: number | null;
}

/**
 * Whether `entry` is this checkout's credits: the session's purchase (or, for a plan, its first
 * credits; or, when the return carries no session id, the pack's purchase since the checkout started).
 */
function isPayment(entry: Credited, sessionId: string | null, pending: PendingCheckout | null, since: number): boolean {
  const meta = entry.metadata as { checkout_session?: unknown } | null | undefined;
  if (sessionId && meta?.checkout_session === sessionId) return true;
  if (!pending || Date.parse(entry.created_at) < since) return false;
  if (pending.recurring) return entry.kind === 'subscription';
  return !sessionId && entry.kind === 'purchase' && entry.amount === pending.credits;
}

interface Watch {
  enabled: boolean;
  sessionId: string | null;
  pending: PendingCheckout | null;
  since: number;
}

/**
 * Waits on the page's live stream (the signed-in user's, or the hosted portal's customer's) for
 * `checkout.completed` of this checkout, and takes the credits it added from the
 * `credits.granted` written with it (in the same transaction, so just before it). Each time the
 * stream connects, the newest ledger entries (`recentEntries`) are read once: the payment may
 * have landed before the stream was there to tell. Nothing polls.
 */
function useStreamedLanding(recentEntries: () => Promise<readonly LedgerEntry[]>, watch: Watch): Landed | null {
  const live = useLiveStream();
  const [landed, setLanded] = useState<Landed | null>(null);
  const grants = useRef<{ session: unknown; kind: unknown; amount: number }[]>([]);
  const { enabled, sessionId, pending, since } = watch;

  useLiveEvents((event) => {
    if (!enabled || landed) return;
    if (event.type === 'credits.granted') {
      const data = event.data as { kind?: unknown; amount?: unknown; metadata?: { checkout_session?: unknown } | null };
      if (typeof data.amount === 'number') {
        grants.current.push({ session: data.metadata?.checkout_session, kind: data.kind, amount: data.amount });
      }
      return;
    }
    if (event.type !== 'checkout.completed') return;
    const session = (event.data as { checkout_session?: { id?: unknown; price_id?: unknown; mode?: unknown } }).checkout_session;
    if (!session) return;
    const ours = sessionId ? session.id === sessionId : pending !== null && session.price_id === pending.priceId;
    if (!ours) return;
    const credited = grants.current.filter((g) =>
      g.session === session.id ? true : session.mode === 'subscription' && g.kind === 'subscription',
    );
    setLanded({ amount: credited.length > 0 ? credited.reduce((sum, g) => sum + g.amount, 0) : null });
  });

  // Read the ledger once per connection (and once when there is no stream to wait on).
  const connections = live?.connections ?? 0;
  const noStream = !live || live.status === 'stopped';
  const latestEntries = useRef(recentEntries);
  useEffect(() => {
    latestEntries.current = recentEntries;
  });
  useEffect(() => {
    if (!enabled || (connections === 0 && !noStream)) return;
    let cancelled = false;
    latestEntries.current().then(
      (entries) => {
        const entry = entries.find((e) => isPayment(e, sessionId, pending, since));
        if (entry && !cancelled) setLanded((current) => current ?? { amount: entry.amount });
      },
      () => {
        // The stream still tells; the timeout says when nothing came.
      },
    );
    return () => {
      cancelled = true;
    };
  }, [enabled, connections, noStream, sessionId, pending, since]);

  return enabled ? landed : null;
}

/** Back from checkout: says how it went and waits until the credits are in the wallet. */
export function CheckoutReturn({
  outcome,
  sessionId,
  onDismiss,
  storageKey,
  recentEntries,
  balance,
  onLanded,
}: {
  outcome: string;
  sessionId: string | null;
  onDismiss: () => void;
  /** Where `rememberCheckout` noted the checkout. */
  storageKey: string;
  /** The wallet's newest ledger entries, read once per connection of the stream. */
  recentEntries: () => Promise<readonly LedgerEntry[]>;
  /** The wallet's balance, once known. */
  balance: number | undefined;
  /** Refetches what the payment changed (the stream has already brought the balance). */
  onLanded: () => void;
}) {
  const [pending] = useState(() => readPending(storageKey));
  const [timedOut, setTimedOut] = useState(false);
  const success = outcome === 'success';
  const [since] = useState(() => (pending?.startedAt ?? Date.now() - 15 * 60_000) - 2 * 60_000);

  // Without the session's id or a note of the checkout (another tab, a reload after landing),
  // there is nothing to recognise the payment's credits by.
  const traceable = sessionId !== null || pending !== null;
  const watch = { enabled: success && traceable, sessionId, pending, since };
  const landed = useStreamedLanding(recentEntries, watch);

  useEffect(() => {
    if (!success || !traceable) return;
    const timer = setTimeout(() => setTimedOut(true), LANDING_TIMEOUT_MS);
    return () => clearTimeout(timer);
  }, [success, traceable]);

  // Called once per landing, whichever function the latest render passed.
  const onLandedRef = useRef(onLanded);
  useEffect(() => {
    onLandedRef.current = onLanded;
  });
  const hasLanded = landed !== null;
  useEffect(() => {
    if (hasLanded) {
      sessionStorage.removeItem(storageKey);
      onLandedRef.current();
    }
  }, [hasLanded, storageKey]);

  const dismiss = (
    <Button variant="secondary" onClick={onDismiss}>
      Dismiss
    </Button>
  );

  if (!success) {
    return (
      <Alert tone="info" title="Checkout cancelled" action={dismiss}>
        You were not charged. Pick a pack or plan whenever you are ready.
      </Alert>
    );
  }
  if (landed) {
    return (
      <Alert tone="success" title="Payment complete" action={dismiss}>
        {landed.amount !== null ? `${formatCredits(landed.amount)} added to your wallet.` : 'Your credits are in your wallet.'}
        {balance !== undefined && <> Your balance is now {formatCredits(balance)}.</>}
      </Alert>
    );
  }
  if (!traceable) {
    return (
      <Alert tone="success" title="Payment received" action={dismiss}>
        Thank you. The credits are added to your wallet as soon as the payment clears.
        {balance !== undefined && <> Your balance is {formatCredits(balance)}.</>}
      </Alert>
    );
  }
  if (timedOut) {
    return (
      <Alert tone="warning" title="Payment received" action={dismiss}>
        Your credits have not arrived yet. They usually take a few seconds; refresh this page in a minute.
      </Alert>
    );
  }
  return (
    <Alert tone="info" title="Payment received">
      <span className="inline-flex items-center gap-2">Adding{pending ? ` ${formatCredits(pending.credits)}` : ' your credits'} to your wallet…</span>
    </Alert>
  );
}

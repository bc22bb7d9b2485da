import { useQuery } from '@tanstack/react-query';
import { useEffect, useRef, useState } from 'react';
import type { CatalogPrice, LedgerEntry } from '../api/client';
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
const LANDING_TIMEOUT_MS = 60_000;

/**
 * Back from checkout: says how it went and waits until the credits are in the wallet, by
 * polling the newest ledger entries for the session's purchase (or, for a plan, its first credits;
 * or, when the return carries no session id, the pack's purchase since the checkout started).
 */
export function CheckoutReturn({
  outcome,
  sessionId,
  onDismiss,
  storageKey,
  queryKey,
  recentEntries,
  balance,
  onLanded,
}: {
  outcome: string;
  sessionId: string | null;
  onDismiss: () => void;
  /** Where `rememberCheckout` noted the checkout. */
  storageKey: string;
  /** Names the polling query; distinct per wallet. */
  queryKey: readonly unknown[];
  /** The wallet's newest ledger entries. */
  recentEntries: () => Promise<readonly LedgerEntry[]>;
  /** The wallet's balance, once known. */
  balance: number | undefined;
  /** Refetches what the payment changed. */
  onLanded: () => void;
}) {
  const [pending] = useState(() => readPending(storageKey));
  const [timedOut, setTimedOut] = useState(false);
  const success = outcome === 'success';
  const since = (pending?.startedAt ?? Date.now() - 15 * 60_000) - 2 * 60_000;

  // Without the session's id or a note of the checkout (another tab, a reload after landing),
  // there is nothing to recognise the payment's credits by.
  const traceable = sessionId !== null || pending !== null;

  const landing = useQuery({
    queryKey: [...queryKey, sessionId],
    enabled: success && traceable,
    queryFn: async () => {
      const entries = await recentEntries();
      return (
        entries.find((e) => {
          const meta = e.metadata as { checkout_session?: unknown } | null | undefined;
          if (sessionId && meta?.checkout_session === sessionId) return true;
          if (!pending || Date.parse(e.created_at) < since) return false;
          if (pending.recurring) return e.kind === 'subscription';
          // Without the session's id, the pack's purchase made since the checkout started.
          return !sessionId && e.kind === 'purchase' && e.amount === pending.credits;
        }) ?? null
      );
    },
    refetchInterval: (query) => (query.state.data || timedOut ? false : 1500),
  });
  const landed = landing.data ?? null;

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
  useEffect(() => {
    if (landed) {
      sessionStorage.removeItem(storageKey);
      onLandedRef.current();
    }
  }, [landed, storageKey]);

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
        {formatCredits(landed.amount)} added to your wallet.
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

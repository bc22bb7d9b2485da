import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useEffect, useMemo, useRef, useState, type ReactNode } from 'react';
import { useSearchParams } from 'react-router';
import { hostedApi, unwrap, type Balance, type CatalogPrice, type HostedSession, type UsageResponse } from '../api/client';
import {
  hostedStream,
  invalidateHostedCredits,
  isPortalSessionEnded,
  useHostedBalance,
  useHostedCatalog,
  useHostedLedger,
  useHostedSession,
  useHostedSubscription,
  useHostedUsage,
} from '../api/hosted';
import { LiveProvider } from '../api/live';
import { isLiveSubscription } from '../api/queries';
import { CheckoutReturn, rememberCheckout } from '../components/CheckoutReturn';
import { SkipLink } from '../components/Layout';
import { LedgerTable } from '../components/LedgerTable';
import { LiveIndicator } from '../components/LiveBalance';
import { Offers, SubscriptionSummary } from '../components/Offers';
import { Alert, Button, Card, ErrorAlert, Loading, PageHeader, Stat, buttonClass } from '../components/ui';
import { formatCredits, formatDate, formatNumber } from '../lib/format';
import { browser } from '../lib/navigate';
import { useDocumentTitle } from '../lib/useDocumentTitle';

const PENDING_KEY = 'tollgate.hosted.checkout';
/** The last portal's way back, for the expired state (which has no session to ask). */
const RETURN_KEY = 'tollgate.hosted.return';

interface ReturnTo {
  url: string;
  label: string;
}

/** The product's return link, when it is a web address (the server only accepts its own sites). */
function returnTo(session: Pick<HostedSession, 'return_url' | 'return_label'>): ReturnTo | null {
  const url = session.return_url;
  if (!url) return null;
  try {
    const parsed = new URL(url);
    if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') return null;
    return { url: parsed.href, label: session.return_label || parsed.host };
  } catch {
    return null;
  }
}

function storedReturn(): ReturnTo | null {
  try {
    const raw = sessionStorage.getItem(RETURN_KEY);
    const value = raw ? (JSON.parse(raw) as { url?: unknown; label?: unknown }) : null;
    if (typeof value?.url !== 'string') return null;
    return returnTo({ return_url: value.url, return_label: typeof value.label === 'string' ? value.label : null });
  } catch {
    return null;
  }
}

function BackLink({ to, primary = false }: { to: ReturnTo; primary?: boolean }) {
  return (
    <a href={to.url} className={primary ? buttonClass('primary') : 'inline-flex items-center gap-1 text-sm font-semibold text-brand-700 hover:underline'}>
      <span aria-hidden="true">←</span> Back to {to.label}
    </a>
  );
}

/** The portal's own frame: the way back to the product, and nothing of the Tollgate app. */
function HostedShell({ back, who, children }: { back: ReturnTo | null; who?: string | null; children: ReactNode }) {
  return (
    <div className="min-h-dvh">
      <SkipLink />
      <header className="border-b border-slate-200 bg-white">
        <div className="mx-auto flex max-w-5xl flex-wrap items-center justify-between gap-x-4 gap-y-2 px-4 py-3">
          {back ? <BackLink to={back} /> : <span className="text-sm font-semibold text-slate-900">Billing</span>}
          {who && (
            <span className="min-w-0 truncate text-sm text-slate-600" title={who}>
              {who}
            </span>
          )}
        </div>
      </header>
      <main id="main" className="mx-auto max-w-5xl px-4 py-6 sm:py-8">
        {children}
      </main>
      <footer className="mx-auto max-w-5xl px-4 pb-8 text-xs text-slate-500">Payments and credits by Tollgate.</footer>
    </div>
  );
}

/** A used, expired or missing portal session: the only way in is a new link from the product. */
function LinkExpired({ back, paid }: { back: ReturnTo | null; paid: boolean }) {
  return (
    <HostedShell back={back}>
      <PageHeader title="This link has expired or was already used" />
      <div className="max-w-xl space-y-4 text-sm text-slate-700">
        {paid && <Alert tone="success">Your payment went through. Your credits are added to your balance.</Alert>}
        <p>
          Billing links work once, for a few minutes. Go back to {back ? back.label : 'the app you came from'} and open
          billing from there again.
        </p>
        {back && <BackLink to={back} primary />}
      </div>
    </HostedShell>
  );
}

function ExpiringSoon({ balance }: { balance: Balance }) {
  const lots = balance.expiring_soon;
  const total = lots.reduce((sum, lot) => sum + lot.remaining, 0);
  const first = lots.find((lot) => lot.expires_at)?.expires_at;
  return (
    <Stat
      label="Expiring soon"
      value={formatCredits(total)}
      hint={first ? `First on ${formatDate(first)}` : 'None of your credits are due to expire.'}
    />
  );
}

function UsageByFeature({ usage }: { usage: UsageResponse }) {
  if (usage.buckets.length === 0) {
    return (
      <p className="text-sm text-slate-600">
        No credits spent from {formatDate(usage.from)} to {formatDate(usage.to)}.
      </p>
    );
  }
  return (
    <div className="space-y-3">
      <p className="text-sm text-slate-700">
        {formatDate(usage.from)} to {formatDate(usage.to)}: <span className="font-semibold">{formatCredits(usage.total_credits)}</span>
      </p>
      <ul className="divide-y divide-slate-100 text-sm" aria-label="Usage by feature">
        {usage.buckets.map((bucket) => (
          <li key={bucket.key} className="flex flex-wrap items-baseline justify-between gap-2 py-2">
            <code className="break-all text-slate-800">{bucket.key}</code>
            <span className="text-slate-700">
              <span className="font-semibold tabular-nums">{formatCredits(bucket.credits)}</span>
              <span className="text-slate-600">
                {' '}
                · {formatNumber(bucket.spends)} {bucket.spends === 1 ? 'use' : 'uses'}
              </span>
            </span>
          </li>
        ))}
      </ul>
    </div>
  );
}

/**
 * The hosted customer portal (`/hosted`): a product's customer, sent here by a one-time link,
 * sees their credits, buys more, and reads their history. The portal cookie is its only
 * credential; it never signs anyone in. While the session lasts, the customer's live stream
 * keeps the page current (nothing polls); once it ends, only the expired state is left.
 */
export function HostedPage() {
  useDocumentTitle('Billing');
  const [params] = useSearchParams();
  const linkExpired = params.get('error') === 'link_expired';
  const outcome = params.get('checkout');
  const session = useHostedSession(!linkExpired);
  // Set when a call or the stream was refused for want of a session: it ended while the page was open.
  const [sessionEnded, setSessionEnded] = useState(false);

  const back = useMemo(() => (session.data ? returnTo(session.data) : null), [session.data]);
  useEffect(() => {
    if (!session.data) return;
    if (back) sessionStorage.setItem(RETURN_KEY, JSON.stringify(back));
    else sessionStorage.removeItem(RETURN_KEY);
  }, [session.data, back]);

  if (linkExpired || sessionEnded || isPortalSessionEnded(session.error)) {
    return <LinkExpired back={back ?? storedReturn()} paid={outcome === 'success'} />;
  }
  // The stream opens with the first calls, not after them; leaving this page closes it.
  return (
    <LiveProvider
      source={hostedStream}
      onStopped={(error) => {
        if (isPortalSessionEnded(error)) setSessionEnded(true);
      }}
    >
      <HostedPortal session={session} back={back} onSessionEnded={() => setSessionEnded(true)} />
    </LiveProvider>
  );
}

/** The portal itself, inside the customer's live stream. */
function HostedPortal({
  session,
  back,
  onSessionEnded,
}: {
  session: ReturnType<typeof useHostedSession>;
  back: ReturnTo | null;
  onSessionEnded: () => void;
}) {
  const queryClient = useQueryClient();
  const [params, setParams] = useSearchParams();
  const outcome = params.get('checkout');
  const sessionId = params.get('session_id');

  const balance = useHostedBalance();
  const ledger = useHostedLedger();
  const usage = useHostedUsage();
  const subscription = useHostedSubscription();
  const catalog = useHostedCatalog();
  const errorRef = useRef<HTMLDivElement>(null);

  const checkout = useMutation({
    mutationFn: async (price: CatalogPrice) => {
      const started = await unwrap(hostedApi.POST('/api/v1/hosted/checkout-session', { body: { price_id: price.price_id } }));
      return { started, price };
    },
    onSuccess: ({ started, price }) => {
      rememberCheckout(PENDING_KEY, price);
      browser.assign(started.url);
    },
    onError: () => setTimeout(() => errorRef.current?.focus(), 0),
  });

  const ended = [balance.error, ledger.error, usage.error, subscription.error, checkout.error].some(isPortalSessionEnded);
  useEffect(() => {
    if (ended) onSessionEnded();
  }, [ended, onSessionEnded]);
  if (ended) return null;

  if (session.isPending) {
    return (
      <HostedShell back={null}>
        <Loading label="Opening your billing page…" />
      </HostedShell>
    );
  }
  if (session.isError) {
    return (
      <HostedShell back={null}>
        <PageHeader title="Billing" />
        <ErrorAlert error={session.error} onRetry={() => void session.refetch()} />
      </HostedShell>
    );
  }

  const { customer } = session.data;
  const who = customer.name && customer.email ? `${customer.name} (${customer.email})` : (customer.name ?? customer.email);
  const sub = subscription.data?.subscription ?? null;
  const liveSub = sub !== null && isLiveSubscription(sub.status) ? sub : null;
  const entries = ledger.data?.pages.flatMap((p) => p.entries) ?? [];
  const redirecting = checkout.isPending || checkout.isSuccess;
  const b = balance.data;

  const dismissReturn = () => {
    const next = new URLSearchParams(params);
    next.delete('checkout');
    next.delete('session_id');
    setParams(next, { replace: true });
  };

  return (
    <HostedShell back={back} who={who}>
      <PageHeader title="Billing" description={who ? `Credits for ${who}` : undefined} actions={<LiveIndicator />} />
      <div className="space-y-8">
        {outcome && (
          <CheckoutReturn
            key={`${outcome}-${sessionId}`}
            outcome={outcome}
            sessionId={sessionId}
            onDismiss={dismissReturn}
            storageKey={PENDING_KEY}
            recentEntries={() =>
              unwrap(hostedApi.GET('/api/v1/hosted/ledger', { params: { query: { limit: 20 } } })).then((page) => page.entries)
            }
            balance={b?.balance}
            onLanded={() => void invalidateHostedCredits(queryClient)}
          />
        )}

        {balance.isError && <ErrorAlert error={balance.error} onRetry={() => void balance.refetch()} />}
        {b && b.debt > 0 && (
          <Alert tone="error" title="You owe credits">
            {formatCredits(b.debt)} were taken back after they were spent. Buy credits to cover the debt before spending
            again.
          </Alert>
        )}
        <dl className="grid grid-cols-1 gap-4 sm:grid-cols-3">
          <Stat label="Balance" value={b ? formatCredits(b.balance) : '…'} />
          <Stat label="Available" value={b ? formatCredits(b.available) : '…'} hint="Balance less credits held for running work" />
          {b ? <ExpiringSoon balance={b} /> : <Stat label="Expiring soon" value="…" />}
        </dl>

        <Card title="Your subscription">
          {subscription.isPending ? (
            <Loading />
          ) : subscription.isError ? (
            <ErrorAlert error={subscription.error} onRetry={() => void subscription.refetch()} />
          ) : liveSub ? (
            <SubscriptionSummary subscription={liveSub} />
          ) : (
            <p className="text-sm text-slate-700">No plan: you pay as you go. Subscribe below for credits every period.</p>
          )}
        </Card>

        <section aria-labelledby="buy-heading" className="space-y-6">
          <h2 id="buy-heading" className="text-xl font-bold tracking-tight text-slate-900">
            Buy credits
          </h2>
          {checkout.isError && (
            <div ref={errorRef} tabIndex={-1}>
              <ErrorAlert error={checkout.error} title="Checkout could not start" />
            </div>
          )}
          {catalog.isPending ? (
            <Loading label="Loading prices…" />
          ) : catalog.isError ? (
            <ErrorAlert error={catalog.error} onRetry={() => void catalog.refetch()} />
          ) : (
            <Offers
              catalog={catalog.data}
              subscription={liveSub}
              onBuy={(price) => checkout.mutate(price)}
              busyPriceId={redirecting ? checkout.variables?.price_id : undefined}
              disabled={redirecting}
              changePlansHint="You already have a plan."
              level={3}
            />
          )}
        </section>

        <div className="grid grid-cols-1 gap-6 lg:grid-cols-3">
          <Card title="History" className="lg:col-span-2">
            {ledger.isPending ? (
              <Loading label="Loading history…" />
            ) : ledger.isError ? (
              <ErrorAlert error={ledger.error} onRetry={() => void ledger.refetch()} />
            ) : entries.length === 0 ? (
              <p className="py-6 text-center text-sm text-slate-600">No activity yet.</p>
            ) : (
              <>
                <LedgerTable entries={entries} caption="Your credit history, newest first" />
                <div className="mt-4 flex flex-wrap items-center justify-between gap-2 text-sm text-slate-600">
                  <p aria-live="polite">
                    Showing {formatNumber(entries.length)} {entries.length === 1 ? 'entry' : 'entries'}
                    {ledger.hasNextPage ? '' : ' (all)'}
                  </p>
                  {ledger.hasNextPage && (
                    <Button
                      variant="secondary"
                      onClick={() => void ledger.fetchNextPage()}
                      busy={ledger.isFetchingNextPage}
                      busyLabel="Loading…"
                    >
                      Load more
                    </Button>
                  )}
                </div>
              </>
            )}
          </Card>
          <Card title="Usage by feature">
            {usage.isPending ? (
              <Loading />
            ) : usage.isError ? (
              <ErrorAlert error={usage.error} onRetry={() => void usage.refetch()} />
            ) : (
              <UsageByFeature usage={usage.data} />
            )}
          </Card>
        </div>
      </div>
    </HostedShell>
  );
}

import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect, useRef, useState } from 'react';
import { useSearchParams } from 'react-router';
import { api, unwrap, type CatalogPrice, type Subscription } from '../api/client';
import { billingKeys, invalidateCredits, isLiveSubscription, useBalance, useCatalog, useSubscription } from '../api/queries';
import { Alert, Badge, Button, Card, ErrorAlert, Loading, PageHeader, Stat } from '../components/ui';
import {
  formatCredits,
  formatDate,
  formatInterval,
  formatKind,
  formatMoney,
  formatPricePerCredit,
} from '../lib/format';
import { browser } from '../lib/navigate';
import { useDocumentTitle } from '../lib/useDocumentTitle';

const PENDING_KEY = 'tollgate.checkout';

interface PendingCheckout {
  startedAt: number;
  priceId: string;
  name: string;
  credits: number;
  recurring: boolean;
}

function readPending(): PendingCheckout | null {
  try {
    const raw = sessionStorage.getItem(PENDING_KEY);
    return raw ? (JSON.parse(raw) as PendingCheckout) : null;
  } catch {
    return null;
  }
}

/** How long to wait for the payment's credits before saying they are late. */
const LANDING_TIMEOUT_MS = 60_000;

/** Back from checkout: says how it went and waits until the credits are in the wallet. */
function CheckoutReturn({ outcome, sessionId, onDismiss }: { outcome: string; sessionId: string | null; onDismiss: () => void }) {
  const queryClient = useQueryClient();
  const [pending] = useState(readPending);
  const [timedOut, setTimedOut] = useState(false);
  const success = outcome === 'success';
  const since = (pending?.startedAt ?? Date.now() - 15 * 60_000) - 2 * 60_000;

  const landing = useQuery({
    queryKey: ['checkout-landing', sessionId],
    enabled: success,
    queryFn: async () => {
      const page = await unwrap(api.GET('/api/v1/credits/ledger', { params: { query: { limit: 20 } } }));
      return (
        page.entries.find((e) => {
          const meta = e.metadata as { checkout_session?: unknown } | null | undefined;
          if (sessionId && meta?.checkout_session === sessionId) return true;
          return (
            pending?.recurring === true && e.kind === 'subscription' && Date.parse(e.created_at) >= since
          );
        }) ?? null
      );
    },
    refetchInterval: (query) => (query.state.data || timedOut ? false : 1500),
  });
  const landed = landing.data ?? null;

  useEffect(() => {
    if (!success) return;
    const timer = setTimeout(() => setTimedOut(true), LANDING_TIMEOUT_MS);
    return () => clearTimeout(timer);
  }, [success]);

  useEffect(() => {
    if (landed) {
      sessionStorage.removeItem(PENDING_KEY);
      void invalidateCredits(queryClient);
      void queryClient.invalidateQueries({ queryKey: billingKeys.subscription });
    }
  }, [landed, queryClient]);

  const balance = useBalance();
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
        {balance.data && <> Your balance is now {formatCredits(balance.data.balance)}.</>}
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

function PriceTag({ price }: { price: CatalogPrice }) {
  return (
    <p className="mt-2 flex items-baseline gap-1">
      <span className="text-3xl font-bold tracking-tight text-slate-900">{formatMoney(price.unit_amount, price.currency)}</span>
      {price.interval && <span className="text-sm text-slate-600">{formatInterval(price.interval)}</span>}
    </p>
  );
}

function SubscriptionCard({ subscription }: { subscription: Subscription }) {
  const portal = useMutation({
    mutationFn: () => unwrap(api.POST('/api/v1/billing/portal-link')),
    onSuccess: ({ url }) => browser.assign(url),
  });
  return (
    <Card
      title="Your subscription"
      actions={
        <Button variant="secondary" onClick={() => portal.mutate()} busy={portal.isPending || portal.isSuccess} busyLabel="Opening…">
          Manage subscription
        </Button>
      }
    >
      <div className="space-y-1 text-sm text-slate-700">
        <p className="flex flex-wrap items-center gap-2 text-lg font-semibold text-slate-900">
          {subscription.plan_name ?? 'Subscription'}
          <Badge tone={subscription.status === 'active' ? 'good' : 'warn'}>{formatKind(subscription.status)}</Badge>
        </p>
        {subscription.credits_per_period != null && (
          <p>
            {formatCredits(subscription.credits_per_period)} {formatInterval(subscription.interval)}
          </p>
        )}
        <p>
          {subscription.cancel_at_period_end ? 'Ends on ' : 'Renews on '}
          <time dateTime={subscription.current_period_end} className="font-medium">
            {formatDate(subscription.current_period_end)}
          </time>
          {subscription.cancel_at_period_end && ' (cancelled: it will not renew)'}
        </p>
      </div>
      {portal.isError && (
        <div className="mt-4">
          <ErrorAlert error={portal.error} />
        </div>
      )}
    </Card>
  );
}

export function CreditsPage() {
  useDocumentTitle('Credits');
  const [params, setParams] = useSearchParams();
  const outcome = params.get('checkout');
  const sessionId = params.get('session_id');
  const catalog = useCatalog();
  const balance = useBalance();
  const subscription = useSubscription();
  const sub = subscription.data?.subscription ?? null;
  const subscribed = sub !== null && isLiveSubscription(sub.status);
  const errorRef = useRef<HTMLDivElement>(null);

  const checkout = useMutation({
    mutationFn: async (price: CatalogPrice) => {
      const session = await unwrap(api.POST('/api/v1/billing/checkout-session', { body: { price_id: price.price_id } }));
      return { session, price };
    },
    onSuccess: ({ session, price }) => {
      const pending: PendingCheckout = {
        startedAt: Date.now(),
        priceId: price.price_id,
        name: price.name,
        credits: price.credits,
        recurring: price.kind === 'recurring',
      };
      sessionStorage.setItem(PENDING_KEY, JSON.stringify(pending));
      browser.assign(session.url);
    },
    onError: () => setTimeout(() => errorRef.current?.focus(), 0),
  });
  const redirecting = checkout.isPending || checkout.isSuccess;
  const busyPrice = redirecting ? checkout.variables?.price_id : undefined;

  const dismissReturn = () => {
    const next = new URLSearchParams(params);
    next.delete('checkout');
    next.delete('session_id');
    setParams(next, { replace: true });
  };

  return (
    <>
      <PageHeader
        title="Credits"
        description="Buy a pack once, or subscribe for credits every period. Credits from packs never expire."
        actions={catalog.data && catalog.data.mode !== 'live' ? <Badge tone="warn">{formatKind(catalog.data.mode)} mode</Badge> : undefined}
      />
      <div className="space-y-8">
        {outcome && (
          <CheckoutReturn key={`${outcome}-${sessionId}`} outcome={outcome} sessionId={sessionId} onDismiss={dismissReturn} />
        )}

        <dl className="grid grid-cols-1 gap-4 sm:grid-cols-2">
          <Stat label="Balance" testId="credits-balance" value={balance.data ? formatCredits(balance.data.balance) : '…'} />
          <Stat label="Available" value={balance.data ? formatCredits(balance.data.available) : '…'} />
        </dl>

        {subscribed && sub && <SubscriptionCard subscription={sub} />}

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
          <>
            <section aria-labelledby="packs-heading">
              <h2 id="packs-heading" className="mb-3 text-lg font-semibold text-slate-900">
                Credit packs
              </h2>
              {catalog.data.packs.length === 0 ? (
                <p className="text-sm text-slate-600">No packs are on offer right now.</p>
              ) : (
                <ul className="grid grid-cols-1 gap-4 sm:grid-cols-2 lg:grid-cols-3">
                  {catalog.data.packs.map((pack) => (
                    <li key={pack.price_id} className="flex flex-col rounded-xl bg-white p-5 shadow-sm ring-1 ring-slate-200">
                      <h3 className="font-semibold text-slate-900">{pack.name}</h3>
                      <p className="text-sm font-medium text-brand-700">{formatCredits(pack.credits)}</p>
                      <PriceTag price={pack} />
                      <p className="text-xs text-slate-600">
                        {formatPricePerCredit(pack.unit_amount, pack.credits, pack.currency)} per credit
                      </p>
                      {pack.description && <p className="mt-2 text-sm text-slate-700">{pack.description}</p>}
                      <div className="mt-auto pt-4">
                        <Button
                          className="w-full"
                          onClick={() => checkout.mutate(pack)}
                          disabled={redirecting}
                          busy={busyPrice === pack.price_id}
                          busyLabel="Opening checkout…"
                        >
                          Buy {formatCredits(pack.credits)}
                        </Button>
                      </div>
                    </li>
                  ))}
                </ul>
              )}
            </section>

            <section aria-labelledby="plans-heading" id="plans">
              <h2 id="plans-heading" className="mb-1 text-lg font-semibold text-slate-900">
                Plans
              </h2>
              <p className="mb-3 text-sm text-slate-600">Credits arrive at the start of each period and expire at its end.</p>
              {catalog.data.plans.length === 0 ? (
                <p className="text-sm text-slate-600">No plans are on offer right now.</p>
              ) : (
                <ul className="grid grid-cols-1 gap-4 sm:grid-cols-2">
                  {catalog.data.plans.map((plan) => {
                    const current = subscribed && sub?.price_id === plan.price_id;
                    return (
                      <li
                        key={plan.price_id}
                        className={`flex flex-col rounded-xl bg-white p-5 shadow-sm ring-1 ${current ? 'ring-2 ring-brand-600' : 'ring-slate-200'}`}
                      >
                        <h3 className="flex items-center gap-2 font-semibold text-slate-900">
                          {plan.name}
                          {current && <Badge tone="brand">Current plan</Badge>}
                        </h3>
                        <p className="text-sm font-medium text-brand-700">
                          {formatCredits(plan.credits)} {formatInterval(plan.interval)}
                        </p>
                        <PriceTag price={plan} />
                        {plan.description && <p className="mt-2 text-sm text-slate-700">{plan.description}</p>}
                        <div className="mt-auto pt-4">
                          {subscribed ? (
                            <p className="text-sm text-slate-600">
                              {current ? 'You are on this plan.' : 'Change plans with “Manage subscription”.'}
                            </p>
                          ) : (
                            <Button
                              className="w-full"
                              onClick={() => checkout.mutate(plan)}
                              disabled={redirecting}
                              busy={busyPrice === plan.price_id}
                              busyLabel="Opening checkout…"
                              aria-label={`Subscribe to ${plan.name}`}
                            >
                              Subscribe
                            </Button>
                          )}
                        </div>
                      </li>
                    );
                  })}
                </ul>
              )}
            </section>
          </>
        )}
      </div>
    </>
  );
}

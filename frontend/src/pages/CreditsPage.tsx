import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useRef } from 'react';
import { useSearchParams } from 'react-router';
import { api, unwrap, type CatalogPrice, type Subscription } from '../api/client';
import { billingKeys, isLiveSubscription, keys, useBalance, useCatalog, useSubscription } from '../api/queries';
import { AlertSettings } from '../components/AlertSettings';
import { CheckoutReturn, rememberCheckout } from '../components/CheckoutReturn';
import { LoadError, PageLoadErrors, Unavailable } from '../components/LoadErrors';
import { Offers, SubscriptionSummary } from '../components/Offers';
import { Badge, Button, Card, ErrorAlert, Loading, PageHeader, Stat } from '../components/ui';
import { formatCredits, formatKind } from '../lib/format';
import { browser } from '../lib/navigate';
import { useDocumentTitle } from '../lib/useDocumentTitle';

const PENDING_KEY = 'tollgate.checkout';

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
      <SubscriptionSummary subscription={subscription} />
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
  const figure = (value: number | undefined) =>
    value !== undefined ? formatCredits(value) : balance.isError ? <Unavailable /> : '…';
  const errorRef = useRef<HTMLDivElement>(null);
  const queryClient = useQueryClient();

  const checkout = useMutation({
    mutationFn: async (price: CatalogPrice) => {
      const session = await unwrap(api.POST('/api/v1/billing/checkout-session', { body: { price_id: price.price_id } }));
      return { session, price };
    },
    onSuccess: ({ session, price }) => {
      rememberCheckout(PENDING_KEY, price);
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
        <PageLoadErrors queryKeys={[keys.balance, keys.alerts, billingKeys.catalog, billingKeys.subscription]} />
        {outcome && (
          <CheckoutReturn
            key={`${outcome}-${sessionId}`}
            outcome={outcome}
            sessionId={sessionId}
            onDismiss={dismissReturn}
            storageKey={PENDING_KEY}
            recentEntries={() =>
              unwrap(api.GET('/api/v1/credits/ledger', { params: { query: { limit: 20 } } })).then((page) => page.entries)
            }
            balance={balance.data?.balance}
            onLanded={() => void queryClient.invalidateQueries({ queryKey: billingKeys.subscription })}
          />
        )}

        <dl className="grid grid-cols-1 gap-4 sm:grid-cols-2">
          <Stat label="Balance" testId="credits-balance" value={figure(balance.data?.balance)} />
          <Stat label="Available" value={figure(balance.data?.available)} />
        </dl>

        {subscribed && sub && <SubscriptionCard subscription={sub} />}
        {subscription.isError && !subscription.data && (
          <Card title="Your subscription">
            <LoadError error={subscription.error} what="your subscription" />
          </Card>
        )}

        <AlertSettings />

        {checkout.isError && (
          <div ref={errorRef} tabIndex={-1}>
            <ErrorAlert error={checkout.error} title="Checkout could not start" />
          </div>
        )}

        {!catalog.data ? (
          catalog.isError ? <LoadError error={catalog.error} what="the packs and plans on offer" /> : <Loading label="Loading prices…" />
        ) : (
          <Offers
            catalog={catalog.data}
            subscription={subscribed ? sub : null}
            onBuy={(price) => checkout.mutate(price)}
            busyPriceId={busyPrice}
            disabled={redirecting}
            changePlansHint="Change plans with “Manage subscription”."
          />
        )}
      </div>
    </>
  );
}

import type { Catalog, CatalogPrice, Subscription } from '../api/client';
import { formatCredits, formatDate, formatInterval, formatKind, formatMoney, formatPricePerCredit } from '../lib/format';
import { Badge, Button } from './ui';

export function PriceTag({ price }: { price: CatalogPrice }) {
  return (
    <p className="mt-2 flex items-baseline gap-1">
      <span className="text-3xl font-bold tracking-tight text-slate-900">{formatMoney(price.unit_amount, price.currency)}</span>
      {price.interval && <span className="text-sm text-slate-600">{formatInterval(price.interval)}</span>}
    </p>
  );
}

/** A subscription's plan, credits per period, and when it renews or ends. */
export function SubscriptionSummary({ subscription }: { subscription: Subscription }) {
  return (
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
  );
}

/**
 * The catalog's packs and plans, each with its buy button. A subscriber cannot start a second
 * plan: `changePlansHint` says where plans are changed instead.
 */
export function Offers({
  catalog,
  subscription,
  onBuy,
  busyPriceId,
  disabled,
  changePlansHint,
  level = 2,
}: {
  catalog: Catalog;
  /** The live subscription, if any. */
  subscription: Subscription | null;
  onBuy: (price: CatalogPrice) => void;
  /** The price whose checkout is opening. */
  busyPriceId?: string;
  disabled: boolean;
  changePlansHint: string;
  /** The level of the two sections' headings (the items' are one below), to fit the page's outline. */
  level?: 2 | 3;
}) {
  const Section = level === 2 ? 'h2' : 'h3';
  const Item = level === 2 ? 'h3' : 'h4';
  return (
    <>
      <section aria-labelledby="packs-heading">
        <Section id="packs-heading" className="mb-3 text-lg font-semibold text-slate-900">
          Credit packs
        </Section>
        {catalog.packs.length === 0 ? (
          <p className="text-sm text-slate-600">No packs are on offer right now.</p>
        ) : (
          <ul className="grid grid-cols-1 gap-4 sm:grid-cols-2 lg:grid-cols-3">
            {catalog.packs.map((pack) => (
              <li key={pack.price_id} className="flex flex-col rounded-xl bg-white p-5 shadow-sm ring-1 ring-slate-200">
                <Item className="font-semibold text-slate-900">{pack.name}</Item>
                <p className="text-sm font-medium text-brand-700">{formatCredits(pack.credits)}</p>
                <PriceTag price={pack} />
                <p className="text-xs text-slate-600">
                  {formatPricePerCredit(pack.unit_amount, pack.credits, pack.currency)} per credit
                </p>
                {pack.description && <p className="mt-2 text-sm text-slate-700">{pack.description}</p>}
                <div className="mt-auto pt-4">
                  <Button
                    className="w-full"
                    onClick={() => onBuy(pack)}
                    disabled={disabled}
                    busy={busyPriceId === pack.price_id}
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
        <Section id="plans-heading" className="mb-1 text-lg font-semibold text-slate-900">
          Plans
        </Section>
        <p className="mb-3 text-sm text-slate-600">Credits arrive at the start of each period and expire at its end.</p>
        {catalog.plans.length === 0 ? (
          <p className="text-sm text-slate-600">No plans are on offer right now.</p>
        ) : (
          <ul className="grid grid-cols-1 gap-4 sm:grid-cols-2">
            {catalog.plans.map((plan) => {
              const current = subscription?.price_id === plan.price_id;
              return (
                <li
                  key={plan.price_id}
                  className={`flex flex-col rounded-xl bg-white p-5 shadow-sm ring-1 ${current ? 'ring-2 ring-brand-600' : 'ring-slate-200'}`}
                >
                  <Item className="flex items-center gap-2 font-semibold text-slate-900">
                    {plan.name}
                    {current && <Badge tone="brand">Current plan</Badge>}
                  </Item>
                  <p className="text-sm font-medium text-brand-700">
                    {formatCredits(plan.credits)} {formatInterval(plan.interval)}
                  </p>
                  <PriceTag price={plan} />
                  {plan.description && <p className="mt-2 text-sm text-slate-700">{plan.description}</p>}
                  <div className="mt-auto pt-4">
                    {subscription ? (
                      <p className="text-sm text-slate-600">{current ? 'You are on this plan.' : changePlansHint}</p>
                    ) : (
                      <Button
                        className="w-full"
                        onClick={() => onBuy(plan)}
                        disabled={disabled}
                        busy={busyPriceId === plan.price_id}
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
  );
}

import { lazy, Suspense, useState } from 'react';
import { Link } from 'react-router';
import {
  BALANCE_RANGES,
  billingKeys,
  isLiveSubscription,
  keys,
  useBalance,
  useBalanceHistory,
  useLedgerPage,
  useSubscription,
  useUsage,
  type BalanceRange,
} from '../api/queries';
import { useUser } from '../auth/AuthProvider';
import { LedgerTable } from '../components/LedgerTable';
import { LoadError, PageLoadErrors, Unavailable } from '../components/LoadErrors';
import { NoModelUsage, UsageByModelTable, modelUsageTotal } from '../components/UsageByModel';
import { Alert, Card, Loading, PageHeader, Stat, buttonClass } from '../components/ui';
import { formatCredits, formatDate, formatInterval, formatKind } from '../lib/format';
import { isFlat } from '../lib/series';
import { useDocumentTitle } from '../lib/useDocumentTitle';

// uPlot is loaded with the charts, only when there is something to chart.
const BalanceChart = lazy(() => import('../components/DashboardCharts').then((m) => ({ default: m.BalanceChart })));
const UsageChart = lazy(() => import('../components/DashboardCharts').then((m) => ({ default: m.UsageChart })));
const UsageByDayChart = lazy(() => import('../components/DashboardCharts').then((m) => ({ default: m.UsageByDayChart })));

/** Below this many available credits the dashboard suggests buying more. */
export const LOW_BALANCE = 20;

function PlanCard() {
  const subscription = useSubscription();
  const sub = subscription.data?.subscription ?? null;
  return (
    <Card title="Plan">
      {subscription.isError && !subscription.data ? (
        <LoadError error={subscription.error} what="your plan" />
      ) : subscription.isPending ? (
        <Loading />
      ) : sub && isLiveSubscription(sub.status) ? (
        <div className="space-y-2 text-sm">
          <p className="text-lg font-semibold text-slate-900">{sub.plan_name ?? 'Subscription'}</p>
          {sub.credits_per_period != null && (
            <p className="text-slate-700">
              {formatCredits(sub.credits_per_period)} {formatInterval(sub.interval)}
            </p>
          )}
          <p className="text-slate-700">
            {sub.cancel_at_period_end ? 'Ends on ' : 'Renews on '}
            <time dateTime={sub.current_period_end} className="font-medium">
              {formatDate(sub.current_period_end)}
            </time>
          </p>
          {sub.status !== 'active' && <p className="text-amber-800">Status: {formatKind(sub.status)}</p>}
          <Link to="/credits" className="inline-block font-semibold text-brand-700 hover:underline">
            Manage plan
          </Link>
        </div>
      ) : (
        <div className="space-y-3 text-sm">
          <p className="text-slate-700">You pay as you go, with no plan.</p>
          <Link to="/credits#plans" className="font-semibold text-brand-700 hover:underline">
            See plans
          </Link>
        </div>
      )}
    </Card>
  );
}

/** Picks the balance chart's range: one pressed button among a few. */
function RangePicker({ value, onChange }: { value: BalanceRange; onChange: (range: BalanceRange) => void }) {
  return (
    <div role="group" aria-label="Range" className="inline-flex overflow-hidden rounded-md shadow-sm ring-1 ring-inset ring-slate-300">
      {(Object.keys(BALANCE_RANGES) as BalanceRange[]).map((key) => (
        <button
          key={key}
          type="button"
          aria-pressed={value === key}
          onClick={() => onChange(key)}
          className={`whitespace-nowrap px-2.5 py-1.5 text-xs font-semibold focus-visible:relative focus-visible:outline-2 focus-visible:outline-brand-600 ${
            value === key ? 'bg-brand-600 text-white' : 'bg-white text-slate-700 hover:bg-slate-50'
          }`}
        >
          {BALANCE_RANGES[key].label}
        </button>
      ))}
    </div>
  );
}

function BalanceOverTime() {
  const [range, setRange] = useState<BalanceRange>('30d');
  const history = useBalanceHistory(range);
  const data = history.data;
  const label = BALANCE_RANGES[range].label;
  return (
    <Card title="Balance over time" actions={<RangePicker value={range} onChange={setRange} />}>
      {!data ? (
        history.isError ? <LoadError error={history.error} what="your balance over time" /> : <Loading />
      ) : (
        <div aria-busy={history.isPlaceholderData} className={history.isPlaceholderData ? 'opacity-60' : undefined}>
          {isFlat(data) ? (
            <p className="text-sm text-slate-600">
              No credits moved in the last {label}. Your balance stayed at{' '}
              {formatCredits(data.points.at(-1)?.balance ?? data.opening_balance)}.
            </p>
          ) : (
            <Suspense fallback={<Loading label="Loading chart…" />}>
              <BalanceChart history={data} rangeLabel={label} />
            </Suspense>
          )}
        </div>
      )}
    </Card>
  );
}

export function DashboardPage() {
  useDocumentTitle('Dashboard');
  const user = useUser();
  const balance = useBalance();
  const ledger = useLedgerPage({ limit: 5 });
  const usage = useUsage('feature');
  const usageByDay = useUsage('day');
  const usageByModel = useUsage('model');

  const b = balance.data;
  const entries = ledger.data?.entries ?? [];
  /** A figure from the balance: the value, "Unavailable" when it did not load, or "…" meanwhile. */
  const figure = (value: (balance: NonNullable<typeof b>) => number) =>
    b ? formatCredits(value(b)) : balance.isError ? <Unavailable /> : '…';

  return (
    <>
      <PageHeader
        title="Dashboard"
        description={`Signed in as ${user.name ? `${user.name} (${user.email})` : user.email}`}
        actions={
          <Link to="/credits" className={buttonClass('primary')}>
            Buy credits
          </Link>
        }
      />
      <div className="space-y-6">
        <PageLoadErrors
          queryKeys={[keys.balance, keys.balanceHistoryAll, keys.ledgerAll, keys.usageAll, billingKeys.subscription]}
        />
        {b && b.debt > 0 && (
          <Alert tone="error" title="You owe credits">
            {formatCredits(b.debt)} were taken back after they were spent. Buy credits to cover the debt before
            spending again.
          </Alert>
        )}
        {b && b.debt === 0 && b.available < LOW_BALANCE && (
          <Alert
            tone="warning"
            title={b.available === 0 ? 'You have no credits left' : 'You are running low on credits'}
            action={
              <Link to="/credits" className={buttonClass('primary')}>
                Buy credits
              </Link>
            }
          >
            You have {formatCredits(b.available)} available. Top up to keep using AI features.
          </Alert>
        )}

        <dl className="grid grid-cols-1 gap-4 sm:grid-cols-3">
          <Stat label="Balance" testId="stat-balance" value={figure((x) => x.balance)} />
          <Stat
            label="Available"
            testId="stat-available"
            value={figure((x) => x.available)}
            hint="Balance less credits held for running work"
          />
          <Stat label="Held" testId="stat-held" value={figure((x) => x.held)} />
        </dl>

        <div className="grid grid-cols-1 gap-6 lg:grid-cols-2">
          <PlanCard />
          <Card title="Expiring soon">
            {!b ? (
              balance.isError ? <LoadError error={balance.error} what="your expiring credits" /> : <Loading />
            ) : b.expiring_soon.length === 0 ? (
              <p className="text-sm text-slate-600">None of your credits are due to expire.</p>
            ) : (
              <ul className="divide-y divide-slate-100 text-sm">
                {b.expiring_soon.map((lot) => (
                  <li key={lot.id} className="flex flex-wrap justify-between gap-2 py-2">
                    <span>
                      <span className="font-semibold">{formatCredits(lot.remaining)}</span> from a{' '}
                      {formatKind(lot.source).toLowerCase()}
                    </span>
                    {lot.expires_at && (
                      <span className="text-slate-600">
                        expire on <time dateTime={lot.expires_at}>{formatDate(lot.expires_at)}</time>
                      </span>
                    )}
                  </li>
                ))}
              </ul>
            )}
          </Card>
        </div>

        <BalanceOverTime />

        <div className="grid grid-cols-1 gap-6 lg:grid-cols-2">
          <Card title="Usage by day (30 days)">
            {!usageByDay.data ? (
              usageByDay.isError ? <LoadError error={usageByDay.error} what="your usage by day" /> : <Loading />
            ) : usageByDay.data.total_credits === 0 ? (
              <p className="text-sm text-slate-600">You have not spent any credits in the last 30 days.</p>
            ) : (
              <Suspense fallback={<Loading label="Loading chart…" />}>
                <UsageByDayChart usage={usageByDay.data} />
              </Suspense>
            )}
          </Card>
          <Card title="Usage by feature (30 days)">
            {!usage.data ? (
              usage.isError ? <LoadError error={usage.error} what="your usage" /> : <Loading />
            ) : usage.data.buckets.length === 0 ? (
              <p className="text-sm text-slate-600">You have not spent any credits in the last 30 days.</p>
            ) : (
              <>
                <p className="mb-2 text-sm text-slate-700">
                  Total: <span className="font-semibold">{formatCredits(usage.data.total_credits)}</span>
                </p>
                <Suspense fallback={<Loading label="Loading chart…" />}>
                  <UsageChart usage={usage.data} />
                </Suspense>
              </>
            )}
          </Card>
        </div>

        <Card title="Usage by model (30 days)">
          {!usageByModel.data ? (
            usageByModel.isError ? <LoadError error={usageByModel.error} what="your usage by model" /> : <Loading />
          ) : usageByModel.data.buckets.length === 0 ? (
            <NoModelUsage rangeLabel="30 days" />
          ) : (
            <>
              <p className="mb-2 text-sm text-slate-700">
                Total: <span className="font-semibold">{modelUsageTotal(usageByModel.data)}</span>
              </p>
              <UsageByModelTable usage={usageByModel.data} caption="Credits and tokens by model in the last 30 days" />
            </>
          )}
        </Card>

        <Card
          title="Recent activity"
          actions={
            <Link to="/history" className="text-sm font-semibold text-brand-700 hover:underline">
              View all history
            </Link>
          }
        >
          {!ledger.data ? (
            ledger.isError ? <LoadError error={ledger.error} what="your recent activity" /> : <Loading />
          ) : entries.length === 0 ? (
            <p className="text-sm text-slate-600">
              Nothing yet. <Link to="/credits" className="font-semibold text-brand-700 hover:underline">Buy credits</Link>{' '}
              or try the <Link to="/example" className="font-semibold text-brand-700 hover:underline">example AI feature</Link>.
            </p>
          ) : (
            <LedgerTable entries={entries.slice(0, 5)} caption="Your five most recent ledger entries" />
          )}
        </Card>
      </div>
    </>
  );
}

import { Link, useLocation } from 'react-router';
import { useLiveStream } from '../api/live';
import { useAlerts, useBalance } from '../api/queries';
import { formatCredits, formatNumber } from '../lib/format';
import { Alert, buttonClass } from './ui';

const STATUS = {
  connecting: { label: 'Connecting…', dot: 'bg-slate-400', title: 'Connecting to live updates' },
  live: { label: 'Live', dot: 'bg-emerald-500', title: 'Your balance updates as it changes' },
  reconnecting: { label: 'Reconnecting…', dot: 'bg-amber-500 animate-pulse', title: 'Live updates paused: reconnecting' },
  stopped: { label: 'Not live', dot: 'bg-red-500', title: 'Live updates are off: reload the page to try again' },
} as const;

/** Whether the balance on screen follows the wallet as it changes. */
export function LiveIndicator() {
  const live = useLiveStream();
  if (!live) return null;
  const s = STATUS[live.status];
  return (
    <span data-testid="live-status" title={s.title} className="inline-flex items-center gap-1.5 text-xs font-medium text-slate-600">
      <span aria-hidden="true" className={`inline-block size-2 rounded-full ${s.dot}`} />
      <span aria-live="polite">{s.label}</span>
    </span>
  );
}

/** The available credits, in the header of every signed-in page. */
export function HeaderBalance() {
  const balance = useBalance();
  const b = balance.data;
  if (!b) return null;
  return (
    <Link
      to="/credits"
      data-testid="header-balance"
      className="whitespace-nowrap rounded-md px-2 py-1 text-sm text-slate-700 hover:bg-slate-100"
      title="Available credits"
    >
      <span className="sr-only">Available: </span>
      <span className="font-semibold text-slate-900">{formatNumber(b.available)}</span>{' '}
      <span className="text-slate-600">{b.available === 1 ? 'credit' : 'credits'}</span>
    </Link>
  );
}

/** Said on every page while the available credits are at or below one of the user's alerts. */
export function LowBalanceBanner() {
  const alerts = useAlerts();
  const location = useLocation();
  const a = alerts.data;
  if (!a || a.below.length === 0) return null;
  // The lowest threshold crossed says the most.
  const threshold = Math.min(...a.below);
  return (
    <div className="mb-6" data-testid="low-balance-banner">
      <Alert
        tone="warning"
        title="Low balance"
        action={
          location.pathname === '/credits' ? undefined : (
            <Link to="/credits" className={buttonClass('primary')}>
              Buy credits
            </Link>
          )
        }
      >
        You have {formatCredits(a.available)} available, at or below your alert at {formatCredits(threshold)}.{' '}
        <Link to="/credits#alerts" className="font-semibold underline">
          Change alerts
        </Link>
      </Alert>
    </div>
  );
}

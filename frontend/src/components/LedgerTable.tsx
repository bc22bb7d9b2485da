import type { LedgerEntry, TransferKind } from '../api/client';
import { formatDateTime, formatKind, formatNumber, formatSignedCredits } from '../lib/format';
import { Badge } from './ui';

const kindTone: Record<TransferKind, 'good' | 'bad' | 'warn' | 'brand' | 'neutral'> = {
  purchase: 'good',
  subscription: 'brand',
  grant: 'good',
  promotion: 'good',
  spend: 'neutral',
  expiry: 'warn',
  clawback: 'bad',
  dispute_freeze: 'bad',
  dispute_release: 'good',
  write_off: 'warn',
};

export function KindBadge({ kind }: { kind: TransferKind }) {
  return <Badge tone={kindTone[kind] ?? 'neutral'}>{formatKind(kind)}</Badge>;
}

/**
 * Ledger entries as a table: when, what, the signed amount and the balance after. On a phone the
 * date moves into the entry's cell (and the feature column into it as before), so the amount and
 * the balance after always fit without a sideways scroll.
 */
export function LedgerTable({
  entries,
  caption,
  detailed = false,
}: {
  entries: readonly LedgerEntry[];
  caption: string;
  /** Adds the feature and quantity columns (on wider screens). */
  detailed?: boolean;
}) {
  return (
    <div className="-mx-4 overflow-x-auto sm:mx-0">
      <table className="min-w-full divide-y divide-slate-200 text-sm">
        <caption className="sr-only">{caption}</caption>
        <thead>
          <tr className="text-left text-xs font-semibold uppercase tracking-wide text-slate-600">
            <th scope="col" className="hidden px-4 py-2 sm:table-cell sm:pl-0">
              Date
            </th>
            <th scope="col" className="py-2 pl-4 pr-2 sm:px-2">
              Entry
            </th>
            {detailed && (
              <th scope="col" className="hidden px-2 py-2 md:table-cell">
                Feature
              </th>
            )}
            <th scope="col" className="px-2 py-2 text-right">
              Amount
            </th>
            <th scope="col" className="py-2 pl-2 pr-4 text-right sm:pr-0">
              Balance after
            </th>
          </tr>
        </thead>
        <tbody className="divide-y divide-slate-100">
          {entries.map((entry) => (
            <tr key={entry.id} className="align-top">
              <td className="hidden whitespace-nowrap px-4 py-3 text-slate-600 sm:table-cell sm:pl-0">
                <time dateTime={entry.created_at}>{formatDateTime(entry.created_at)}</time>
              </td>
              <td className="min-w-0 py-3 pl-4 pr-2 sm:px-2">
                <div className="flex flex-col items-start gap-1">
                  <time dateTime={entry.created_at} className="text-xs text-slate-600 sm:hidden" data-testid="entry-date">
                    {formatDateTime(entry.created_at)}
                  </time>
                  <KindBadge kind={entry.kind} />
                  {entry.description && <span className="text-slate-800 [overflow-wrap:anywhere]">{entry.description}</span>}
                  {entry.feature && (
                    <span
                      className={`text-xs text-slate-600 [overflow-wrap:anywhere] ${detailed ? 'md:hidden' : ''}`}
                    >
                      {entry.feature}
                      {entry.quantity != null && ` × ${formatNumber(entry.quantity)}`}
                    </span>
                  )}
                </div>
              </td>
              {detailed && (
                <td className="hidden px-2 py-3 text-slate-700 md:table-cell">
                  {entry.feature ? (
                    <>
                      <code className="text-xs">{entry.feature}</code>
                      {entry.quantity != null && <span className="text-slate-600"> × {formatNumber(entry.quantity)}</span>}
                    </>
                  ) : (
                    <span className="text-slate-400" aria-label="none">
                      —
                    </span>
                  )}
                </td>
              )}
              <td
                className={`whitespace-nowrap px-2 py-3 text-right font-semibold tabular-nums ${
                  entry.amount > 0 ? 'text-emerald-700' : entry.amount < 0 ? 'text-slate-900' : 'text-slate-500'
                }`}
              >
                {formatSignedCredits(entry.amount)}
              </td>
              <td className="whitespace-nowrap py-3 pl-2 pr-4 text-right tabular-nums text-slate-700 sm:pr-0">
                {entry.balance_after != null ? formatNumber(entry.balance_after) : '—'}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

import { Link } from 'react-router';
import type { UsageResponse } from '../api/client';
import { formatCredits, formatNumber } from '../lib/format';

/**
 * Credits and tokens per LLM model over the usage's range, most credits first. On a phone the
 * token counts move into the model's cell, so the table never scrolls sideways.
 */
export function UsageByModelTable({ usage, caption }: { usage: UsageResponse; caption: string }) {
  const buckets = [...usage.buckets].sort(
    (a, b) => b.credits - a.credits || a.key.localeCompare(b.key),
  );
  const tokens = (value: number | null | undefined) => formatNumber(value ?? 0);
  return (
    <div className="-mx-4 overflow-x-auto sm:mx-0">
      <table className="min-w-full divide-y divide-slate-200 text-sm">
        <caption className="sr-only">{caption}</caption>
        <thead>
          <tr className="text-left text-xs font-semibold uppercase tracking-wide text-slate-600">
            <th scope="col" className="py-2 pl-4 pr-2 sm:pl-0">
              Model
            </th>
            <th scope="col" className="px-2 py-2 text-right">
              Credits
            </th>
            <th scope="col" className="hidden px-2 py-2 text-right md:table-cell">
              Input tokens
            </th>
            <th scope="col" className="hidden px-2 py-2 text-right md:table-cell">
              Cached input tokens
            </th>
            <th scope="col" className="hidden py-2 pl-2 pr-4 text-right sm:pr-0 md:table-cell">
              Output tokens
            </th>
          </tr>
        </thead>
        <tbody className="divide-y divide-slate-100">
          {buckets.map((bucket) => (
            <tr key={bucket.key} className="align-top">
              <td className="min-w-0 py-3 pl-4 pr-2 sm:pl-0">
                <div className="flex flex-col gap-1">
                  <code className="font-medium text-slate-900 [overflow-wrap:anywhere]">{bucket.key}</code>
                  <span className="text-xs text-slate-600">
                    {formatNumber(bucket.spends)} {bucket.spends === 1 ? 'call' : 'calls'}
                  </span>
                  <span className="text-xs text-slate-600 md:hidden">
                    {tokens(bucket.input_tokens)} input · {tokens(bucket.cached_input_tokens)} cached ·{' '}
                    {tokens(bucket.output_tokens)} output tokens
                  </span>
                </div>
              </td>
              <td className="whitespace-nowrap px-2 py-3 text-right font-semibold tabular-nums text-slate-900">
                {formatNumber(bucket.credits)}
              </td>
              <td className="hidden whitespace-nowrap px-2 py-3 text-right tabular-nums text-slate-700 md:table-cell">
                {tokens(bucket.input_tokens)}
              </td>
              <td className="hidden whitespace-nowrap px-2 py-3 text-right tabular-nums text-slate-700 md:table-cell">
                {tokens(bucket.cached_input_tokens)}
              </td>
              <td className="hidden whitespace-nowrap py-3 pl-2 pr-4 text-right tabular-nums text-slate-700 sm:pr-0 md:table-cell">
                {tokens(bucket.output_tokens)}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** What the card says when no LLM call spent credits in the range. */
export function NoModelUsage({ rangeLabel }: { rangeLabel: string }) {
  return (
    <div className="space-y-2 text-sm text-slate-600">
      <p>No LLM calls in the last {rangeLabel}.</p>
      <p>
        Calls through Tollgate's OpenAI-compatible gateway, and spends that name a <code>model</code> with its token{' '}
        <code>usage</code>, show up here with the credits and tokens of each model.{' '}
        <Link to="/api-keys" className="font-semibold text-brand-700 hover:underline">
          Set up the gateway
        </Link>
      </p>
    </div>
  );
}

/** The card's total line: "123 credits over 4 calls". */
export function modelUsageTotal(usage: UsageResponse): string {
  const calls = usage.buckets.reduce((sum, b) => sum + b.spends, 0);
  return `${formatCredits(usage.total_credits)} over ${formatNumber(calls)} ${calls === 1 ? 'call' : 'calls'}`;
}

// Chart series from the API's answers, kept apart from uPlot so that they can be tested alone.
import type { BalanceHistory, UsageResponse } from '../api/client';

const STEP_MS = { hour: 3_600_000, day: 86_400_000 } as const;

/**
 * The balance as a line over time, in seconds: where it stood at the range's start, then at the
 * end of each hour or day (the current one ends now, at the history's `to`).
 */
export function balanceSeries(history: BalanceHistory): { times: number[]; balances: number[] } {
  const step = STEP_MS[history.interval];
  const to = Date.parse(history.to);
  const times = [Date.parse(history.from) / 1000];
  const balances = [history.opening_balance];
  for (const point of history.points) {
    const end = Math.min(Date.parse(point.start) + step, to);
    times.push(end / 1000);
    balances.push(point.balance);
  }
  return { times, balances };
}

/** True when no credit moved in the history's range (its points have no entries). */
export function isFlat(history: BalanceHistory): boolean {
  return history.points.every((p) => p.entries === 0);
}

/** `YYYY-MM-DD` of an instant, in UTC (the days of `GET /usage?group_by=day`). */
function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/**
 * Usage by day with every day of the range present (the API lists only the days with spending),
 * oldest first. `date` is the calendar day at local midnight, so a chart labels it as that day.
 */
export function usageDays(usage: UsageResponse): { key: string; date: Date; credits: number }[] {
  const byDay = new Map(usage.buckets.map((b) => [b.key, b.credits]));
  const from = Date.parse(usage.from);
  const to = Date.parse(usage.to);
  const days: { key: string; date: Date; credits: number }[] = [];
  if (Number.isNaN(from) || Number.isNaN(to)) return days;
  const first = Date.parse(`${utcDay(from)}T00:00:00Z`);
  for (let t = first; t < to; t += STEP_MS.day) {
    const key = utcDay(t);
    const [y, m, d] = key.split('-').map(Number) as [number, number, number];
    days.push({ key, date: new Date(y, m - 1, d), credits: byDay.get(key) ?? 0 });
  }
  return days;
}

import { useMemo } from 'react';
import uPlot from 'uplot';
import type { BalanceHistory, UsageResponse } from '../api/client';
import { formatCredits, formatDate, formatDateTime, formatNumber } from '../lib/format';
import { balanceSeries, usageDays } from '../lib/series';
import { Chart, axisStyle, chartColors } from './Chart';

/** The balance over a range: where it stood at the start, then at the end of each hour or day. */
export function BalanceChart({ history, rangeLabel }: { history: BalanceHistory; rangeLabel: string }) {
  const data = useMemo<uPlot.AlignedData>(() => {
    const { times, balances } = balanceSeries(history);
    return [times, balances];
  }, [history]);
  const hourly = history.interval === 'hour';

  const options = useMemo<Omit<uPlot.Options, 'width' | 'height'>>(
    () => ({
      scales: { x: { time: true }, y: { range: (_u, min, max) => [Math.min(0, min), Math.max(10, max * 1.1)] } },
      series: [
        { value: (_u, v) => (v == null ? '' : hourly ? formatDateTime(new Date(v * 1000)) : formatDate(new Date(v * 1000))) },
        {
          label: 'Balance',
          stroke: chartColors.brand,
          fill: chartColors.brandFill,
          width: 2,
          points: { show: !hourly, size: 4 },
          value: (_u, v) => (v == null ? '—' : formatCredits(v)),
        },
      ],
      axes: [{ ...axisStyle }, { ...axisStyle, size: 56, values: (_u, splits) => splits.map((v) => formatNumber(v)) }],
      legend: { show: true },
    }),
    [hourly],
  );

  const balances = data[1] as number[];
  const label = `Balance over time, last ${rangeLabel}: from ${formatCredits(balances[0] ?? 0)} on ${formatDate(
    history.from,
  )} to ${formatCredits(balances[balances.length - 1] ?? 0)} now, lowest ${formatCredits(
    Math.min(...balances),
  )}, highest ${formatCredits(Math.max(...balances))}.`;
  return <Chart options={options} data={data} label={label} />;
}

/** Credits spent on each day of the range, as bars (days without spending at zero). */
export function UsageByDayChart({ usage }: { usage: UsageResponse }) {
  const days = useMemo(() => usageDays(usage), [usage]);
  const data = useMemo<uPlot.AlignedData>(
    () => [days.map((d) => d.date.getTime() / 1000), days.map((d) => d.credits)],
    [days],
  );
  const options = useMemo<Omit<uPlot.Options, 'width' | 'height'>>(
    () => ({
      scales: {
        x: { time: true, range: (_u, min, max) => [min - 43_200, max + 43_200] },
        y: { range: (_u, _min, max) => [0, Math.max(5, max * 1.15)] },
      },
      series: [
        { label: 'Day', value: (_u, v) => (v == null ? '' : formatDate(new Date(v * 1000))) },
        {
          label: 'Credits spent',
          stroke: chartColors.usage,
          fill: chartColors.usageFill,
          width: 1,
          paths: uPlot.paths.bars?.({ size: [0.7, 24] }),
          points: { show: false },
          value: (_u, v) => (v == null ? '—' : formatCredits(v)),
        },
      ],
      axes: [{ ...axisStyle, grid: { show: false } }, { ...axisStyle, size: 56, values: (_u, splits) => splits.map((v) => formatNumber(v)) }],
      legend: { show: true },
    }),
    [],
  );
  const busiest = days.reduce<(typeof days)[number] | null>((top, d) => (d.credits > (top?.credits ?? 0) ? d : top), null);
  const label = `Credits spent by day in the last 30 days: ${formatCredits(usage.total_credits)} in all${
    busiest ? `, most on ${formatDate(busiest.date)} (${formatCredits(busiest.credits)})` : ''
  }.`;
  return <Chart options={options} data={data} label={label} height={200} />;
}

export function UsageChart({ usage }: { usage: UsageResponse }) {
  const buckets = usage.buckets;
  const data = useMemo<uPlot.AlignedData>(
    () => [buckets.map((_, i) => i), buckets.map((b) => b.credits)],
    [buckets],
  );
  const options = useMemo<Omit<uPlot.Options, 'width' | 'height'>>(
    () => ({
      scales: {
        x: { time: false, range: () => [-0.5, Math.max(buckets.length - 0.5, 0.5)] },
        y: { range: (_u, _min, max) => [0, Math.max(5, max * 1.15)] },
      },
      series: [
        { value: (_u, i) => (i == null ? '' : (buckets[i]?.key ?? '')) },
        {
          label: 'Credits spent',
          stroke: chartColors.usage,
          fill: chartColors.usageFill,
          width: 1,
          paths: uPlot.paths.bars?.({ size: [0.6, 64] }),
          points: { show: false },
          value: (_u, v) => (v == null ? '—' : formatCredits(v)),
        },
      ],
      axes: [
        {
          ...axisStyle,
          splits: () => buckets.map((_, i) => i),
          values: (_u, splits) => splits.map((i) => buckets[i]?.key ?? ''),
          grid: { show: false },
        },
        { ...axisStyle, size: 56, values: (_u, splits) => splits.map((v) => formatNumber(v)) },
      ],
      legend: { show: true },
    }),
    [buckets],
  );
  const label = `Credits spent by feature in the last 30 days: ${buckets
    .map((b) => `${b.key} ${formatCredits(b.credits)}`)
    .join(', ')}.`;
  return <Chart options={options} data={data} label={label} height={200} />;
}


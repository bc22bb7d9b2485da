import { useMemo } from 'react';
import uPlot from 'uplot';
import type { LedgerEntry, UsageResponse } from '../api/client';
import { formatCredits, formatNumber } from '../lib/format';
import { Chart, axisStyle, chartColors } from './Chart';

export function BalanceChart({ entries, balance }: { entries: readonly LedgerEntry[]; balance: number }) {
  const data = useMemo<uPlot.AlignedData>(() => {
    const points = entries
      .filter((e) => e.balance_after != null)
      .map((e) => ({ t: Date.parse(e.created_at) / 1000, v: e.balance_after as number, amount: e.amount }))
      .reverse();
    const xs: number[] = [];
    const ys: number[] = [];
    const first = points[0];
    if (first) {
      // Where the balance stood before the oldest loaded entry.
      xs.push(first.t - 1);
      ys.push(first.v - first.amount);
    }
    for (const p of points) {
      xs.push(p.t);
      ys.push(p.v);
    }
    const now = Date.now() / 1000;
    if (xs.length === 0 || now > (xs[xs.length - 1] ?? 0)) {
      xs.push(now);
      ys.push(balance);
    }
    return [xs, ys];
  }, [entries, balance]);

  const options = useMemo<Omit<uPlot.Options, 'width' | 'height'>>(
    () => ({
      scales: { x: { time: true }, y: { range: (_u, min, max) => [Math.min(0, min), Math.max(10, max * 1.1)] } },
      series: [
        {},
        {
          label: 'Balance',
          stroke: chartColors.brand,
          fill: chartColors.brandFill,
          width: 2,
          paths: uPlot.paths.stepped?.({ align: 1 }),
          points: { show: true, size: 5 },
          value: (_u, v) => (v == null ? '—' : formatCredits(v)),
        },
      ],
      axes: [
        { ...axisStyle },
        { ...axisStyle, size: 56, values: (_u, splits) => splits.map((v) => formatNumber(v)) },
      ],
      legend: { show: true },
    }),
    [],
  );

  const ys = data[1] as number[];
  const label = `Balance over time: from ${formatCredits(ys[0] ?? 0)} to ${formatCredits(balance)} now, over ${
    entries.length
  } recent entries.`;
  return <Chart options={options} data={data} label={label} />;
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


import { describe, expect, it } from 'vitest';
import { balanceSeries, isFlat, usageDays } from './series';

describe('the balance series', () => {
  it('starts with the opening balance and puts each point at the end of its day, the last at now', () => {
    const history = {
      interval: 'day' as const,
      from: '2026-11-22T00:00:00Z',
      to: '2026-11-24T15:30:00Z',
      opening_balance: 10,
      points: [
        { start: '2026-11-22T00:00:00Z', balance: 110, entries: 1 },
        { start: '2026-11-23T00:00:00Z', balance: 110, entries: 0 },
        { start: '2026-11-24T00:00:00Z', balance: 95, entries: 3 },
      ],
    };
    const { times, balances } = balanceSeries(history);
    expect(times.map((t) => new Date(t * 1000).toISOString())).toEqual([
      '2026-11-22T00:00:00.000Z',
      '2026-11-23T00:00:00.000Z',
      '2026-11-24T00:00:00.000Z',
      '2026-11-24T15:30:00.000Z',
    ]);
    expect(balances).toEqual([10, 110, 110, 95]);
    expect(isFlat(history)).toBe(false);
    expect(isFlat({ ...history, points: history.points.map((p) => ({ ...p, entries: 0 })) })).toBe(true);
  });

  it('steps by the hour for hourly points', () => {
    const { times } = balanceSeries({
      interval: 'hour',
      from: '2026-11-24T10:00:00Z',
      to: '2026-11-24T11:20:00Z',
      opening_balance: 0,
      points: [
        { start: '2026-11-24T10:00:00Z', balance: 5, entries: 1 },
        { start: '2026-11-24T11:00:00Z', balance: 5, entries: 0 },
      ],
    });
    expect(times.map((t) => new Date(t * 1000).toISOString().slice(11, 16))).toEqual(['10:00', '11:00', '11:20']);
  });
});

describe('usage by day', () => {
  it('has every day of the range, zero where nothing was spent', () => {
    const days = usageDays({
      group_by: 'day',
      from: '2026-11-21T15:00:00Z',
      to: '2026-11-24T15:00:00Z',
      total_credits: 12,
      buckets: [
        { key: '2026-11-22', credits: 7, spends: 2 },
        { key: '2026-11-24', credits: 5, spends: 1 },
      ],
    });
    expect(days.map((d) => [d.key, d.credits])).toEqual([
      ['2026-11-21', 0],
      ['2026-11-22', 7],
      ['2026-11-23', 0],
      ['2026-11-24', 5],
    ]);
    // Labelled as the calendar day whatever the time zone.
    expect(days[1]!.date.getDate()).toBe(22);
  });
});

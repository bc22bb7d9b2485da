import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { balance, json, mockApi, tokens, unavailable } from '../test/mockApi';
import { renderApp } from '../test/renderApp';

// jsdom has no canvas: the charts stand in as their accessible image with the data they were given.
vi.mock('../components/Chart', async (importOriginal) => ({
  ...(await importOriginal<typeof import('../components/Chart')>()),
  Chart: ({ label, data }: { label: string; data: number[][] }) => (
    <div role="img" aria-label={label} data-testid="chart" data-points={JSON.stringify(data)} />
  ),
}));

/** A balance history as the server answers it: 100 credits bought two days ago, 5 spent today. */
function history(url: URL) {
  const interval = (url.searchParams.get('interval') ?? 'day') as 'day' | 'hour';
  const step = interval === 'day' ? 86_400_000 : 3_600_000;
  const from = Date.parse(url.searchParams.get('from') ?? new Date(Date.now() - 29 * step).toISOString());
  const count = Math.floor((Date.now() - from) / step) + 1;
  const points = Array.from({ length: count }, (_, i) => ({
    start: new Date(from + i * step).toISOString(),
    balance: i < count - 3 ? 0 : i < count - 1 ? 100 : 95,
    entries: i === count - 3 || i === count - 1 ? 1 : 0,
  }));
  return { interval, from: new Date(from).toISOString(), to: new Date().toISOString(), opening_balance: 0, points };
}

const purchase = {
  id: 'e1',
  kind: 'purchase',
  amount: 100,
  balance_after: 100,
  created_at: '2026-11-24T10:00:00Z',
  description: 'Starter pack (100 credits)',
  lots: [],
};

describe('dashboard', () => {
  it('during an outage shows what failed, never the empty state or an endless spinner, with one retry', async () => {
    let down = true;
    const { requests } = mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'GET /api/v1/credits/balance': () => (down ? unavailable() : json({ ...balance, balance: 100, available: 100 })),
      'GET /api/v1/credits/ledger': () => (down ? unavailable() : json({ entries: [purchase], next_cursor: null })),
      'GET /api/v1/credits/balance-history': (request) => (down ? unavailable() : json(history(new URL(request.url)))),
      'GET /api/v1/usage': () =>
        down ? unavailable() : json({ group_by: 'feature', from: '', to: '', total_credits: 0, buckets: [] }),
      'GET /api/v1/billing/subscription': () => (down ? unavailable() : json({ subscription: null })),
    });
    renderApp('/');
    const user = userEvent.setup();

    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('Some of this page could not load');
    expect(alert).toHaveTextContent('The database is unavailable: try again in a moment');
    await waitFor(() => expect(screen.queryByRole('status')).not.toBeInTheDocument());
    expect(screen.queryByText(/Nothing yet/)).not.toBeInTheDocument();
    expect(screen.queryByText(/No activity yet/)).not.toBeInTheDocument();
    expect(screen.queryByText(/Loading/)).not.toBeInTheDocument();
    const activity = screen.getByRole('region', { name: 'Recent activity' });
    expect(activity).toHaveTextContent('Could not load your recent activity.');
    expect(screen.getByRole('region', { name: 'Balance over time' })).toHaveTextContent('Could not load your balance over time.');
    expect(screen.getByRole('region', { name: 'Usage by feature (30 days)' })).toHaveTextContent('Could not load your usage.');
    expect(screen.getByRole('region', { name: 'Usage by day (30 days)' })).toHaveTextContent('Could not load your usage by day.');
    expect(screen.getByRole('region', { name: 'Usage by model (30 days)' })).toHaveTextContent('Could not load your usage by model.');
    expect(screen.queryByText(/No LLM calls/)).not.toBeInTheDocument();
    expect(screen.getByRole('region', { name: 'Plan' })).toHaveTextContent('Could not load your plan.');
    expect(screen.getByTestId('stat-balance')).toHaveTextContent('Unavailable');
    // One retry control for the page, not one per panel.
    expect(screen.getAllByRole('button', { name: 'Try again' })).toHaveLength(1);

    down = false;
    const before = requests.length;
    await user.click(screen.getByRole('button', { name: 'Try again' }));
    expect(await within(activity).findByRole('table')).toHaveTextContent('+100');
    expect(screen.getByTestId('stat-balance')).toHaveTextContent('100 credits');
    expect(screen.queryByRole('alert')).not.toBeInTheDocument();
    const refetched = requests.slice(before).map((r) => new URL(r.url).pathname);
    expect(refetched).toEqual(
      expect.arrayContaining([
        '/api/v1/credits/balance',
        '/api/v1/credits/balance-history',
        '/api/v1/credits/ledger',
        '/api/v1/usage',
        '/api/v1/billing/subscription',
      ]),
    );
  });

  it('shows the empty state only when the history really is empty', async () => {
    mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'GET /api/v1/credits/balance': () => json(balance),
      'GET /api/v1/credits/ledger': () => json({ entries: [], next_cursor: null }),
      'GET /api/v1/credits/balance-history': () =>
        json({ interval: 'day', from: '2026-10-26T00:00:00Z', to: '2026-11-24T12:00:00Z', opening_balance: 0, points: [] }),
      'GET /api/v1/usage': () => json({ group_by: 'feature', from: '', to: '', total_credits: 0, buckets: [] }),
      'GET /api/v1/billing/subscription': () => json({ subscription: null }),
    });
    renderApp('/');
    const activity = await screen.findByRole('region', { name: 'Recent activity' });
    expect(await within(activity).findByText(/Nothing yet/)).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Try again' })).not.toBeInTheDocument();
    expect(screen.getByRole('region', { name: 'Balance over time' })).toHaveTextContent(
      'No credits moved in the last 30 days. Your balance stayed at 0 credits.',
    );
    const byModel = screen.getByRole('region', { name: 'Usage by model (30 days)' });
    expect(byModel).toHaveTextContent('No LLM calls in the last 30 days.');
    expect(byModel).toHaveTextContent('Calls through Tollgate\'s OpenAI-compatible gateway, and spends that name a model');
    expect(within(byModel).getByRole('link', { name: 'Set up the gateway' })).toHaveAttribute('href', '/api-keys');
    expect(within(byModel).queryByRole('table')).not.toBeInTheDocument();
  });

  it('shows the credits and tokens of each model, most credits first', async () => {
    const { requests } = mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'GET /api/v1/credits/balance': () => json({ ...balance, balance: 900, available: 900 }),
      'GET /api/v1/credits/ledger': () => json({ entries: [], next_cursor: null }),
      'GET /api/v1/credits/balance-history': () =>
        json({ interval: 'day', from: '2026-10-26T00:00:00Z', to: '2026-11-24T12:00:00Z', opening_balance: 0, points: [] }),
      'GET /api/v1/usage': (request) =>
        new URL(request.url).searchParams.get('group_by') === 'model'
          ? json({
              group_by: 'model',
              from: '2026-10-25T12:00:00Z',
              to: '2026-11-24T12:00:00Z',
              total_credits: 1234,
              buckets: [
                { key: 'gpt-4o-mini', credits: 34, spends: 1, input_tokens: 120000, cached_input_tokens: 0, output_tokens: 25000 },
                { key: 'claude-haiku', credits: 1200, spends: 3, input_tokens: 1500000, cached_input_tokens: 250000, output_tokens: 9000 },
              ],
            })
          : json({ group_by: 'feature', from: '', to: '', total_credits: 0, buckets: [] }),
      'GET /api/v1/billing/subscription': () => json({ subscription: null }),
    });
    renderApp('/');
    const card = await screen.findByRole('region', { name: 'Usage by model (30 days)' });
    const table = await within(card).findByRole('table', { name: 'Credits and tokens by model in the last 30 days' });
    expect(card).toHaveTextContent('Total: 1,234 credits over 4 calls');
    expect(within(table).getAllByRole('columnheader').map((h) => h.textContent)).toEqual([
      'Model',
      'Credits',
      'Input tokens',
      'Cached input tokens',
      'Output tokens',
    ]);
    const rows = within(table)
      .getAllByRole('row')
      .slice(1)
      .map((row) => within(row).getAllByRole('cell').map((c) => c.textContent));
    expect(rows).toEqual([
      ['claude-haiku3 calls1,500,000 input · 250,000 cached · 9,000 output tokens', '1,200', '1,500,000', '250,000', '9,000'],
      ['gpt-4o-mini1 call120,000 input · 0 cached · 25,000 output tokens', '34', '120,000', '0', '25,000'],
    ]);
    expect(
      requests.filter((r) => r.url.includes('/api/v1/usage')).map((r) => new URL(r.url).searchParams.get('group_by')),
    ).toContain('model');
  });

  it('charts the balance over 30 days by day, and over a shorter range by the hour', async () => {
    const { requests } = mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'GET /api/v1/credits/balance': () => json({ ...balance, balance: 95, available: 95 }),
      'GET /api/v1/credits/ledger': () => json({ entries: [purchase], next_cursor: null }),
      'GET /api/v1/credits/balance-history': (request) => json(history(new URL(request.url))),
      'GET /api/v1/usage': (request) => {
        const groupBy = new URL(request.url).searchParams.get('group_by');
        if (groupBy === 'model') return json({ group_by: 'model', from: '', to: '', total_credits: 0, buckets: [] });
        const byDay = groupBy === 'day';
        const to = new Date();
        const from = new Date(to.getTime() - 30 * 86_400_000);
        return json({
          group_by: byDay ? 'day' : 'feature',
          from: from.toISOString(),
          to: to.toISOString(),
          total_credits: 5,
          buckets: [{ key: byDay ? to.toISOString().slice(0, 10) : 'example.summarize', credits: 5, spends: 1 }],
        });
      },
      'GET /api/v1/billing/subscription': () => json({ subscription: null }),
    });
    renderApp('/');
    const user = userEvent.setup();
    const card = await screen.findByRole('region', { name: 'Balance over time' });
    expect(await within(card).findByRole('img', { name: /^Balance over time, last 30 days: from 0 credits/ })).toHaveAccessibleName(
      /to 95 credits now, lowest 0 credits, highest 100 credits\.$/,
    );
    // The opening balance, then one point per day.
    expect(JSON.parse(within(card).getByTestId('chart').dataset.points!)[1]).toHaveLength(31);
    const range = within(card).getByRole('group', { name: 'Range' });
    expect(within(range).getByRole('button', { name: '30 days' })).toHaveAttribute('aria-pressed', 'true');
    const sent = (interval: string) =>
      requests
        .filter((r) => r.url.includes('/credits/balance-history'))
        .map((r) => new URL(r.url).searchParams)
        .filter((q) => q.get('interval') === interval);
    const daily = sent('day')[0]!;
    const today = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate());
    expect(daily.get('from')).toBe(new Date(today - 29 * 86_400_000).toISOString());

    await user.click(within(range).getByRole('button', { name: '7 days' }));
    expect(await within(card).findByRole('img', { name: /^Balance over time, last 7 days/ })).toBeInTheDocument();
    expect(within(range).getByRole('button', { name: '7 days' })).toHaveAttribute('aria-pressed', 'true');
    const hourly = sent('hour')[0]!;
    // 168 whole hours, the last the current one: within the server's 7-day limit for hourly points.
    const hour = Math.floor(Date.now() / 3_600_000) * 3_600_000;
    expect(hourly.get('from')).toBe(new Date(hour - 167 * 3_600_000).toISOString());

    expect(
      await within(screen.getByRole('region', { name: 'Usage by day (30 days)' })).findByRole('img', {
        name: /^Credits spent by day in the last 30 days: 5 credits in all, most on/,
      }),
    ).toBeInTheDocument();
  });
});

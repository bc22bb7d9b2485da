import { screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import { json, mockApi, offline, tokens } from '../test/mockApi';
import { renderApp } from '../test/renderApp';
import { dayStart } from './HistoryPage';

const entry = (id: string, kind: string, amount: number, balance_after: number, extra: object = {}) => ({
  id,
  kind,
  amount,
  balance_after,
  created_at: '2026-11-24T10:00:00Z',
  description: `${kind} ${id}`,
  lots: [],
  ...extra,
});

describe('history', () => {
  it('pages by cursor and filters by kind and dates', async () => {
    const { requests } = mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'GET /api/v1/credits/ledger': (request) => {
        const query = new URL(request.url).searchParams;
        if (query.get('kind') === 'spend') return json({ entries: [entry('s1', 'spend', -5, 95, { feature: 'example.summarize', quantity: 1 })] });
        if (query.get('cursor') === 'c2') return json({ entries: [entry('p1', 'purchase', 100, 100)], next_cursor: null });
        return json({ entries: [entry('s1', 'spend', -5, 95)], next_cursor: 'c2' });
      },
    });
    renderApp('/history');
    const user = userEvent.setup();

    const table = await screen.findByRole('table');
    expect(within(table).getByText('-5')).toBeInTheDocument();
    expect(screen.getByText('Showing 1 entry')).toBeInTheDocument();
    await user.click(screen.getByRole('button', { name: 'Load more' }));
    expect(await within(table).findByText('+100')).toBeInTheDocument();
    expect(screen.getByText('Showing 2 entries (all)')).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Load more' })).not.toBeInTheDocument();

    await user.selectOptions(screen.getByLabelText('Kind'), 'spend');
    await user.type(screen.getByLabelText('From'), '2026-11-01');
    expect(await screen.findByText('Showing 1 entry (all)')).toBeInTheDocument();
    const last = new URL(requests.at(-1)!.url).searchParams;
    expect(last.get('kind')).toBe('spend');
    expect(last.get('from')).toBe(dayStart('2026-11-01'));
    expect(screen.getByTestId('location')).toHaveTextContent('/history?kind=spend&from=2026-11-01');
  });

  it('ignores a kind in the URL that the API does not have', async () => {
    const { requests } = mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'GET /api/v1/credits/ledger': () => json({ entries: [entry('s1', 'spend', -5, 95)], next_cursor: null }),
    });
    renderApp('/history?kind=bogus');

    expect(await screen.findByText('Showing 1 entry (all)')).toBeInTheDocument();
    expect(screen.getByLabelText('Kind')).toHaveValue('');
    const sent = requests.filter((r) => r.url.includes('/credits/ledger'));
    expect(sent.length).toBeGreaterThan(0);
    expect(sent.every((r) => !new URL(r.url).searchParams.has('kind'))).toBe(true);
  });

  it('with the network down says the history did not load (not that there is none), and tries again', async () => {
    let down = true;
    mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'GET /api/v1/credits/ledger': () => (down ? offline() : json({ entries: [entry('p1', 'purchase', 100, 100)], next_cursor: null })),
    });
    renderApp('/history');
    const user = userEvent.setup();

    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('Could not reach Tollgate. Check your connection and try again.');
    expect(screen.getByText('Could not load your history.')).toBeInTheDocument();
    expect(screen.queryByText('No activity yet.')).not.toBeInTheDocument();

    down = false;
    await user.click(within(alert).getByRole('button', { name: 'Try again' }));
    expect(await screen.findByText('Showing 1 entry (all)')).toBeInTheDocument();
    expect(screen.queryByRole('alert')).not.toBeInTheDocument();
  });

  it('reads date filters as whole local days', () => {
    expect(dayStart('2026-11-30', 1)).toBe(new Date(2026, 11, 1).toISOString());
    expect(dayStart('not a date')).toBeUndefined();
  });
});

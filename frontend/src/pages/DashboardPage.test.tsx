import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import { balance, json, mockApi, tokens, unavailable } from '../test/mockApi';
import { renderApp } from '../test/renderApp';

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
    expect(screen.getByRole('region', { name: 'Balance over time' })).toHaveTextContent('Could not load');
    expect(screen.getByRole('region', { name: 'Usage by feature (30 days)' })).toHaveTextContent('Could not load your usage.');
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
      expect.arrayContaining(['/api/v1/credits/balance', '/api/v1/credits/ledger', '/api/v1/usage', '/api/v1/billing/subscription']),
    );
  });

  it('shows the empty state only when the history really is empty', async () => {
    mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'GET /api/v1/credits/balance': () => json(balance),
      'GET /api/v1/credits/ledger': () => json({ entries: [], next_cursor: null }),
      'GET /api/v1/usage': () => json({ group_by: 'feature', from: '', to: '', total_credits: 0, buckets: [] }),
      'GET /api/v1/billing/subscription': () => json({ subscription: null }),
    });
    renderApp('/');
    const activity = await screen.findByRole('region', { name: 'Recent activity' });
    expect(await within(activity).findByText(/Nothing yet/)).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Try again' })).not.toBeInTheDocument();
  });
});

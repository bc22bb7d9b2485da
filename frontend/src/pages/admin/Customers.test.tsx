import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import { json, mockApi, problem, tokens, user } from '../../test/mockApi';
import { renderApp } from '../../test/renderApp';

const admin = { ...tokens(), user: { ...user, role: 'admin' as const } };

function customer(n: number, extra: Record<string, unknown> = {}) {
  return {
    id: `0191e2a4-0000-7000-8000-00000000c00${n}`,
    external_id: `cust-${n}`,
    email: `c${n}@example.com`,
    name: `Customer ${n}`,
    metadata: null,
    created_at: '2026-11-24T10:00:00Z',
    updated_at: '2026-11-24T10:00:00Z',
    balance: 100 * n,
    available: 100 * n - 5,
    held: 5,
    debt: 0,
    ...extra,
  };
}

const entry = (id: string, amount: number, balanceAfter: number, description: string) => ({
  id,
  kind: amount > 0 ? 'grant' : 'spend',
  amount,
  balance_after: balanceAfter,
  created_at: '2026-11-24T10:00:00Z',
  description,
  lots: [],
});

const base = {
  'POST /api/v1/auth/refresh': () => json(admin),
  'GET /api/v1/admin/server-keys': () => json([]),
  'GET /api/v1/admin/models': () => json([]),
  'GET /api/v1/admin/reconcile': () => json({ ok: true, checked_at: '2026-11-24T10:00:00Z', checks: [] }),
  'GET /api/v1/admin/stripe-events': () => json({ events: [], next_cursor: null }),
};

describe('admin customers', () => {
  it('lists customers with their figures, loads more by cursor and searches by prefix', async () => {
    const { requests } = mockApi({
      ...base,
      'GET /api/v1/customers': (request) => {
        const query = new URL(request.url).searchParams;
        if (query.get('q') === 'nobody') return json({ data: [], next_cursor: null });
        if (query.get('q') === 'cust-3') return json({ data: [customer(3)], next_cursor: null });
        if (query.get('cursor') === 'page-2') return json({ data: [customer(1)], next_cursor: null });
        return json({ data: [customer(3), customer(2)], next_cursor: 'page-2' });
      },
    });
    renderApp('/admin');
    const u = userEvent.setup();

    const list = await screen.findByRole('list', { name: 'Customers' });
    const rows = within(list).getAllByRole('listitem');
    expect(rows).toHaveLength(2);
    expect(rows[0]).toHaveTextContent('cust-3');
    expect(rows[0]).toHaveTextContent('c3@example.com · Customer 3');
    expect(rows[0]).toHaveTextContent('300 credits · 295 available');

    await u.click(screen.getByRole('button', { name: 'Load more' }));
    await waitFor(() => expect(within(list).getAllByRole('listitem')).toHaveLength(3));
    expect(requests.find((r) => r.url.includes('cursor=page-2'))).toBeDefined();
    expect(screen.queryByRole('button', { name: 'Load more' })).not.toBeInTheDocument();

    await u.type(screen.getByRole('searchbox', { name: 'Search customers' }), 'cust-3');
    await waitFor(() => expect(within(screen.getByRole('list', { name: 'Customers' })).getAllByRole('listitem')).toHaveLength(1));
    const searched = requests.filter((r) => new URL(r.url).searchParams.has('q'));
    expect(new URL(searched.at(-1)!.url).searchParams.get('q')).toBe('cust-3');

    await u.clear(screen.getByRole('searchbox', { name: 'Search customers' }));
    await u.type(screen.getByRole('searchbox', { name: 'Search customers' }), 'nobody');
    expect(await screen.findByText('No customers match “nobody”.')).toBeInTheDocument();
  });

  it('opens a customer: its figures, its ledger by external id, and a grant to its id with an idempotency key', async () => {
    let granted = false;
    const one = customer(1, { external_id: 'acme/42 x', metadata: { plan: 'pro' } });
    const { requests } = mockApi({
      ...base,
      'GET /api/v1/customers': () => json({ data: [one], next_cursor: null }),
      [`GET /api/v1/admin/customers/${one.id}`]: () =>
        json(granted ? { ...one, balance: 150, available: 145 } : one),
      // The external id is URL-encoded in the path.
      'GET /api/v1/customers/acme%2F42%20x/ledger': () =>
        json({
          entries: granted
            ? [entry('e2', 50, 150, 'Goodwill'), entry('e1', 100, 100, 'Welcome')]
            : [entry('e1', 100, 100, 'Welcome')],
          next_cursor: null,
        }),
      'POST /api/v1/credits/grant': () => {
        granted = true;
        return json({
          user_id: one.id,
          lot_id: '0191e2a4-0000-7000-8000-0000000000l1',
          transfer: { id: 't1', kind: 'grant', amount: 50, created_at: '2026-11-24T10:00:00Z', lots: [] },
          balance: { balance: 150, available: 145, held: 5, debt: 0 },
        });
      },
    });
    renderApp('/admin');
    const u = userEvent.setup();

    await u.click(await screen.findByRole('button', { name: /acme\/42 x/ }));
    expect(await screen.findByRole('heading', { name: 'Customer acme/42 x' })).toBeInTheDocument();
    expect(screen.getByTestId('location')).toHaveTextContent(`/admin?customer=${one.id}`);
    expect(await screen.findByText('100 credits')).toBeInTheDocument();
    expect(screen.getByText('95 credits')).toBeInTheDocument();
    expect(screen.getByText('c1@example.com')).toBeInTheDocument();
    expect(screen.getByText(/"plan": "pro"/)).toBeInTheDocument();
    const history = screen.getByRole('region', { name: 'History' });
    expect(await within(history).findByText('Welcome')).toBeInTheDocument();
    // The other tools wait while a customer is open.
    expect(screen.queryByRole('region', { name: 'Server keys' })).not.toBeInTheDocument();

    const form = screen.getByRole('form', { name: 'Grant credits to acme/42 x' });
    expect(within(form).queryByLabelText("User's email")).not.toBeInTheDocument();
    await u.type(within(form).getByLabelText('Credits'), '50');
    await u.type(within(form).getByLabelText('Reason'), 'Goodwill');
    await u.click(within(form).getByRole('button', { name: 'Grant credits' }));
    expect(await within(form).findByText('Granted 50 credits to acme/42 x. Their balance is now 150 credits.')).toBeInTheDocument();

    const sent = requests.find((r) => r.url.endsWith('/credits/grant'))!;
    expect(await sent.json()).toEqual({ user_id: one.id, amount: 50, reason: 'Goodwill' });
    expect(sent.headers.get('idempotency-key')).toMatch(/^[0-9a-f-]{36}$/);
    // The figures and the history are read again.
    expect(await within(history).findByText('Goodwill')).toBeInTheDocument();
    expect(await screen.findByText('150 credits')).toBeInTheDocument();

    await u.click(screen.getByRole('button', { name: /All customers/ }));
    expect(await screen.findByRole('list', { name: 'Customers' })).toBeInTheDocument();
    expect(screen.getByTestId('location')).toHaveTextContent(/^\/admin$/);
  });

  it('reads the ledger of a customer without an external id through the admin route', async () => {
    const signUp = customer(2, { external_id: null, email: 'ada@example.com', name: 'Ada' });
    const { requests } = mockApi({
      ...base,
      [`GET /api/v1/admin/customers/${signUp.id}`]: () => json(signUp),
      [`GET /api/v1/admin/customers/${signUp.id}/ledger`]: () => json({ entries: [], next_cursor: null }),
    });
    renderApp(`/admin?customer=${signUp.id}`);
    expect(await screen.findByRole('heading', { name: 'Customer ada@example.com' })).toBeInTheDocument();
    expect(await screen.findByText('No activity yet.')).toBeInTheDocument();
    expect(requests.some((r) => r.url.includes('/api/v1/customers/'))).toBe(false);
  });

  it('says so when the customer is unknown', async () => {
    mockApi({
      ...base,
      'GET /api/v1/admin/customers/0191e2a4-0000-7000-8000-00000000dead': () =>
        problem(404, 'customer_not_found', 'no customer has this id'),
    });
    renderApp('/admin?customer=0191e2a4-0000-7000-8000-00000000dead');
    expect(await screen.findByRole('alert')).toHaveTextContent('No customer has this id');
  });
});

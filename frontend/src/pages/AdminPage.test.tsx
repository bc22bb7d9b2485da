import { screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import { json, mockApi, problem, tokens, unavailable, user } from '../test/mockApi';
import { renderApp } from '../test/renderApp';

const admin = { ...tokens(), user: { ...user, role: 'admin' as const } };

const report = {
  ok: true,
  checked_at: '2026-11-24T10:00:00Z',
  checks: [{ name: 'transfers_balance', description: 'Every transfer balances.', checked: 12, violation_count: 0, violations: [] }],
};

const failed = {
  id: 'evt_failed',
  type: 'invoice.paid',
  created_at: '2026-11-24T09:00:00Z',
  received_at: '2026-11-24T09:00:01Z',
  processed_at: null,
  attempts: 2,
  last_error: 'unknown price',
  status: 'failed',
};

/** What the admin page loads besides the tools a test looks at. */
const adminBase = {
  'POST /api/v1/auth/refresh': () => json(admin),
  'GET /api/v1/customers': () => json({ data: [], next_cursor: null }),
  'GET /api/v1/admin/server-keys': () => json([]),
  'GET /api/v1/admin/models': () => json([]),
};

describe('admin', () => {
  it('grants credits with an idempotency key and shows field errors inline', async () => {
    let grants = 0;
    const { requests } = mockApi({
      ...adminBase,
      'GET /api/v1/admin/reconcile': () => json(report),
      'GET /api/v1/admin/stripe-events': () => json({ events: [], next_cursor: null }),
      'POST /api/v1/credits/grant': () => {
        grants += 1;
        if (grants === 1) {
          return problem(422, 'validation_failed', '1 field is invalid', {
            errors: [{ field: 'amount', code: 'range', message: 'amount must be positive' }],
          });
        }
        return json({
          user_id: user.id,
          lot_id: '0191e2a4-0000-7000-8000-0000000000l1',
          transfer: { id: 't1', kind: 'grant', amount: 50, created_at: '2026-11-24T10:00:00Z', lots: [] },
          balance: { balance: 50, available: 50, held: 0, debt: 0 },
        });
      },
    });
    renderApp('/admin');
    const u = userEvent.setup();
    const form = await screen.findByRole('form', { name: 'Grant credits' });
    await u.type(within(form).getByLabelText("User's email"), 'bob@example.com');
    await u.type(within(form).getByLabelText('Credits'), '0');
    await u.type(within(form).getByLabelText('Reason'), 'Welcome');
    await u.click(within(form).getByRole('button', { name: 'Grant credits' }));
    expect(await within(form).findByText('Amount must be positive')).toBeInTheDocument();
    expect(within(form).getByLabelText('Credits')).toHaveAttribute('aria-invalid', 'true');

    await u.clear(within(form).getByLabelText('Credits'));
    await u.type(within(form).getByLabelText('Credits'), '50');
    await u.click(within(form).getByRole('button', { name: 'Grant credits' }));
    expect(await within(form).findByText('Granted 50 credits to bob@example.com. Their balance is now 50 credits.')).toBeInTheDocument();

    const sent = requests.filter((r) => r.url.endsWith('/credits/grant'));
    expect(await sent[1]!.json()).toEqual({ email: 'bob@example.com', amount: 50, reason: 'Welcome' });
    expect(sent[1]!.headers.get('idempotency-key')).toMatch(/^[0-9a-f-]{36}$/);
    expect(sent[1]!.headers.get('idempotency-key')).not.toBe(sent[0]!.headers.get('idempotency-key'));
  });

  it('shows the reconciliation and retries a failed Stripe event', async () => {
    let retried = false;
    mockApi({
      ...adminBase,
      'GET /api/v1/admin/reconcile': () => json(report),
      'GET /api/v1/admin/stripe-events': () =>
        json({ events: [retried ? { ...failed, status: 'processed', last_error: null, attempts: 3 } : failed], next_cursor: null }),
      'POST /api/v1/admin/stripe-events/evt_failed/retry': () => {
        retried = true;
        return json({ received: true, status: 'processed' });
      },
    });
    renderApp('/admin');
    const u = userEvent.setup();
    expect(await screen.findByText('The books balance')).toBeInTheDocument();
    expect(screen.getByText(/Every transfer balances\. \(12 checked\)/)).toBeInTheDocument();

    const inbox = screen.getByRole('region', { name: 'Stripe event inbox' });
    expect(await within(inbox).findByText('Last error: unknown price')).toBeInTheDocument();
    await u.click(within(inbox).getByRole('button', { name: 'Retry invoice.paid evt_failed' }));
    expect(await within(inbox).findByText('Event evt_failed applied: processed.')).toBeInTheDocument();
    const item = (await within(inbox).findByText(/3 attempts/)).closest('li')!;
    expect(item).toHaveTextContent('invoice.paidProcessed');
    expect(within(inbox).queryByRole('button', { name: /^Retry/ })).not.toBeInTheDocument();
  });

  it('during an outage says which tools did not load, with one retry for all of them', async () => {
    let down = true;
    const { requests } = mockApi({
      'POST /api/v1/auth/refresh': () => json(admin),
      'GET /api/v1/customers': () => (down ? unavailable() : json({ data: [], next_cursor: null })),
      'GET /api/v1/admin/server-keys': () => (down ? unavailable() : json([])),
      'GET /api/v1/admin/reconcile': () => (down ? unavailable() : json(report)),
      'GET /api/v1/admin/stripe-events': () => (down ? unavailable() : json({ events: [], next_cursor: null })),
      'GET /api/v1/admin/models': () => (down ? unavailable() : json([])),
    });
    renderApp('/admin');
    const u = userEvent.setup();

    expect(await screen.findByText('Could not load the customers.')).toBeInTheDocument();
    expect(await screen.findByText('Could not load the server keys.')).toBeInTheDocument();
    expect(await screen.findByText('Could not load the reconciliation.')).toBeInTheDocument();
    expect(await screen.findByText('Could not load the Stripe events.')).toBeInTheDocument();
    expect(await screen.findByText('Could not load the models.')).toBeInTheDocument();
    expect(screen.queryByText('There are no models yet.')).not.toBeInTheDocument();
    expect(screen.queryByText('No Stripe events received yet.')).not.toBeInTheDocument();
    expect(screen.getAllByRole('alert')).toHaveLength(1);
    expect(screen.getAllByRole('button', { name: 'Try again' })).toHaveLength(1);

    down = false;
    const before = requests.length;
    await u.click(screen.getByRole('button', { name: 'Try again' }));
    expect(await screen.findByText('The books balance')).toBeInTheDocument();
    expect(await screen.findByText('No Stripe events received yet.')).toBeInTheDocument();
    expect(await screen.findByText('There are no models yet.')).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Try again' })).not.toBeInTheDocument();
    // (The header's wallet figures are the live stream's, which refetches them as it opens.)
    const paths = requests.slice(before).map((r) => new URL(r.url).pathname);
    expect(new Set(paths.filter((p) => !p.startsWith('/api/v1/credits/')))).toEqual(
      new Set([
        '/api/v1/customers',
        '/api/v1/admin/server-keys',
        '/api/v1/admin/reconcile',
        '/api/v1/admin/stripe-events',
        '/api/v1/admin/models',
      ]),
    );
  });

  it('is closed to users without the admin role', async () => {
    mockApi({ 'POST /api/v1/auth/refresh': () => json(tokens()) });
    renderApp('/admin');
    expect(await screen.findByText('You need the admin role to see this page.')).toBeInTheDocument();
  });
});

import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { setAccessToken } from '../api/session';
import { browser } from '../lib/navigate';
import { balance, eventStream, json, liveEvent, mockApi, problem, type Handler } from '../test/mockApi';
import { renderApp } from '../test/renderApp';

const session = {
  customer: { id: '0191e2a4-0000-7000-8000-00000000c001', external_id: 'cust-1', email: 'grace@example.com', name: 'Grace' },
  return_url: 'https://app.example.com/account?tab=billing',
  return_label: 'app.example.com',
  expires_at: '2026-11-24T10:30:00Z',
};

const price = (id: string, name: string, unit_amount: number, credits: number, interval: string | null = null) => ({
  price_id: id,
  product_id: `prod_${id}`,
  name,
  description: null,
  kind: interval ? 'recurring' : 'one_time',
  interval,
  unit_amount,
  currency: 'usd',
  credits,
});

const catalog = {
  mode: 'sandbox',
  packs: [price('pack_100', 'Starter pack', 500, 100)],
  plans: [price('plan_month', 'Monthly plan', 1500, 1000, 'month')],
};

const entry = (id: string, kind: string, amount: number, balanceAfter: number, description: string, metadata: unknown = null) => ({
  id,
  kind,
  amount,
  balance_after: balanceAfter,
  created_at: new Date().toISOString(),
  description,
  lots: [],
  metadata,
});

const usage = {
  buckets: [{ key: 'example.summarize', credits: 12, spends: 3 }],
  from: '2026-10-25T00:00:00Z',
  to: '2026-11-24T00:00:00Z',
  group_by: 'feature',
  total_credits: 12,
};

function portal(overrides: Record<string, Handler> = {}): Record<string, Handler> {
  return {
    'GET /api/v1/hosted/session': () => json(session),
    'GET /api/v1/hosted/balance': () =>
      json({
        ...balance,
        balance: 250,
        available: 240,
        held: 10,
        expiring_soon: [
          { id: 'l1', source: 'subscription', amount: 100, remaining: 40, priority: 30, created_at: '2026-11-01T00:00:00Z', expires_at: '2026-12-01T00:00:00Z' },
        ],
      }),
    'GET /api/v1/hosted/ledger': (request) =>
      new URL(request.url).searchParams.get('cursor') === 'older'
        ? json({ entries: [entry('e1', 'grant', 100, 100, 'Welcome credits')], next_cursor: null })
        : json({ entries: [entry('e3', 'spend', -5, 250, 'Summary'), entry('e2', 'purchase', 155, 255, 'Top-up')], next_cursor: 'older' }),
    'GET /api/v1/hosted/usage': () => json(usage),
    'GET /api/v1/hosted/subscription': () => json({ subscription: null }),
    'GET /api/v1/billing/catalog': () => json(catalog),
    ...overrides,
  };
}

const expired = () => problem(401, 'portal_session_required', 'open the billing page from your app again');

describe('hosted portal', () => {
  it('shows the customer, the balance, history, usage and the way back, with no app navigation or token', async () => {
    // A token in memory (from a signed-in tab's module state) must never reach the portal's calls.
    setAccessToken('user-access-token');
    const { requests } = mockApi(portal());
    renderApp('/hosted');
    const u = userEvent.setup();

    expect(await screen.findByRole('heading', { level: 1, name: 'Billing' })).toBeInTheDocument();
    expect(screen.getByText('Credits for Grace (grace@example.com)')).toBeInTheDocument();
    const back = screen.getAllByRole('link', { name: /Back to app\.example\.com/ })[0]!;
    expect(back).toHaveAttribute('href', 'https://app.example.com/account?tab=billing');

    const figures = (label: string) => screen.getByText(label, { selector: 'dt' }).parentElement!;
    await waitFor(() => expect(figures('Balance')).toHaveTextContent('250 credits'));
    expect(figures('Available')).toHaveTextContent('240 credits');
    expect(figures('Expiring soon')).toHaveTextContent('40 credits');
    expect(figures('Expiring soon')).toHaveTextContent('First on Dec 1, 2026');

    const history = screen.getByRole('region', { name: 'History' });
    expect(await within(history).findByText('Summary')).toBeInTheDocument();
    await u.click(within(history).getByRole('button', { name: 'Load more' }));
    expect(await within(history).findByText('Welcome credits')).toBeInTheDocument();
    expect(within(history).getByText('Showing 3 entries (all)')).toBeInTheDocument();

    const used = screen.getByRole('region', { name: 'Usage by feature' });
    expect(await within(used).findByText('example.summarize')).toBeInTheDocument();
    expect(used).toHaveTextContent('12 credits · 3 uses');
    expect(screen.getByRole('region', { name: 'Your subscription' })).toHaveTextContent('No plan: you pay as you go.');
    expect(await screen.findByRole('button', { name: 'Buy 100 credits' })).toBeInTheDocument();

    // Nothing of the signed-in app: no navigation, no sign-in, admin or API-key links.
    expect(screen.queryByRole('navigation')).not.toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Sign out' })).not.toBeInTheDocument();
    for (const link of screen.getAllByRole('link')) {
      expect(link.getAttribute('href')).not.toMatch(/^\/(sign-in|sign-up|admin|api-keys|credits|history)?$/);
    }
    // Only the portal's cookie: no bearer token, and no attempt to restore a user's session.
    const calls = requests.filter((r) => new URL(r.url).pathname.startsWith('/api/'));
    expect(calls.length).toBeGreaterThanOrEqual(6);
    for (const call of calls) expect(call.headers.get('authorization')).toBeNull();
    expect(calls.some((r) => r.url.includes('/auth/'))).toBe(false);
  });

  it('shows the expired state for a used or expired link, without calling the API or offering sign-in', async () => {
    const { requests } = mockApi({});
    renderApp('/hosted?error=link_expired');
    expect(
      await screen.findByRole('heading', { level: 1, name: 'This link has expired or was already used' }),
    ).toBeInTheDocument();
    expect(screen.getByText(/Go back to the app you came from and open billing from there again\./)).toBeInTheDocument();
    expect(screen.queryByLabelText('Password')).not.toBeInTheDocument();
    expect(screen.queryByRole('link', { name: /sign in/i })).not.toBeInTheDocument();
    expect(requests.some((r) => new URL(r.url).pathname.startsWith('/api/'))).toBe(false);
  });

  it('shows the expired state when the portal session is gone (401), naming the way back it knew', async () => {
    // The last portal in this tab said where to go back to.
    sessionStorage.setItem('tollgate.hosted.return', JSON.stringify({ url: 'https://app.example.com/', label: 'app.example.com' }));
    const { requests } = mockApi({
      'GET /api/v1/hosted/session': expired,
      'GET /api/v1/hosted/balance': expired,
      'GET /api/v1/hosted/ledger': expired,
      'GET /api/v1/hosted/usage': expired,
      'GET /api/v1/hosted/subscription': expired,
      'GET /api/v1/billing/catalog': () => json(catalog),
    });
    renderApp('/hosted');
    expect(
      await screen.findByRole('heading', { level: 1, name: 'This link has expired or was already used' }),
    ).toBeInTheDocument();
    expect(screen.getByText(/Go back to app\.example\.com and open billing from there again\./)).toBeInTheDocument();
    expect(screen.getAllByRole('link', { name: /Back to app\.example\.com/ })[0]).toHaveAttribute('href', 'https://app.example.com/');
    // Not sent to sign in, and no refresh of a user's session was tried.
    expect(screen.getByTestId('location')).toHaveTextContent(/^\/hosted$/);
    expect(requests.some((r) => r.url.includes('/auth/'))).toBe(false);
  });

  it('buys a pack: starts the hosted checkout, and on return waits for the credits and shows the new balance', async () => {
    const assign = vi.spyOn(browser, 'assign').mockImplementation(() => {});
    let paid = false;
    const { requests } = mockApi(
      portal({
        'POST /api/v1/hosted/checkout-session': () => json({ session_id: 'cs_1', url: '/sandbox/checkout/cs_1' }),
        'GET /api/v1/hosted/balance': () => json({ ...balance, balance: paid ? 350 : 250, available: paid ? 350 : 250 }),
        'GET /api/v1/hosted/ledger': () =>
          json({
            entries: paid ? [entry('e9', 'purchase', 100, 350, 'Starter pack (100 credits)'), entry('e8', 'grant', 250, 250, 'Welcome')] : [],
            next_cursor: null,
          }),
      }),
    );
    const first = renderApp('/hosted');
    const u = userEvent.setup();
    await u.click(await screen.findByRole('button', { name: 'Buy 100 credits' }));
    await vi.waitFor(() => expect(assign).toHaveBeenCalledWith('/sandbox/checkout/cs_1'));
    const sent = requests.find((r) => r.url.endsWith('/hosted/checkout-session'));
    expect(await sent?.json()).toEqual({ price_id: 'pack_100' });
    expect(sent?.headers.get('authorization')).toBeNull();
    expect(screen.getByRole('button', { name: 'Opening checkout…' })).toBeDisabled();

    // Paid: the checkout sends the browser back to /hosted?checkout=success (no session id).
    first.unmount();
    paid = true;
    renderApp('/hosted?checkout=success');
    expect(await screen.findByText('Payment complete')).toBeInTheDocument();
    expect(await screen.findByText('100 credits added to your wallet. Your balance is now 350 credits.')).toBeInTheDocument();
    await u.click(screen.getByRole('button', { name: 'Dismiss' }));
    expect(screen.getByTestId('location')).toHaveTextContent(/^\/hosted$/);
  });

  it("keeps the balance current from the customer's stream, with no polling", async () => {
    const streams: ReturnType<typeof eventStream>[] = [];
    const { requests } = mockApi(
      portal({
        'GET /api/v1/hosted/balance': () => json({ ...balance, balance: 250, available: 250 }),
        'GET /api/v1/hosted/stream': (request) => {
          const stream = eventStream(request);
          streams.push(stream);
          return stream.response;
        },
      }),
    );
    const count = (path: string) => requests.filter((r) => new URL(r.url).pathname === path).length;
    renderApp('/hosted');
    const figures = (label: string) => screen.getByText(label, { selector: 'dt' }).parentElement!;
    await waitFor(() => expect(figures('Balance')).toHaveTextContent('250 credits'));
    await waitFor(() => expect(screen.getByTestId('live-status')).toHaveTextContent('Live'));
    // The customer's stream, with the portal cookie only.
    const opened = requests.filter((r) => new URL(r.url).pathname === '/api/v1/hosted/stream');
    expect(opened).toHaveLength(1);
    expect(opened[0]!.headers.get('accept')).toBe('text/event-stream');
    expect(opened[0]!.headers.get('authorization')).toBeNull();
    expect(count('/api/v1/credits/stream')).toBe(0);
    // Read again once as the stream opens (a change before the server registered it).
    await waitFor(() => expect(count('/api/v1/hosted/balance')).toBe(2));
    await waitFor(() => expect(count('/api/v1/hosted/ledger')).toBe(2));

    // Spent by the product's backend: the figures move at once, without asking for the balance.
    streams[0]!.event(liveEvent('credits.spent', { balance: 243, available: 233, held: 10 }, { kind: 'spend', amount: 7 }));
    await waitFor(() => expect(figures('Balance')).toHaveTextContent('243 credits'));
    expect(figures('Available')).toHaveTextContent('233 credits');
    // The history and usage it changed are asked for again, once.
    await waitFor(() => expect(count('/api/v1/hosted/usage')).toBe(3));
    await waitFor(() => expect(count('/api/v1/hosted/ledger')).toBe(3));
    // Nothing asks on a timer.
    await new Promise((r) => setTimeout(r, 1600));
    expect(count('/api/v1/hosted/balance')).toBe(2);
    expect(count('/api/v1/hosted/ledger')).toBe(3);
    expect(count('/api/v1/hosted/stream')).toBe(1);
  });

  it('on return from a paid checkout, waits on the stream for checkout.completed, without polling', async () => {
    let stream: ReturnType<typeof eventStream> | undefined;
    const { requests } = mockApi(
      portal({
        'GET /api/v1/hosted/balance': () => json({ ...balance, balance: 250, available: 250 }),
        'GET /api/v1/hosted/ledger': () => json({ entries: [], next_cursor: null }),
        'GET /api/v1/hosted/stream': (request) => {
          stream = eventStream(request);
          return stream.response;
        },
      }),
    );
    const ledgerReads = () => requests.filter((r) => new URL(r.url).pathname === '/api/v1/hosted/ledger').length;
    renderApp('/hosted?checkout=success&session_id=cs_1');
    expect(await screen.findByText('Payment received')).toBeInTheDocument();
    // The history; once connected, one read for a payment that landed before the stream, and
    // one as the stream opens (what the page shows, in case it changed before the stream).
    await vi.waitFor(() => expect(ledgerReads()).toBe(3));
    await new Promise((r) => setTimeout(r, 1600));
    expect(ledgerReads()).toBe(3);
    expect(screen.queryByText('Payment complete')).not.toBeInTheDocument();

    // The grant comes first (same transaction); the screen waits for this checkout's completion.
    stream!.event(
      liveEvent('credits.granted', { balance: 350 }, {
        kind: 'purchase',
        amount: 100,
        metadata: { checkout_session: 'cs_1', price_id: 'pack_100' },
      }),
    );
    const figures = (label: string) => screen.getByText(label, { selector: 'dt' }).parentElement!;
    await vi.waitFor(() => expect(figures('Balance')).toHaveTextContent('350 credits'));
    expect(screen.queryByText('Payment complete')).not.toBeInTheDocument();
    stream!.event(liveEvent('checkout.completed', { balance: 350 }, { checkout_session: { id: 'cs_other', price_id: 'pack_100', mode: 'payment' } }));
    stream!.event(liveEvent('checkout.completed', { balance: 350 }, { checkout_session: { id: 'cs_1', price_id: 'pack_100', mode: 'payment' } }));
    expect(await screen.findByText('Payment complete')).toBeInTheDocument();
    expect(screen.getByText('100 credits added to your wallet. Your balance is now 350 credits.')).toBeInTheDocument();
  });

  it('shows the expired state when the stream is refused for want of a session', async () => {
    mockApi(portal({ 'GET /api/v1/hosted/stream': expired }));
    renderApp('/hosted');
    expect(
      await screen.findByRole('heading', { level: 1, name: 'This link has expired or was already used' }),
    ).toBeInTheDocument();
    expect(screen.getAllByRole('link', { name: /Back to app\.example\.com/ })[0]).toHaveAttribute(
      'href',
      'https://app.example.com/account?tab=billing',
    );
  });

  it('on a return it cannot trace (another tab, a reload), thanks without waiting', async () => {
    mockApi(portal());
    renderApp('/hosted?checkout=success');
    const alert = await screen.findByText('Payment received');
    expect(alert.parentElement).toHaveTextContent('The credits are added to your wallet as soon as the payment clears.');
    expect(await screen.findByText(/Your balance is 250 credits\./)).toBeInTheDocument();
  });
});

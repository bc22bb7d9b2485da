import { screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { browser } from '../lib/navigate';
import { balance, eventStream, json, liveEvent, mockApi, problem, tokens, unavailable } from '../test/mockApi';
import { renderApp } from '../test/renderApp';

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
  packs: [price('pack_100', 'Starter pack', 500, 100), price('pack_2000', 'Enterprise pack', 7000, 2000)],
  plans: [price('plan_month', 'Monthly plan', 1500, 1000, 'month')],
};

const base = {
  'POST /api/v1/auth/refresh': () => json(tokens()),
  'GET /api/v1/billing/catalog': () => json(catalog),
  'GET /api/v1/billing/subscription': () => json({ subscription: null }),
};

describe('credits', () => {
  it('lists packs and plans with prices, and sends the browser to checkout', async () => {
    const assign = vi.spyOn(browser, 'assign').mockImplementation(() => {});
    const { requests } = mockApi({
      ...base,
      'GET /api/v1/credits/balance': () => json(balance),
      'POST /api/v1/billing/checkout-session': () => json({ session_id: 'cs_1', url: '/sandbox/checkout/cs_1' }),
    });
    renderApp('/credits');
    const user = userEvent.setup();

    const starter = (await screen.findByRole('heading', { name: 'Starter pack' })).closest('li')!;
    expect(starter).toHaveTextContent('100 credits');
    expect(starter).toHaveTextContent('$5.00');
    expect(starter).toHaveTextContent('$0.05 per credit');
    const enterprise = screen.getByRole('heading', { name: 'Enterprise pack' }).closest('li')!;
    expect(enterprise).toHaveTextContent('2,000 credits');
    expect(enterprise).toHaveTextContent('$70.00');
    const monthly = screen.getByRole('heading', { name: 'Monthly plan' }).closest('li')!;
    expect(monthly).toHaveTextContent('1,000 credits per month');
    expect(monthly).toHaveTextContent('$15.00per month');

    await user.click(within(starter).getByRole('button', { name: 'Buy 100 credits' }));
    await vi.waitFor(() => expect(assign).toHaveBeenCalledWith('/sandbox/checkout/cs_1'));
    const sent = requests.find((r) => r.url.endsWith('/billing/checkout-session'));
    expect(await sent?.json()).toEqual({ price_id: 'pack_100' });
    expect(screen.getByRole('button', { name: 'Opening checkout…' })).toBeDisabled();
  });

  it('explains a refused checkout', async () => {
    mockApi({
      ...base,
      'GET /api/v1/credits/balance': () => json(balance),
      'POST /api/v1/billing/checkout-session': () =>
        problem(409, 'already_subscribed', 'you already have a subscription: change plans in the portal'),
    });
    renderApp('/credits');
    const user = userEvent.setup();
    await user.click(await screen.findByRole('button', { name: 'Subscribe to Monthly plan' }));
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('Checkout could not start');
    expect(alert).toHaveTextContent('You already have a subscription: change plans in the portal');
  });

  it('on return from a paid checkout, waits on the live stream for checkout.completed, without polling', async () => {
    let stream: ReturnType<typeof eventStream> | undefined;
    const { requests } = mockApi({
      ...base,
      'GET /api/v1/credits/balance': () => json(balance),
      'GET /api/v1/credits/ledger': () => json({ entries: [], next_cursor: null }),
      'GET /api/v1/credits/stream': (request) => {
        stream = eventStream(request);
        return stream.response;
      },
    });
    renderApp('/credits?checkout=success&session_id=cs_1');
    expect(await screen.findByText('Payment received')).toBeInTheDocument();
    // Once connected, the ledger is read once for the payment (it may have landed before the
    // stream), and the balance the page shows again once (it may have changed before the stream
    // was registered).
    await vi.waitFor(() => expect(requests.filter((r) => r.url.includes('/credits/ledger'))).toHaveLength(1));
    await vi.waitFor(() => expect(requests.filter((r) => r.url.endsWith('/credits/balance'))).toHaveLength(2));

    // The grant comes first (same transaction); the screen waits for the checkout's completion.
    stream!.event(
      liveEvent('credits.granted', { balance: 100 }, {
        kind: 'purchase',
        amount: 100,
        metadata: { checkout_session: 'cs_1', price_id: 'pack_100' },
      }),
    );
    await vi.waitFor(() => expect(screen.getByTestId('credits-balance')).toHaveTextContent('100 credits'));
    expect(screen.queryByText('Payment complete')).not.toBeInTheDocument();
    stream!.event(liveEvent('checkout.completed', { balance: 100 }, { checkout_session: { id: 'cs_other', price_id: 'pack_100', mode: 'payment' } }));
    stream!.event(liveEvent('checkout.completed', { balance: 100 }, { checkout_session: { id: 'cs_1', price_id: 'pack_100', mode: 'payment' } }));

    expect(await screen.findByText('Payment complete')).toBeInTheDocument();
    expect(screen.getByText('100 credits added to your wallet. Your balance is now 100 credits.')).toBeInTheDocument();
    await new Promise((r) => setTimeout(r, 1600));
    // Nothing polled since.
    expect(requests.filter((r) => r.url.includes('/credits/ledger'))).toHaveLength(1);
    expect(requests.filter((r) => r.url.endsWith('/credits/balance'))).toHaveLength(2);
  });

  it('on return from a plan checkout, counts the subscription credits granted with it', async () => {
    let stream: ReturnType<typeof eventStream> | undefined;
    mockApi({
      ...base,
      'GET /api/v1/credits/balance': () => json(balance),
      'GET /api/v1/credits/ledger': () => json({ entries: [], next_cursor: null }),
      'GET /api/v1/credits/stream': (request) => {
        stream = eventStream(request);
        return stream.response;
      },
    });
    renderApp('/credits?checkout=success&session_id=cs_plan');
    expect(await screen.findByText('Payment received')).toBeInTheDocument();
    await vi.waitFor(() => expect(stream).toBeDefined());
    stream!.event(liveEvent('subscription.updated', { balance: 0 }, { subscription: { id: 'sub_1', status: 'active' } }));
    stream!.event(liveEvent('credits.granted', { balance: 1000 }, { kind: 'subscription', amount: 1000, metadata: { invoice: 'in_1' } }));
    stream!.event(liveEvent('checkout.completed', { balance: 1000 }, { checkout_session: { id: 'cs_plan', price_id: 'plan_month', mode: 'subscription' } }));
    expect(await screen.findByText('1,000 credits added to your wallet. Your balance is now 1,000 credits.')).toBeInTheDocument();
  });

  it('on return after the credits already landed, finds them in the ledger once connected', async () => {
    mockApi({
      ...base,
      'GET /api/v1/credits/balance': () => json({ ...balance, balance: 100, available: 100 }),
      'GET /api/v1/credits/ledger': () =>
        json({
          entries: [
            {
              id: 'e1',
              kind: 'purchase',
              amount: 100,
              balance_after: 100,
              created_at: new Date().toISOString(),
              description: 'Starter pack (100 credits)',
              lots: [],
              metadata: { checkout_session: 'cs_1', price_id: 'pack_100' },
            },
          ],
          next_cursor: null,
        }),
    });
    renderApp('/credits?checkout=success&session_id=cs_1');
    expect(
      await screen.findByText('100 credits added to your wallet. Your balance is now 100 credits.'),
    ).toBeInTheDocument();
  });

  it('says the credits are late when nothing came within a minute', async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    try {
      mockApi({
        ...base,
        'GET /api/v1/credits/balance': () => json(balance),
        'GET /api/v1/credits/ledger': () => json({ entries: [], next_cursor: null }),
      });
      renderApp('/credits?checkout=success&session_id=cs_1');
      expect(await screen.findByText(/Adding your credits to your wallet/)).toBeInTheDocument();
      await vi.advanceTimersByTimeAsync(61_000);
      expect(await screen.findByText(/Your credits have not arrived yet/)).toBeInTheDocument();
    } finally {
      vi.useRealTimers();
    }
  });

  it('on return from a cancelled checkout, says nothing was charged', async () => {
    mockApi({ ...base, 'GET /api/v1/credits/balance': () => json(balance) });
    renderApp('/credits?checkout=cancelled');
    expect(await screen.findByText('Checkout cancelled')).toBeInTheDocument();
    expect(screen.getByText(/You were not charged/)).toBeInTheDocument();
    await userEvent.setup().click(screen.getByRole('button', { name: 'Dismiss' }));
    expect(screen.queryByText('Checkout cancelled')).not.toBeInTheDocument();
    expect(screen.getByTestId('location')).toHaveTextContent(/^\/credits$/);
  });

  it('during an outage says what did not load, with one retry, and offers nothing it cannot show', async () => {
    let down = true;
    mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'GET /api/v1/credits/balance': () => (down ? unavailable() : json({ ...balance, balance: 40, available: 40 })),
      'GET /api/v1/billing/catalog': () => (down ? unavailable() : json(catalog)),
      'GET /api/v1/billing/subscription': () => (down ? unavailable() : json({ subscription: null })),
    });
    renderApp('/credits');
    const user = userEvent.setup();

    expect(await screen.findByRole('alert')).toHaveTextContent('Some of this page could not load');
    expect(await screen.findByText('Could not load the packs and plans on offer.')).toBeInTheDocument();
    expect(screen.getByRole('region', { name: 'Your subscription' })).toHaveTextContent('Could not load your subscription.');
    expect(screen.getByTestId('credits-balance')).toHaveTextContent('Unavailable');
    expect(screen.queryByText(/Loading/)).not.toBeInTheDocument();
    expect(screen.getAllByRole('button', { name: 'Try again' })).toHaveLength(1);

    down = false;
    await user.click(screen.getByRole('button', { name: 'Try again' }));
    expect(await screen.findByRole('heading', { name: 'Starter pack' })).toBeInTheDocument();
    expect(screen.getByTestId('credits-balance')).toHaveTextContent('40 credits');
    expect(screen.queryByRole('region', { name: 'Your subscription' })).not.toBeInTheDocument();
    expect(screen.queryByRole('alert')).not.toBeInTheDocument();
  });

  it('offers subscribers the billing portal', async () => {
    const assign = vi.spyOn(browser, 'assign').mockImplementation(() => {});
    mockApi({
      ...base,
      'GET /api/v1/credits/balance': () => json(balance),
      'GET /api/v1/billing/subscription': () =>
        json({
          subscription: {
            id: 'sub_1',
            status: 'active',
            plan_name: 'Monthly plan',
            price_id: 'plan_month',
            interval: 'month',
            credits_per_period: 1000,
            current_period_start: '2026-11-24T00:00:00Z',
            current_period_end: '2026-12-24T12:00:00Z',
            cancel_at_period_end: false,
          },
        }),
      'POST /api/v1/billing/portal-link': () => json({ url: '/sandbox/portal?token=t' }),
    });
    renderApp('/credits');
    const user = userEvent.setup();
    const region = await screen.findByRole('region', { name: 'Your subscription' });
    expect(region).toHaveTextContent('Monthly plan');
    expect(region).toHaveTextContent('1,000 credits per month');
    expect(region).toHaveTextContent('Renews on Dec 24, 2026');
    expect(screen.getByText('Current plan')).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Subscribe to Monthly plan' })).not.toBeInTheDocument();
    await user.click(within(region).getByRole('button', { name: 'Manage subscription' }));
    await vi.waitFor(() => expect(assign).toHaveBeenCalledWith('/sandbox/portal?token=t'));
  });
});

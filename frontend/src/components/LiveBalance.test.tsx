import { screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { balance, eventStream, json, liveEvent, mockApi, problem, tokens } from '../test/mockApi';
import { renderApp } from '../test/renderApp';

const catalog = { mode: 'sandbox', packs: [], plans: [] };

/** The credits page's routes, a stream the test writes to, and `alerts` as the server keeps them. */
function creditsApi(options: { available?: number; thresholds?: number[] } = {}) {
  const streams: ReturnType<typeof eventStream>[] = [];
  const available = options.available ?? 50;
  const thresholds = options.thresholds ?? [];
  const mock = mockApi({
    'POST /api/v1/auth/refresh': () => json(tokens()),
    'GET /api/v1/billing/catalog': () => json(catalog),
    'GET /api/v1/billing/subscription': () => json({ subscription: null }),
    'GET /api/v1/credits/balance': () => json({ ...balance, balance: available, available }),
    'GET /api/v1/credits/alerts': () => json({ thresholds, available, below: thresholds.filter((t) => available <= t) }),
    'GET /api/v1/credits/ledger': () => json({ entries: [], next_cursor: null }),
    'GET /api/v1/credits/stream': (request) => {
      const stream = eventStream(request);
      streams.push(stream);
      return stream.response;
    },
  });
  const count = (path: string) => mock.requests.filter((r) => new URL(r.url).pathname === path).length;
  return { ...mock, streams, count };
}

describe('live balance', () => {
  it('moves the balance in the header and on the page with each event, without asking for it again', async () => {
    const { streams, count, requests } = creditsApi();
    renderApp('/credits');
    const header = await screen.findByTestId('header-balance');
    expect(header).toHaveTextContent('Available: 50 credits');
    await vi.waitFor(() => expect(screen.getByTestId('live-status')).toHaveTextContent('Live'));
    const stream = requests.find((r) => r.url.endsWith('/credits/stream'))!;
    expect(stream.headers.get('authorization')).toBe('Bearer access-1');
    expect(stream.headers.get('accept')).toBe('text/event-stream');
    // Once, as the stream opens: what changed before the server had registered it.
    await vi.waitFor(() => expect(count('/api/v1/credits/balance')).toBe(2));

    streams[0]!.event(liveEvent('credits.spent', { balance: 45 }, { kind: 'spend', amount: 5 }));
    await vi.waitFor(() => expect(screen.getByTestId('credits-balance')).toHaveTextContent('45 credits'));
    expect(header).toHaveTextContent('Available: 45 credits');
    streams[0]!.event(liveEvent('credits.hold.created', { balance: 45, available: 40, held: 5 }));
    await vi.waitFor(() => expect(header).toHaveTextContent('Available: 40 credits'));
    expect(screen.getByTestId('credits-balance')).toHaveTextContent('45 credits');
    expect(count('/api/v1/credits/balance')).toBe(2);
  });

  it('says when it reconnects, and resumes after the last event it had', async () => {
    const { streams, requests } = creditsApi();
    renderApp('/credits');
    await vi.waitFor(() => expect(screen.getByTestId('live-status')).toHaveTextContent('Live'));
    const spent = liveEvent('credits.spent', { balance: 45 });
    streams[0]!.event(spent);
    await vi.waitFor(() => expect(screen.getByTestId('credits-balance')).toHaveTextContent('45 credits'));

    streams[0]!.close();
    await vi.waitFor(() => expect(screen.getByTestId('live-status')).toHaveTextContent('Reconnecting…'));
    await vi.waitFor(() => expect(screen.getByTestId('live-status')).toHaveTextContent('Live'), { timeout: 3000 });
    const again = requests.filter((r) => r.url.endsWith('/credits/stream'));
    expect(again).toHaveLength(2);
    expect(again[1]?.headers.get('last-event-id')).toBe(spent.id);
    streams[1]!.event(liveEvent('credits.granted', { balance: 145 }, { kind: 'purchase', amount: 100 }));
    await vi.waitFor(() => expect(screen.getByTestId('credits-balance')).toHaveTextContent('145 credits'));
  });

  it('refetches the history once for a burst of credits events', async () => {
    const { streams, count } = creditsApi();
    renderApp('/history');
    await vi.waitFor(() => expect(count('/api/v1/credits/ledger')).toBe(1));
    await vi.waitFor(() => expect(screen.getByTestId('live-status')).toHaveTextContent('Live'));
    // Read again once as the stream opens.
    await vi.waitFor(() => expect(count('/api/v1/credits/ledger')).toBe(2));
    for (let i = 0; i < 5; i++) streams[0]!.event(liveEvent('credits.spent', { balance: 50 - i }));
    await vi.waitFor(() => expect(count('/api/v1/credits/ledger')).toBe(3));
    await new Promise((r) => setTimeout(r, 400));
    expect(count('/api/v1/credits/ledger')).toBe(3);
    expect(count('/api/v1/credits/balance')).toBe(2);
  });

  it('shows the low-balance banner on every page once available credits reach an alert, and hides it above', async () => {
    const { streams, count } = creditsApi({ available: 50, thresholds: [20, 10] });
    renderApp('/history');
    await vi.waitFor(() => expect(screen.getByTestId('live-status')).toHaveTextContent('Live'));
    await vi.waitFor(() => expect(count('/api/v1/credits/alerts')).toBe(2));
    expect(screen.queryByTestId('low-balance-banner')).not.toBeInTheDocument();

    streams[0]!.event(liveEvent('credits.spent', { balance: 25 }));
    streams[0]!.event(liveEvent('credits.spent', { balance: 20 }));
    streams[0]!.event(liveEvent('balance.low', { balance: 20 }, { threshold: 20, available: 20 }));
    const banner = await screen.findByTestId('low-balance-banner');
    expect(banner).toHaveTextContent('You have 20 credits available, at or below your alert at 20 credits.');
    expect(within(banner).getByRole('link', { name: 'Buy credits' })).toHaveAttribute('href', '/credits');

    streams[0]!.event(liveEvent('credits.spent', { balance: 8 }));
    await vi.waitFor(() => expect(banner).toHaveTextContent('You have 8 credits available, at or below your alert at 10 credits.'));

    streams[0]!.event(liveEvent('credits.granted', { balance: 108 }, { kind: 'purchase', amount: 100 }));
    await vi.waitFor(() => expect(screen.queryByTestId('low-balance-banner')).not.toBeInTheDocument());
  });

  it('says the stream is off when the server refuses it', async () => {
    mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'GET /api/v1/billing/catalog': () => json(catalog),
      'GET /api/v1/billing/subscription': () => json({ subscription: null }),
      'GET /api/v1/credits/balance': () => json(balance),
      'GET /api/v1/credits/stream': () => problem(404, 'not_found', 'no such route'),
    });
    renderApp('/credits');
    await vi.waitFor(() => expect(screen.getByTestId('live-status')).toHaveTextContent('Not live'));
  });
});

describe('low-balance alert settings', () => {
  it('starts from the saved thresholds, shows the API’s refusal, and saves up to five', async () => {
    let saved: number[] = [100];
    const { requests } = mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'GET /api/v1/billing/catalog': () => json(catalog),
      'GET /api/v1/billing/subscription': () => json({ subscription: null }),
      'GET /api/v1/credits/balance': () => json({ ...balance, balance: 50, available: 50 }),
      'GET /api/v1/credits/alerts': () => json({ thresholds: saved, available: 50, below: saved.filter((t) => 50 <= t) }),
      'PUT /api/v1/credits/alerts': async (request) => {
        const { thresholds } = (await request.json()) as { thresholds: number[] };
        if (thresholds.some((t) => t > 1_000_000_000_000)) {
          return problem(422, 'validation_failed', 'a field is invalid', {
            errors: [{ field: 'thresholds', code: 'range', message: 'thresholds must be between 0 and 1000000000000' }],
          });
        }
        saved = [...thresholds].sort((a, b) => b - a);
        return json({ thresholds: saved, available: 50, below: saved.filter((t) => 50 <= t) });
      },
    });
    renderApp('/credits');
    const user = userEvent.setup();
    const form = await screen.findByRole('form', { name: 'Low-balance alerts' });
    // 50 available is below the saved 100: the banner says so.
    expect(await screen.findByTestId('low-balance-banner')).toHaveTextContent('at or below your alert at 100 credits');
    expect(within(form).getByLabelText('Alert 1 (credits)')).toHaveValue('100');

    await user.click(within(form).getByRole('button', { name: 'Add an alert' }));
    await user.type(within(form).getByLabelText('Alert 2 (credits)'), 'ten');
    await user.click(within(form).getByRole('button', { name: 'Save alerts' }));
    expect(within(form).getByText('Enter a whole number of credits, 0 or more.')).toBeInTheDocument();
    expect(requests.filter((r) => r.method === 'PUT')).toHaveLength(0);

    await user.clear(within(form).getByLabelText('Alert 2 (credits)'));
    await user.type(within(form).getByLabelText('Alert 2 (credits)'), '2000000000000');
    await user.click(within(form).getByRole('button', { name: 'Save alerts' }));
    expect(await within(form).findByRole('alert')).toHaveTextContent('Thresholds must be between 0 and 1000000000000');

    await user.clear(within(form).getByLabelText('Alert 1 (credits)'));
    await user.type(within(form).getByLabelText('Alert 1 (credits)'), '20');
    await user.clear(within(form).getByLabelText('Alert 2 (credits)'));
    await user.type(within(form).getByLabelText('Alert 2 (credits)'), '40');
    for (let i = 3; i <= 5; i++) {
      await user.click(within(form).getByRole('button', { name: 'Add an alert' }));
      await user.type(within(form).getByLabelText(`Alert ${i} (credits)`), String(i));
    }
    expect(within(form).getByRole('button', { name: 'Add an alert' })).toBeDisabled();
    await user.click(within(form).getByRole('button', { name: 'Remove alert 5' }));
    await user.click(within(form).getByRole('button', { name: 'Save alerts' }));
    expect(await within(form).findByText('Alerts saved: 40 credits, 20 credits, 4 credits, 3 credits.')).toBeInTheDocument();
    const put = requests.filter((r) => r.method === 'PUT').at(-1)!;
    expect(await put.json()).toEqual({ thresholds: [20, 40, 3, 4] });
    // Above every alert now: no banner.
    await vi.waitFor(() => expect(screen.queryByTestId('low-balance-banner')).not.toBeInTheDocument());
    expect(within(form).getByLabelText('Alert 1 (credits)')).toHaveValue('40');
  });
});

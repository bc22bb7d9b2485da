import { screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { balance, deferred, json, mockApi, problem, tokens, unavailable } from '../test/mockApi';
import { renderApp } from '../test/renderApp';

const signedIn = {
  'POST /api/v1/auth/refresh': () => json(tokens()),
  'POST /api/v1/example/estimate': () =>
    json({ feature: 'example.summarize', units: 1, credits_per_unit: 5, estimated_cost: 5 }),
  'GET /api/v1/credits/ledger': () => json({ entries: [], next_cursor: null }),
  'GET /api/v1/usage': () => json({ group_by: 'feature', from: '', to: '', total_credits: 0, buckets: [] }),
  'GET /api/v1/features': () =>
    json([{ key: 'example.summarize', name: 'Summarize', unit: '1,000 characters', credits_per_unit: 5, active: true }]),
};

const summary = (cost: number, after: number) =>
  json({
    summary: 'Short.',
    sentences_total: 2,
    sentences_kept: 1,
    estimated_cost: 5,
    cost,
    hold_id: '0191e2a4-0000-7000-8000-0000000000aa',
    transfer_id: null,
    balance: { balance: after, available: after, held: 0, debt: 0 },
  });

describe('example AI', () => {
  it('shows the estimate before running, then what was charged and the new balance', async () => {
    const run = deferred<Response>();
    mockApi({
      ...signedIn,
      'GET /api/v1/credits/balance': () => json({ ...balance, balance: 100, available: 100 }),
      'POST /api/v1/example/use-credits': () => run.promise,
    });
    renderApp('/example');
    const user = userEvent.setup();
    await user.type(await screen.findByLabelText('Text to summarise'), 'A sentence. Another one.');
    expect(await screen.findByText(/Estimated cost:/)).toHaveTextContent('Estimated cost: 5 credits at most (1 × 5 credits)');

    await user.click(screen.getByRole('button', { name: 'Summarise' }));
    expect(screen.getByRole('button', { name: 'Summarising…' })).toBeDisabled();
    run.resolve(summary(4, 96));

    expect(await screen.findByText('Short.')).toBeInTheDocument();
    expect(screen.getByText('Charged').nextElementSibling).toHaveTextContent('4 credits');
    expect(screen.getByText('New balance').nextElementSibling).toHaveTextContent('96 credits');
  });

  it('during an outage shows the balance as unavailable, with one retry', async () => {
    let down = true;
    mockApi({
      ...signedIn,
      'GET /api/v1/credits/balance': () => (down ? unavailable() : json({ ...balance, balance: 100, available: 100 })),
    });
    renderApp('/example');
    const user = userEvent.setup();
    expect(await screen.findByRole('alert')).toHaveTextContent('Some of this page could not load');
    expect(screen.getByTestId('example-available')).toHaveTextContent('Unavailable');
    down = false;
    await user.click(screen.getByRole('button', { name: 'Try again' }));
    await waitFor(() => expect(screen.getByTestId('example-available')).toHaveTextContent('100 credits'));
    expect(screen.queryByRole('alert')).not.toBeInTheDocument();
  });

  it('brings the result into view and gives it focus when it appears', async () => {
    // jsdom lays nothing out and has no scrollIntoView: record the calls.
    const scrolled: Element[] = [];
    const scrollIntoView = vi.fn(function (this: Element) {
      scrolled.push(this);
    });
    Element.prototype.scrollIntoView = scrollIntoView;
    try {
      mockApi({
        ...signedIn,
        'GET /api/v1/credits/balance': () => json({ ...balance, balance: 100, available: 100 }),
        'POST /api/v1/example/use-credits': () => summary(4, 96),
      });
      renderApp('/example');
      const user = userEvent.setup();
      await user.type(await screen.findByLabelText('Text to summarise'), 'A sentence. Another one.');
      await user.click(screen.getByRole('button', { name: 'Summarise' }));

      const region = await screen.findByRole('region', { name: 'Summary' });
      await waitFor(() => expect(region).toHaveFocus());
      expect(scrolled).toEqual([region]);
      expect(scrollIntoView).toHaveBeenCalledWith(expect.objectContaining({ block: 'start' }));
    } finally {
      delete (Element.prototype as { scrollIntoView?: unknown }).scrollIntoView;
    }
  });

  it('says clearly when there are too few credits, and links to buying more', async () => {
    mockApi({
      ...signedIn,
      'GET /api/v1/credits/balance': () => json(balance),
      'POST /api/v1/example/use-credits': () =>
        problem(402, 'insufficient_credits', 'insufficient credits: 0 available, 5 requested', { available: 0, requested: 5 }),
    });
    renderApp('/example');
    const user = userEvent.setup();
    await user.type(await screen.findByLabelText('Text to summarise'), 'A sentence.');
    await user.click(screen.getByRole('button', { name: 'Summarise' }));

    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('Not enough credits');
    expect(alert).toHaveTextContent('This summary needs up to 5 credits, but you have 0 credits available.');
    expect(screen.getAllByRole('link', { name: 'Buy credits' }).some((a) => a.getAttribute('href') === '/credits')).toBe(true);
  });

  it('retries with the same Idempotency-Key after a network error, and uses a new one for the next run', async () => {
    let calls = 0;
    const { requests } = mockApi({
      ...signedIn,
      'GET /api/v1/credits/balance': () => json({ ...balance, balance: 100, available: 100 }),
      'POST /api/v1/example/use-credits': () => {
        calls += 1;
        if (calls === 1) throw new TypeError('Failed to fetch');
        return summary(5, 100 - 5 * (calls - 1));
      },
    });
    renderApp('/example');
    const user = userEvent.setup();
    await user.type(await screen.findByLabelText('Text to summarise'), 'A sentence.');
    await user.click(screen.getByRole('button', { name: 'Summarise' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('Could not reach Tollgate');

    await user.click(screen.getByRole('button', { name: 'Summarise' }));
    expect(await screen.findByText('Short.')).toBeInTheDocument();
    await user.click(screen.getByRole('button', { name: 'Summarise' }));
    await waitFor(() => expect(calls).toBe(3));

    const keys = requests
      .filter((r) => r.url.endsWith('/example/use-credits'))
      .map((r) => r.headers.get('idempotency-key'));
    expect(keys).toHaveLength(3);
    expect(keys[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(keys[1]).toBe(keys[0]);
    expect(keys[2]).not.toBe(keys[0]);
  });
});

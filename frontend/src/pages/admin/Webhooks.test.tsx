import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { json, mockApi, problem, tokens, user } from '../../test/mockApi';
import { renderApp } from '../../test/renderApp';

const admin = { ...tokens(), user: { ...user, role: 'admin' as const } };

const endpoint = {
  id: '0191e2a4-0000-7000-8000-0000000000e1',
  url: 'https://api.example.com/hooks',
  description: 'Production',
  events: ['*'],
  enabled: true,
  disabled_at: null as string | null,
  failing_since: null as string | null,
  previous_secret_expires_at: null as string | null,
  created_at: '2026-11-24T10:00:00Z',
  updated_at: '2026-11-24T10:00:00Z',
};

const base = {
  'POST /api/v1/auth/refresh': () => json(admin),
  'GET /api/v1/customers': () => json({ data: [], next_cursor: null }),
  'GET /api/v1/admin/server-keys': () => json([]),
  'GET /api/v1/admin/reconcile': () => json({ ok: true, checked_at: '2026-11-24T10:00:00Z', checks: [] }),
  'GET /api/v1/admin/stripe-events': () => json({ events: [], next_cursor: null }),
  'GET /api/v1/admin/models': () => json([]),
};

function attempt(n: number, extra: Record<string, unknown> = {}) {
  return {
    id: `0191e2a4-0000-7000-8000-00000000a00${n}`,
    delivery_id: '0191e2a4-0000-7000-8000-0000000000d1',
    event_id: 'evt_01JEXAMPLE0000000000000001',
    event_type: 'credits.spent',
    attempt: n,
    status_code: 500,
    succeeded: false,
    error: 'HTTP 500',
    attempted_at: '2026-11-24T10:05:00Z',
    duration_ms: 12,
    delivery_status: 'pending',
    ...extra,
  };
}

describe('admin webhooks', () => {
  it('adds an endpoint for all events and shows its secret once, with a copy button', async () => {
    let list: (typeof endpoint)[] = [];
    const { requests } = mockApi({
      ...base,
      'GET /api/v1/webhook-endpoints': () => json({ data: list }),
      'POST /api/v1/webhook-endpoints': () => {
        list = [endpoint];
        return json({ ...endpoint, secret: 'whsec_c2VjcmV0' }, 201);
      },
    });
    renderApp('/admin');
    const u = userEvent.setup();
    const writeText = vi.spyOn(navigator.clipboard, 'writeText').mockResolvedValue();

    const region = await screen.findByRole('region', { name: 'Webhooks' });
    expect(await within(region).findByText('No webhook endpoints yet.')).toBeInTheDocument();
    const form = within(region).getByRole('form', { name: 'Add a webhook endpoint' });
    // "All events" is the default: the types are there but cannot be ticked.
    expect(within(form).getByRole('radio', { name: /All events/ })).toBeChecked();
    expect(within(form).getAllByRole('checkbox')).toHaveLength(14);
    expect(within(form).getByRole('checkbox', { name: 'credits.spent' })).toBeDisabled();
    await u.type(within(form).getByLabelText('Endpoint URL'), 'https://api.example.com/hooks');
    await u.type(within(form).getByLabelText('Description (optional)'), 'Production');
    await u.click(within(form).getByRole('button', { name: 'Add endpoint' }));

    expect(await within(region).findByLabelText('Signing secret')).toHaveValue('whsec_c2VjcmV0');
    expect(within(region).getByText('It will not be shown again.')).toBeInTheDocument();
    const sent = requests.find((r) => r.method === 'POST' && r.url.endsWith('/webhook-endpoints'));
    expect(await sent?.json()).toEqual({ url: 'https://api.example.com/hooks', events: ['*'], description: 'Production' });
    await u.click(within(region).getByRole('button', { name: 'Copy' }));
    expect(writeText).toHaveBeenCalledWith('whsec_c2VjcmV0');

    const endpoints = await within(region).findByRole('list', { name: 'Webhook endpoints' });
    expect(endpoints).toHaveTextContent('https://api.example.com/hooks');
    expect(endpoints).toHaveTextContent('All events');
    expect(endpoints).toHaveTextContent('Enabled');
    expect(endpoints).not.toHaveTextContent('whsec_');
    await u.click(within(region).getByRole('button', { name: 'Done' }));
    expect(document.body).not.toHaveTextContent('whsec_c2VjcmV0');
  });

  it('sends only the ticked types, and shows the API’s refusals next to their fields', async () => {
    const { requests } = mockApi({
      ...base,
      'POST /api/v1/webhook-endpoints': () =>
        problem(422, 'validation_failed', '1 field is invalid', {
          errors: [{ field: 'url', code: 'url', message: 'url must be an http(s) URL' }],
        }),
    });
    renderApp('/admin');
    const u = userEvent.setup();
    const form = await screen.findByRole('form', { name: 'Add a webhook endpoint' });
    await u.type(within(form).getByLabelText('Endpoint URL'), 'ftp://example.com');
    await u.click(within(form).getByRole('radio', { name: /Only these/ }));
    await u.click(within(form).getByRole('checkbox', { name: 'balance.low' }));
    await u.click(within(form).getByRole('checkbox', { name: 'credits.spent' }));
    await u.click(within(form).getByRole('button', { name: 'Add endpoint' }));
    expect(await within(form).findByText('Url must be an http(s) URL')).toBeInTheDocument();
    expect(within(form).getByLabelText('Endpoint URL')).toHaveAccessibleDescription('Url must be an http(s) URL');
    const sent = requests.find((r) => r.method === 'POST' && r.url.endsWith('/webhook-endpoints'));
    // In the form's order, whatever order they were ticked in; no description is null.
    expect(await sent?.json()).toEqual({ url: 'ftp://example.com', events: ['credits.spent', 'balance.low'], description: null });
  });

  it('disables and enables, rotates the secret after confirmation, and deletes after confirmation', async () => {
    let current: typeof endpoint | null = { ...endpoint };
    const { requests } = mockApi({
      ...base,
      'GET /api/v1/webhook-endpoints': () => json({ data: current ? [current] : [] }),
      [`PATCH /api/v1/webhook-endpoints/${endpoint.id}`]: async (request) => {
        const body = (await request.json()) as { enabled: boolean };
        current = { ...endpoint, ...current, enabled: body.enabled };
        return json(current);
      },
      [`POST /api/v1/webhook-endpoints/${endpoint.id}/rotate-secret`]: () => {
        current = { ...endpoint, ...current, previous_secret_expires_at: '2026-11-25T10:00:00Z' };
        return json({ ...current, secret: 'whsec_bmV3' });
      },
      [`DELETE /api/v1/webhook-endpoints/${endpoint.id}`]: () => {
        current = null;
        return new Response(null, { status: 204 });
      },
    });
    renderApp('/admin');
    const u = userEvent.setup();
    const list = await screen.findByRole('list', { name: 'Webhook endpoints' });

    await u.click(within(list).getByRole('button', { name: 'Disable https://api.example.com/hooks' }));
    expect(await within(list).findByText('Disabled')).toBeInTheDocument();
    await u.click(within(list).getByRole('button', { name: 'Enable https://api.example.com/hooks' }));
    expect(await within(list).findByText('Enabled')).toBeInTheDocument();
    const patches = requests.filter((r) => r.method === 'PATCH');
    expect(await Promise.all(patches.map((r) => r.json()))).toEqual([{ enabled: false }, { enabled: true }]);

    await u.click(within(list).getByRole('button', { name: 'Rotate the secret of https://api.example.com/hooks' }));
    let dialog = screen.getByRole('dialog', { name: 'Rotate the signing secret?' });
    expect(dialog).toHaveTextContent('keeps signing beside it for 24 hours');
    await u.click(within(dialog).getByRole('button', { name: 'Rotate secret' }));
    expect(await screen.findByLabelText('Signing secret')).toHaveValue('whsec_bmV3');
    expect(screen.getByText('New signing secret: https://api.example.com/hooks')).toBeInTheDocument();
    expect(await within(list).findByText(/the previous secret also signs until/)).toBeInTheDocument();

    await u.click(within(list).getByRole('button', { name: 'Delete https://api.example.com/hooks' }));
    dialog = screen.getByRole('dialog', { name: 'Delete this webhook endpoint?' });
    await u.click(within(dialog).getByRole('button', { name: 'Cancel' }));
    expect(requests.some((r) => r.method === 'DELETE')).toBe(false);
    await u.click(within(list).getByRole('button', { name: 'Delete https://api.example.com/hooks' }));
    dialog = screen.getByRole('dialog', { name: 'Delete this webhook endpoint?' });
    await u.click(within(dialog).getByRole('button', { name: 'Delete endpoint' }));
    expect(await screen.findByText('Endpoint https://api.example.com/hooks deleted. Nothing more is sent to it.')).toBeInTheDocument();
    expect(await screen.findByText('No webhook endpoints yet.')).toBeInTheDocument();
    await waitFor(() => expect(requests.filter((r) => r.method === 'DELETE')).toHaveLength(1));
  });

  it('lists an endpoint’s deliveries (status code, time, error) and redelivers an event', async () => {
    let attempts = [attempt(2, { status_code: null, error: 'timed out after 10 s' }), attempt(1)];
    const { requests } = mockApi({
      ...base,
      'GET /api/v1/webhook-endpoints': () => json({ data: [endpoint] }),
      [`GET /api/v1/webhook-endpoints/${endpoint.id}/deliveries`]: () => json({ data: attempts, next_cursor: null }),
      [`POST /api/v1/webhook-endpoints/${endpoint.id}/events/evt_01JEXAMPLE0000000000000001/redeliver`]: () => {
        attempts = [attempt(1, { id: 'a-new', status_code: 200, succeeded: true, error: null, delivery_status: 'succeeded' }), ...attempts];
        return json({
          id: '0191e2a4-0000-7000-8000-0000000000d2',
          endpoint_id: endpoint.id,
          event_id: 'evt_01JEXAMPLE0000000000000001',
          event_type: 'credits.spent',
          status: 'pending',
          attempts: 0,
          created_at: '2026-11-24T11:00:00Z',
        });
      },
    });
    renderApp('/admin');
    const u = userEvent.setup();
    const list = await screen.findByRole('list', { name: 'Webhook endpoints' });
    await u.click(within(list).getByRole('button', { name: 'Show deliveries to https://api.example.com/hooks' }));
    const table = await within(list).findByRole('table', { name: /Delivery attempts to https:\/\/api.example.com\/hooks/ });
    const rows = within(table).getAllByRole('row').slice(1);
    expect(rows).toHaveLength(2);
    expect(rows[0]).toHaveTextContent('credits.spent');
    expect(rows[0]).toHaveTextContent('timed out after 10 s');
    expect(rows[0]).toHaveTextContent('Failed, will retry');
    expect(rows[1]).toHaveTextContent('500');
    expect(rows[1]).toHaveTextContent('HTTP 500');
    expect(within(rows[1]!).getByRole('time')).toHaveAttribute('datetime', '2026-11-24T10:05:00Z');

    await u.click(within(rows[1]!).getByRole('button', { name: 'Redeliver credits.spent evt_01JEXAMPLE0000000000000001' }));
    expect(await within(list).findByText('Event evt_01JEXAMPLE0000000000000001 queued for delivery again.')).toBeInTheDocument();
    await waitFor(() => expect(within(table).getAllByRole('row')).toHaveLength(4));
    expect(within(table).getAllByRole('row')[1]).toHaveTextContent('Delivered');
    expect(requests.filter((r) => r.url.includes('/redeliver'))).toHaveLength(1);
  });
});

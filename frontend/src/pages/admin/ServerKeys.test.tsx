import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { json, mockApi, problem, tokens, user } from '../../test/mockApi';
import { renderApp } from '../../test/renderApp';

const admin = { ...tokens(), user: { ...user, role: 'admin' as const } };

const key = {
  id: '0191e2a4-0000-7000-8000-0000000000s1',
  name: 'production backend',
  prefix: 'tg_sk_Xk3vQ9',
  scopes: ['customers:write', 'credits:spend'],
  created_at: '2026-11-24T10:00:00Z',
  last_used_at: '2026-11-24T11:00:00Z',
};

const base = {
  'POST /api/v1/auth/refresh': () => json(admin),
  'GET /api/v1/customers': () => json({ data: [], next_cursor: null }),
  'GET /api/v1/admin/reconcile': () => json({ ok: true, checked_at: '2026-11-24T10:00:00Z', checks: [] }),
  'GET /api/v1/admin/stripe-events': () => json({ events: [], next_cursor: null }),
  'GET /api/v1/admin/models': () => json([]),
};

describe('admin server keys', () => {
  it('creates a key with the ticked scopes and shows its secret once, with a copy button', async () => {
    let list = [] as (typeof key)[];
    const { requests } = mockApi({
      ...base,
      'GET /api/v1/admin/server-keys': () => json(list),
      'POST /api/v1/admin/server-keys': () => {
        list = [key];
        return json({ ...key, secret: 'tg_sk_secret_value' }, 201);
      },
    });
    renderApp('/admin');
    const u = userEvent.setup();
    const writeText = vi.spyOn(navigator.clipboard, 'writeText').mockResolvedValue();

    const region = await screen.findByRole('region', { name: 'Server keys' });
    expect(await within(region).findByText('There are no server keys.')).toBeInTheDocument();
    const form = within(region).getByRole('form', { name: 'Create a server key' });
    expect(within(form).getAllByRole('checkbox')).toHaveLength(8);
    await u.type(within(form).getByLabelText('Key name'), 'production backend');
    // Ticked out of order, sent in the form's order.
    await u.click(within(form).getByRole('checkbox', { name: /\(credits:spend\)/ }));
    await u.click(within(form).getByRole('checkbox', { name: /\(customers:write\)/ }));
    await u.click(within(form).getByRole('button', { name: 'Create server key' }));

    expect(await within(region).findByLabelText('Secret of the new server key')).toHaveValue('tg_sk_secret_value');
    expect(within(region).getByText('It will not be shown again.')).toBeInTheDocument();
    const sent = requests.find((r) => r.method === 'POST' && r.url.endsWith('/admin/server-keys'));
    expect(await sent?.json()).toEqual({ name: 'production backend', scopes: ['customers:write', 'credits:spend'] });

    await u.click(within(region).getByRole('button', { name: 'Copy' }));
    expect(writeText).toHaveBeenCalledWith('tg_sk_secret_value');
    expect(await within(region).findByText('Copied to the clipboard.')).toBeInTheDocument();

    const keys = await within(region).findByRole('list', { name: 'Server keys' });
    expect(keys).toHaveTextContent('production backend');
    expect(keys).toHaveTextContent('tg_sk_Xk3vQ9…');
    expect(keys).toHaveTextContent('customers:write');
    expect(keys).toHaveTextContent('last used');
    expect(keys).not.toHaveTextContent('tg_sk_secret_value');

    // Once dismissed, the secret is gone from the page.
    await u.click(within(region).getByRole('button', { name: 'Done' }));
    expect(screen.queryByDisplayValue('tg_sk_secret_value')).not.toBeInTheDocument();
    expect(document.body).not.toHaveTextContent('tg_sk_secret_value');
  });

  it('shows a refused scope list next to the scopes', async () => {
    mockApi({
      ...base,
      'GET /api/v1/admin/server-keys': () => json([]),
      'POST /api/v1/admin/server-keys': () =>
        problem(422, 'validation_failed', '1 field is invalid', {
          errors: [{ field: 'scopes', code: 'length', message: 'choose at least one scope' }],
        }),
    });
    renderApp('/admin');
    const u = userEvent.setup();
    const form = await screen.findByRole('form', { name: 'Create a server key' });
    await u.type(within(form).getByLabelText('Key name'), 'empty');
    await u.click(within(form).getByRole('button', { name: 'Create server key' }));
    expect(await within(form).findByText('Choose at least one scope')).toBeInTheDocument();
    expect(within(form).getByRole('group', { name: 'Scopes' })).toHaveAccessibleDescription('Choose at least one scope');
  });

  it('revokes a key only after confirmation', async () => {
    let list = [key];
    const { requests } = mockApi({
      ...base,
      'GET /api/v1/admin/server-keys': () => json(list),
      [`DELETE /api/v1/admin/server-keys/${key.id}`]: () => {
        list = [];
        return new Response(null, { status: 204 });
      },
    });
    renderApp('/admin');
    const u = userEvent.setup();

    const keys = await screen.findByRole('list', { name: 'Server keys' });
    await u.click(within(keys).getByRole('button', { name: 'Revoke production backend' }));
    let dialog = screen.getByRole('dialog', { name: 'Revoke this server key?' });
    expect(dialog).toHaveTextContent('“production backend” (tg_sk_Xk3vQ9…) stops working at once');
    await u.click(within(dialog).getByRole('button', { name: 'Cancel' }));
    expect(requests.some((r) => r.method === 'DELETE')).toBe(false);

    await u.click(within(keys).getByRole('button', { name: 'Revoke production backend' }));
    dialog = screen.getByRole('dialog', { name: 'Revoke this server key?' });
    await u.click(within(dialog).getByRole('button', { name: 'Revoke key' }));
    expect(await screen.findByText('Server key “production backend” revoked. It no longer works.')).toBeInTheDocument();
    expect(await screen.findByText('There are no server keys.')).toBeInTheDocument();
    await waitFor(() => expect(requests.filter((r) => r.method === 'DELETE')).toHaveLength(1));
  });
});

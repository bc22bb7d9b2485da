import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import { json, mockApi, problem, tokens, unavailable } from '../test/mockApi';
import { renderApp } from '../test/renderApp';

const key = {
  id: '0191e2a4-0000-7000-8000-0000000000k1',
  name: 'backend',
  prefix: 'tg_Xk3vQ9aB',
  scopes: ['credits:read', 'credits:spend'],
  created_at: '2026-11-24T10:00:00Z',
  last_used_at: null,
};

describe('API keys', () => {
  it('during an outage says the keys did not load (not that there are none), and tries again', async () => {
    let down = true;
    mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'GET /api/v1/api-keys': () => (down ? unavailable() : json([key])),
    });
    renderApp('/api-keys');
    const user = userEvent.setup();

    expect(await screen.findByRole('alert')).toHaveTextContent('Some of this page could not load');
    expect(screen.getByText('Could not load your keys.')).toBeInTheDocument();
    expect(screen.queryByText('You have no API keys.')).not.toBeInTheDocument();

    down = false;
    await user.click(screen.getByRole('button', { name: 'Try again' }));
    expect(await screen.findByRole('list', { name: 'API keys' })).toHaveTextContent('backend');
  });

  it('shows a refused name next to the field', async () => {
    mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'GET /api/v1/api-keys': () => json([]),
      'POST /api/v1/api-keys': () =>
        problem(422, 'validation_failed', '1 field is invalid', {
          errors: [{ field: 'name', code: 'length', message: 'name must be 1 to 100 characters' }],
        }),
    });
    renderApp('/api-keys');
    const user = userEvent.setup();
    expect(await screen.findByText('You have no API keys.')).toBeInTheDocument();
    await user.click(screen.getByRole('button', { name: 'Create key' }));
    await waitFor(() =>
      expect(screen.getByLabelText('Name')).toHaveAccessibleDescription(
        /Name must be 1 to 100 characters/,
      ),
    );
  });

  it('shows the secret once with a copy button, and revokes after confirmation', async () => {
    let list = [] as (typeof key)[];
    const { requests } = mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'GET /api/v1/api-keys': () => json(list),
      'POST /api/v1/api-keys': () => {
        list = [key];
        return json({ ...key, secret: 'tg_secret_value' }, 201);
      },
      [`DELETE /api/v1/api-keys/${key.id}`]: () => {
        list = [];
        return new Response(null, { status: 204 });
      },
    });
    renderApp('/api-keys');
    const user = userEvent.setup();
    const writeText = vi.spyOn(navigator.clipboard, 'writeText').mockResolvedValue();

    await user.type(await screen.findByLabelText('Name'), 'backend');
    await user.click(screen.getByRole('button', { name: 'Create key' }));
    expect(await screen.findByLabelText('Secret of the new key')).toHaveValue('tg_secret_value');
    expect(screen.getByText('It will not be shown again.')).toBeInTheDocument();
    expect(await requests.find((r) => r.method === 'POST' && r.url.endsWith('/api-keys'))?.json()).toEqual({
      name: 'backend',
      scopes: ['credits:read', 'credits:spend'],
    });

    await user.click(screen.getByRole('button', { name: 'Copy' }));
    expect(writeText).toHaveBeenCalledWith('tg_secret_value');
    expect(await screen.findByText('Copied to the clipboard.')).toBeInTheDocument();

    const keys = await screen.findByRole('list', { name: 'API keys' });
    await user.click(within(keys).getByRole('button', { name: 'Revoke backend' }));
    const dialog = screen.getByRole('dialog', { name: 'Revoke this key?' });
    expect(requests.some((r) => r.method === 'DELETE')).toBe(false);
    await user.click(within(dialog).getByRole('button', { name: 'Revoke key' }));
    expect(await screen.findByText('Key “backend” revoked. It no longer works.')).toBeInTheDocument();
    expect(await screen.findByText('You have no API keys.')).toBeInTheDocument();
  });
});

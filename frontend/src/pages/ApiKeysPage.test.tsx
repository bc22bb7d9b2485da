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

const model = {
  id: 'gpt-4o-mini',
  upstream_model: 'gpt-4o-mini-2024-07-18',
  input_per_million: 150,
  cached_input_per_million: 75,
  output_per_million: 600,
  max_output_tokens: 16384,
  active: true,
  tokenizer: 'o200k_base',
  created_at: '2026-11-24T10:00:00Z',
  updated_at: '2026-11-24T10:00:00Z',
};

describe('API keys', () => {
  it('during an outage says the keys did not load (not that there are none), and tries again', async () => {
    let down = true;
    mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'GET /api/v1/api-keys': () => (down ? unavailable() : json([key])),
      'GET /api/v1/models': () => (down ? unavailable() : json([model])),
    });
    renderApp('/api-keys');
    const user = userEvent.setup();

    expect(await screen.findByRole('alert')).toHaveTextContent('Some of this page could not load');
    expect(screen.getByText('Could not load your keys.')).toBeInTheDocument();
    expect(screen.queryByText('You have no API keys.')).not.toBeInTheDocument();
    expect(await screen.findByText('Could not load the models.')).toBeInTheDocument();
    expect(screen.getAllByRole('alert')).toHaveLength(1);

    down = false;
    await user.click(screen.getByRole('button', { name: 'Try again' }));
    expect(await screen.findByRole('list', { name: 'API keys' })).toHaveTextContent('backend');
    expect(await screen.findByRole('table', { name: /Models you can call/ })).toHaveTextContent('gpt-4o-mini');
  });

  it('shows a refused name next to the field', async () => {
    mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'GET /api/v1/api-keys': () => json([]),
      'GET /api/v1/models': () => json([]),
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
      'GET /api/v1/models': () => json([]),
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

  it('shows how to use the OpenAI SDKs with this origin’s gateway, and the models with their prices', async () => {
    mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'GET /api/v1/api-keys': () => json([key]),
      'GET /api/v1/models': () =>
        json([
          model,
          {
            ...model,
            id: 'claude-haiku',
            input_per_million: 1000,
            cached_input_per_million: 100,
            output_per_million: 5000,
            max_output_tokens: 8192,
          },
        ]),
    });
    renderApp('/api-keys');
    const user = userEvent.setup();
    const writeText = vi.spyOn(navigator.clipboard, 'writeText').mockResolvedValue();
    const section = await screen.findByRole('region', { name: 'Use with the OpenAI SDKs' });
    const base = `${window.location.origin}/gateway/v1`;

    expect(section).toHaveTextContent(`Base URL: ${base}`);
    expect(section).toHaveTextContent(`${base}/models`);
    expect(section).toHaveTextContent('credits:spend');
    const python = within(section).getByLabelText('Python example');
    // The first model on the rate card is the examples' model.
    await waitFor(() => expect(python).toHaveTextContent('model="gpt-4o-mini"'));
    expect(python.textContent).toContain('from openai import OpenAI');
    expect(python.textContent).toContain(`base_url="${base}",\n    api_key="tg_YOUR_API_KEY",`);
    const node = within(section).getByLabelText('Node.js example');
    expect(node.textContent).toContain(`new OpenAI({\n  baseURL: "${base}",\n  apiKey: "tg_YOUR_API_KEY",\n});`);
    const curl = within(section).getByLabelText('curl example');
    expect(curl.textContent).toContain(`curl '${base}/chat/completions'`);
    expect(curl.textContent).toContain(`-H 'Authorization: Bearer tg_YOUR_API_KEY'`);

    // Another model on offer can be chosen for the examples.
    await user.selectOptions(within(section).getByLabelText('Model in the examples'), 'claude-haiku');
    expect(python).toHaveTextContent('model="claude-haiku"');
    expect(node).toHaveTextContent('model: "claude-haiku"');
    expect(curl).toHaveTextContent('"model":"claude-haiku"');

    await user.click(within(section).getByRole('button', { name: 'Copy Python example' }));
    expect(writeText).toHaveBeenCalledWith(python.textContent);
    expect(await within(section).findByText('Python example copied to the clipboard.')).toBeInTheDocument();

    const prices = within(section).getByRole('table', { name: /Models you can call and their prices, in credits per 1M tokens/ });
    const rows = within(prices).getAllByRole('row');
    expect(rows.map((r) => within(r).queryAllByRole('cell').map((c) => c.textContent))).toEqual([
      [],
      ['gpt-4o-miniup to 16,384 output tokens', '150', '75', '600'],
      ['claude-haikuup to 8,192 output tokens', '1,000', '100', '5,000'],
    ]);
  });

  it('puts a key just created in the examples while its secret is shown, and only a key that can spend', async () => {
    let created = { ...key, secret: 'tg_new_secret' };
    mockApi({
      'POST /api/v1/auth/refresh': () => json(tokens()),
      'GET /api/v1/api-keys': () => json([]),
      'GET /api/v1/models': () => json([]),
      'POST /api/v1/api-keys': () => json(created, 201),
    });
    renderApp('/api-keys');
    const user = userEvent.setup();
    const section = await screen.findByRole('region', { name: 'Use with the OpenAI SDKs' });
    expect(await within(section).findByText(/No models are available yet/)).toBeInTheDocument();
    // With no model on the rate card, the examples name a common one, and there is nothing to choose.
    expect(within(section).getByLabelText('Python example')).toHaveTextContent('model="gpt-4o-mini"');
    expect(within(section).queryByLabelText('Model in the examples')).not.toBeInTheDocument();

    await user.type(screen.getByLabelText('Name'), 'backend');
    await user.click(screen.getByRole('button', { name: 'Create key' }));
    expect(await screen.findByLabelText('Secret of the new key')).toHaveValue('tg_new_secret');
    expect(section).toHaveTextContent('The examples use the key “backend” you just created.');
    for (const name of ['Python example', 'Node.js example', 'curl example']) {
      expect(within(section).getByLabelText(name)).toHaveTextContent('tg_new_secret');
      expect(within(section).getByLabelText(name)).not.toHaveTextContent('tg_YOUR_API_KEY');
    }

    // Done: the secret leaves the page, examples included.
    await user.click(screen.getByRole('button', { name: 'Done' }));
    expect(document.body).not.toHaveTextContent('tg_new_secret');
    expect(within(section).getByLabelText('curl example')).toHaveTextContent('Bearer tg_YOUR_API_KEY');

    // A read-only key would be refused by the gateway: the examples keep the placeholder and say why.
    created = { ...key, scopes: ['credits:read'], secret: 'tg_read_only' };
    await user.type(screen.getByLabelText('Name'), 'backend');
    await user.click(screen.getByRole('checkbox', { name: /credits:spend/ }));
    await user.click(screen.getByRole('button', { name: 'Create key' }));
    expect(await screen.findByLabelText('Secret of the new key')).toHaveValue('tg_read_only');
    expect(section).toHaveTextContent('The key “backend” cannot spend credits, so the gateway would refuse it');
    expect(within(section).getByLabelText('Python example')).not.toHaveTextContent('tg_read_only');
    expect(within(section).getByLabelText('Python example')).toHaveTextContent('api_key="tg_YOUR_API_KEY"');
  });
});

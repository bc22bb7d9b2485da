import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import { json, mockApi, problem, tokens, user } from '../../test/mockApi';
import { renderApp } from '../../test/renderApp';

const admin = { ...tokens(), user: { ...user, role: 'admin' as const } };

function model(id: string, extra: Record<string, unknown> = {}) {
  return {
    id,
    upstream_model: id,
    input_per_million: 150,
    cached_input_per_million: 75,
    output_per_million: 600,
    max_output_tokens: 16384,
    active: true,
    tokenizer: 'o200k_base',
    created_at: '2026-11-24T10:00:00Z',
    updated_at: '2026-11-24T10:00:00Z',
    ...extra,
  };
}

const base = {
  'POST /api/v1/auth/refresh': () => json(admin),
  'GET /api/v1/customers': () => json({ data: [], next_cursor: null }),
  'GET /api/v1/admin/server-keys': () => json([]),
  'GET /api/v1/admin/reconcile': () => json({ ok: true, checked_at: '2026-11-24T10:00:00Z', checks: [] }),
  'GET /api/v1/admin/stripe-events': () => json({ events: [], next_cursor: null }),
};

async function modelsRegion() {
  return screen.findByRole('region', { name: 'Models' });
}

describe('admin models', () => {
  it('lists every model, inactive ones too, and adds one with the fields given', async () => {
    let list = [model('gpt-4o-mini'), model('old-model', { active: false, tokenizer: 'cl100k_base' })];
    const { requests } = mockApi({
      ...base,
      'GET /api/v1/admin/models': () => json(list),
      'POST /api/v1/models': async (request) => {
        const body = (await request.json()) as { id: string };
        const created = model(body.id, { ...body, upstream_model: 'claude-3-5-haiku-latest', tokenizer: 'bytes' });
        list = [...list, created];
        return json(created, 201);
      },
    });
    renderApp('/admin');
    const u = userEvent.setup();
    const region = await modelsRegion();

    const items = await within(region).findByRole('list', { name: 'Models' });
    expect(within(items).getAllByRole('listitem')).toHaveLength(2);
    const old = within(items).getAllByRole('listitem')[1]!;
    expect(old).toHaveTextContent('old-modelInactive');
    expect(old).toHaveTextContent('Input 150 · cached input 75 · output 600 credits per 1M tokens');
    expect(old).toHaveTextContent('tokenizer cl100k_base');
    expect(old).toHaveTextContent('up to 16,384 output tokens');

    const form = within(region).getByRole('form', { name: 'Add a model' });
    await u.type(within(form).getByLabelText('Model id'), 'claude-haiku');
    await u.type(within(form).getByLabelText('Upstream model'), 'claude-3-5-haiku-latest');
    await u.type(within(form).getByLabelText('Input price'), '1000');
    await u.type(within(form).getByLabelText('Cached input price'), '100');
    await u.type(within(form).getByLabelText('Output price'), '5000');
    await u.type(within(form).getByLabelText('Max output tokens'), '8192');
    await u.click(within(form).getByRole('button', { name: 'Add model' }));

    expect(await within(form).findByText('Model “claude-haiku” added.')).toBeInTheDocument();
    const sent = requests.find((r) => r.method === 'POST' && r.url.endsWith('/api/v1/models'));
    expect(await sent?.json()).toEqual({
      id: 'claude-haiku',
      upstream_model: 'claude-3-5-haiku-latest',
      input_per_million: 1000,
      cached_input_per_million: 100,
      output_per_million: 5000,
      max_output_tokens: 8192,
      active: true,
    });
    // The form is empty again, and the list has the new model.
    expect(within(form).getByLabelText('Model id')).toHaveValue('');
    await waitFor(() => expect(within(items).getAllByRole('listitem')).toHaveLength(3));
    expect(within(items).getAllByRole('listitem')[2]).toHaveTextContent('claude-haikuActive');
    expect(within(items).getAllByRole('listitem')[2]).toHaveTextContent('Upstream claude-3-5-haiku-latest · tokenizer bytes');
  });

  it('leaves out the optional fields left empty, and asks for the required ones before sending', async () => {
    const { requests } = mockApi({
      ...base,
      'GET /api/v1/admin/models': () => json([]),
      'POST /api/v1/models': async (request) => json(model('m1', (await request.json()) as Record<string, unknown>), 201),
    });
    renderApp('/admin');
    const u = userEvent.setup();
    const region = await modelsRegion();
    expect(await within(region).findByText('There are no models yet.')).toBeInTheDocument();
    const form = within(region).getByRole('form', { name: 'Add a model' });

    await u.click(within(form).getByRole('button', { name: 'Add model' }));
    expect(within(form).getByLabelText('Model id')).toHaveAccessibleDescription(/Enter the id clients will send as “model”\./);
    expect(within(form).getByLabelText('Input price')).toHaveAccessibleDescription(/Enter the price of input tokens/);
    expect(within(form).getByLabelText('Output price')).toHaveAttribute('aria-invalid', 'true');
    expect(within(form).getByLabelText('Max output tokens')).toHaveAttribute('aria-invalid', 'true');
    expect(within(form).getByLabelText('Cached input price')).toHaveAttribute('aria-invalid', 'false');
    expect(requests.some((r) => r.method === 'POST' && r.url.endsWith('/models'))).toBe(false);

    await u.type(within(form).getByLabelText('Model id'), 'm1');
    await u.type(within(form).getByLabelText('Input price'), '0');
    await u.type(within(form).getByLabelText('Output price'), '0');
    await u.type(within(form).getByLabelText('Max output tokens'), '100');
    await u.click(within(form).getByLabelText(/^Active/));
    await u.click(within(form).getByRole('button', { name: 'Add model' }));
    expect(await within(form).findByText('Model “m1” added (inactive).')).toBeInTheDocument();
    const sent = requests.find((r) => r.method === 'POST' && r.url.endsWith('/api/v1/models'));
    expect(await sent?.json()).toEqual({
      id: 'm1',
      input_per_million: 0,
      output_per_million: 0,
      max_output_tokens: 100,
      active: false,
    });
  });

  it('shows the problem’s detail, each field’s error beside it, and the errors no field shows', async () => {
    let attempt = 0;
    mockApi({
      ...base,
      'GET /api/v1/admin/models': () => json([model('gpt-4o-mini')]),
      'POST /api/v1/models': () => {
        attempt += 1;
        return attempt === 1
          ? problem(422, 'validation_failed', '3 fields are invalid', {
              errors: [
                { field: 'input_per_million', code: 'range', message: 'input_per_million must be 0 or more' },
                { field: 'max_output_tokens', code: 'range', message: 'max_output_tokens must be 1 to 1000000' },
                { field: 'pricing', code: 'too_dear', message: 'a call could cost more than a wallet can hold' },
              ],
            })
          : problem(409, 'model_exists', 'a model with id gpt-4o-mini exists');
      },
    });
    renderApp('/admin');
    const u = userEvent.setup();
    const region = await modelsRegion();
    const form = within(region).getByRole('form', { name: 'Add a model' });
    await u.type(within(form).getByLabelText('Model id'), 'gpt-4o-mini');
    await u.type(within(form).getByLabelText('Input price'), '-1');
    await u.type(within(form).getByLabelText('Output price'), '600');
    await u.type(within(form).getByLabelText('Max output tokens'), '0');
    await u.click(within(form).getByRole('button', { name: 'Add model' }));

    const alert = await within(form).findByRole('alert');
    expect(alert).toHaveTextContent('3 fields are invalid');
    expect(alert).toHaveTextContent('A call could cost more than a wallet can hold');
    expect(within(form).getByLabelText('Input price')).toHaveAccessibleDescription(/Input_per_million must be 0 or more/);
    expect(within(form).getByLabelText('Input price')).toHaveAttribute('aria-invalid', 'true');
    expect(within(form).getByLabelText('Max output tokens')).toHaveAccessibleDescription(/Max_output_tokens must be 1 to 1000000/);
    expect(within(form).getByLabelText('Output price')).toHaveAttribute('aria-invalid', 'false');

    // An id already taken: the server's detail, and the id field marked.
    await u.clear(within(form).getByLabelText('Input price'));
    await u.type(within(form).getByLabelText('Input price'), '150');
    await u.clear(within(form).getByLabelText('Max output tokens'));
    await u.type(within(form).getByLabelText('Max output tokens'), '100');
    await u.click(within(form).getByRole('button', { name: 'Add model' }));
    await waitFor(() => expect(within(form).getByRole('alert')).toHaveTextContent('A model with id gpt-4o-mini exists'));
    expect(within(form).getByLabelText('Model id')).toHaveAccessibleDescription(/A model with this id already exists\./);
    expect(within(form).getByLabelText('Input price')).toHaveAttribute('aria-invalid', 'false');
  });

  it('edits a model’s prices, output limit and activity, sending only what changed', async () => {
    let current = model('gpt-4o-mini');
    const { requests } = mockApi({
      ...base,
      'GET /api/v1/admin/models': () => json([current]),
      'PATCH /api/v1/models/gpt-4o-mini': async (request) => {
        current = { ...current, ...((await request.json()) as object), updated_at: '2026-11-25T10:00:00Z' };
        return json(current);
      },
    });
    renderApp('/admin');
    const u = userEvent.setup();
    const region = await modelsRegion();
    const items = await within(region).findByRole('list', { name: 'Models' });
    await u.click(within(items).getByRole('button', { name: 'Edit gpt-4o-mini' }));

    const form = within(items).getByRole('form', { name: 'Edit gpt-4o-mini' });
    expect(within(form).getByLabelText('Input price')).toHaveValue(150);
    expect(within(form).getByLabelText('Upstream model')).toHaveValue('gpt-4o-mini');
    await u.clear(within(form).getByLabelText('Output price'));
    await u.type(within(form).getByLabelText('Output price'), '800');
    await u.clear(within(form).getByLabelText('Max output tokens'));
    await u.type(within(form).getByLabelText('Max output tokens'), '4096');
    await u.click(within(form).getByLabelText(/^Active/));
    await u.click(within(form).getByRole('button', { name: 'Save' }));

    expect(await within(region).findByText('Model “gpt-4o-mini” saved.')).toBeInTheDocument();
    const patch = requests.find((r) => r.method === 'PATCH');
    expect(await patch?.json()).toEqual({ output_per_million: 800, max_output_tokens: 4096, active: false });
    const item = within(items).getByRole('listitem');
    expect(item).toHaveTextContent('gpt-4o-miniInactive');
    expect(item).toHaveTextContent('output 800 credits per 1M tokens');
    expect(item).toHaveTextContent('up to 4,096 output tokens');

    // Saving without a change sends nothing.
    await u.click(within(items).getByRole('button', { name: 'Edit gpt-4o-mini' }));
    await u.click(within(items).getByRole('button', { name: 'Save' }));
    expect(within(items).queryByRole('form')).not.toBeInTheDocument();
    expect(requests.filter((r) => r.method === 'PATCH')).toHaveLength(1);
  });

  it('shows a refused edit in the form and keeps what was typed', async () => {
    mockApi({
      ...base,
      'GET /api/v1/admin/models': () => json([model('gpt-4o-mini')]),
      'PATCH /api/v1/models/gpt-4o-mini': () =>
        problem(422, 'validation_failed', '1 field is invalid', {
          errors: [{ field: 'cached_input_per_million', code: 'range', message: 'cached_input_per_million must be 0 or more' }],
        }),
    });
    renderApp('/admin');
    const u = userEvent.setup();
    const items = await within(await modelsRegion()).findByRole('list', { name: 'Models' });
    await u.click(within(items).getByRole('button', { name: 'Edit gpt-4o-mini' }));
    const form = within(items).getByRole('form', { name: 'Edit gpt-4o-mini' });
    await u.clear(within(form).getByLabelText('Cached input price'));
    await u.type(within(form).getByLabelText('Cached input price'), '-5');
    await u.click(within(form).getByRole('button', { name: 'Save' }));

    expect(await within(form).findByRole('alert')).toHaveTextContent('1 field is invalid');
    expect(within(form).getByLabelText('Cached input price')).toHaveAccessibleDescription(
      /Cached_input_per_million must be 0 or more/,
    );
    expect(within(form).getByLabelText('Cached input price')).toHaveValue(-5);

    await u.click(within(form).getByRole('button', { name: 'Cancel' }));
    expect(within(items).getByRole('listitem')).toHaveTextContent('cached input 75');
  });
});

import { expect, test } from '@playwright/test';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { promisify } from 'node:util';
import { ADMIN_KEY, nav, screenshot, signUp, stat, tollgate, uniqueEmail } from './helpers';

/**
 * A stand-in for the LLM provider, where playwright.config.ts points the gateway: it answers every
 * chat completion with one short reply and the usage a provider reports (1,200 prompt tokens, 200
 * of them from its cache, and 300 completion tokens), and keeps the requests it got.
 */
async function startUpstream(): Promise<{ server: Server; requests: { path: string; body: Record<string, unknown> }[] }> {
  const requests: { path: string; body: Record<string, unknown> }[] = [];
  const read = async (request: IncomingMessage) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  };
  const server = createServer((request, response) => {
    void read(request).then((text) => {
      const body = JSON.parse(text || '{}') as Record<string, unknown>;
      requests.push({ path: request.url ?? '', body });
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify({
          id: 'chatcmpl-e2e',
          object: 'chat.completion',
          created: Math.floor(Date.now() / 1000),
          model: body.model,
          choices: [{ index: 0, message: { role: 'assistant', content: 'Hello from the stand-in.' }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 1200, completion_tokens: 300, total_tokens: 1500, prompt_tokens_details: { cached_tokens: 200 } },
        }),
      );
    });
  });
  const port = Number(process.env.TOLLGATE_E2E_UPSTREAM_PORT);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  return { server, requests };
}

test('an admin adds a model; a user sets up the OpenAI SDKs, spends by tokens and sees the usage by model', async ({
  page,
  browser,
  baseURL,
}, testInfo) => {
  // Model ids are global and the specs share one server: one of this run's own.
  const modelId = `e2e-mini-${Date.now().toString(36)}`;

  // The admin adds the model to the rate card, after a refused attempt.
  const adminEmail = uniqueEmail('models-admin');
  await signUp(page, adminEmail);
  tollgate('users', 'promote', adminEmail);
  await page.reload();
  await nav(page, 'Admin').click();
  const models = page.getByRole('region', { name: 'Models' });
  const form = models.getByRole('form', { name: 'Add a model' });
  await form.getByLabel('Model id').fill(modelId);
  await form.getByLabel('Upstream model').fill('gpt-4o-mini');
  await form.getByLabel('Input price', { exact: true }).fill('-1');
  await form.getByLabel('Cached input price').fill('500');
  await form.getByLabel('Output price').fill('4000');
  await form.getByLabel('Max output tokens').fill('1000');
  await form.getByRole('button', { name: 'Add model' }).click();
  // The server's answer: its detail at the top, the price marked beside its field.
  await expect(form.getByRole('alert')).toBeVisible();
  await expect(form.getByLabel('Input price', { exact: true })).toHaveAttribute('aria-invalid', 'true');
  await screenshot(page, testInfo, '70-admin-model-refused');

  await form.getByLabel('Input price', { exact: true }).fill('1000');
  await form.getByRole('button', { name: 'Add model' }).click();
  await expect(form.getByText(`Model “${modelId}” added.`)).toBeVisible();
  const item = models.getByRole('list', { name: 'Models' }).getByRole('listitem').filter({ hasText: modelId });
  await expect(item).toContainText('Active');
  await expect(item).toContainText('Input 1,000 · cached input 500 · output 4,000 credits per 1M tokens');
  await expect(item).toContainText('Upstream gpt-4o-mini');

  // An edit changes only the price given.
  await item.getByRole('button', { name: `Edit ${modelId}` }).click();
  const edit = item.getByRole('form', { name: `Edit ${modelId}` });
  await edit.getByLabel('Output price').fill('2000');
  await edit.getByRole('button', { name: 'Save' }).click();
  await expect(models.getByText(`Model “${modelId}” saved.`)).toBeVisible();
  await expect(item).toContainText('Input 1,000 · cached input 500 · output 2,000 credits per 1M tokens');
  await screenshot(page, testInfo, '71-admin-models');

  // A user: the SDK setup names this origin's gateway, and the model with its prices.
  const user = await browser.newPage();
  const email = uniqueEmail('gateway-user');
  await signUp(user, email);
  tollgate('grant', '--email', email, '--amount', '1000', '--reason', 'Welcome');
  await nav(user, 'API keys').click();
  const setup = user.getByRole('region', { name: 'Use with the OpenAI SDKs' });
  const gateway = `${baseURL}/gateway/v1`;
  await expect(setup).toContainText(`Base URL: ${gateway}`);
  await expect(setup).toContainText(`${gateway}/models`);
  await expect(setup.getByLabel('Python example', { exact: true })).toContainText(`base_url="${gateway}"`);
  await expect(setup.getByLabel('Node.js example', { exact: true })).toContainText(`baseURL: "${gateway}"`);
  await expect(setup.getByLabel('curl example', { exact: true })).toContainText(`curl '${gateway}/chat/completions'`);
  const price = setup.getByRole('table', { name: /Models you can call/ }).getByRole('row').filter({ hasText: modelId });
  await expect(price.getByRole('cell')).toHaveText([`${modelId}up to 1,000 output tokens`, '1,000', '500', '2,000']);

  // A key made now appears in the examples while its secret is on the page.
  await user.getByLabel('Name', { exact: true }).fill('llm backend');
  await user.getByRole('button', { name: 'Create key' }).click();
  const secret = await user.getByLabel('Secret of the new key').inputValue();
  expect(secret).toMatch(/^tg_/);
  await expect(setup.getByLabel('Python example', { exact: true })).toContainText(`api_key="${secret}"`);
  await expect(setup).toContainText('The examples use the key “llm backend” you just created.');
  await screenshot(user, testInfo, '72-api-keys-openai-sdks');

  // The key lists the model where the SDKs look for it.
  const listed = await user.request.get(`${gateway}/models`, { headers: { authorization: `Bearer ${secret}` } });
  expect(listed.status()).toBe(200);
  expect(((await listed.json()) as { data: { id: string }[] }).data.map((m) => m.id)).toContain(modelId);

  // The user's backend spends by tokens: 200,000 uncached input, 100,000 cached input, 50,000 output
  // tokens cost 200 + 50 + 100 credits.
  const spend = await user.request.post('/api/v1/credits/spend', {
    headers: { authorization: `Bearer ${secret}`, 'idempotency-key': randomUUID() },
    data: { model: modelId, usage: { input_tokens: 200_000, cached_input_tokens: 100_000, output_tokens: 50_000 } },
  });
  expect(spend.status(), await spend.text()).toBe(200);

  // The spend happened outside the app: a fresh load reads it (as a user coming back would).
  await user.goto('/');
  await expect(stat(user, 'Balance')).toHaveText('650 credits');
  const card = user.getByRole('region', { name: 'Usage by model (30 days)' });
  const row = card.getByRole('table').getByRole('row').filter({ hasText: modelId });
  await expect(row.getByRole('cell')).toHaveText([
    `${modelId}1 call200,000 input · 100,000 cached · 50,000 output tokens`,
    '350',
    '200,000',
    '100,000',
    '50,000',
  ]);
  await expect(card).toContainText('Total: 350 credits over 1 call');
  await expect(user.getByRole('img', { name: /^Credits spent by day/ })).toBeVisible();
  await screenshot(user, testInfo, '73-dashboard-usage-by-model');
  await user.close();
});

test('the curl example, run as the API keys page shows it, calls the model through the gateway and the call shows in the usage by model', async ({
  page,
  baseURL,
}, testInfo) => {
  const upstream = await startUpstream();
  try {
    const modelId = `e2e-sdk-${Date.now().toString(36)}`;
    const created = await fetch(`${baseURL}/api/v1/models`, {
      method: 'POST',
      headers: { 'x-admin-key': ADMIN_KEY, 'content-type': 'application/json' },
      body: JSON.stringify({
        id: modelId,
        upstream_model: 'stand-in-model',
        input_per_million: 1000,
        cached_input_per_million: 500,
        output_per_million: 2000,
        max_output_tokens: 1000,
      }),
    });
    expect(created.status, await created.clone().text()).toBe(201);

    const email = uniqueEmail('gateway-curl');
    await signUp(page, email);
    tollgate('grant', '--email', email, '--amount', '100', '--reason', 'Welcome');
    await nav(page, 'API keys').click();
    await page.getByLabel('Name', { exact: true }).fill('curl');
    await page.getByRole('button', { name: 'Create key' }).click();
    const secret = await page.getByLabel('Secret of the new key').inputValue();

    const setup = page.getByRole('region', { name: 'Use with the OpenAI SDKs' });
    // Other specs' models may be on offer too: the examples use this one.
    const picker = setup.getByLabel('Model in the examples');
    if (await picker.isVisible()) await picker.selectOption(modelId);
    const example = setup.getByLabel('curl example', { exact: true });
    await expect(example).toContainText(`"model":"${modelId}"`);
    await expect(example).toContainText(`Bearer ${secret}`);
    const command = (await example.textContent()) ?? '';

    // The command as a user would paste it into a shell (not blocking: the stand-in answers from this process).
    const { stdout } = await promisify(execFile)('sh', ['-c', command], { encoding: 'utf8' });
    const reply = JSON.parse(stdout) as { choices: { message: { content: string } }[] };
    expect(reply.choices[0]?.message.content).toBe('Hello from the stand-in.');
    expect(upstream.requests).toHaveLength(1);
    expect(upstream.requests[0]?.path).toBe('/v1/chat/completions');
    expect(upstream.requests[0]?.body.model).toBe('stand-in-model');

    // 1,000 uncached input, 200 cached input and 300 output tokens: 1.7 credits, charged as 2.
    await page.goto('/');
    await expect(stat(page, 'Balance')).toHaveText('98 credits');
    const row = page
      .getByRole('region', { name: 'Usage by model (30 days)' })
      .getByRole('table')
      .getByRole('row')
      .filter({ hasText: modelId });
    await expect(row.getByRole('cell')).toHaveText([
      `${modelId}1 call1,000 input · 200 cached · 300 output tokens`,
      '2',
      '1,000',
      '200',
      '300',
    ]);
    await screenshot(page, testInfo, '74-dashboard-gateway-call');
  } finally {
    await new Promise((resolve) => upstream.server.close(resolve));
  }
});

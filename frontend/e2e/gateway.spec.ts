import { expect, test } from '@playwright/test';
import { randomUUID } from 'node:crypto';
import { nav, screenshot, signUp, stat, tollgate, uniqueEmail } from './helpers';

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

import { expect, test } from '@playwright/test';
import { screenshot, serverKeyApi, signUp, stat, tollgate, uniqueEmail } from './helpers';

test('an admin creates a server key, a backend manages a customer with it, and the admin finds that customer', async ({
  page,
  baseURL,
}, testInfo) => {
  const admin = uniqueEmail('keys-admin');
  await signUp(page, admin);
  tollgate('users', 'promote', admin);
  await page.goto('/admin');
  await expect(page.getByRole('heading', { level: 1, name: 'Admin' })).toBeVisible();

  // Create a server key with every scope: the secret is shown once.
  const keys = page.getByRole('region', { name: 'Server keys' });
  const form = keys.getByRole('form', { name: 'Create a server key' });
  await form.getByLabel('Key name').fill('e2e backend');
  for (const scope of ['customers:write', 'customers:read', 'credits:read', 'credits:spend', 'credits:grant', 'billing:write']) {
    await form.getByRole('checkbox', { name: new RegExp(`\\(${scope}\\)`) }).check();
  }
  await form.getByRole('button', { name: 'Create server key' }).click();
  await expect(keys.getByText('It will not be shown again.')).toBeVisible();
  const secret = await keys.getByLabel('Secret of the new server key').inputValue();
  expect(secret).toMatch(/^tg_sk_/);
  const listed = keys.getByRole('list', { name: 'Server keys' }).getByRole('listitem').filter({ hasText: 'e2e backend' });
  await expect(listed).toContainText('never used');
  await expect(listed).toContainText('billing:write');
  await screenshot(page, testInfo, '50-admin-server-key-created');
  await keys.getByRole('button', { name: 'Done' }).click();
  await expect(keys.getByLabel('Secret of the new server key')).toHaveCount(0);

  // The product's backend: plain HTTP with the key.
  const backend = serverKeyApi(baseURL!, secret);
  const externalId = `acme-${Date.now().toString(36)}`;
  const email = uniqueEmail('customer');
  const put = await backend('PUT', `/api/v1/customers/${encodeURIComponent(externalId)}`, { email, name: 'Grace Hopper' });
  expect(put.status).toBe(201);
  const created = (await put.json()) as { id: string; balance: number };
  expect(created.balance).toBe(0);
  const granted = await backend('POST', `/api/v1/customers/${externalId}/grant`, { amount: 100, reason: 'Welcome credits' }, true);
  expect(granted.status).toBe(200);
  const spent = await backend('POST', `/api/v1/customers/${externalId}/spend`, { amount: 30, description: 'Report export' }, true);
  expect(spent.status).toBe(200);
  expect(((await spent.json()) as { balance: { balance: number } }).balance.balance).toBe(70);

  // The admin searches for the customer by the start of its external id and sees its figures.
  await page.reload();
  const customers = page.getByRole('region', { name: 'Customers' });
  await customers.getByRole('searchbox', { name: 'Search customers' }).fill(externalId.slice(0, -2));
  const row = customers.getByRole('list', { name: 'Customers' }).getByRole('listitem');
  await expect(row).toHaveCount(1);
  await expect(row).toContainText(externalId);
  await expect(row).toContainText(email);
  await expect(row).toContainText('70 credits · 70 available');
  // The server key's use shows in its list.
  await expect(keys.getByRole('list', { name: 'Server keys' }).getByRole('listitem').filter({ hasText: 'e2e backend' })).toContainText(
    'last used',
  );
  await screenshot(page, testInfo, '51-admin-customers-search');

  // Open it: figures, history, and a grant from the admin.
  await row.getByRole('button').click();
  await expect(page.getByRole('heading', { name: `Customer ${externalId}` })).toBeVisible();
  await expect(stat(page, 'Balance')).toHaveText('70 credits');
  await expect(stat(page, 'Available')).toHaveText('70 credits');
  const history = page.getByRole('region', { name: 'History' });
  await expect(history.getByRole('row').filter({ hasText: 'Welcome credits' })).toContainText('+100');
  await expect(history.getByRole('row').filter({ hasText: 'Report export' })).toContainText('-30');
  const grant = page.getByRole('form', { name: `Grant credits to ${externalId}` });
  await grant.getByLabel('Credits').fill('25');
  await grant.getByLabel('Reason').fill('Support goodwill');
  await grant.getByRole('button', { name: 'Grant credits' }).click();
  await expect(grant.getByText(`Granted 25 credits to ${externalId}. Their balance is now 95 credits.`)).toBeVisible();
  await expect(stat(page, 'Balance')).toHaveText('95 credits');
  await expect(history.getByRole('row').filter({ hasText: 'Support goodwill' })).toContainText('+25');
  await screenshot(page, testInfo, '52-admin-customer');

  // The backend sees the same balance; after the admin revokes the key, it is refused.
  const read = await backend('GET', `/api/v1/customers/${externalId}/balance`);
  expect(((await read.json()) as { balance: number }).balance).toBe(95);
  await page.getByRole('button', { name: /All customers/ }).click();
  await keys.getByRole('button', { name: 'Revoke e2e backend' }).click();
  const dialog = page.getByRole('dialog', { name: 'Revoke this server key?' });
  await dialog.getByRole('button', { name: 'Revoke key' }).click();
  await expect(page.getByText('Server key “e2e backend” revoked. It no longer works.')).toBeVisible();
  expect((await backend('GET', `/api/v1/customers/${externalId}/balance`)).status).toBe(401);
});

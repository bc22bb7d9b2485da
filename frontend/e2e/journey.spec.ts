import { expect, test } from '@playwright/test';
import { cell, nav, screenshot, signIn, signUp, stat, uniqueEmail } from './helpers';

const TEXT = [
  'Tollgate meters AI features with credits.',
  'Users buy packs of credits or subscribe to a plan that refills them every month.',
  'Every call to an AI feature spends credits from the wallet, and the ledger records each movement.',
  'A hold reserves the estimated cost while the work runs, and the actual cost is captured afterwards.',
  'Nobody can spend credits they do not have.',
].join(' ');

test('sign up, buy credits, spend them, read the history, manage keys and sign out', async ({ page }, testInfo) => {
  const email = uniqueEmail('journey');

  // Sign up: a new account starts with nothing.
  await signUp(page, email);
  await expect(page.getByText('Sandbox mode: no real payments.')).toBeVisible();
  await expect(stat(page, 'Balance')).toHaveText('0 credits');
  await expect(stat(page, 'Available')).toHaveText('0 credits');
  await expect(page.getByText('You have no credits left')).toBeVisible();
  await screenshot(page, testInfo, '01-dashboard-new');

  // Buy the 100-credit pack through the sandbox checkout page.
  await nav(page, 'Credits').click();
  await expect(page.getByRole('heading', { level: 1, name: 'Credits' })).toBeVisible();
  const starter = page.getByRole('listitem').filter({ has: page.getByRole('heading', { name: 'Starter pack' }) });
  await expect(starter).toContainText('100 credits');
  await expect(starter).toContainText('$5.00');
  await expect(page.getByRole('listitem').filter({ has: page.getByRole('heading', { name: 'Monthly plan' }) })).toContainText(
    '$15.00per month',
  );
  await screenshot(page, testInfo, '02-credits');
  await starter.getByRole('button', { name: 'Buy 100 credits' }).click();

  await expect(page).toHaveURL(/\/sandbox\/checkout\//);
  await expect(page.getByText('Sandbox mode: this page stands in for Stripe.')).toBeVisible();
  await screenshot(page, testInfo, '03-sandbox-checkout');
  await page.getByRole('button', { name: /^Pay/ }).click();

  await expect(page).toHaveURL(/\/credits\?checkout=success/);
  await expect(page.getByText('Payment complete')).toBeVisible();
  await expect(page.getByText('100 credits added to your wallet. Your balance is now 100 credits.')).toBeVisible();
  await expect(stat(page, 'Balance')).toHaveText('100 credits');
  await screenshot(page, testInfo, '04-credits-after-purchase');

  // Run the example AI feature: see the estimate, then the cost charged and the new balance.
  await nav(page, 'Example AI').click();
  await expect(page.getByRole('heading', { level: 1, name: 'Example AI' })).toBeVisible();
  await expect(stat(page, 'Available')).toHaveText('100 credits');
  await page.getByLabel('Text to summarise').fill(TEXT);
  await expect(page.getByText(/Estimated cost: 5 credits at most/)).toBeVisible();
  await page.getByRole('button', { name: 'Summarise' }).click();

  const summary = page.getByRole('region', { name: 'Summary' });
  await expect(summary).toBeVisible();
  const charged = await stat(page, 'Charged').textContent();
  const cost = Number(/^(\d+) credits?$/.exec(charged ?? '')?.[1]);
  expect(cost).toBeGreaterThan(0);
  expect(cost).toBeLessThanOrEqual(5);
  await expect(stat(page, 'New balance')).toHaveText(`${100 - cost} credits`);
  await expect(stat(page, 'Available')).toHaveText(`${100 - cost} credits`);
  await screenshot(page, testInfo, '05-example-ai');

  // The dashboard shows the new balance, the chart and the activity.
  await nav(page, 'Dashboard').click();
  await expect(stat(page, 'Balance')).toHaveText(`${100 - cost} credits`);
  await expect(page.getByRole('img', { name: /Balance over time/ })).toBeVisible();
  await expect(page.getByRole('img', { name: /Credits spent by feature/ })).toBeVisible();
  await expect(page.getByRole('img', { name: new RegExp(`^Credits spent by day in the last 30 days: ${cost} credits? in all`) })).toBeVisible();
  await screenshot(page, testInfo, '06-dashboard');

  // Both entries are in the history, with signed amounts and the balance after each.
  await nav(page, 'History').click();
  await expect(page.getByRole('heading', { level: 1, name: 'History' })).toBeVisible();
  const rows = page.getByRole('table').getByRole('row');
  const purchase = rows.filter({ hasText: 'Purchase' });
  const spend = rows.filter({ hasText: 'Spend' });
  await expect(purchase).toHaveCount(1);
  await expect(spend).toHaveCount(1);
  await expect(await cell(page, purchase, 'Amount')).toHaveText('+100');
  await expect(await cell(page, purchase, 'Balance after')).toHaveText('100');
  await expect(await cell(page, spend, 'Amount')).toHaveText(`-${cost}`);
  await expect(await cell(page, spend, 'Balance after')).toHaveText(`${100 - cost}`);
  await expect(await cell(page, spend, 'Feature')).toContainText('example.summarize');
  await expect(page.getByText('Showing 2 entries (all)')).toBeVisible();
  await screenshot(page, testInfo, '07-history');

  // Filter by kind, then export: the server writes the filtered history.
  await page.getByLabel('Kind').selectOption('spend');
  await expect(rows.filter({ hasText: 'Purchase' })).toHaveCount(0);
  await expect(page.getByText('Showing 1 entry (all)')).toBeVisible();
  const download = page.waitForEvent('download');
  await page.getByRole('button', { name: 'Export CSV' }).click();
  const file = await download;
  expect(file.suggestedFilename()).toBe('tollgate-history_spend.csv');
  const csv = await (await file.createReadStream()).toArray();
  const lines = Buffer.concat(csv).toString('utf8').trim().split('\r\n');
  expect(lines[0]).toBe('created_at,id,kind,amount,balance_after,feature,quantity,description,hold_id,lot_id,metadata');
  expect(lines).toHaveLength(2);
  expect(lines[1]).toContain(`,spend,-${cost},${100 - cost},example.summarize,`);

  // Create an API key: the secret is shown once; then revoke it.
  await nav(page, 'API keys').click();
  await expect(page.getByRole('heading', { level: 1, name: 'API keys' })).toBeVisible();
  await expect(page.getByText('You have no API keys.')).toBeVisible();
  await page.getByLabel('Name', { exact: true }).fill('summarizer backend');
  await page.getByRole('button', { name: 'Create key' }).click();
  await expect(page.getByText('Key “summarizer backend” created')).toBeVisible();
  await expect(page.getByText('It will not be shown again.')).toBeVisible();
  const secret = await page.getByLabel('Secret of the new key').inputValue();
  expect(secret).toMatch(/^tg_/);
  const keys = page.getByRole('list', { name: 'API keys' });
  await expect(keys.getByRole('listitem')).toHaveCount(1);
  await expect(keys).toContainText('summarizer backend');
  await expect(keys).toContainText('never used');
  await screenshot(page, testInfo, '08-api-keys');

  await page.getByRole('button', { name: 'Revoke summarizer backend' }).click();
  const dialog = page.getByRole('dialog', { name: 'Revoke this key?' });
  await expect(dialog).toBeVisible();
  await screenshot(page, testInfo, '09-api-key-revoke');
  await dialog.getByRole('button', { name: 'Revoke key' }).click();
  await expect(dialog).toBeHidden();
  await expect(page.getByText('Key “summarizer backend” revoked. It no longer works.')).toBeVisible();
  await expect(page.getByText('You have no API keys.')).toBeVisible();

  // The revoked key no longer works.
  const refused = await page.request.get('/api/v1/credits/balance', { headers: { authorization: `Bearer ${secret}` } });
  expect(refused.status()).toBe(401);

  // Sign out: back to sign-in; protected pages send you there, and back after signing in.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page).toHaveURL(/\/sign-in$/);
  await expect(page.getByText('You have signed out.')).toBeVisible();
  await screenshot(page, testInfo, '10-signed-out');

  await page.goto('/history');
  await expect(page).toHaveURL(/\/sign-in\?next=%2Fhistory$/);
  await expect(page.getByRole('heading', { level: 1, name: 'Sign in to Tollgate' })).toBeVisible();
  await signIn(page, email);
  await expect(page).toHaveURL(/\/history$/);
  await expect(page.getByText('Showing 2 entries (all)')).toBeVisible();
});

test('the example AI feature refuses to run without enough credits and offers to buy', async ({ page }, testInfo) => {
  await signUp(page, uniqueEmail('broke'));
  await nav(page, 'Example AI').click();
  await expect(stat(page, 'Available')).toHaveText('0 credits');
  await page.getByLabel('Text to summarise').fill(TEXT);
  await expect(page.getByText(/Estimated cost: 5 credits at most/)).toBeVisible();
  await expect(page.getByText('You have 0 credits available, less than this may cost.')).toBeVisible();

  await page.getByRole('button', { name: 'Summarise' }).click();
  const alert = page.getByRole('alert').filter({ hasText: 'Not enough credits' });
  await expect(alert).toBeVisible();
  await expect(alert).toContainText('This summary needs up to 5 credits, but you have 0 credits available.');
  await expect(page.getByRole('region', { name: 'Summary' })).toHaveCount(0);
  await screenshot(page, testInfo, '11-example-ai-insufficient');

  await alert.getByRole('link', { name: 'Buy credits' }).click();
  await expect(page).toHaveURL(/\/credits$/);
  await expect(page.getByRole('heading', { level: 1, name: 'Credits' })).toBeVisible();
});

test('cancelling the sandbox checkout says so and charges nothing', async ({ page }, testInfo) => {
  await signUp(page, uniqueEmail('cancel'));
  await nav(page, 'Credits').click();
  await page.getByRole('button', { name: 'Buy 500 credits' }).click();
  await expect(page).toHaveURL(/\/sandbox\/checkout\//);
  await page.getByRole('button', { name: 'Cancel' }).click();
  await expect(page).toHaveURL(/\/credits\?checkout=cancelled$/);
  await expect(page.getByText('Checkout cancelled')).toBeVisible();
  await expect(page.getByText('You were not charged.')).toBeVisible();
  await expect(stat(page, 'Balance')).toHaveText('0 credits');
  await screenshot(page, testInfo, '12-checkout-cancelled');
  await page.getByRole('button', { name: 'Dismiss' }).click();
  await expect(page).toHaveURL(/\/credits$/);
});

test('subscribing to a plan shows it, and the manage link opens the portal', async ({ page }, testInfo) => {
  await signUp(page, uniqueEmail('subscriber'));
  await nav(page, 'Credits').click();
  await page.getByRole('button', { name: 'Subscribe to Monthly plan' }).click();
  await expect(page).toHaveURL(/\/sandbox\/checkout\//);
  await page.getByRole('button', { name: /^Pay/ }).click();
  await expect(page).toHaveURL(/\/credits\?checkout=success/);
  await expect(page.getByText('1,000 credits added to your wallet. Your balance is now 1,000 credits.')).toBeVisible();
  const current = page.getByRole('region', { name: 'Your subscription' });
  await expect(current).toContainText('Monthly plan');
  await expect(current).toContainText('1,000 credits per month');
  await expect(current).toContainText('Renews on');
  await expect(page.getByText('Current plan')).toBeVisible();
  await screenshot(page, testInfo, '13-credits-subscribed');

  await nav(page, 'Dashboard').click();
  const plan = page.getByRole('region', { name: 'Plan', exact: true });
  await expect(plan).toContainText('Monthly plan');
  await expect(plan).toContainText('Renews on');

  await nav(page, 'Credits').click();
  await page.getByRole('button', { name: 'Manage subscription' }).click();
  await expect(page).toHaveURL(/\/sandbox\/portal/);
  await screenshot(page, testInfo, '14-sandbox-portal');
});

import { expect, test, type APIRequestContext } from '@playwright/test';
import { randomUUID } from 'node:crypto';
import { ADMIN_KEY, nav, screenshot, signUp, uniqueEmail } from './helpers';

/** Grants credits to a user with the admin API key (no browser): one ledger entry each. */
async function grant(request: APIRequestContext, email: string, amount: number, reason: string): Promise<void> {
  const response = await request.post('/api/v1/credits/grant', {
    headers: { 'x-admin-key': ADMIN_KEY, 'idempotency-key': randomUUID() },
    data: { email, amount, reason },
  });
  expect(response.status(), await response.text()).toBeLessThan(300);
}

test('the export downloads the whole filtered history from the server, not only the rows loaded', async ({ page }, testInfo) => {
  const email = uniqueEmail('export');
  await signUp(page, email);
  for (let i = 1; i <= 60; i += 1) await grant(page.request, email, i, `Grant ${i}`);
  await grant(page.request, email, 5, '=HYPERLINK("http://evil.example","click")');

  await nav(page, 'History').click();
  await expect(page.getByText('Showing 50 entries')).toBeVisible();
  const download = page.waitForEvent('download');
  await page.getByRole('button', { name: 'Export CSV' }).click();
  const file = await download;
  expect(file.suggestedFilename()).toBe('tollgate-history.csv');
  const lines = Buffer.concat(await (await file.createReadStream()).toArray()).toString('utf8').trimEnd().split('\r\n');
  expect(lines[0]).toBe('created_at,id,kind,amount,balance_after,feature,quantity,description,hold_id,lot_id,metadata');
  expect(lines).toHaveLength(1 + 61);
  // Newest first, ISO dates, and a formula a spreadsheet would run is neutralised.
  expect(lines[1]).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z,/);
  expect(lines[1]).toContain(`,grant,5,${(60 * 61) / 2 + 5},`);
  expect(lines[1]).toContain(`"'=HYPERLINK(""http://evil.example"",""click"")"`);
  expect(lines.at(-1)).toContain(',grant,1,1,');
  await screenshot(page, testInfo, '60-history-export');

  // With a filter, the same filter: nothing is a spend.
  await page.getByLabel('Kind').selectOption('spend');
  await expect(page.getByText('No entries match these filters.')).toBeVisible();
  await page.getByLabel('Kind').selectOption('grant');
  await page.getByLabel('From').fill('2000-01-01');
  await expect(page.getByText('Showing 50 entries')).toBeVisible();
  const filtered = page.waitForEvent('download');
  await page.getByRole('button', { name: 'Export CSV' }).click();
  const grants = await filtered;
  expect(grants.suggestedFilename()).toBe('tollgate-history_grant_2000-01-01.csv');
  const rows = Buffer.concat(await (await grants.createReadStream()).toArray()).toString('utf8').trimEnd().split('\r\n');
  expect(rows).toHaveLength(1 + 61);
  expect(rows.slice(1).every((row) => row.split(',')[2] === 'grant')).toBe(true);
});

test('an export that fails says so and downloads nothing', async ({ page }, testInfo) => {
  const email = uniqueEmail('export-fails');
  await signUp(page, email);
  await grant(page.request, email, 10, 'Welcome');
  await nav(page, 'History').click();
  await expect(page.getByText('Showing 1 entry (all)')).toBeVisible();

  await page.route('**/api/v1/credits/ledger.csv*', (route) => route.fulfill({ status: 503, body: 'Service Unavailable' }));
  let downloads = 0;
  page.on('download', () => {
    downloads += 1;
  });
  await page.getByRole('button', { name: 'Export CSV' }).click();
  const alert = page.getByRole('alert').filter({ hasText: 'Export failed: no file was downloaded' });
  await expect(alert).toContainText('Tollgate had a problem answering. Try again in a moment.');
  await screenshot(page, testInfo, '61-history-export-failed');
  expect(downloads).toBe(0);

  await page.unrouteAll({ behavior: 'wait' });
  const download = page.waitForEvent('download');
  await alert.getByRole('button', { name: 'Export again' }).click();
  expect((await download).suggestedFilename()).toBe('tollgate-history.csv');
  await expect(alert).toHaveCount(0);
});

test('the dashboard charts the balance over 30 days by default, by the hour for short ranges, and usage by day', async ({
  page,
}, testInfo) => {
  const email = uniqueEmail('chart');
  await signUp(page, email);
  await grant(page.request, email, 120, 'Welcome');
  await page.reload();

  const card = page.getByRole('region', { name: 'Balance over time' });
  await expect(card.getByRole('button', { name: '30 days' })).toHaveAttribute('aria-pressed', 'true');
  await expect(card.getByRole('img', { name: /^Balance over time, last 30 days: from 0 credits on .* to 120 credits now/ })).toBeVisible();
  // uPlot drew it: a canvas the width of the card.
  await expect(card.locator('canvas')).toHaveCount(1);

  const hourly = page.waitForRequest((r) => r.url().includes('/credits/balance-history') && r.url().includes('interval=hour'));
  await card.getByRole('button', { name: '7 days' }).click();
  const sent = new URL((await hourly).url());
  expect(Date.now() - Date.parse(sent.searchParams.get('from')!)).toBeLessThanOrEqual(7 * 24 * 3_600_000);
  await expect(card.getByRole('img', { name: /^Balance over time, last 7 days/ })).toBeVisible();
  await card.getByRole('button', { name: '90 days' }).click();
  await expect(card.getByRole('img', { name: /^Balance over time, last 90 days/ })).toBeVisible();
  await expect(page.getByRole('alert')).toHaveCount(0);

  const byDay = page.getByRole('region', { name: 'Usage by day (30 days)' });
  await expect(byDay).toContainText('You have not spent any credits in the last 30 days.');
  await screenshot(page, testInfo, '62-dashboard-balance-history');
});

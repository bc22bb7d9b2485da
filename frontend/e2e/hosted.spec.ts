import { expect, test, type Page } from '@playwright/test';
import { createServerKey, fitsViewport, screenshot, serverKeyApi, stat, uniqueEmail } from './helpers';

/** Counts the page's requests to each path. */
function countRequests(page: Page) {
  const counts = new Map<string, number>();
  page.on('request', (r) => {
    const path = new URL(r.url()).pathname;
    counts.set(path, (counts.get(path) ?? 0) + 1);
  });
  return (path: string) => counts.get(path) ?? 0;
}

test('a customer opens the hosted portal from a one-time link, sees a spend live, buys a pack, and the used link has expired', async ({
  page,
  baseURL,
}, testInfo) => {
  // The product's backend: a customer with some credits, and a portal link for it.
  const secret = await createServerKey(baseURL!, 'portal backend', ['customers:write', 'credits:grant', 'credits:spend', 'credits:read', 'billing:write']);
  const backend = serverKeyApi(baseURL!, secret);
  const externalId = `hosted-${Date.now().toString(36)}`;
  const email = uniqueEmail('portal');
  expect((await backend('PUT', `/api/v1/customers/${externalId}`, { email, name: 'Grace Hopper' })).status).toBe(201);
  expect((await backend('POST', `/api/v1/customers/${externalId}/grant`, { amount: 40, reason: 'Trial credits' }, true)).status).toBe(200);
  const returnUrl = `${baseURL}/?from=portal`;
  const minted = await backend('POST', `/api/v1/customers/${externalId}/portal-session`, { return_url: returnUrl });
  expect(minted.status).toBe(200);
  const { url } = (await minted.json()) as { url: string };
  expect(url).toContain('/hosted/open?token=');

  // The customer follows the link: the portal, with no app around it.
  const count = countRequests(page);
  await page.goto(url);
  await expect(page).toHaveURL(/\/hosted$/);
  await expect(page.getByRole('heading', { level: 1, name: 'Billing' })).toBeVisible();
  await expect(page.getByText(`Credits for Grace Hopper (${email})`)).toBeVisible();
  await expect(stat(page, 'Balance')).toHaveText('40 credits');
  await expect(stat(page, 'Available')).toHaveText('40 credits');
  // The server names the product by the return URL's host name.
  const back = page.getByRole('link', { name: `Back to ${new URL(returnUrl).hostname}` });
  await expect(back).toHaveAttribute('href', returnUrl);
  await expect(page.getByRole('navigation')).toHaveCount(0);
  await expect(page.getByRole('link', { name: /sign in|admin|api keys/i })).toHaveCount(0);
  await expect(page.getByRole('region', { name: 'History' }).getByRole('row').filter({ hasText: 'Trial credits' })).toContainText('+40');
  await screenshot(page, testInfo, '60-hosted-portal');

  // The product's backend spends for the customer: the page follows from the customer's stream,
  // with no reload and no polling.
  await expect(page.getByTestId('live-status')).toHaveText('Live');
  await page.evaluate(() => Object.assign(window, { __sameDocument: true }));
  const balanceReads = count('/api/v1/hosted/balance');
  const spent = await backend('POST', `/api/v1/customers/${externalId}/spend`, { amount: 7, description: 'Spent by the product' }, true);
  expect(spent.status).toBe(200);
  await expect(stat(page, 'Balance')).toHaveText('33 credits');
  await expect(stat(page, 'Available')).toHaveText('33 credits');
  await expect(page.getByRole('region', { name: 'History' }).getByRole('row').filter({ hasText: 'Spent by the product' })).toBeVisible();
  // The figures came with the event: the balance was not asked for again.
  expect(count('/api/v1/hosted/balance')).toBe(balanceReads);
  expect(count('/api/v1/hosted/stream')).toBe(1);
  expect(await page.evaluate(() => (window as { __sameDocument?: boolean }).__sameDocument)).toBe(true);

  // Buy the 100-credit pack through the sandbox checkout.
  await page.getByRole('button', { name: 'Buy 100 credits' }).click();
  await expect(page).toHaveURL(/\/sandbox\/checkout\//);
  await page.getByRole('button', { name: /^Pay/ }).click();
  await expect(page).toHaveURL(/\/hosted\?checkout=success/);
  await expect(page.getByText('Payment complete')).toBeVisible();
  await expect(page.getByText('100 credits added to your wallet. Your balance is now 133 credits.')).toBeVisible();
  await expect(stat(page, 'Balance')).toHaveText('133 credits');
  await expect(page.getByRole('region', { name: 'History' }).getByRole('row').filter({ hasText: 'Purchase' })).toContainText('+100');
  await screenshot(page, testInfo, '61-hosted-after-purchase');
  const read = await backend('GET', `/api/v1/customers/${externalId}/balance`);
  expect(((await read.json()) as { balance: number }).balance).toBe(133);

  await page.getByRole('button', { name: 'Dismiss' }).click();
  await expect(page).toHaveURL(/\/hosted$/);

  // It fits a phone.
  await page.setViewportSize({ width: 375, height: 812 });
  await page.reload();
  await expect(stat(page, 'Balance')).toHaveText('133 credits');
  expect(await fitsViewport(page)).toBe(true);
  await screenshot(page, testInfo, '62-hosted-mobile');

  // The same link again: already used, so the expired state, never a sign-in form.
  await page.goto(url);
  await expect(page).toHaveURL(/\/hosted\?error=link_expired$/);
  await expect(page.getByRole('heading', { level: 1, name: 'This link has expired or was already used' })).toBeVisible();
  await expect(page.getByLabel('Password')).toHaveCount(0);
  await screenshot(page, testInfo, '63-hosted-link-expired');
});

test('the hosted portal without its cookie says the link has expired', async ({ page }) => {
  await page.goto('/hosted');
  await expect(page.getByRole('heading', { level: 1, name: 'This link has expired or was already used' })).toBeVisible();
  await expect(page).toHaveURL(/\/hosted$/);
  await expect(page.getByLabel('Password')).toHaveCount(0);
});

import { expect, test, type APIRequestContext, type Page } from '@playwright/test';
import { randomUUID } from 'node:crypto';
import { ADMIN_KEY, PASSWORD, nav, screenshot, signUp, stat, uniqueEmail } from './helpers';

/** Grants credits to a user the way an operator's script would: the admin key, no browser. */
async function grant(request: APIRequestContext, email: string, amount: number, reason = 'Welcome credits') {
  const response = await request.post('/api/v1/credits/grant', {
    headers: { 'x-admin-key': ADMIN_KEY, 'idempotency-key': randomUUID() },
    data: { email, amount, reason },
  });
  expect(response.status(), await response.text()).toBe(200);
}

/** The user's own backend: signs in over the API, makes an API key, and spends with it. */
async function userBackend(request: APIRequestContext, email: string) {
  const login = await request.post('/api/v1/auth/login', { data: { email, password: PASSWORD } });
  expect(login.status()).toBe(200);
  const { access_token } = (await login.json()) as { access_token: string };
  const created = await request.post('/api/v1/api-keys', {
    headers: { authorization: `Bearer ${access_token}` },
    data: { name: 'backend', scopes: ['credits:read', 'credits:spend'] },
  });
  expect(created.status()).toBe(201);
  const { secret } = (await created.json()) as { secret: string };
  return {
    async spend(amount: number, description: string) {
      const response = await request.post('/api/v1/credits/spend', {
        headers: { authorization: `Bearer ${secret}`, 'idempotency-key': randomUUID() },
        data: { amount, description },
      });
      expect(response.status(), await response.text()).toBe(200);
    },
  };
}

/** Counts the page's requests to each API path. */
function countRequests(page: Page) {
  const counts = new Map<string, number>();
  page.on('request', (r) => {
    const path = new URL(r.url()).pathname;
    counts.set(path, (counts.get(path) ?? 0) + 1);
  });
  return (path: string) => counts.get(path) ?? 0;
}

test('credits granted and spent outside the app move the balance on the page at once, with no polling and no reload', async ({
  page,
  request,
}, testInfo) => {
  const email = uniqueEmail('live');
  const count = countRequests(page);
  await signUp(page, email);
  const live = page.getByTestId('live-status');
  await expect(live).toHaveText('Live');
  await expect(stat(page, 'Balance')).toHaveText('0 credits');
  // Marks this document: a reload would lose it.
  await page.evaluate(() => Object.assign(window, { __sameDocument: true }));

  await grant(request, email, 100);
  await expect(stat(page, 'Balance')).toHaveText('100 credits');
  await expect(page.getByTestId('header-balance')).toHaveText('Available: 100 credits');
  // A grant may expire, so its event also refetches the balance once (for the lots expiring soon);
  // spends from credits that never expire ask for nothing.
  await expect(page.getByRole('region', { name: 'Recent activity' })).toContainText('Welcome credits');
  await page.waitForTimeout(500);
  const balanceReads = count('/api/v1/credits/balance');

  const backend = await userBackend(request, email);
  await backend.spend(7, 'Spent by the backend');
  await expect(stat(page, 'Balance')).toHaveText('93 credits');
  await expect(stat(page, 'Available')).toHaveText('93 credits');
  await expect(page.getByTestId('header-balance')).toHaveText('Available: 93 credits');
  // The history on the page follows too (refetched once on the event, not on a timer).
  await expect(page.getByRole('region', { name: 'Recent activity' })).toContainText('Spent by the backend');
  await screenshot(page, testInfo, '40-live-dashboard');

  // On another page of the app, the same stream: still no reload, no new stream, no balance reads.
  await nav(page, 'Credits').click();
  await expect(page.getByRole('heading', { level: 1, name: 'Credits' })).toBeVisible();
  await backend.spend(3, 'Spent again');
  await expect(stat(page, 'Balance')).toHaveText('90 credits');
  await expect(page.getByTestId('header-balance')).toHaveText('Available: 90 credits');

  // Nothing asks for the balance on a timer: none asked since, nor in the next 15 s (the old
  // checkout screen asked every 1.5 s; a default stale time would refetch after 10 s).
  await page.waitForTimeout(15_000);
  expect(count('/api/v1/credits/balance')).toBe(balanceReads);
  expect(count('/api/v1/credits/stream')).toBe(1);
  expect(await page.evaluate(() => (window as { __sameDocument?: boolean }).__sameDocument)).toBe(true);
  await expect(live).toHaveText('Live');
});

test('a change committed while the page\'s stream is still on its way shows once the stream opens', async ({
  page,
  request,
}) => {
  // The page reads the balance, then opens its stream; a grant committed between the two is not
  // in the stream (it starts at its registration), so the stream's first opening refetches.
  let release!: () => void;
  const granted = new Promise<void>((resolve) => (release = resolve));
  let held = 0;
  await page.route('**/api/v1/credits/stream', async (route) => {
    held++;
    await granted;
    await route.continue();
  });
  const email = uniqueEmail('race');
  await signUp(page, email);
  await expect(stat(page, 'Balance')).toHaveText('0 credits');
  await expect.poll(() => held).toBe(1);
  await grant(request, email, 100);
  release();
  await expect(page.getByTestId('live-status')).toHaveText('Live');
  await expect(stat(page, 'Balance')).toHaveText('100 credits');
  await expect(page.getByTestId('header-balance')).toHaveText('Available: 100 credits');
  await expect(page.getByRole('region', { name: 'Recent activity' })).toContainText('Welcome credits');
});

test('the low-balance banner appears on every page once a spend crosses an alert, and goes when credits are back', async ({
  page,
  request,
}, testInfo) => {
  const email = uniqueEmail('alerts');
  await signUp(page, email);
  await grant(request, email, 100);
  await expect(stat(page, 'Balance')).toHaveText('100 credits');

  await nav(page, 'Credits').click();
  const form = page.getByRole('form', { name: 'Low-balance alerts' });
  await form.getByLabel('Alert 1 (credits)').fill('50');
  await form.getByRole('button', { name: 'Add an alert' }).click();
  await form.getByLabel('Alert 2 (credits)').fill('2000000000000');
  await form.getByRole('button', { name: 'Save alerts' }).click();
  // The API's own message.
  await expect(form.getByRole('alert')).toHaveText('Thresholds must be between 0 and 1000000000000');
  await form.getByLabel('Alert 2 (credits)').fill('10');
  await form.getByRole('button', { name: 'Save alerts' }).click();
  await expect(form.getByText('Alerts saved: 50 credits, 10 credits.')).toBeVisible();
  const banner = page.getByTestId('low-balance-banner');
  await expect(banner).toHaveCount(0);

  const backend = await userBackend(request, email);
  await backend.spend(60, 'A big job');
  await expect(banner).toContainText('You have 40 credits available, at or below your alert at 50 credits.');
  await screenshot(page, testInfo, '41-low-balance-banner');

  await nav(page, 'History').click();
  await expect(page.getByRole('heading', { level: 1, name: 'History' })).toBeVisible();
  await expect(banner).toContainText('at or below your alert at 50 credits');
  await backend.spend(35, 'Another job');
  await expect(banner).toContainText('You have 5 credits available, at or below your alert at 10 credits.');

  await grant(request, email, 100, 'Top-up');
  await expect(banner).toHaveCount(0);
  await expect(page.getByTestId('header-balance')).toHaveText('Available: 105 credits');
});

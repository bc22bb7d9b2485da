import { expect, test, type Page } from '@playwright/test';
import { screenshot, signUp, stat, tollgate, uniqueEmail } from './helpers';

/** Every API route but the session's answers 503, as a proxy in front of a failing server would. */
async function dataRoutesDown(page: Page): Promise<void> {
  await page.route(
    (url) => url.pathname.startsWith('/api/v1/') && !url.pathname.startsWith('/api/v1/auth/'),
    (route) => route.fulfill({ status: 503, body: 'Service Unavailable' }),
  );
}

async function apiUp(page: Page): Promise<void> {
  await page.unrouteAll({ behavior: 'wait' });
}

/** The page's one retry control, and that it is the only one. */
async function onlyRetry(page: Page) {
  const retry = page.getByRole('button', { name: 'Try again' });
  await expect(retry).toHaveCount(1);
  return retry;
}

test('with the API answering 503 every page says what did not load, never its empty state, and one retry brings it back', async ({
  page,
}, testInfo) => {
  const email = uniqueEmail('outage');
  await signUp(page, email);
  tollgate('users', 'promote', email);
  tollgate('grant', '--email', email, '--amount', '40', '--reason', 'Welcome credits');
  await page.reload();
  await expect(page.getByRole('region', { name: 'Recent activity' }).getByRole('table')).toContainText('Welcome credits');

  await dataRoutesDown(page);
  await page.reload();
  const alert = page.getByRole('alert').filter({ hasText: 'Some of this page could not load' });
  await expect(alert).toContainText('Tollgate had a problem answering. Try again in a moment.');
  const activity = page.getByRole('region', { name: 'Recent activity' });
  await expect(activity).toContainText('Could not load your recent activity.');
  await expect(activity).not.toContainText('Nothing yet');
  await expect(page.getByRole('region', { name: 'Balance over time' })).toContainText('Could not load');
  await expect(page.getByRole('region', { name: 'Usage by feature (30 days)' })).toContainText('Could not load your usage.');
  await expect(stat(page, 'Balance')).toHaveText('Unavailable');
  await expect(page.getByText(/Loading/)).toHaveCount(0);
  await screenshot(page, testInfo, '50-dashboard-outage');

  const retry = await onlyRetry(page);
  await apiUp(page);
  await retry.click();
  await expect(activity.getByRole('table')).toContainText('Welcome credits');
  await expect(stat(page, 'Balance')).toHaveText('40 credits');
  await expect(alert).toHaveCount(0);

  // The other pages that load data: each says what failed, with one retry.
  for (const [path, heading, missing, empty] of [
    ['/history', 'History', 'Could not load your history.', 'No activity yet.'],
    ['/credits', 'Credits', 'Could not load the packs and plans on offer.', 'No packs are on offer right now.'],
    ['/api-keys', 'API keys', 'Could not load your keys.', 'You have no API keys.'],
    ['/admin', 'Admin', 'Could not load the customers.', 'No Stripe events received yet.'],
    ['/example', 'Example AI', 'Some of this page could not load', '…'],
  ] as const) {
    await dataRoutesDown(page);
    await page.goto(path);
    await expect(page.getByRole('heading', { level: 1, name: heading })).toBeVisible();
    await expect(page.getByRole('alert').filter({ hasText: 'Some of this page could not load' })).toBeVisible();
    await expect(page.getByText(missing).first()).toBeVisible();
    await expect(page.getByText(empty, { exact: true })).toHaveCount(0);
    await expect(page.getByText(/Loading/)).toHaveCount(0);
    const again = await onlyRetry(page);
    await apiUp(page);
    await again.click();
    await expect(page.getByRole('alert').filter({ hasText: 'Some of this page could not load' })).toHaveCount(0);
    await expect(page.getByText(missing)).toHaveCount(0);
  }
});

test('a reload while Tollgate does not answer says so instead of asking to sign in', async ({ page }, testInfo) => {
  await signUp(page, uniqueEmail('unreachable'));
  await page.route('**/api/v1/**', (route) => route.abort('internetdisconnected'));
  await page.reload();
  const alert = page.getByRole('alert');
  await expect(alert).toContainText('Could not restore your session');
  await expect(alert).toContainText('Could not reach Tollgate. Check your connection and try again.');
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByRole('heading', { name: 'Sign in to Tollgate' })).toHaveCount(0);
  await screenshot(page, testInfo, '51-session-unreachable');

  await apiUp(page);
  await alert.getByRole('button', { name: 'Try again' }).click();
  await expect(page.getByRole('heading', { level: 1, name: 'Dashboard' })).toBeVisible();
});

test('a sign-out that fails says so, keeps the session, and a retry signs out for real', async ({ page }, testInfo) => {
  await signUp(page, uniqueEmail('signout'));

  // The server fails the logout.
  await page.route('**/api/v1/auth/logout', (route) => route.fulfill({ status: 503, body: 'Service Unavailable' }));
  await page.getByRole('button', { name: 'Sign out' }).click();
  const failed = page.getByRole('alert').filter({ hasText: 'Sign-out failed: you are still signed in' });
  await expect(failed).toContainText('Tollgate had a problem answering. Try again in a moment.');
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByText('You have signed out.')).toHaveCount(0);
  await screenshot(page, testInfo, '52-sign-out-failed');
  // True: the session is alive, as a reload shows.
  await page.reload();
  await expect(page.getByRole('heading', { level: 1, name: 'Dashboard' })).toBeVisible();

  // The network is down.
  await page.unrouteAll({ behavior: 'wait' });
  await page.route('**/api/v1/auth/logout', (route) => route.abort('internetdisconnected'));
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(failed).toContainText('Could not reach Tollgate. Check your connection and try again.');
  await expect(page.getByRole('heading', { level: 1, name: 'Dashboard' })).toBeVisible();

  // Back up: the retry signs out, and the session stays gone.
  await page.unrouteAll({ behavior: 'wait' });
  await failed.getByRole('button', { name: 'Try signing out again' }).click();
  await expect(page).toHaveURL(/\/sign-in$/);
  await expect(page.getByText('You have signed out.')).toBeVisible();
  await page.goto('/');
  await expect(page).toHaveURL(/\/sign-in\?next=%2F$/);
});

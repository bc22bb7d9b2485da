import { expect, test } from '@playwright/test';
import { screenshot, signUp, tollgate, uniqueEmail } from './helpers';

test.use({ viewport: { width: 375, height: 812 }, isMobile: true, hasTouch: true });

test('every page fits a 375 px wide screen', async ({ page }, testInfo) => {
  await page.goto('/sign-in');
  await expect(page.getByRole('heading', { level: 1 })).toBeVisible();
  const fits = async () =>
    page.evaluate(() => document.documentElement.scrollWidth <= document.documentElement.clientWidth);
  expect(await fits()).toBe(true);
  await screenshot(page, testInfo, '40-mobile-sign-in');

  const email = uniqueEmail('mobile');
  await signUp(page, email);
  // An admin, so the admin page is among them.
  tollgate('users', 'promote', email);
  for (const [path, heading] of [
    ['/', 'Dashboard'],
    ['/credits', 'Credits'],
    ['/example', 'Example AI'],
    ['/history', 'History'],
    ['/api-keys', 'API keys'],
    ['/admin', 'Admin'],
  ] as const) {
    await page.goto(path);
    await expect(page.getByRole('heading', { level: 1, name: heading })).toBeVisible();
    await page.waitForLoadState('networkidle');
    expect(await fits(), `${path} overflows horizontally`).toBe(true);
    await screenshot(page, testInfo, `41-mobile-${heading.toLowerCase().replace(/\s+/g, '-')}`);
  }
});

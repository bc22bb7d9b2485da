import { expect, test } from '@playwright/test';
import { cell, screenshot, signUp, stat, tollgate, uniqueEmail } from './helpers';

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
    // Not 'networkidle': the live balance stream stays open. Settled when the stream is live and
    // nothing is loading any more.
    await expect(page.getByTestId('live-status')).toHaveText('Live');
    await expect(page.getByRole('status').filter({ hasText: /Loading|Checking/ })).toHaveCount(0);
    expect(await fits(), `${path} overflows horizontally`).toBe(true);
    await screenshot(page, testInfo, `41-mobile-${heading.toLowerCase().replace(/\s+/g, '-')}`);
  }
});

test('ledger tables keep the amount and the balance after in view on a phone, with no sideways scroll', async ({ page }, testInfo) => {
  const email = uniqueEmail('mobile-ledger');
  await signUp(page, email);
  tollgate('grant', '--email', email, '--amount', '1250', '--reason', 'A welcome grant with a long reason that has to wrap');
  tollgate('grant', '--email', email, '--amount', '30', '--reason', 'Referral');

  const width = page.viewportSize()!.width;
  for (const [path, name] of [
    ['/history', 'history'],
    ['/', 'dashboard'],
  ] as const) {
    await page.goto(path);
    // The ledger's table: the balance chart's legend, drawn when its code has loaded, is one too.
    const table = page.getByRole('table', { name: /ledger entries/i });
    await expect(table.getByRole('row').filter({ hasText: 'Referral' })).toHaveCount(1);
    for (const [text, amount, after] of [
      ['Referral', '+30', '1,280'],
      ['A welcome grant', '+1,250', '1,250'],
    ] as const) {
      const row = table.getByRole('row').filter({ hasText: text });
      for (const [header, value] of [
        ['Amount', amount],
        ['Balance after', after],
      ] as const) {
        const target = await cell(page, row, header);
        await expect(target).toHaveText(value);
        // Wholly within the screen's width (the page scrolls down, never sideways).
        const box = (await target.boundingBox())!;
        expect(box.x, `${header} of "${text}" on ${path}`).toBeGreaterThanOrEqual(0);
        expect(box.x + box.width, `${header} of "${text}" on ${path}`).toBeLessThanOrEqual(width);
      }
      // The date is still there, inside the entry.
      await expect(row.locator('time').filter({ visible: true })).toHaveCount(1);
    }
    const scrolls = await table.evaluate((t) => {
      const box = t.parentElement!;
      return box.scrollWidth > box.clientWidth;
    });
    expect(scrolls, `the ${name} table scrolls sideways`).toBe(false);
    await screenshot(page, testInfo, `42-mobile-ledger-${name}`);
  }
});

test('on a phone the example feature’s result scrolls into view and takes focus', async ({ page }, testInfo) => {
  const email = uniqueEmail('mobile-example');
  await signUp(page, email);
  tollgate('grant', '--email', email, '--amount', '100', '--reason', 'Welcome');
  await page.goto('/example');
  await expect(stat(page, 'Available')).toHaveText('100 credits');
  await page.getByRole('button', { name: 'Use sample text' }).click();
  await expect(page.getByText(/Estimated cost:/)).toBeVisible();
  const summary = page.getByRole('region', { name: 'Summary' });
  await expect(summary).toHaveCount(0);
  await page.getByRole('button', { name: 'Summarise' }).click();

  await expect(summary).toBeFocused();
  await expect(summary.getByRole('heading', { name: 'Summary' })).toBeInViewport();
  await expect(page.getByTestId('summary')).toBeInViewport();
  await screenshot(page, testInfo, '43-mobile-example-result');
});

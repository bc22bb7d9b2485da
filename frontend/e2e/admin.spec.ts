import { expect, test } from '@playwright/test';
import { nav, screenshot, signUp, stat, tollgate, uniqueEmail } from './helpers';

test('an admin grants credits, reads the reconciliation and the Stripe inbox', async ({ page, browser }, testInfo) => {
  // A user to receive the grant.
  const other = await browser.newPage();
  const receiver = uniqueEmail('receiver');
  await signUp(other, receiver);

  const admin = uniqueEmail('admin');
  await signUp(page, admin);
  await expect(nav(page, 'Admin')).toHaveCount(0);
  tollgate('users', 'promote', admin);
  await page.reload();
  await nav(page, 'Admin').click();
  await expect(page.getByRole('heading', { level: 1, name: 'Admin' })).toBeVisible();

  const grant = page.getByRole('form', { name: 'Grant credits' });
  await grant.getByLabel("User's email").fill(receiver);
  await grant.getByLabel('Credits').fill('50');
  await grant.getByLabel('Reason').fill('Welcome bonus');
  await grant.getByRole('button', { name: 'Grant credits' }).click();
  await expect(grant.getByText(`Granted 50 credits to ${receiver}. Their balance is now 50 credits.`)).toBeVisible();

  // An unknown email is pointed out next to the field.
  await grant.getByLabel("User's email").fill(uniqueEmail('ghost'));
  await grant.getByLabel('Credits').fill('5');
  await grant.getByLabel('Reason').fill('Nobody');
  await grant.getByRole('button', { name: 'Grant credits' }).click();
  await expect(grant.getByLabel("User's email")).toHaveAccessibleDescription('No user has this email.');

  await expect(page.getByText('The books balance')).toBeVisible();
  const inbox = page.getByRole('region', { name: 'Stripe event inbox' });
  await expect(inbox.getByText('No Stripe events received yet.')).toBeVisible();
  await inbox.getByLabel('Status').selectOption('failed');
  await expect(inbox.getByText('No failed events.')).toBeVisible();
  await screenshot(page, testInfo, '30-admin');

  // The receiver sees the grant.
  await other.reload();
  await expect(stat(other, 'Balance')).toHaveText('50 credits');
  await other.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'History' }).click();
  await expect(other.getByRole('table')).toContainText('Welcome bonus');
  await expect(other.getByRole('table')).toContainText('+50');
  await other.close();
});

test('the admin page is closed to other users', async ({ page }) => {
  await signUp(page, uniqueEmail('plain'));
  await page.goto('/admin');
  await expect(page.getByText('You need the admin role to see this page.')).toBeVisible();
});

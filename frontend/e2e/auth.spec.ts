import { expect, test } from '@playwright/test';
import { PASSWORD, screenshot, signIn, signUp, uniqueEmail } from './helpers';

test('sign-up shows the server’s field errors next to the fields', async ({ page }, testInfo) => {
  await page.goto('/sign-up');
  await expect(page.getByText('Sandbox mode: no real payments.')).toBeVisible();
  await page.getByLabel('Email').fill('not-an-email');
  await page.getByLabel('Password').fill('short');
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page.getByLabel('Email')).toHaveAccessibleDescription('Email is not a valid email address');
  await expect(page.getByLabel('Password')).toHaveAccessibleDescription(/Password must be at least 8 characters/);
  await expect(page.getByLabel('Email')).toHaveAttribute('aria-invalid', 'true');
  await screenshot(page, testInfo, '20-sign-up-errors');

  // An email already registered.
  const email = uniqueEmail('taken');
  await signUp(page, email);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.goto('/sign-up');
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page.getByRole('alert')).toBeVisible();
  await expect(page).toHaveURL(/\/sign-up$/);
});

test('a wrong password is refused without saying whether the email exists', async ({ page }, testInfo) => {
  await page.goto('/sign-in');
  await page.getByLabel('Email').fill(uniqueEmail('nobody'));
  await page.getByLabel('Password').fill('wrong password here');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('alert')).toHaveText('The email or password is wrong');
  await screenshot(page, testInfo, '21-sign-in-error');
});

test('a signed-out visitor to a deep link signs in and lands where they were going', async ({ page }) => {
  const email = uniqueEmail('deeplink');
  await signUp(page, email);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page).toHaveURL(/\/sign-in$/);

  await page.goto('/api-keys');
  await expect(page).toHaveURL(/\/sign-in\?next=%2Fapi-keys$/);
  await signIn(page, email);
  await expect(page).toHaveURL(/\/api-keys$/);
  await expect(page.getByRole('heading', { level: 1, name: 'API keys' })).toBeVisible();
});

test('a reload keeps the session (the refresh cookie restores it)', async ({ page }) => {
  await signUp(page, uniqueEmail('reload'));
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'History' }).click();
  await page.reload();
  await expect(page).toHaveURL(/\/history$/);
  await expect(page.getByRole('heading', { level: 1, name: 'History' })).toBeVisible();
  await expect(page.getByText('No activity yet.')).toBeVisible();
});

test('signing in works from the keyboard alone', async ({ page }) => {
  const email = uniqueEmail('keyboard');
  await signUp(page, email);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page).toHaveURL(/\/sign-in$/);

  await page.keyboard.press('Tab');
  await expect(page.getByRole('link', { name: 'Skip to content' })).toBeFocused();
  await page.keyboard.press('Tab');
  await expect(page.getByLabel('Email')).toBeFocused();
  await page.keyboard.type(email);
  await page.keyboard.press('Tab');
  await expect(page.getByLabel('Password')).toBeFocused();
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press('Enter');
  await expect(page.getByRole('heading', { level: 1, name: 'Dashboard' })).toBeVisible();
});

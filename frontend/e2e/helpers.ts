import { expect, type Page, type TestInfo } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export const PASSWORD = 'correct horse battery staple';

export function uniqueEmail(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}@example.com`;
}

const SCREENSHOTS = join(import.meta.dirname, '..', 'test-results', 'screenshots');

/** Saves a full-page screenshot as test-results/screenshots/NAME.png and attaches it to the report. */
export async function screenshot(page: Page, testInfo: TestInfo, name: string): Promise<void> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  await testInfo.attach(name, { path, contentType: 'image/png' });
}

/** Creates an account through the sign-up page and lands on the dashboard. */
export async function signUp(page: Page, email: string, name = 'Ada Lovelace'): Promise<void> {
  await page.goto('/sign-up');
  await page.getByLabel('Name (optional)').fill(name);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await expect(page.getByRole('heading', { level: 1, name: 'Dashboard' })).toBeVisible();
}

export async function signIn(page: Page, email: string): Promise<void> {
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** The main navigation's link to a page. */
export function nav(page: Page, name: string) {
  return page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name, exact: true });
}

/** Runs the tollgate CLI against the database the test server uses. */
export function tollgate(...args: string[]): string {
  const bin = process.env.TOLLGATE_E2E_BIN;
  const env = process.env.TOLLGATE_E2E_ENV;
  if (!bin || !env) throw new Error('run the specs through playwright.config.ts');
  return execFileSync(bin, args, { env: { ...process.env, ...(JSON.parse(env) as Record<string, string>) }, encoding: 'utf8' });
}

/** The value of a figure on the page, by the label above it ("Balance", "Available", ...). */
export function stat(page: Page, label: string) {
  return page
    .locator('dl > div')
    .filter({ has: page.locator('dt').getByText(label, { exact: true }) })
    .locator('dd')
    .first();
}

/** The cell of `row` under the column headed `header` in the page's table. */
export async function cell(page: Page, row: ReturnType<Page['locator']>, header: string) {
  const headers = await page.getByRole('table').getByRole('columnheader').allTextContents();
  const index = headers.findIndex((h) => h.trim() === header);
  if (index < 0) throw new Error(`no column "${header}" in ${headers.join(', ')}`);
  return row.getByRole('cell').nth(index);
}

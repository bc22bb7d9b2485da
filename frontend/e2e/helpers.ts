import { expect, type Page, type TestInfo } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
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

/**
 * The cell of `row` under the column headed `header` in the row's own table (a page may have
 * others: a chart's legend is a table too).
 */
export async function cell(_page: Page, row: ReturnType<Page['locator']>, header: string) {
  const headers = await row.locator('xpath=ancestor::table[1]').getByRole('columnheader').allTextContents();
  const index = headers.findIndex((h) => h.trim() === header);
  if (index < 0) throw new Error(`no column "${header}" in ${headers.join(', ')}`);
  return row.getByRole('cell').nth(index);
}

/** The admin API key the test server runs with (playwright.config.ts). */
export const ADMIN_KEY = 'admin-key-for-tests-123';

/**
 * A product's backend calling Tollgate with a server key over plain `fetch`. `idempotent` adds a
 * fresh Idempotency-Key, which the writes that move credits need.
 */
export function serverKeyApi(baseURL: string, secret: string) {
  return (method: string, path: string, body?: unknown, idempotent = false): Promise<Response> =>
    fetch(`${baseURL}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${secret}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(idempotent ? { 'idempotency-key': randomUUID() } : {}),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
}

/** Creates a server key with the admin API key (no browser), returning its secret. */
export async function createServerKey(baseURL: string, name: string, scopes: readonly string[]): Promise<string> {
  const response = await fetch(`${baseURL}/api/v1/admin/server-keys`, {
    method: 'POST',
    headers: { 'x-admin-key': ADMIN_KEY, 'content-type': 'application/json' },
    body: JSON.stringify({ name, scopes }),
  });
  if (response.status !== 201) throw new Error(`creating a server key: HTTP ${response.status} ${await response.text()}`);
  return ((await response.json()) as { secret: string }).secret;
}

/** True when the page is no wider than the viewport (nothing scrolls sideways). */
export function fitsViewport(page: Page): Promise<boolean> {
  return page.evaluate(() => document.documentElement.scrollWidth <= document.documentElement.clientWidth);
}

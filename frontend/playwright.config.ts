import { defineConfig, devices } from '@playwright/test';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

// The browser tests run against the real Tollgate binary, over a fresh SQLite database and data
// directory, serving the SPA built into dist/ (`npm run build` first), in Stripe sandbox mode.
const targetDir = process.env.CARGO_TARGET_DIR ?? '/var/tmp/tollgate-target';
const binary = process.env.TOLLGATE_BIN ?? join(targetDir, 'debug', 'tollgate');
const port = Number(process.env.E2E_PORT ?? 18181);
const baseURL = `http://127.0.0.1:${port}`;
// Where the gateway's upstream listens: a stand-in for an LLM provider that the gateway spec starts.
const upstreamPort = Number(process.env.E2E_UPSTREAM_PORT ?? port + 1);
process.env.TOLLGATE_E2E_UPSTREAM_PORT = String(upstreamPort);

// Created once by the runner; the workers inherit the variable, so they see the same directory
// (the admin spec runs the CLI against the server's database).
process.env.TOLLGATE_E2E_DIR ??= mkdtempSync(join(tmpdir(), 'tollgate-e2e-'));
const dataDir = process.env.TOLLGATE_E2E_DIR;

const serverEnv: Record<string, string> = {
  BIND: `127.0.0.1:${port}`,
  SITE_URL: baseURL,
  TOLLGATE_DATA_DIR: dataDir,
  DATABASE_URL: `sqlite://${join(dataDir, 'tollgate.db')}?mode=rwc`,
  FRONTEND_DIR: resolve(import.meta.dirname, 'dist'),
  ADMIN_API_KEY: 'admin-key-for-tests-123',
  JWT_SECRET: 'e2e-jwt-secret-that-is-long-enough-0123456789',
  PASSWORD_HASH_MEMORY_KIB: '1024',
  // Every test signs in from 127.0.0.1; the per-address limit is covered by the Rust tests.
  RATE_LIMIT_AUTH_PER_MINUTE: '100000',
  PASSWORD_HASH_ITERATIONS: '1',
  LOGIN_MAX_FAILURES: '50',
  SQLITE_SYNCHRONOUS: 'NORMAL',
  RUST_LOG: 'warn',
  GATEWAY_UPSTREAM_URL: `http://127.0.0.1:${upstreamPort}/v1`,
  GATEWAY_TIMEOUT_SECONDS: '20',
  // The webhooks spec's receiver fails once: retry within a second, not the default 5 s.
  WEBHOOK_RETRY_SCHEDULE: '1,1,1,1,1',
};
// For the specs that run the CLI against the same database (see e2e/helpers.ts).
process.env.TOLLGATE_E2E_BIN = binary;
process.env.TOLLGATE_E2E_ENV = JSON.stringify(serverEnv);

if (!existsSync(binary)) {
  throw new Error(
    `The Tollgate binary is missing at ${binary}. Build it first: ` +
      '(cd .. && CARGO_TARGET_DIR=/var/tmp/tollgate-target cargo build -p tollgate), or set TOLLGATE_BIN.',
  );
}
if (!existsSync(resolve(import.meta.dirname, 'dist', 'index.html'))) {
  throw new Error('dist/index.html is missing: run `npm run build` before the browser tests.');
}

export default defineConfig({
  testDir: './e2e',
  outputDir: './test-results/artifacts',
  fullyParallel: false,
  workers: 1,
  forbidOnly: Boolean(process.env.CI),
  retries: 0,
  timeout: 60_000,
  expect: { timeout: 10_000 },
  reporter: process.env.CI ? [['list'], ['html', { open: 'never', outputFolder: 'playwright-report' }]] : 'list',
  globalTeardown: './e2e/global-teardown.ts',
  use: {
    baseURL,
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
  },
  projects: [
    {
      name: 'chromium',
      use: {
        ...devices['Desktop Chrome'],
        launchOptions: {
          executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
          args: [
            '--headless',
            '--no-sandbox',
            '--disable-gpu',
            '--disable-quic',
            '--no-first-run',
            '--disable-background-networking',
            '--disable-component-update',
            '--disable-sync',
          ],
        },
      },
    },
  ],
  webServer: {
    command: `"${binary}" serve`,
    url: `${baseURL}/readyz`,
    env: serverEnv,
    reuseExistingServer: false,
    timeout: 60_000,
    stdout: 'ignore',
    stderr: 'pipe',
  },
});

// Starts the real Tollgate binary on a free port over a fresh SQLite database, for the
// integration test, and mints server keys with the admin key.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ADMIN_KEY = 'admin-key-for-sdk-tests-0123456789';

const targetDir = process.env.CARGO_TARGET_DIR ?? '/var/tmp/tollgate-target';
export const binary = process.env.TOLLGATE_BIN ?? join(targetDir, 'debug', 'tollgate');

export interface RunningServer {
  baseUrl: string;
  /** The server's stderr so far, to show when a test fails. */
  logs(): string;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** `extraEnv` adds to or overrides the server's settings (e.g. a tight rate limit). */
export async function startServer(extraEnv: Record<string, string> = {}): Promise<RunningServer> {
  if (!existsSync(binary)) {
    throw new Error(
      `The Tollgate binary is missing at ${binary}. Build it first: ` +
        '(cd ../.. && cargo build -p tollgate), or set TOLLGATE_BIN.',
    );
  }
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-sdk-'));
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  // A clean environment (no STRIPE_* or DATABASE_URL from the caller's shell) and a working
  // directory without a .env file.
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    TOLLGATE_ENV: 'development',
    BIND: `127.0.0.1:${port}`,
    SITE_URL: baseUrl,
    TOLLGATE_DATA_DIR: dir,
    DATABASE_URL: `sqlite://${join(dir, 'tollgate.db')}?mode=rwc`,
    FRONTEND_DIR: join(dir, 'no-frontend'),
    ADMIN_API_KEY: ADMIN_KEY,
    JWT_SECRET: 'sdk-test-jwt-secret-that-is-long-enough-0123456789',
    PAYMENTS: 'sandbox',
    PASSWORD_HASH_MEMORY_KIB: '1024',
    PASSWORD_HASH_ITERATIONS: '1',
    SQLITE_SYNCHRONOUS: 'NORMAL',
    RUST_LOG: 'warn',
    ...extraEnv,
  };
  const child: ChildProcess = spawn(binary, ['serve'], { cwd: dir, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr += chunk;
  });
  let exited = false;
  child.on('exit', () => {
    exited = true;
  });

  const stop = async () => {
    if (!exited) {
      const gone = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await gone;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) {
      await stop();
      throw new Error(`tollgate exited before it was ready:\n${stderr}`);
    }
    try {
      const response = await fetch(`${baseUrl}/readyz`);
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`tollgate was not ready within 30 s:\n${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { baseUrl, logs: () => stderr, stop };
}

/** A new server key with these scopes, minted with the admin key: its secret (`tg_sk_…`). */
export async function mintServerKey(baseUrl: string, scopes: string[], name = 'sdk test'): Promise<string> {
  const response = await fetch(`${baseUrl}/api/v1/admin/server-keys`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-admin-key': ADMIN_KEY },
    body: JSON.stringify({ name, scopes }),
  });
  const body = (await response.json()) as { secret?: string };
  if (response.status !== 201 || typeof body.secret !== 'string') {
    throw new Error(`minting a server key answered ${response.status}: ${JSON.stringify(body)}`);
  }
  return body.secret;
}

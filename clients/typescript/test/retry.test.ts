// The retry rules, against a tiny local HTTP server that answers what each test scripts.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Tollgate, TollgateError, isRetrySafe } from '../src/index.js';
import { backoffDelay, DEFAULT_RETRY_POLICY, parseRetryAfter } from '../src/retry.js';

interface Seen {
  method: string;
  url: string;
  idempotencyKey: string | undefined;
  authorization: string | undefined;
  body: string;
}
type Answer = (res: ServerResponse, req: IncomingMessage) => void;

const spendAnswer = {
  transfer: { id: '00000000-0000-0000-0000-000000000001', amount: 5 },
  balance: { balance: 95, available: 95, held: 0, debt: 0 },
};

function json(status: number, body: unknown, headers: Record<string, string> = {}): Answer {
  return (res) => {
    res.writeHead(status, {
      'content-type': status >= 400 ? 'application/problem+json' : 'application/json',
      ...headers,
    });
    res.end(JSON.stringify(body));
  };
}

function problem(status: number, code: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}) {
  return json(
    status,
    {
      type: `urn:tollgate:problem:${code}`,
      title: code,
      status,
      detail: `detail of ${code}`,
      code,
      request_id: 'req-1',
      ...extra,
    },
    headers,
  );
}

/** Destroys the connection without an answer: a network error for the client. */
const hangUp: Answer = (res) => {
  res.socket?.destroy();
};

let server: Server;
let baseUrl: string;
let seen: Seen[];
let script: Answer[];

beforeEach(async () => {
  seen = [];
  script = [];
  server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
    });
    req.on('end', () => {
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        idempotencyKey: req.headers['idempotency-key'] as string | undefined,
        authorization: req.headers.authorization,
        body,
      });
      const answer = script.shift() ?? json(200, spendAnswer);
      answer(res, req);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

function sdk(maxRetries?: number) {
  return new Tollgate({ serverKey: 'tg_sk_test', baseUrl, maxRetries, retry: { baseDelayMs: 1, maxDelayMs: 5 } });
}

describe('retries', () => {
  it('retries a spend after 503 twice, sending the same Idempotency-Key and body each time', async () => {
    script = [problem(503, 'database_unavailable'), problem(503, 'database_unavailable'), json(200, spendAnswer)];
    const result = await sdk().credits.spend('user 42/ä', { amount: 5, description: 'one call' });

    expect(result.balance.available).toBe(95);
    expect(result.replayed).toBe(false);
    expect(seen).toHaveLength(3);
    const key = seen[0]?.idempotencyKey;
    expect(key).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    for (const request of seen) {
      expect(request.method).toBe('POST');
      expect(request.url).toBe('/api/v1/customers/user%2042%2F%C3%A4/spend');
      expect(request.idempotencyKey).toBe(key);
      expect(request.authorization).toBe('Bearer tg_sk_test');
      expect(JSON.parse(request.body)).toEqual({ amount: 5, description: 'one call' });
    }
  });

  it('uses the caller\'s idempotency key, and a new one per call when none is given', async () => {
    const tollgate = sdk();
    await tollgate.credits.spend('u', { amount: 1 }, { idempotencyKey: 'job-7' });
    await tollgate.credits.spend('u', { amount: 1 });
    await tollgate.credits.spend('u', { amount: 1 });
    expect(seen.map((r) => r.idempotencyKey)[0]).toBe('job-7');
    expect(seen[1]?.idempotencyKey).not.toBe(seen[2]?.idempotencyKey);
  });

  it('reports a replay from the Idempotent-Replayed header', async () => {
    script = [json(200, spendAnswer, { 'Idempotent-Replayed': 'true' })];
    const result = await sdk().credits.spend('u', { amount: 5 }, { idempotencyKey: 'k' });
    expect(result.replayed).toBe(true);
  });

  it('waits as long as Retry-After says on 429', async () => {
    script = [problem(429, 'rate_limited', {}, { 'Retry-After': '1' })];
    const started = Date.now();
    const balance = await sdk().credits.balance('u');
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(balance).toEqual(spendAnswer);
    expect(seen).toHaveLength(2);
  });

  it('retries a network error on a GET', async () => {
    script = [hangUp];
    await sdk().customers.get('u');
    expect(seen).toHaveLength(2);
  });

  it('retries POST /check, which writes nothing, without an idempotency key', async () => {
    script = [problem(500, 'internal_error')];
    await sdk().credits.check('u', { feature: 'example.summarize', quantity: 1 });
    expect(seen).toHaveLength(2);
    expect(seen[0]?.idempotencyKey).toBeUndefined();
  });

  it('does not retry a POST without an idempotency key', async () => {
    script = [problem(503, 'database_unavailable')];
    const error = await sdk()
      .billing.checkoutSession('u', { price_id: 'sandbox_pack_100' })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TollgateError);
    expect((error as TollgateError).status).toBe(503);
    expect(seen).toHaveLength(1);
  });

  it('retries a checkout only when it carries the caller\'s idempotency key', async () => {
    script = [problem(502, 'stripe_unavailable')];
    await sdk().billing.checkoutSession('u', { price_id: 'price_1' }, { idempotencyKey: 'checkout-1' });
    expect(seen.map((r) => r.idempotencyKey)).toEqual(['checkout-1', 'checkout-1']);
  });

  it('gives up after maxRetries and throws the last answer as a TollgateError', async () => {
    script = [0, 1, 2, 3, 4].map(() => problem(503, 'database_unavailable'));
    const error = (await sdk(2)
      .credits.spend('u', { amount: 1 })
      .catch((e: unknown) => e)) as TollgateError;
    expect(error).toBeInstanceOf(TollgateError);
    expect(error.status).toBe(503);
    expect(error.code).toBe('database_unavailable');
    expect(error.requestId).toBe('req-1');
    expect(seen).toHaveLength(3);
  });

  it('does not retry a 4xx, and exposes the problem', async () => {
    script = [problem(402, 'insufficient_credits', { available: 3, requested: 5 })];
    const error = (await sdk()
      .credits.spend('u', { amount: 5 })
      .catch((e: unknown) => e)) as TollgateError;
    expect(error.status).toBe(402);
    expect(error.code).toBe('insufficient_credits');
    expect(error.detail).toBe('detail of insufficient_credits');
    expect(error.problem?.available).toBe(3);
    expect(seen).toHaveLength(1);
  });

  it('throws network_error when the server cannot be reached', async () => {
    const tollgate = new Tollgate({ serverKey: 'k', baseUrl: 'http://127.0.0.1:1', maxRetries: 1, retry: { baseDelayMs: 1 } });
    const error = (await tollgate.credits.balance('u').catch((e: unknown) => e)) as TollgateError;
    expect(error).toBeInstanceOf(TollgateError);
    expect(error.status).toBe(0);
    expect(error.code).toBe('network_error');
  });

  it('sends once when maxRetries is 0', async () => {
    script = [problem(503, 'database_unavailable')];
    await expect(sdk(0).credits.balance('u')).rejects.toBeInstanceOf(TollgateError);
    expect(seen).toHaveLength(1);
  });
});

describe('retry rules', () => {
  const request = (method: string, path: string, headers: Record<string, string> = {}) =>
    new Request(`http://x${path}`, { method, headers });

  it('knows which requests are safe to send twice', () => {
    expect(isRetrySafe(request('GET', '/api/v1/customers'))).toBe(true);
    expect(isRetrySafe(request('PUT', '/api/v1/customers/u'))).toBe(true);
    expect(isRetrySafe(request('POST', '/api/v1/customers/u/spend', { 'Idempotency-Key': 'k' }))).toBe(true);
    expect(isRetrySafe(request('POST', '/api/v1/customers/u/check'))).toBe(true);
    expect(isRetrySafe(request('POST', '/api/v1/customers/u/spend'))).toBe(false);
    expect(isRetrySafe(request('POST', '/api/v1/customers/u/checkout-session'))).toBe(false);
  });

  it('reads Retry-After as seconds or as an HTTP date', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    expect(parseRetryAfter(null)).toBeUndefined();
    expect(parseRetryAfter('soon')).toBeUndefined();
    const now = Date.parse('2026-12-04T10:00:00Z');
    expect(parseRetryAfter('Fri, 04 Dec 2026 10:00:05 GMT', now)).toBe(5000);
  });

  it('backs off exponentially, jittered between half and all of the step, capped', () => {
    const policy = { ...DEFAULT_RETRY_POLICY, baseDelayMs: 100, maxDelayMs: 1000 };
    expect(backoffDelay(0, policy, () => 0)).toBe(50);
    expect(backoffDelay(0, policy, () => 1)).toBe(100);
    expect(backoffDelay(2, policy, () => 0)).toBe(200);
    expect(backoffDelay(10, policy, () => 1)).toBe(1000);
  });
});

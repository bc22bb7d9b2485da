// The SDK against the real Tollgate binary: a fresh SQLite database, a server key minted with
// the admin key, and a customer's whole day through the SDK.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Tollgate, TollgateError } from '../src/index.js';
import { mintServerKey, startServer, type RunningServer } from './server.js';

const ALL_SCOPES = ['customers:write', 'customers:read', 'credits:read', 'credits:spend', 'credits:grant', 'billing:write'];
// Printable, with characters that must be escaped in a path.
const CUSTOMER = 'acme/user #1?x=ä';

let server: RunningServer;
let tollgate: Tollgate;

async function failure(promise: Promise<unknown>): Promise<TollgateError> {
  const outcome = await promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
  if (!('error' in outcome)) throw new Error(`expected a TollgateError, got ${JSON.stringify(outcome.value)}`);
  expect(outcome.error).toBeInstanceOf(TollgateError);
  return outcome.error as TollgateError;
}

beforeAll(async () => {
  server = await startServer();
  tollgate = new Tollgate({ serverKey: await mintServerKey(server.baseUrl, ALL_SCOPES), baseUrl: server.baseUrl });
});

afterAll(async () => {
  await server?.stop();
});

describe('against a real server', () => {
  it('upserts a customer by external id, then reads and lists it', async () => {
    const created = await tollgate.customers.upsert(CUSTOMER, {
      email: 'ada@example.com',
      name: 'Ada',
      metadata: { plan: 'team' },
    });
    expect(created.created).toBe(true);
    expect(created.external_id).toBe(CUSTOMER);
    expect(created.email).toBe('ada@example.com');
    expect(created.balance).toBe(0);

    const updated = await tollgate.customers.upsert(CUSTOMER, { name: 'Ada Lovelace' });
    expect(updated.created).toBe(false);
    expect(updated.id).toBe(created.id);
    expect(updated.name).toBe('Ada Lovelace');

    const fetched = await tollgate.customers.get(CUSTOMER);
    expect(fetched.id).toBe(created.id);
    expect(fetched.metadata).toEqual({ plan: 'team' });

    const page = await tollgate.customers.list({ q: 'acme/', limit: 10 });
    expect(page.data.map((c) => c.external_id)).toContain(CUSTOMER);
  });

  it('grants credits, checks, and spends once per idempotency key', async () => {
    const grant = await tollgate.credits.grant(CUSTOMER, { amount: 100, reason: 'Welcome bonus' });
    expect(grant.balance.available).toBe(100);
    expect(grant.replayed).toBe(false);

    const check = await tollgate.credits.check(CUSTOMER, { feature: 'example.summarize', quantity: 2 });
    expect(check).toMatchObject({ allowed: true, price: 10, available: 100, reason: null });
    const tooMuch = await tollgate.credits.check(CUSTOMER, { amount: 1000 });
    expect(tooMuch).toMatchObject({ allowed: false, reason: 'insufficient_credits' });

    const first = await tollgate.credits.spend(
      CUSTOMER,
      { feature: 'example.summarize', quantity: 2, description: 'two summaries' },
      { idempotencyKey: 'sdk-spend-1' },
    );
    expect(first.replayed).toBe(false);
    expect(first.transfer.amount).toBe(10);
    expect(first.balance.available).toBe(90);

    // A retry with the same key: the first answer again, charged once.
    const retry = await tollgate.credits.spend(
      CUSTOMER,
      { feature: 'example.summarize', quantity: 2, description: 'two summaries' },
      { idempotencyKey: 'sdk-spend-1' },
    );
    expect(retry.replayed).toBe(true);
    expect(retry.transfer.id).toBe(first.transfer.id);
    expect((await tollgate.credits.balance(CUSTOMER)).available).toBe(90);
    expect((await tollgate.customers.get(CUSTOMER)).balance).toBe(90);
  });

  it('retries a spend whose answer was lost with the same key: replayed, charged once', async () => {
    // The first answer reaches the server's side of the wire but not the caller: the server has
    // spent, the SDK sees a network error and retries.
    const sent: (string | null)[] = [];
    let dropped = false;
    const lossy = new Tollgate({
      serverKey: await mintServerKey(server.baseUrl, ALL_SCOPES, 'lossy'),
      baseUrl: server.baseUrl,
      retry: { baseDelayMs: 1 },
      fetch: async (request, init) => {
        sent.push(request.headers.get('Idempotency-Key'));
        const response = await fetch(request, init);
        if (!dropped && request.url.endsWith('/spend')) {
          dropped = true;
          await response.body?.cancel();
          throw new TypeError('fetch failed: the connection was reset');
        }
        return response;
      },
    });
    const spent = await lossy.credits.spend(CUSTOMER, { amount: 1 });
    expect(sent).toHaveLength(2);
    expect(sent[0]).toBeTruthy();
    expect(sent[1]).toBe(sent[0]);
    expect(spent.replayed).toBe(true);
    expect(spent.balance.available).toBe(89);
    expect((await tollgate.credits.balance(CUSTOMER)).available).toBe(89);
    // Back to the 90 the tests below expect.
    await tollgate.credits.grant(CUSTOMER, { amount: 1, reason: 'test top-up' });
  });

  it('holds credits, then captures the actual cost', async () => {
    const hold = await tollgate.holds.create(CUSTOMER, { amount: 30, description: 'a long job' });
    expect(hold.hold.status).toBe('open');
    expect(hold.balance).toMatchObject({ available: 60, held: 30 });
    expect((await tollgate.holds.get(CUSTOMER, hold.hold.id)).amount).toBe(30);

    const captured = await tollgate.holds.capture(CUSTOMER, hold.hold.id, { amount: 20 });
    expect(captured.hold.status).toBe('captured');
    expect(captured.hold.captured_amount).toBe(20);
    expect(captured.balance).toMatchObject({ balance: 70, available: 70, held: 0 });

    const another = await tollgate.holds.create(CUSTOMER, { amount: 5 });
    const released = await tollgate.holds.release(CUSTOMER, another.hold.id);
    expect(released.hold.status).toBe('released');
    expect(released.balance.available).toBe(70);

    const ledger = await tollgate.credits.ledger(CUSTOMER);
    expect(ledger.entries.length).toBeGreaterThanOrEqual(3);
  });

  it('refuses a spend the customer cannot afford with insufficient_credits', async () => {
    const error = await failure(tollgate.credits.spend(CUSTOMER, { amount: 1000 }));
    expect(error.status).toBe(402);
    expect(error.code).toBe('insufficient_credits');
    expect(error.problem?.available).toBe(70);
    expect(error.problem?.requested).toBe(1000);
    expect((await tollgate.credits.balance(CUSTOMER)).available).toBe(70);
  });

  it('refuses a key without the route\'s scope with missing_scope', async () => {
    const readOnly = new Tollgate({
      serverKey: await mintServerKey(server.baseUrl, ['customers:read', 'credits:read'], 'read only'),
      baseUrl: server.baseUrl,
    });
    expect((await readOnly.credits.balance(CUSTOMER)).available).toBe(70);
    const error = await failure(readOnly.credits.spend(CUSTOMER, { amount: 1 }));
    expect(error.status).toBe(403);
    expect(error.code).toBe('missing_scope');
    expect(error.problem?.required_scope).toBe('credits:spend');
    expect((await readOnly.credits.balance(CUSTOMER)).available).toBe(70);
  });

  it('answers customer_not_found for an unknown customer', async () => {
    const error = await failure(tollgate.customers.get('nobody'));
    expect(error.status).toBe(404);
    expect(error.code).toBe('customer_not_found');
  });

  it('makes a single-use portal link and a sandbox checkout session', async () => {
    const portal = await tollgate.billing.portalSession(CUSTOMER, { return_url: `${server.baseUrl}/account` });
    expect(portal.url.startsWith(`${server.baseUrl}/hosted/open?token=`)).toBe(true);

    const checkout = await tollgate.billing.checkoutSession(CUSTOMER, { price_id: 'sandbox_pack_100' });
    expect(checkout.session_id).toBeTruthy();
    expect(checkout.url).toBeTruthy();
  });
});

describe('against a server that rate-limits', () => {
  let limited: RunningServer;
  beforeAll(async () => {
    limited = await startServer({ RATE_LIMIT_SPEND_PER_SECOND: '1' });
  });
  afterAll(async () => {
    await limited?.stop();
  });

  it('waits out 429 rate_limited as Retry-After says and sends the same key again', async () => {
    const sent: { key: string | null; status: number }[] = [];
    const sdk = new Tollgate({
      serverKey: await mintServerKey(limited.baseUrl, ALL_SCOPES),
      baseUrl: limited.baseUrl,
      maxRetries: 5,
      fetch: async (request, init) => {
        const response = await fetch(request, init);
        sent.push({ key: request.headers.get('Idempotency-Key'), status: response.status });
        return response;
      },
    });
    await sdk.customers.upsert('busy');
    await sdk.credits.grant('busy', { amount: 10, reason: 'test' });
    // More spends in a row than the limit lets through: some are refused, waited out, and resent.
    let last = 0;
    for (let i = 0; i < 4; i += 1) last = (await sdk.credits.spend('busy', { amount: 1 })).balance.available;
    expect(last).toBe(6);
    expect((await sdk.credits.balance('busy')).available).toBe(6);

    const keyed = sent.filter((s) => s.key !== null);
    const refused = keyed.filter((s) => s.status === 429).length;
    expect(refused).toBeGreaterThan(0);
    // Each refusal is followed by the same request again, with the same key.
    keyed.forEach((s, i) => {
      if (s.status === 429) expect(keyed[i + 1]?.key).toBe(s.key);
    });
    expect(new Set(keyed.map((s) => s.key)).size).toBe(5);
  });
});

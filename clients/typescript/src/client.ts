import createClient, { type Client } from 'openapi-fetch';
import { TollgateError } from './errors.js';
import { DEFAULT_RETRY_POLICY, retryingFetch, type RetryPolicy } from './retry.js';
import type { paths } from './schema.js';

type Method = 'get' | 'put' | 'post' | 'delete';
/** The JSON request body of an operation, as the spec describes it. */
type JsonBody<P extends keyof paths, M extends Method & keyof paths[P]> = paths[P][M] extends {
  requestBody?: { content: { 'application/json': infer B } };
}
  ? B
  : never;
/** The query parameters of an operation. */
type Query<P extends keyof paths, M extends Method & keyof paths[P]> = paths[P][M] extends {
  parameters: { query?: infer Q };
}
  ? NonNullable<Q>
  : never;

/**
 * What to charge: a `feature` from the rate card and a `quantity` of it (1 when left out),
 * priced by the server, or an explicit `amount` of credits. The spec allows both shapes in one
 * object; this type allows one at a time, as the server requires.
 */
export type Charge =
  | { feature: string; quantity?: number; amount?: never }
  | { amount: number; feature?: never; quantity?: never };
type WithCharge<B> = Omit<B, 'amount' | 'feature' | 'quantity'> & Charge;

export type UpsertCustomerBody = JsonBody<'/api/v1/customers/{external_id}', 'put'>;
export type ListCustomersQuery = Query<'/api/v1/customers', 'get'>;
export type CheckBody = Charge;
export type SpendBody = WithCharge<JsonBody<'/api/v1/customers/{external_id}/spend', 'post'>>;
export type GrantBody = JsonBody<'/api/v1/customers/{external_id}/grant', 'post'>;
export type CreateHoldBody = WithCharge<JsonBody<'/api/v1/customers/{external_id}/holds', 'post'>>;
export type CaptureHoldBody = JsonBody<'/api/v1/customers/{external_id}/holds/{id}/capture', 'post'>;
export type LedgerQuery = Query<'/api/v1/customers/{external_id}/ledger', 'get'>;
export type UsageQuery = Query<'/api/v1/customers/{external_id}/usage', 'get'>;
export type CheckoutSessionBody = JsonBody<'/api/v1/customers/{external_id}/checkout-session', 'post'>;
export type PortalSessionBody = JsonBody<'/api/v1/customers/{external_id}/portal-session', 'post'>;

/** An answer to a keyed write; `replayed` is true when the server answered a retry from its record. */
export type Replayable<T> = T & { replayed: boolean };

export interface TollgateOptions {
  /** A server key (`tg_sk_…`), made in the dashboard or with `POST /api/v1/admin/server-keys`. */
  serverKey: string;
  /** Where Tollgate runs, e.g. `https://billing.example.com` (the `/api/v1/…` paths are added). */
  baseUrl: string;
  /** A `fetch` to use instead of the global one (a proxy agent, a test double). */
  fetch?: (input: Request, init?: RequestInit) => Promise<Response>;
  /** Retries of a retry-safe request after a 429, a 5xx or a network error (default 2; 0 disables). */
  maxRetries?: number;
  /** Backoff tuning; the defaults suit production (250 ms doubling to 8 s, jittered). */
  retry?: Partial<Omit<RetryPolicy, 'maxRetries'>>;
}

/** Per call: a signal to abort it. */
export interface CallOptions {
  signal?: AbortSignal;
}

/** Per write: the `Idempotency-Key` (one is made with `crypto.randomUUID()` when absent). */
export interface WriteOptions extends CallOptions {
  /**
   * Reuse your own key (e.g. your job's id) to make a retry across processes safe: the server
   * answers it once and replays that answer. The SDK's own retries always reuse the key.
   */
  idempotencyKey?: string;
}

type Result<D> = { data?: D; error?: unknown; response: Response };

/** Awaits an openapi-fetch call: its data and response, or a `TollgateError`. */
async function unwrap<D>(call: Promise<Result<D>>, signal?: AbortSignal): Promise<{ data: D; response: Response }> {
  let result: Result<D>;
  try {
    result = await call;
  } catch (cause) {
    if (signal?.aborted) throw cause;
    throw TollgateError.network(cause);
  }
  if (!result.response.ok) throw TollgateError.fromResponse(result.response, result.error);
  return { data: result.data as D, response: result.response };
}

function replayable<D extends object>({ data, response }: { data: D; response: Response }): Replayable<D> {
  return { ...data, replayed: response.headers.get('Idempotent-Replayed') === 'true' };
}

function idempotencyHeader(options: WriteOptions | undefined): { 'Idempotency-Key': string } {
  return { 'Idempotency-Key': options?.idempotencyKey ?? crypto.randomUUID() };
}

/**
 * Tollgate from your backend, with a server key: your customers (by your own id, `externalId`),
 * their credits and holds, and Stripe checkout and portal links for them.
 *
 * ```ts
 * const tollgate = new Tollgate({ serverKey: process.env.TOLLGATE_SERVER_KEY!, baseUrl: 'https://billing.example.com' });
 * await tollgate.customers.upsert('user_42', { email: 'ada@example.com' });
 * const { allowed } = await tollgate.credits.check('user_42', { feature: 'example.summarize', quantity: 1 });
 * if (allowed) await tollgate.credits.spend('user_42', { feature: 'example.summarize', quantity: 1 });
 * ```
 */
export class Tollgate {
  /** The typed openapi-fetch client underneath (auth and retries included), for routes not wrapped here. */
  readonly api: Client<paths>;

  constructor(options: TollgateOptions) {
    if (!options.serverKey) throw new TypeError('Tollgate: serverKey is required');
    if (!options.baseUrl) throw new TypeError('Tollgate: baseUrl is required');
    const policy: RetryPolicy = {
      ...DEFAULT_RETRY_POLICY,
      ...options.retry,
      maxRetries: options.maxRetries ?? DEFAULT_RETRY_POLICY.maxRetries,
    };
    const baseFetch = options.fetch ?? ((input: Request, init?: RequestInit) => globalThis.fetch(input, init));
    this.api = createClient<paths>({
      baseUrl: options.baseUrl,
      fetch: retryingFetch(baseFetch, policy),
      headers: { Authorization: `Bearer ${options.serverKey}` },
    });
  }

  /** Customers, by your own id for them (1 to 255 printable characters). */
  readonly customers = {
    /** Creates the customer or updates the fields given; `created` tells which. Scope `customers:write`. */
    upsert: async (externalId: string, body: UpsertCustomerBody = {}, options?: CallOptions) => {
      const result = await unwrap(
        this.api.PUT('/api/v1/customers/{external_id}', {
          params: { path: { external_id: externalId } },
          body,
          signal: options?.signal,
        }),
        options?.signal,
      );
      return { ...result.data, created: result.response.status === 201 };
    },

    /** A customer with their wallet's figures. Scope `customers:read`. */
    get: async (externalId: string, options?: CallOptions) =>
      (
        await unwrap(
          this.api.GET('/api/v1/customers/{external_id}', {
            params: { path: { external_id: externalId } },
            signal: options?.signal,
          }),
          options?.signal,
        )
      ).data,

    /** A page of customers, newest first; pass `next_cursor` back as `cursor`. Scope `customers:read`. */
    list: async (query: ListCustomersQuery = {}, options?: CallOptions) =>
      (await unwrap(this.api.GET('/api/v1/customers', { params: { query }, signal: options?.signal }), options?.signal))
        .data,
  };

  /** A customer's credits. */
  readonly credits = {
    /** Their balance, what they can spend, and lots about to expire. Scope `credits:read`. */
    balance: async (externalId: string, options?: CallOptions) =>
      (
        await unwrap(
          this.api.GET('/api/v1/customers/{external_id}/balance', {
            params: { path: { external_id: externalId } },
            signal: options?.signal,
          }),
          options?.signal,
        )
      ).data,

    /**
     * Whether they could spend this now (`{feature, quantity}` priced by the rate card, or
     * `{amount}`), and why not. Writes nothing. Scope `credits:read`.
     */
    check: async (externalId: string, body: CheckBody, options?: CallOptions) =>
      (
        await unwrap(
          this.api.POST('/api/v1/customers/{external_id}/check', {
            params: { path: { external_id: externalId } },
            body,
            signal: options?.signal,
          }),
          options?.signal,
        )
      ).data,

    /**
     * Spends credits, once per idempotency key: a retry with the same key answers the first
     * result (`replayed: true`) and spends nothing more. Throws `insufficient_credits` (402) when
     * they cannot afford it. Scope `credits:spend`.
     */
    spend: async (externalId: string, body: SpendBody, options?: WriteOptions) =>
      replayable(
        await unwrap(
          this.api.POST('/api/v1/customers/{external_id}/spend', {
            params: { path: { external_id: externalId }, header: idempotencyHeader(options) },
            body,
            signal: options?.signal,
          }),
          options?.signal,
        ),
      ),

    /** Grants credits as a lot (optionally expiring, or a promotion), once per key. Scope `credits:grant`. */
    grant: async (externalId: string, body: GrantBody, options?: WriteOptions) =>
      replayable(
        await unwrap(
          this.api.POST('/api/v1/customers/{external_id}/grant', {
            params: { path: { external_id: externalId }, header: idempotencyHeader(options) },
            body,
            signal: options?.signal,
          }),
          options?.signal,
        ),
      ),

    /** Their history, newest first, paged by cursor. Scope `credits:read`. */
    ledger: async (externalId: string, query: LedgerQuery = {}, options?: CallOptions) =>
      (
        await unwrap(
          this.api.GET('/api/v1/customers/{external_id}/ledger', {
            params: { path: { external_id: externalId }, query },
            signal: options?.signal,
          }),
          options?.signal,
        )
      ).data,

    /** Their usage over time, by feature. Scope `credits:read`. */
    usage: async (externalId: string, query: UsageQuery = {}, options?: CallOptions) =>
      (
        await unwrap(
          this.api.GET('/api/v1/customers/{external_id}/usage', {
            params: { path: { external_id: externalId }, query },
            signal: options?.signal,
          }),
          options?.signal,
        )
      ).data,
  };

  /** Holds: reserve credits before work whose cost is known only afterwards. */
  readonly holds = {
    /** Reserves credits; the hold releases itself after `ttl_seconds` unless captured. Scope `credits:spend`. */
    create: async (externalId: string, body: CreateHoldBody, options?: WriteOptions) =>
      replayable(
        await unwrap(
          this.api.POST('/api/v1/customers/{external_id}/holds', {
            params: { path: { external_id: externalId }, header: idempotencyHeader(options) },
            body,
            signal: options?.signal,
          }),
          options?.signal,
        ),
      ),

    /** A hold of theirs. Scope `credits:read`. */
    get: async (externalId: string, holdId: string, options?: CallOptions) =>
      (
        await unwrap(
          this.api.GET('/api/v1/customers/{external_id}/holds/{id}', {
            params: { path: { external_id: externalId, id: holdId } },
            signal: options?.signal,
          }),
          options?.signal,
        )
      ).data,

    /** Spends the actual cost (at most the hold) and releases the rest. Scope `credits:spend`. */
    capture: async (externalId: string, holdId: string, body: CaptureHoldBody, options?: WriteOptions) =>
      replayable(
        await unwrap(
          this.api.POST('/api/v1/customers/{external_id}/holds/{id}/capture', {
            params: { path: { external_id: externalId, id: holdId }, header: idempotencyHeader(options) },
            body,
            signal: options?.signal,
          }),
          options?.signal,
        ),
      ),

    /** Releases the hold without spending. Scope `credits:spend`. */
    release: async (externalId: string, holdId: string, options?: WriteOptions) =>
      replayable(
        await unwrap(
          this.api.POST('/api/v1/customers/{external_id}/holds/{id}/release', {
            params: { path: { external_id: externalId, id: holdId }, header: idempotencyHeader(options) },
            signal: options?.signal,
          }),
          options?.signal,
        ),
      ),
  };

  /** Paying, for a customer. */
  readonly billing = {
    /**
     * A checkout (Stripe's, or the sandbox page) to buy a pack or a plan; send the browser to
     * `url`. Retried only when you give an `idempotencyKey` (Stripe then makes one session for
     * it); without one, each call makes a new session. Scope `billing:write`.
     */
    checkoutSession: async (externalId: string, body: CheckoutSessionBody, options?: WriteOptions) =>
      (
        await unwrap(
          this.api.POST('/api/v1/customers/{external_id}/checkout-session', {
            params: {
              path: { external_id: externalId },
              header: options?.idempotencyKey ? { 'Idempotency-Key': options.idempotencyKey } : {},
            },
            body,
            signal: options?.signal,
          }),
          options?.signal,
        )
      ).data,

    /**
     * A link to Tollgate's hosted portal for this customer (balance, history, buying credits):
     * single use, valid for 5 minutes, so make it when they click. Not retried: each call makes
     * a new link. Scope `billing:write`.
     */
    portalSession: async (externalId: string, body: PortalSessionBody = {}, options?: CallOptions) =>
      (
        await unwrap(
          this.api.POST('/api/v1/customers/{external_id}/portal-session', {
            params: { path: { external_id: externalId } },
            body,
            signal: options?.signal,
          }),
          options?.signal,
        )
      ).data,
  };
}

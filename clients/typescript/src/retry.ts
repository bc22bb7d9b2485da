// Retries for requests that are safe to send twice, as a `fetch` that openapi-fetch calls.

/** How many times to retry and how long to wait between tries. */
export interface RetryPolicy {
  /** Retries after the first try (0 disables retrying). */
  maxRetries: number;
  /** The first backoff; each retry doubles it, up to `maxDelayMs`. */
  baseDelayMs: number;
  /** The longest backoff between two tries. */
  maxDelayMs: number;
  /** A `Retry-After` longer than this is not waited for: the answer is returned as it is. */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxRetries: 2,
  baseDelayMs: 250,
  maxDelayMs: 8_000,
  maxRetryAfterMs: 60_000,
};

type Fetch = (input: Request, init?: RequestInit) => Promise<Response>;

/**
 * Whether sending this request twice cannot do something twice: reads, PUTs (an upsert sets the
 * same state again), POSTs that carry an `Idempotency-Key` (the server replays the first answer),
 * and `POST …/check`, which writes nothing.
 */
export function isRetrySafe(request: Request): boolean {
  const method = request.method.toUpperCase();
  if (method === 'GET' || method === 'HEAD' || method === 'OPTIONS' || method === 'PUT' || method === 'DELETE') {
    return true;
  }
  if (method !== 'POST') return false;
  if (request.headers.has('Idempotency-Key')) return true;
  return new URL(request.url).pathname.endsWith('/check');
}

/** Whether an answer is worth retrying: rate limited, or the server (or a proxy) failed. */
export function isRetryableStatus(status: number): boolean {
  return status === 429 || status >= 500;
}

/** `Retry-After` in milliseconds (delta-seconds or an HTTP date), or undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/** Exponential backoff with "equal jitter": half the step fixed, half random, so tries spread out. */
export function backoffDelay(retry: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const step = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retry);
  return step / 2 + random() * (step / 2);
}

function sleep(ms: number, signal: AbortSignal | null): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Wraps `fetch` so that a retry-safe request is sent again, with the very same headers (and so
 * the same `Idempotency-Key`) and body, after a 429 (waiting as `Retry-After` says), a 5xx, or a
 * network error. Other requests go out once.
 */
export function retryingFetch(baseFetch: Fetch, policy: RetryPolicy): Fetch {
  return async (request, init) => {
    if (policy.maxRetries <= 0 || !isRetrySafe(request)) return baseFetch(request, init);

    // The body is read once and sent again on each try.
    const body = request.body === null ? undefined : await request.arrayBuffer();
    const attempt = () =>
      new Request(request.url, {
        method: request.method,
        headers: request.headers,
        body,
        redirect: request.redirect,
        signal: request.signal,
      });

    for (let retry = 0; ; retry += 1) {
      const last = retry >= policy.maxRetries;
      let response: Response;
      try {
        response = await baseFetch(attempt(), init);
      } catch (error) {
        if (last || request.signal.aborted) throw error;
        await sleep(backoffDelay(retry, policy), request.signal);
        continue;
      }
      if (last || !isRetryableStatus(response.status)) return response;

      let delay = backoffDelay(retry, policy);
      const retryAfter = parseRetryAfter(response.headers.get('Retry-After'));
      if (retryAfter !== undefined) {
        if (retryAfter > policy.maxRetryAfterMs) return response;
        delay = retryAfter;
      }
      // Let the connection go before waiting.
      await response.body?.cancel().catch(() => undefined);
      await sleep(delay, request.signal);
    }
  };
}

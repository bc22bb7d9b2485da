import { vi } from 'vitest';

export type Handler = (request: Request) => Response | Promise<Response>;

export function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });
}

export function problem(status: number, code: string, detail: string, extra: Record<string, unknown> = {}): Response {
  return new Response(
    JSON.stringify({
      type: `urn:tollgate:problem:${code}`,
      title: 'Problem',
      status,
      detail,
      code,
      request_id: 'req-1',
      ...extra,
    }),
    { status, headers: { 'content-type': 'application/problem+json' } },
  );
}

/** The answer of a server whose database is down: what an outage looks like to the SPA. */
export function unavailable(): Response {
  return problem(503, 'database_unavailable', 'the database is unavailable: try again in a moment');
}

/** A request that gets no answer at all (the network is down): `fetch` rejects. */
export function offline(): never {
  throw new TypeError('Failed to fetch');
}

export const user = {
  id: '0191e2a4-0000-7000-8000-000000000001',
  email: 'ada@example.com',
  name: 'Ada',
  role: 'user' as const,
  created_at: '2026-11-01T10:00:00Z',
};

export function tokens(accessToken = 'access-1') {
  return { access_token: accessToken, token_type: 'Bearer', expires_in: 900, refresh_token: 'refresh-1', user };
}

export const balance = { balance: 0, available: 0, held: 0, debt: 0, expiring_soon: [] };

/**
 * Replaces `fetch` with a router over "METHOD /path" keys. Unmatched calls fail the test loudly.
 * Returns the mock, whose calls are the Requests made.
 */
export function mockApi(routes: Record<string, Handler>) {
  const requests: Request[] = [];
  const fetchMock = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = input instanceof Request ? input : new Request(new URL(String(input), window.location.origin), init);
    requests.push(request.clone());
    const url = new URL(request.url);
    const handler = routes[`${request.method} ${url.pathname}`];
    if (!handler) {
      if (url.pathname === '/readyz') return json({ status: 'ready', database: 'sqlite', stripe_mode: 'sandbox', version: 'test' });
      // Every signed-in page opens the live stream and reads the alerts, and the hosted portal
      // opens its customer's stream: by default, a stream that stays quiet and no alerts.
      if (request.method === 'GET' && url.pathname === '/api/v1/credits/stream') return eventStream(request).response;
      if (request.method === 'GET' && url.pathname === '/api/v1/hosted/stream') return eventStream(request).response;
      if (request.method === 'GET' && url.pathname === '/api/v1/credits/alerts') return json({ thresholds: [], available: 0, below: [] });
      // The admin page lists webhook endpoints: none by default.
      if (request.method === 'GET' && url.pathname === '/api/v1/webhook-endpoints') return json({ data: [] });
      throw new Error(`unexpected request: ${request.method} ${url.pathname}`);
    }
    return handler(request);
  });
  vi.stubGlobal('fetch', fetchMock);
  return { fetchMock, requests };
}

/** A promise and its resolver, to hold a response until the test says so. */
export function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * A `text/event-stream` response the test writes to: `event` sends one event (as the server
 * frames it), `raw` any text, `close` ends the body. Aborting the request errors the body.
 */
export function eventStream(request?: Request) {
  const encoder = new TextEncoder();
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let open = true;
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    cancel() {
      open = false;
    },
  });
  request?.signal.addEventListener('abort', () => {
    if (!open) return;
    open = false;
    controller.error(new DOMException('The operation was aborted.', 'AbortError'));
  });
  const raw = (text: string) => {
    if (open) controller.enqueue(encoder.encode(text));
  };
  return {
    response: new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } }),
    raw,
    event(event: { id: string; type: string; [field: string]: unknown }) {
      raw(`id: ${event.id}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
    },
    close() {
      if (!open) return;
      open = false;
      controller.close();
    },
    get open() {
      return open;
    },
  };
}

let eventSeq = 0;

/** An event as the server sends it, with the wallet's figures after it. */
export function liveEvent(type: string, figures: Partial<typeof balance> & { balance: number }, data: Record<string, unknown> = {}) {
  eventSeq++;
  const { balance: b, available = b, held = 0, debt = 0 } = figures;
  return {
    id: `evt_${String(eventSeq).padStart(26, '0')}`,
    type,
    created_at: new Date().toISOString(),
    customer: { id: user.id, external_id: null },
    data: { ...data, balance: { balance: b, available, held, debt } },
  };
}

import { afterEach, describe, expect, it, vi } from 'vitest';
import { authFetch, setAccessToken } from '../api/session';
import { eventStream, json, problem, tokens } from '../test/mockApi';
import { backoffDelay, openEventStream, type EventStream, type StreamStatus } from './eventStream';
import type { SseMessage } from './sse';

const URL_ = 'http://localhost:3000/api/v1/credits/stream';

let stream: EventStream | null = null;
afterEach(() => {
  stream?.close();
  stream = null;
});

/** Opens a stream over `fetch`, recording what it reports. */
function open(fetch: (request: Request) => Promise<Response>, options: { idleTimeoutMs?: number; lastEventId?: string } = {}) {
  const messages: SseMessage[] = [];
  const statuses: StreamStatus[] = [];
  const opens: boolean[] = [];
  stream = openEventStream({
    url: URL_,
    fetch,
    onMessage: (m) => messages.push(m),
    onStatus: (s) => statuses.push(s),
    onOpen: ({ resumed }) => opens.push(resumed),
    minDelayMs: 5,
    maxDelayMs: 20,
    random: () => 1,
    ...options,
  });
  return { messages, statuses, opens };
}

describe('backoffDelay', () => {
  it('doubles from the base up to the cap, with up to half of it random', () => {
    const top = () => 1;
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(n, 1000, 30_000, top))).toEqual([
      1000, 2000, 4000, 8000, 16_000, 30_000, 30_000,
    ]);
    expect(backoffDelay(3, 1000, 30_000, () => 0)).toBe(2000);
    expect(backoffDelay(3, 1000, 30_000, () => 0.5)).toBe(3000);
  });
});

describe('openEventStream', () => {
  it('asks for an event stream and passes on each event as it arrives', async () => {
    const server = eventStream();
    const requests: Request[] = [];
    const { messages, statuses } = open(async (request) => {
      requests.push(request);
      return server.response;
    });
    await vi.waitFor(() => expect(statuses).toEqual(['connecting', 'live']));
    expect(requests[0]?.headers.get('accept')).toBe('text/event-stream');
    expect(requests[0]?.headers.has('last-event-id')).toBe(false);

    server.raw(': heartbeat\n\n');
    server.raw('id: evt_1\nevent: credits.spent\nda');
    server.raw('ta: {"n":1}\n\n');
    await vi.waitFor(() => expect(messages).toEqual([{ id: 'evt_1', event: 'credits.spent', data: '{"n":1}' }]));
  });

  it('reconnects after the stream ends, resuming after the last event with Last-Event-ID', async () => {
    const servers = [eventStream(), eventStream()];
    const requests: Request[] = [];
    const { messages, statuses, opens } = open(async (request) => {
      requests.push(request);
      const server = servers[requests.length - 1];
      if (!server) throw new TypeError('Failed to fetch');
      return server.response;
    });
    await vi.waitFor(() => expect(opens).toEqual([false]));
    servers[0]!.event({ id: 'evt_1', type: 'credits.spent' });
    servers[0]!.event({ id: 'evt_2', type: 'credits.granted' });
    servers[0]!.close();

    await vi.waitFor(() => expect(opens).toEqual([false, true]));
    expect(requests[1]?.headers.get('last-event-id')).toBe('evt_2');
    expect(statuses).toEqual(['connecting', 'live', 'reconnecting', 'live']);
    servers[1]!.event({ id: 'evt_3', type: 'credits.spent' });
    await vi.waitFor(() => expect(messages.map((m) => m.id)).toEqual(['evt_1', 'evt_2', 'evt_3']));
    expect(stream?.lastEventId).toBe('evt_3');
  });

  it('resumes from the id it was opened with', async () => {
    const requests: Request[] = [];
    open(
      async (request) => {
        requests.push(request);
        return eventStream(request).response;
      },
      { lastEventId: 'evt_41' },
    );
    await vi.waitFor(() => expect(requests).toHaveLength(1));
    expect(requests[0]?.headers.get('last-event-id')).toBe('evt_41');
  });

  it('starts afresh when the event to resume after is gone (422 on Last-Event-ID)', async () => {
    const requests: Request[] = [];
    const { opens, statuses } = open(
      async (request) => {
        requests.push(request);
        if (request.headers.has('last-event-id')) {
          return problem(422, 'validation_failed', '1 field is invalid', {
            errors: [{ field: 'Last-Event-ID', code: 'unknown_event', message: 'Last-Event-ID names no event of this wallet' }],
          });
        }
        return eventStream(request).response;
      },
      { lastEventId: 'evt_purged' },
    );
    await vi.waitFor(() => expect(opens).toEqual([false]));
    expect(requests.map((r) => r.headers.get('last-event-id'))).toEqual(['evt_purged', null]);
    expect(statuses).toEqual(['connecting', 'reconnecting', 'live']);
  });

  it('keeps trying through network errors and server errors, then connects', async () => {
    let calls = 0;
    const { statuses, opens } = open(async (request) => {
      calls++;
      if (calls === 1) throw new TypeError('Failed to fetch');
      if (calls === 2) return problem(503, 'database_unavailable', 'the database is unavailable');
      return eventStream(request).response;
    });
    await vi.waitFor(() => expect(opens).toEqual([false]));
    expect(calls).toBe(3);
    expect(statuses).toEqual(['connecting', 'reconnecting', 'reconnecting', 'live']);
  });

  it('stops for good when the server refuses the stream (not found, not allowed)', async () => {
    let calls = 0;
    const { statuses } = open(async () => {
      calls++;
      return problem(403, 'insufficient_scope', 'the API key lacks credits:read');
    });
    await vi.waitFor(() => expect(statuses).toEqual(['connecting', 'stopped']));
    await new Promise((r) => setTimeout(r, 50));
    expect(calls).toBe(1);
  });

  it('drops a connection that has gone silent and makes a new one; heartbeats keep it', async () => {
    const servers: ReturnType<typeof eventStream>[] = [];
    const { opens } = open(
      async (request) => {
        const server = eventStream(request);
        servers.push(server);
        return server.response;
      },
      { idleTimeoutMs: 400 },
    );
    await vi.waitFor(() => expect(opens).toHaveLength(1));
    // Heartbeats every 100 ms for 800 ms: the connection stays.
    for (let i = 0; i < 8; i++) {
      await new Promise((r) => setTimeout(r, 100));
      servers[0]!.raw(': heartbeat\n\n');
    }
    expect(opens).toHaveLength(1);
    // Then nothing: it is dropped (the request aborted) and made again.
    await vi.waitFor(() => expect(opens).toHaveLength(2), { timeout: 2000 });
    expect(servers[0]!.open).toBe(false);
  });

  it('renews an expired access token (through the session) and connects with the new one', async () => {
    setAccessToken('access-old');
    const seen: (string | null)[] = [];
    vi.stubGlobal(
      'fetch',
      vi.fn(async (input: RequestInfo | URL) => {
        if (!(input instanceof Request)) {
          expect(String(input)).toMatch(/\/api\/v1\/auth\/refresh$/);
          return json(tokens('access-new'));
        }
        const request = input;
        seen.push(request.headers.get('authorization'));
        if (request.headers.get('authorization') === 'Bearer access-old') {
          return problem(401, 'token_expired', 'the access token has expired');
        }
        return eventStream(request).response;
      }),
    );
    const { opens } = open(authFetch);
    await vi.waitFor(() => expect(opens).toEqual([false]));
    expect(seen).toEqual(['Bearer access-old', 'Bearer access-new']);
  });

  it('closes: aborts the connection and never reconnects', async () => {
    const servers: ReturnType<typeof eventStream>[] = [];
    const { statuses } = open(async (request) => {
      const server = eventStream(request);
      servers.push(server);
      return server.response;
    });
    await vi.waitFor(() => expect(statuses).toContain('live'));
    stream?.close();
    await vi.waitFor(() => expect(servers[0]!.open).toBe(false));
    await new Promise((r) => setTimeout(r, 50));
    expect(servers).toHaveLength(1);
    expect(statuses).toEqual(['connecting', 'live']);
  });
});

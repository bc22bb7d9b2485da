// A server-sent events connection over `fetch` (so it can carry the session's bearer token):
// reconnects with exponential backoff and jitter, resumes with `Last-Event-ID`, and treats a
// connection that has been silent for longer than a few heartbeats as dead.
import { ApiError, isTransient } from '../api/errors';
import { SseParser, type SseMessage } from './sse';

export type StreamStatus =
  /** The first connection is being made. */
  | 'connecting'
  /** Connected: events arrive as they happen. */
  | 'live'
  /** The connection dropped (or could not be made); the next attempt is scheduled. */
  | 'reconnecting'
  /** Given up: the server refused the stream for good (signed out, not allowed, no such route). */
  | 'stopped';

export interface EventStreamOptions {
  url: string;
  /** Sends the request (the session's `authFetch`, which also renews an expired token). */
  fetch: (request: Request) => Promise<Response>;
  onMessage: (message: SseMessage) => void;
  onStatus?: (status: StreamStatus, error?: unknown) => void;
  /** Each time a connection is accepted; `resumed` when it carried a `Last-Event-ID`. */
  onOpen?: (info: { resumed: boolean }) => void;
  /** Resume after this event. */
  lastEventId?: string;
  /** The first retry's delay (the server's `retry:` replaces it), in ms. */
  minDelayMs?: number;
  maxDelayMs?: number;
  /** A connection with no bytes (not even a heartbeat) for this long is dropped and made again. */
  idleTimeoutMs?: number;
  random?: () => number;
}

export interface EventStream {
  close: () => void;
  readonly lastEventId: string;
}

/** The delay before retry number `attempt` (1-based): doubling from `base`, capped, half of it random. */
export function backoffDelay(attempt: number, base: number, max: number, random: () => number = Math.random): number {
  const ceiling = Math.min(max, base * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

function retryAfterMs(response: Response): number | null {
  const value = response.headers.get('retry-after');
  if (!value || !/^\d+$/.test(value.trim())) return null;
  return Number(value.trim()) * 1000;
}

async function problemOf(response: Response): Promise<ApiError> {
  let body: unknown = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON: the status says enough.
  }
  return ApiError.fromResponse(response, body);
}

/** Opens the stream; it keeps itself connected until `close()` or a definitive refusal. */
export function openEventStream(options: EventStreamOptions): EventStream {
  const minDelay = options.minDelayMs ?? 1_000;
  const maxDelay = options.maxDelayMs ?? 30_000;
  const idleTimeout = options.idleTimeoutMs ?? 45_000;
  const random = options.random ?? Math.random;
  let closed = false;
  let controller: AbortController | null = null;
  let sleepTimer: ReturnType<typeof setTimeout> | null = null;
  let wake: (() => void) | null = null;
  let baseDelay = minDelay;

  const parser = new SseParser(
    {
      onMessage: (message) => {
        if (!closed) options.onMessage(message);
      },
      onRetry: (ms) => {
        baseDelay = Math.max(ms, 100);
      },
    },
    options.lastEventId ?? '',
  );

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      wake = resolve;
      sleepTimer = setTimeout(resolve, ms);
    });

  const status = (s: StreamStatus, error?: unknown) => {
    if (!closed) options.onStatus?.(s, error);
  };

  /** One connection, until it ends. Returns the error that ended it, or a Retry-After delay. */
  async function connect(): Promise<{ error: unknown; fatal: boolean; after?: number | null; received: boolean }> {
    controller = new AbortController();
    const abort = controller;
    const headers = new Headers({ accept: 'text/event-stream', 'cache-control': 'no-cache' });
    const resumeFrom = parser.lastEventId;
    if (resumeFrom) headers.set('last-event-id', resumeFrom);
    let response: Response;
    try {
      response = await options.fetch(
        new Request(options.url, { method: 'GET', headers, credentials: 'same-origin', signal: abort.signal }),
      );
    } catch (cause) {
      return { error: cause instanceof ApiError ? cause : ApiError.network(cause), fatal: false, received: false };
    }
    if (!response.ok) {
      const error = await problemOf(response);
      if (resumeFrom && error.status === 422 && error.problem.errors?.some((e) => e.field === 'Last-Event-ID')) {
        // The event to resume after is gone (purged): start afresh; `onOpen` says it did not resume.
        parser.lastEventId = '';
        return { error, fatal: false, after: 0, received: true };
      }
      return { error, fatal: !isTransient(error), after: retryAfterMs(response), received: false };
    }
    if (!response.body) return { error: new Error('the stream has no body'), fatal: false, received: false };

    status('live');
    options.onOpen?.({ resumed: resumeFrom !== '' });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let idle: ReturnType<typeof setTimeout> | null = null;
    let timedOut = false;
    let received = false;
    const arm = () => {
      if (idle) clearTimeout(idle);
      idle = setTimeout(() => {
        timedOut = true;
        abort.abort();
      }, idleTimeout);
    };
    arm();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        received = true;
        arm();
        parser.push(decoder.decode(value, { stream: true }));
      }
      return { error: new Error('the stream ended'), fatal: false, received };
    } catch (cause) {
      return { error: timedOut ? new Error('the stream went silent') : cause, fatal: false, received };
    } finally {
      if (idle) clearTimeout(idle);
      parser.end();
      reader.cancel().catch(() => {});
    }
  }

  void (async () => {
    let attempt = 0;
    status('connecting');
    while (!closed) {
      const ended = await connect();
      if (closed) break;
      if (ended.fatal) {
        status('stopped', ended.error);
        break;
      }
      // A connection that carried something was healthy: start the backoff again.
      attempt = ended.received ? 1 : attempt + 1;
      status('reconnecting', ended.error);
      const delay = Math.max(backoffDelay(attempt, baseDelay, maxDelay, random), ended.after ?? 0);
      await sleep(delay);
    }
  })();

  return {
    close() {
      closed = true;
      controller?.abort();
      if (sleepTimer) clearTimeout(sleepTimer);
      wake?.();
    },
    get lastEventId() {
      return parser.lastEventId;
    },
  };
}

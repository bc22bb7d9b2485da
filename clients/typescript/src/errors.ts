import type { components } from './schema.js';

/** The RFC 9457 problem body Tollgate answers every error with. */
export type Problem = components['schemas']['Problem'];

/**
 * Tollgate's stable error codes (`Problem.code`); `network_error` when no answer came, and
 * `unexpected_response` for a 4xx that is not a problem body (e.g. from a proxy). Open-ended: a
 * newer server may answer a code this SDK does not list yet.
 */
export type ErrorCode =
  | components['schemas']['ErrorCode']
  | 'network_error'
  | 'unexpected_response'
  | (string & {});

/**
 * What a call throws when Tollgate refuses it (4xx), fails (5xx) after the retries, or cannot be
 * reached (`status` 0, `code` `network_error`, the fetch error as `cause`). Match on `code`: it is
 * stable, unlike `detail`.
 */
export class TollgateError extends Error {
  override readonly name = 'TollgateError';
  /** The HTTP status, or 0 when no answer came. */
  readonly status: number;
  readonly code: ErrorCode;
  /** What went wrong with this request, for people. */
  readonly detail: string;
  /** The whole problem body (with extension members such as `available`, `required_scope`), when there was one. */
  readonly problem: Problem | undefined;
  /** The server's request id (`X-Request-Id`), to quote when asking for help. */
  readonly requestId: string | undefined;

  constructor(init: {
    status: number;
    code: ErrorCode;
    detail: string;
    problem?: Problem;
    requestId?: string;
    cause?: unknown;
  }) {
    super(`${init.status ? `${init.status} ` : ''}${init.code}: ${init.detail}`, { cause: init.cause });
    this.status = init.status;
    this.code = init.code;
    this.detail = init.detail;
    this.problem = init.problem;
    this.requestId = init.requestId;
  }

  /** From an error answer and its parsed body (a problem, or whatever a proxy sent instead). */
  static fromResponse(response: Response, body: unknown): TollgateError {
    const requestId = response.headers.get('X-Request-Id') ?? undefined;
    if (isProblem(body)) {
      return new TollgateError({
        status: response.status,
        code: body.code,
        detail: body.detail,
        problem: body,
        requestId: body.request_id || requestId,
      });
    }
    const text = typeof body === 'string' && body.trim() !== '' ? body.trim().slice(0, 200) : response.statusText;
    return new TollgateError({
      status: response.status,
      code: response.status >= 500 ? 'internal_error' : 'unexpected_response',
      detail: text || `HTTP ${response.status}`,
      requestId,
    });
  }

  /** When the request got no answer at all. */
  static network(cause: unknown): TollgateError {
    const detail = cause instanceof Error ? cause.message : String(cause);
    return new TollgateError({ status: 0, code: 'network_error', detail, cause });
  }
}

function isProblem(body: unknown): body is Problem {
  return (
    typeof body === 'object' &&
    body !== null &&
    typeof (body as { code?: unknown }).code === 'string' &&
    typeof (body as { detail?: unknown }).detail === 'string'
  );
}

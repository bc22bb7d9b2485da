import type { components } from './schema';

export type FieldError = components['schemas']['FieldError'];

/** Every code the server can answer (the spec's `ErrorCode`). */
export type ErrorCode = components['schemas']['ErrorCode'];

/** Codes the SPA gives failures that carry no problem details: no answer, or not a problem body. */
export type ClientErrorCode = 'network_error' | 'server_error' | 'http_error';

/** An RFC 9457 problem as Tollgate sends it (the spec lists the extension members some codes add). */
export type Problem = Omit<components['schemas']['Problem'], 'code'> & {
  code: ErrorCode | ClientErrorCode;
  [extension: string]: unknown;
};

const NETWORK_DETAIL = 'Could not reach Tollgate. Check your connection and try again.';

/** A failed API call: the server's problem details, or a stand-in for network failures. */
export class ApiError extends Error {
  readonly status: number;
  readonly problem: Problem;

  constructor(problem: Problem) {
    super(problem.detail || problem.title);
    this.name = 'ApiError';
    this.status = problem.status;
    this.problem = problem;
  }

  get code(): ErrorCode | ClientErrorCode {
    return this.problem.code;
  }

  /** Builds the error from a response and its parsed body (problem+json, or anything else). */
  static fromResponse(response: Response, body: unknown): ApiError {
    if (isProblem(body)) return new ApiError(body);
    const status = response.status;
    return new ApiError({
      type: 'about:blank',
      title: response.statusText || 'Request failed',
      status,
      detail:
        status >= 500
          ? 'Tollgate had a problem answering. Try again in a moment.'
          : `The request failed (HTTP ${status}).`,
      code: status >= 500 ? 'server_error' : 'http_error',
      request_id: response.headers.get('x-request-id') ?? '',
    });
  }

  static network(cause?: unknown): ApiError {
    const error = new ApiError({
      type: 'about:blank',
      title: 'Network error',
      status: 0,
      detail: NETWORK_DETAIL,
      code: 'network_error',
      request_id: '',
    });
    if (cause !== undefined) (error as { cause?: unknown }).cause = cause;
    return error;
  }
}

/**
 * True for a failure that trying again may fix: no answer, a timeout, rate limiting or a server
 * error. A client error (a 404, a refused scope, a refused refresh token) is the answer.
 */
export function isTransient(error: unknown): boolean {
  if (!(error instanceof ApiError)) return true;
  return error.status === 0 || error.status === 408 || error.status === 429 || error.status >= 500;
}

export function isProblem(value: unknown): value is Problem {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Problem).code === 'string' &&
    typeof (value as Problem).status === 'number'
  );
}

/** A server message as a sentence: "password must be…" reads "Password must be…". */
export function sentence(message: string): string {
  const text = message.trim();
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** The message to show for any error: a problem's `detail`, or a generic sentence. */
export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) return sentence(error.problem.detail || error.problem.title);
  if (error instanceof Error && error.message) return error.message;
  return 'Something went wrong. Try again.';
}

/**
 * Splits a problem into messages for the form's own fields (by the `field` names the API uses)
 * and one general message for everything else: `detail` when no field matched.
 */
export function formErrors(
  error: unknown,
  fields: readonly string[],
): { fields: Record<string, string>; general: string | null } {
  if (!error) return { fields: {}, general: null };
  if (!(error instanceof ApiError)) return { fields: {}, general: errorMessage(error) };
  const byField: Record<string, string> = {};
  const others: string[] = [];
  for (const e of error.problem.errors ?? []) {
    if (fields.includes(e.field)) {
      byField[e.field] ??= sentence(e.message);
    } else {
      others.push(sentence(e.message));
    }
  }
  const matched = Object.keys(byField).length > 0;
  const general = others.length > 0 ? others.join(' ') : matched ? null : errorMessage(error);
  return { fields: byField, general };
}

// The signed-in session: the access token lives in this module's memory only (never in storage);
// the refresh token is an httpOnly cookie the browser sends to /api/v1/auth.
import { ApiError, isTransient } from './errors';
import type { components } from './schema';

export type TokenResponse = components['schemas']['TokenResponse'];

let accessToken: string | null = null;
let refreshing: Promise<TokenResponse | null> | null = null;
const lostListeners = new Set<() => void>();
const refreshListeners = new Set<(tokens: TokenResponse) => void>();

export function apiUrl(path: string): string {
  return `${window.location.origin}${path}`;
}

export function getAccessToken(): string | null {
  return accessToken;
}

export function setAccessToken(token: string | null): void {
  accessToken = token;
}

/** Called when the session cannot be renewed (the refresh cookie is gone, expired or revoked). */
export function onSessionLost(listener: () => void): () => void {
  lostListeners.add(listener);
  return () => lostListeners.delete(listener);
}

/** Called with each new set of tokens a refresh brings (the user may have changed). */
export function onSessionRefreshed(listener: (tokens: TokenResponse) => void): () => void {
  refreshListeners.add(listener);
  return () => refreshListeners.delete(listener);
}

export function sessionLost(): void {
  accessToken = null;
  for (const listener of lostListeners) listener();
}

async function responseBody(response: Response): Promise<unknown> {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

/**
 * Exchanges the refresh cookie for new tokens. Concurrent callers share one request: the refresh
 * token rotates on every use, and presenting a used one would revoke the whole session.
 * Resolves to null when there is no session to restore (the server refused the cookie); rejects
 * with an `ApiError` when Tollgate could not answer (no network, a 5xx), since the session may
 * well be alive and nobody should be told they were signed out.
 */
export function refreshSession(): Promise<TokenResponse | null> {
  refreshing ??= (async () => {
    try {
      let response: Response;
      try {
        response = await globalThis.fetch(apiUrl('/api/v1/auth/refresh'), {
          method: 'POST',
          credentials: 'same-origin',
          headers: { accept: 'application/json' },
        });
      } catch (cause) {
        throw ApiError.network(cause);
      }
      if (!response.ok) {
        const error = ApiError.fromResponse(response, await responseBody(response));
        if (isTransient(error)) throw error;
        return null;
      }
      const tokens = (await response.json()) as TokenResponse;
      accessToken = tokens.access_token;
      for (const listener of refreshListeners) listener(tokens);
      return tokens;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

async function problemCode(response: Response): Promise<string | null> {
  try {
    const body = (await response.clone().json()) as { code?: unknown };
    return typeof body.code === 'string' ? body.code : null;
  } catch {
    return null;
  }
}

/**
 * `fetch` for the API client: sends the access token, and when the server says it expired,
 * renews the session once and sends the request again. When the renewal gets no answer, the
 * call fails with that error and the session stays (it is not lost, only unreachable).
 */
export async function authFetch(request: Request): Promise<Response> {
  const path = new URL(request.url).pathname;
  const isAuthRoute = path.startsWith('/api/v1/auth/');
  const used = accessToken;
  const spare = used && !isAuthRoute ? request.clone() : null;
  if (used && !isAuthRoute && !request.headers.has('authorization')) {
    request.headers.set('authorization', `Bearer ${used}`);
  }
  const response = await globalThis.fetch(request);
  if (response.status !== 401 || !spare) return response;

  const code = await problemCode(response);
  if (code !== 'token_expired' && code !== 'invalid_token') return response;
  // Another request may have renewed the session meanwhile: use its token rather than
  // rotating the refresh token again.
  const next = accessToken && accessToken !== used ? accessToken : (await refreshSession())?.access_token;
  if (!next) {
    sessionLost();
    return response;
  }
  spare.headers.set('authorization', `Bearer ${next}`);
  const retried = await globalThis.fetch(spare);
  if (retried.status === 401) sessionLost();
  return retried;
}

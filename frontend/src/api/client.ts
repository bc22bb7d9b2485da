import createClient from 'openapi-fetch';
import { ApiError } from './errors';
import type { components, paths } from './schema';
import { authFetch } from './session';

export type Schemas = components['schemas'];
export type User = Schemas['UserResponse'];
export type Balance = Schemas['BalanceResponse'];
export type WalletBalance = Schemas['WalletBalance'];
export type Alerts = Schemas['AlertsResponse'];
export type LedgerEntry = Schemas['LedgerEntry'];
export type TransferKind = Schemas['TransferKind'];
export type LedgerPage = Schemas['LedgerPage'];
export type UsageResponse = Schemas['UsageResponse'];
export type BalanceHistory = Schemas['BalanceHistory'];
export type BalanceInterval = Schemas['BalanceInterval'];
export type ApiKey = Schemas['ApiKeyResponse'];
export type CreatedApiKey = Schemas['CreatedApiKeyResponse'];
export type Estimate = Schemas['EstimateResponse'];
export type SummarizeResult = Schemas['SummarizeResponse'];
export type ReconcileReport = Schemas['ReconcileReport'];
export type Feature = Schemas['FeatureView'];
export type Ready = Schemas['ReadyResponse'];
export type Customer = Schemas['Customer'];
export type ServerKey = Schemas['ServerKeyResponse'];
export type ServerKeyScope = Schemas['Scope'];
export type HostedSession = Schemas['HostedSessionResponse'];
export type WebhookEndpoint = Schemas['WebhookEndpoint'];
export type WebhookAttempt = Schemas['WebhookAttempt'];
export type SubscribedEventType = Schemas['SubscribedEventType'];

/** The typed API client (same origin as the SPA). */
export const api = createClient<paths>({
  baseUrl: typeof window === 'undefined' ? '' : window.location.origin,
  fetch: authFetch,
  credentials: 'same-origin',
});

/**
 * The hosted portal's client. It carries the portal cookie (same origin) and nothing else: never
 * the signed-in user's token, and a 401 here means the portal session ended, not that someone
 * must sign in, so it bypasses the session's refresh logic.
 */
export const hostedApi = createClient<paths>({
  baseUrl: typeof window === 'undefined' ? '' : window.location.origin,
  // Looked up per call (not captured here) so that tests can stub `fetch`.
  fetch: (request) => globalThis.fetch(request),
  credentials: 'same-origin',
});

type Result<D> = { data?: D; error?: unknown; response: Response };

/** Awaits an openapi-fetch call: its data, or an `ApiError` carrying the problem details. */
export async function unwrap<D>(call: Promise<Result<D>>): Promise<D> {
  let result: Result<D>;
  try {
    result = await call;
  } catch (cause) {
    // The session's refresh says why it failed (see `refreshSession`); anything else is no answer.
    throw cause instanceof ApiError ? cause : ApiError.network(cause);
  }
  if (!result.response.ok) throw ApiError.fromResponse(result.response, result.error);
  return result.data as D;
}
export type CatalogPrice = Schemas['CatalogPrice'];
export type Catalog = Schemas['CatalogResponse'];
export type Subscription = Schemas['SubscriptionView'];


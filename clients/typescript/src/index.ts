// @tollgate/sdk: Tollgate from your backend, with a server key.
export { Tollgate } from './client.js';
export type {
  CallOptions,
  CaptureHoldBody,
  Charge,
  CheckBody,
  CheckoutSessionBody,
  CreateHoldBody,
  GrantBody,
  LedgerQuery,
  ListCustomersQuery,
  PortalSessionBody,
  Replayable,
  SpendBody,
  TollgateOptions,
  UpsertCustomerBody,
  UsageQuery,
  WriteOptions,
} from './client.js';
export { TollgateError } from './errors.js';
export type { ErrorCode, Problem } from './errors.js';
export { DEFAULT_RETRY_POLICY, isRetrySafe } from './retry.js';
export type { RetryPolicy } from './retry.js';
export type { components, paths } from './schema.js';

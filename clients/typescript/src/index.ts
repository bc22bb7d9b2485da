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

import type { components } from './schema.js';
type Schemas = components['schemas'];
/** The spec's shapes under their own names, for your own function signatures. */
export type Customer = Schemas['Customer'];
export type CustomerPage = Schemas['CustomerPage'];
export type WalletBalance = Schemas['WalletBalance'];
export type BalanceResponse = Schemas['BalanceResponse'];
export type CheckResponse = Schemas['CheckResponse'];
export type CheckReason = Schemas['CheckReason'];
export type SpendResponse = Schemas['SpendResponse'];
export type GrantResponse = Schemas['GrantResponse'];
export type TransferView = Schemas['TransferView'];
export type TransferKind = Schemas['TransferKind'];
export type HoldResponse = Schemas['HoldResponse'];
export type HoldView = Schemas['HoldView'];
export type HoldStatus = Schemas['HoldStatus'];
export type LedgerPage = Schemas['LedgerPage'];
export type LedgerEntry = Schemas['LedgerEntry'];
export type UsageResponse = Schemas['UsageResponse'];
export type CheckoutSessionResponse = Schemas['CheckoutSessionResponse'];
export type PortalSessionResponse = Schemas['PortalSessionResponse'];

// The LLM gateway's model rate card (#16), typed by hand from /work/contracts/gateway.md until the
// backend's routes are in ../openapi.yaml; then these types come from schema.d.ts.
import createClient from 'openapi-fetch';
import { useQuery } from '@tanstack/react-query';
import { unwrap, type UsageResponse } from './client';
import { authFetch } from './session';

export type Tokenizer = 'o200k_base' | 'cl100k_base' | 'bytes';

/** A model on the rate card: what clients send as `model`, and its prices per million tokens. */
export interface Model {
  id: string;
  upstream_model: string;
  input_per_million: number;
  cached_input_per_million: number;
  output_per_million: number;
  max_output_tokens: number;
  active: boolean;
  tokenizer: Tokenizer;
  created_at: string;
  updated_at: string;
}

export interface CreateModel {
  id: string;
  upstream_model?: string;
  input_per_million: number;
  cached_input_per_million?: number;
  output_per_million: number;
  max_output_tokens: number;
  active?: boolean;
}

export type UpdateModel = Partial<
  Pick<
    Model,
    'upstream_model' | 'input_per_million' | 'cached_input_per_million' | 'output_per_million' | 'max_output_tokens' | 'active'
  >
>;

/** A bucket of usage by model: the tokens are there only when grouping by model. */
export type ModelUsageBucket = UsageResponse['buckets'][number] & {
  input_tokens?: number;
  cached_input_tokens?: number;
  output_tokens?: number;
};

interface ModelPaths {
  '/api/v1/models': {
    get: { responses: { 200: { content: { 'application/json': Model[] } } } };
    post: {
      requestBody: { content: { 'application/json': CreateModel } };
      responses: { 201: { content: { 'application/json': Model } } };
    };
  };
  '/api/v1/admin/models': {
    get: { responses: { 200: { content: { 'application/json': Model[] } } } };
  };
  '/api/v1/models/{id}': {
    patch: {
      parameters: { path: { id: string } };
      requestBody: { content: { 'application/json': UpdateModel } };
      responses: { 200: { content: { 'application/json': Model } } };
    };
  };
}

/** The same client as `api`, over the model routes (until they are in the generated schema). */
export const modelsApi = createClient<ModelPaths>({
  baseUrl: typeof window === 'undefined' ? '' : window.location.origin,
  fetch: authFetch,
  credentials: 'same-origin',
});

export const modelKeys = {
  /** The active models anyone can see. */
  active: ['models'] as const,
  /** Every model, inactive too (admin); under "admin" so the admin page's retry covers it. */
  all: ['admin', 'models'] as const,
};

/** GET /models: the active models and their prices (public). */
export function useModels() {
  return useQuery({
    queryKey: modelKeys.active,
    queryFn: () => unwrap(modelsApi.GET('/api/v1/models')),
    staleTime: 60_000,
  });
}

/** GET /admin/models: every model, inactive ones too. */
export function useAdminModels() {
  return useQuery({
    queryKey: modelKeys.all,
    queryFn: () => unwrap(modelsApi.GET('/api/v1/admin/models')),
  });
}

/** The gateway's base URL for the OpenAI SDKs, on the origin that serves this app. */
export function gatewayBaseUrl(origin = window.location.origin): string {
  return `${origin}/gateway/v1`;
}

// The LLM gateway's model rate card (#16): its types and queries.
import { useQuery } from '@tanstack/react-query';
import { api, unwrap, type Schemas } from './client';

/** A model on the rate card: what clients send as `model`, and its prices per million tokens. */
export type Model = Schemas['ModelView'];
export type CreateModel = Schemas['CreateModelRequest'];
export type UpdateModel = Schemas['UpdateModelRequest'];

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
    queryFn: () => unwrap(api.GET('/api/v1/models')),
    staleTime: 60_000,
  });
}

/** GET /admin/models: every model, inactive ones too. */
export function useAdminModels() {
  return useQuery({
    queryKey: modelKeys.all,
    queryFn: () => unwrap(api.GET('/api/v1/admin/models')),
  });
}

/** The gateway's base URL for the OpenAI SDKs, on the origin that serves this app. */
export function gatewayBaseUrl(origin = window.location.origin): string {
  return `${origin}/gateway/v1`;
}

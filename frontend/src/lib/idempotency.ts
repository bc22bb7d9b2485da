import { useCallback, useRef } from 'react';

/** A fresh idempotency key (a UUID v4), also where `crypto.randomUUID` is missing (plain http). */
export function newIdempotencyKey(): string {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * One idempotency key per user action. `keyFor(request)` returns the same key while the same
 * request is retried (after a network error, a timeout, a 5xx), and a new one when the request
 * changes; `done()` after a definitive answer makes the next action get a new key.
 */
export function useIdempotencyKey(): { keyFor: (fingerprint: string) => string; done: () => void } {
  const last = useRef<{ fingerprint: string; key: string } | null>(null);
  const keyFor = useCallback((fingerprint: string) => {
    if (last.current?.fingerprint !== fingerprint) {
      last.current = { fingerprint, key: newIdempotencyKey() };
    }
    return last.current.key;
  }, []);
  const done = useCallback(() => {
    last.current = null;
  }, []);
  return { keyFor, done };
}

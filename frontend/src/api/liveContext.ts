// The live stream's context, apart from its provider (src/api/live.tsx) so that the queries can
// read whether the stream is live without importing the provider.
import { createContext, useContext } from 'react';
import type { StreamStatus } from '../lib/eventStream';
import type { WalletBalance } from './client';

/** An event as the stream sends it (`data:`): the wire shape of the spec's `Event`. */
export interface LiveEvent {
  id: string;
  type: string;
  created_at: string;
  customer?: { id: string; external_id?: string | null } | null;
  data: { balance?: WalletBalance; [field: string]: unknown };
}

export type LiveListener = (event: LiveEvent) => void;

export interface LiveStream {
  status: StreamStatus;
  /** Counts the connections accepted so far (a new one may follow a gap: see `onOpen`). */
  connections: number;
  /** Calls `listener` with each event as it arrives; returns the unsubscribe. */
  subscribe: (listener: LiveListener) => () => void;
}

export const LiveContext = createContext<LiveStream | null>(null);

/** The page's stream (the signed-in user's, or the hosted portal's customer's); null outside one. */
export function useLiveStream(): LiveStream | null {
  return useContext(LiveContext);
}

/**
 * Query options for data the stream keeps current: never stale while it is live (a page that
 * mounts uses the cache; the stream says when a gap needs a refetch), the defaults otherwise.
 */
export function useLiveStaleTime(): { staleTime?: number } {
  return useLiveStream()?.status === 'live' ? { staleTime: Infinity } : {};
}

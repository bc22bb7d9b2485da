// What a page shows when its data did not load: one alert with one retry control for the whole
// page, and in each panel that has nothing to show, a line saying so (never an empty state, never
// a spinner that does not stop).
import { notifyManager, useQueryClient, type Query, type QueryKey } from '@tanstack/react-query';
import { useCallback, useEffect, useState } from 'react';
import { errorMessage, isTransient } from '../api/errors';
import { Alert, Button } from './ui';

function sameQueries(a: readonly Query[], b: readonly Query[]): boolean {
  return a.length === b.length && a.every((q, i) => q === b[i] && q.state.error === b[i]?.state.error);
}

/**
 * The page's queries (those in use under any of `queryKeys`, matched as prefixes) whose last
 * fetch failed for a reason a retry may fix.
 */
export function useFailedQueries(queryKeys: readonly QueryKey[]): readonly Query[] {
  const queryClient = useQueryClient();
  const signature = JSON.stringify(queryKeys);
  const find = useCallback((): Query[] => {
    const cache = queryClient.getQueryCache();
    const found = new Map<string, Query>();
    for (const queryKey of JSON.parse(signature) as QueryKey[]) {
      for (const query of cache.findAll({ queryKey, type: 'active' })) {
        if (query.state.status === 'error' && isTransient(query.state.error)) found.set(query.queryHash, query);
      }
    }
    return [...found.values()];
  }, [queryClient, signature]);
  const [failed, setFailed] = useState(find);
  useEffect(() => {
    const update = () =>
      setFailed((previous) => {
        const next = find();
        return sameQueries(previous, next) ? previous : next;
      });
    update();
    // The cache tells of queries built while another component renders: update after, in a batch.
    return queryClient.getQueryCache().subscribe(notifyManager.batchCalls(update));
  }, [queryClient, find]);
  return failed;
}

/**
 * The page's one retry control: shown while any of its data failed to load, it says why and
 * fetches everything that failed again.
 */
export function PageLoadErrors({ queryKeys }: { queryKeys: readonly QueryKey[] }) {
  const queryClient = useQueryClient();
  const failed = useFailedQueries(queryKeys);
  const [retrying, setRetrying] = useState(false);
  if (failed.length === 0) return null;

  const messages = [...new Set(failed.map((q) => errorMessage(q.state.error)))];
  const retry = async () => {
    setRetrying(true);
    try {
      await Promise.all(
        failed.map((q) => queryClient.refetchQueries({ queryKey: q.queryKey, exact: true, type: 'active' })),
      );
    } finally {
      setRetrying(false);
    }
  };
  return (
    <Alert
      tone="error"
      title="Some of this page could not load"
      action={
        <Button variant="secondary" onClick={() => void retry()} busy={retrying} busyLabel="Trying again…">
          Try again
        </Button>
      }
    >
      {messages.join(' ')}
    </Alert>
  );
}

/**
 * A panel whose data did not load. For a failure a retry may fix it names what is missing (the
 * page's alert says why and offers the retry); any other failure is the answer, shown as it is.
 */
export function LoadError({ error, what }: { error: unknown; what: string }) {
  if (!isTransient(error)) return <Alert tone="error">{errorMessage(error)}</Alert>;
  return <p className="text-sm text-red-800">Could not load {what}.</p>;
}

/** A figure whose data did not load. */
export function Unavailable() {
  return <span className="text-base font-medium text-red-800">Unavailable</span>;
}

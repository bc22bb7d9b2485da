import { useMutation } from '@tanstack/react-query';
import { useMemo } from 'react';
import { useSearchParams } from 'react-router';
import { api, unwrap, type TransferKind } from '../api/client';
import { keys, useLedger, type LedgerFilters } from '../api/queries';
import { LedgerTable } from '../components/LedgerTable';
import { LoadError, PageLoadErrors } from '../components/LoadErrors';
import { Button, Card, ErrorAlert, Loading, PageHeader, SelectField, TextField } from '../components/ui';
import { downloadBlob } from '../lib/download';
import { formatKind, formatNumber } from '../lib/format';
import { useDocumentTitle } from '../lib/useDocumentTitle';

export const LEDGER_KINDS: readonly TransferKind[] = [
  'purchase',
  'subscription',
  'grant',
  'promotion',
  'spend',
  'expiry',
  'clawback',
  'dispute_freeze',
  'dispute_release',
  'write_off',
];

function isTransferKind(value: string): value is TransferKind {
  return (LEDGER_KINDS as readonly string[]).includes(value);
}

/** Local midnight of a `YYYY-MM-DD` day, as an ISO instant; `plusDays` moves it. */
export function dayStart(day: string, plusDays = 0): string | undefined {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day);
  if (!match) return undefined;
  const date = new Date(Number(match[1]), Number(match[2]) - 1, Number(match[3]) + plusDays);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}

/**
 * Downloads the whole history under `filters` as the server writes it (`ledger.csv`), not only
 * the rows loaded here. The route needs the bearer token, so it is fetched, then saved as a file.
 */
async function exportLedgerCsv(filters: LedgerFilters, filename: string): Promise<void> {
  const csv = await unwrap(
    api.GET('/api/v1/credits/ledger.csv', {
      params: { query: { kind: filters.kind, from: filters.from, to: filters.to } },
      parseAs: 'blob',
    }),
  );
  downloadBlob(filename, csv);
}

export function HistoryPage() {
  useDocumentTitle('History');
  const [params, setParams] = useSearchParams();
  // A kind the URL names that the API does not know filters nothing.
  const kindParam = params.get('kind') ?? '';
  const kind = isTransferKind(kindParam) ? kindParam : '';
  const fromDay = params.get('from') ?? '';
  const toDay = params.get('to') ?? '';
  const rangeError = fromDay && toDay && fromDay > toDay ? 'The end date must be on or after the start date.' : null;

  const filters = useMemo(
    () => ({
      kind: kind || undefined,
      from: fromDay ? dayStart(fromDay) : undefined,
      // The end date is inclusive: up to the start of the next day.
      to: toDay ? dayStart(toDay, 1) : undefined,
      limit: 50,
    }),
    [kind, fromDay, toDay],
  );
  // An end before the start is pointed out and ignored, by the list and the export alike.
  const applied = useMemo(() => (rangeError ? { ...filters, to: undefined } : filters), [filters, rangeError]);
  const ledger = useLedger(applied);
  const entries = useMemo(() => ledger.data?.pages.flatMap((p) => p.entries) ?? [], [ledger.data]);
  const filtered = Boolean(kind || fromDay || toDay);

  const setFilter = (name: string, value: string) => {
    const next = new URLSearchParams(params);
    if (value) next.set(name, value);
    else next.delete(name);
    setParams(next, { replace: true });
  };

  const exportCsv = useMutation({
    mutationFn: ({ filters, filename }: { filters: LedgerFilters; filename: string }) => exportLedgerCsv(filters, filename),
  });
  const startExport = () => {
    const suffix = [kind, fromDay, rangeError ? '' : toDay].filter(Boolean).join('_');
    exportCsv.mutate({ filters: applied, filename: `tollgate-history${suffix ? `_${suffix}` : ''}.csv` });
  };

  return (
    <>
      <PageHeader
        title="History"
        description="Every credit that entered or left your wallet, newest first."
        actions={
          <Button
            variant="secondary"
            onClick={startExport}
            busy={exportCsv.isPending}
            busyLabel="Exporting…"
            // Nothing to export once the history is known to be empty; otherwise the server has it all.
            disabled={ledger.isSuccess && entries.length === 0}
          >
            Export CSV
          </Button>
        }
      />
      <div className="space-y-6">
        <PageLoadErrors queryKeys={[keys.ledgerAll]} />
        {exportCsv.isError && (
          <ErrorAlert
            title="Export failed: no file was downloaded"
            error={exportCsv.error}
            onRetry={startExport}
            retryLabel="Export again"
          />
        )}
        <Card>
          <form
            aria-label="Filter history"
            className="grid grid-cols-1 gap-4 sm:grid-cols-[1fr_1fr_1fr_auto] sm:items-end"
            onSubmit={(e) => e.preventDefault()}
          >
            <SelectField label="Kind" name="kind" value={kind} onChange={(e) => setFilter('kind', e.target.value)}>
              <option value="">All kinds</option>
              {LEDGER_KINDS.map((k) => (
                <option key={k} value={k}>
                  {formatKind(k)}
                </option>
              ))}
            </SelectField>
            <TextField label="From" name="from" type="date" value={fromDay} onChange={(e) => setFilter('from', e.target.value)} />
            <TextField
              label="To"
              name="to"
              type="date"
              value={toDay}
              min={fromDay || undefined}
              onChange={(e) => setFilter('to', e.target.value)}
              error={rangeError}
            />
            <Button variant="ghost" onClick={() => setParams(new URLSearchParams(), { replace: true })} disabled={!filtered}>
              Clear filters
            </Button>
          </form>
        </Card>

        <Card>
          {!ledger.data ? (
            ledger.isError ? <LoadError error={ledger.error} what="your history" /> : <Loading label="Loading history…" />
          ) : entries.length === 0 ? (
            <p className="py-6 text-center text-sm text-slate-600">
              {filtered ? 'No entries match these filters.' : 'No activity yet.'}
            </p>
          ) : (
            <>
              <LedgerTable entries={entries} caption="Ledger entries, newest first" detailed />
              <div className="mt-4 flex flex-wrap items-center justify-between gap-2 text-sm text-slate-600">
                <p aria-live="polite">
                  Showing {formatNumber(entries.length)} {entries.length === 1 ? 'entry' : 'entries'}
                  {ledger.hasNextPage ? '' : ' (all)'}
                </p>
                {ledger.hasNextPage && (
                  <Button
                    variant="secondary"
                    onClick={() => void ledger.fetchNextPage()}
                    busy={ledger.isFetchingNextPage}
                    busyLabel="Loading…"
                  >
                    Load more
                  </Button>
                )}
              </div>
            </>
          )}
        </Card>
      </div>
    </>
  );
}

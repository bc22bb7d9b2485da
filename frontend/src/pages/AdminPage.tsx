import { useInfiniteQuery, useMutation, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { useSearchParams } from 'react-router';
import { api, unwrap } from '../api/client';
import { useReconcile } from '../api/queries';
import { useUser } from '../auth/AuthProvider';
import { LoadError, PageLoadErrors } from '../components/LoadErrors';
import { Alert, Badge, Button, Card, ErrorAlert, Loading, PageHeader, SelectField } from '../components/ui';
import { formatDateTime, formatKind, formatNumber } from '../lib/format';
import { useDocumentTitle } from '../lib/useDocumentTitle';
import { Customers } from './admin/Customers';
import { GrantCredits } from './admin/GrantCredits';
import { Models } from './admin/Models';
import { ServerKeys } from './admin/ServerKeys';
import { Webhooks } from './admin/Webhooks';

function Reconcile() {
  const report = useReconcile();
  return (
    <Card
      title="Ledger reconciliation"
      actions={
        <Button variant="secondary" onClick={() => void report.refetch()} busy={report.isFetching} busyLabel="Checking…">
          Run checks
        </Button>
      }
    >
      {!report.data ? (
        report.isError ? <LoadError error={report.error} what="the reconciliation" /> : <Loading label="Checking the ledger…" />
      ) : (
        <div className="space-y-4">
          <Alert tone={report.data.ok ? 'success' : 'error'} title={report.data.ok ? 'The books balance' : 'Violations found'}>
            Checked {formatDateTime(report.data.checked_at)}.
          </Alert>
          <ul className="divide-y divide-slate-100">
            {report.data.checks.map((check) => (
              <li key={check.name} className="space-y-1 py-3 text-sm">
                <p className="flex flex-wrap items-center gap-2 font-medium text-slate-900">
                  {check.name}
                  <Badge tone={check.violation_count === 0 ? 'good' : 'bad'}>
                    {check.violation_count === 0
                      ? 'OK'
                      : `${formatNumber(check.violation_count)} violation${check.violation_count === 1 ? '' : 's'}`}
                  </Badge>
                </p>
                <p className="text-slate-600">
                  {check.description} ({formatNumber(check.checked)} checked)
                </p>
                {check.violations.length > 0 && (
                  <ul className="list-disc pl-5 text-red-800">
                    {check.violations.map((v) => (
                      <li key={v}>{v}</li>
                    ))}
                  </ul>
                )}
              </li>
            ))}
          </ul>
        </div>
      )}
    </Card>
  );
}

const statusTone = { processed: 'good', failed: 'bad', ignored: 'neutral' } as const;

const EVENT_STATUSES = ['failed', 'processed', 'ignored'] as const;

function StripeEvents() {
  const queryClient = useQueryClient();
  const [status, setStatus] = useState('');
  const events = useInfiniteQuery({
    queryKey: ['admin', 'stripe-events', status],
    initialPageParam: undefined as string | undefined,
    queryFn: ({ pageParam }) =>
      unwrap(
        api.GET('/api/v1/admin/stripe-events', {
          params: { query: { limit: 25, cursor: pageParam, status: status || undefined } },
        }),
      ),
    getNextPageParam: (last) => last.next_cursor ?? undefined,
  });
  const retry = useMutation({
    mutationFn: (id: string) =>
      unwrap(api.POST('/api/v1/admin/stripe-events/{id}/retry', { params: { path: { id } } })),
    onSettled: () => queryClient.invalidateQueries({ queryKey: ['admin', 'stripe-events'] }),
  });
  const list = events.data?.pages.flatMap((p) => p.events) ?? [];

  return (
    <Card
      title="Stripe event inbox"
      actions={
        <div className="w-44">
          <SelectField label="Status" value={status} onChange={(e) => setStatus(e.target.value)}>
            <option value="">All events</option>
            {EVENT_STATUSES.map((s) => (
              <option key={s} value={s}>
                {formatKind(s)}
              </option>
            ))}
          </SelectField>
        </div>
      }
    >
      {retry.isSuccess && (
        <div className="mb-4">
          <Alert tone="success">Event {retry.variables} applied: {retry.data.status}.</Alert>
        </div>
      )}
      {!events.data ? (
        events.isError ? <LoadError error={events.error} what="the Stripe events" /> : <Loading />
      ) : list.length === 0 ? (
        <p className="text-sm text-slate-600">
          {status ? `No ${status} events.` : 'No Stripe events received yet.'}
        </p>
      ) : (
        <div className="space-y-4">
          {retry.isError && <ErrorAlert error={retry.error} title="Retry failed" />}
          <ul className="divide-y divide-slate-100">
            {list.map((event) => (
              <li key={event.id} className="flex flex-col gap-2 py-3 text-sm sm:flex-row sm:items-start sm:justify-between">
                <div className="min-w-0 space-y-1">
                  <p className="flex flex-wrap items-center gap-2">
                    <span className="font-medium text-slate-900">{event.type}</span>
                    <Badge tone={statusTone[event.status as keyof typeof statusTone] ?? 'warn'}>{formatKind(event.status)}</Badge>
                  </p>
                  <p className="break-all font-mono text-xs text-slate-600">{event.id}</p>
                  <p className="text-xs text-slate-600">
                    Received {formatDateTime(event.received_at)} · {formatNumber(event.attempts)}{' '}
                    {event.attempts === 1 ? 'attempt' : 'attempts'}
                    {event.processed_at && ` · processed ${formatDateTime(event.processed_at)}`}
                  </p>
                  {event.last_error && <p className="text-xs text-red-800">Last error: {event.last_error}</p>}
                </div>
                {event.status === 'failed' && (
                  <Button
                    variant="secondary"
                    onClick={() => retry.mutate(event.id)}
                    busy={retry.isPending && retry.variables === event.id}
                    busyLabel="Retrying…"
                    aria-label={`Retry ${event.type} ${event.id}`}
                  >
                    Retry
                  </Button>
                )}
              </li>
            ))}
          </ul>
          {events.hasNextPage && (
            <Button variant="secondary" onClick={() => void events.fetchNextPage()} busy={events.isFetchingNextPage} busyLabel="Loading…">
              Load more
            </Button>
          )}
        </div>
      )}
    </Card>
  );
}

export function AdminPage() {
  useDocumentTitle('Admin');
  const user = useUser();
  const [params] = useSearchParams();
  const customerOpen = params.has('customer');
  if (user.role !== 'admin') {
    return (
      <>
        <PageHeader title="Admin" />
        <Alert tone="error" title="Admins only">
          You need the admin role to see this page.
        </Alert>
      </>
    );
  }
  return (
    <>
      <PageHeader title="Admin" description="Operator tools: customers, server keys, webhooks, the models' rate card, grants, payments and the ledger's health." />
      <div className="space-y-6">
        {/* Every admin tool's data is under the "admin" key: one retry for all that failed. */}
        <PageLoadErrors queryKeys={[['admin']]} />
        <Customers />
        {/* One customer fills the page; the other tools wait until it is closed. */}
        {!customerOpen && (
          <>
            <ServerKeys />
            <Webhooks />
            <Models />
            <div className="grid grid-cols-1 gap-6 lg:grid-cols-2">
              <GrantCredits />
              <Reconcile />
              <div className="min-w-0 lg:col-span-2">
                <StripeEvents />
              </div>
            </div>
          </>
        )}
      </div>
    </>
  );
}

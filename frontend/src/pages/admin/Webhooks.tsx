import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { api, unwrap, type SubscribedEventType, type WebhookAttempt, type WebhookEndpoint } from '../../api/client';
import { formErrors } from '../../api/errors';
import { adminKeys, useWebhookAttempts, useWebhookEndpoints } from '../../api/queries';
import { LoadError } from '../../components/LoadErrors';
import { NewSecret } from '../../components/NewSecret';
import { Alert, Badge, Button, Card, ConfirmDialog, ErrorAlert, Loading, TextField } from '../../components/ui';
import { formatDateTime, formatNumber } from '../../lib/format';

type EventType = Exclude<SubscribedEventType, '*'>;

/** Every event type an endpoint can subscribe to, in the order the form lists them. */
export const EVENT_TYPES: readonly EventType[] = [
  'credits.granted',
  'credits.spent',
  'credits.hold.created',
  'credits.hold.captured',
  'credits.hold.released',
  'credits.hold.expired',
  'credits.expired',
  'credits.clawed_back',
  'credits.dispute.frozen',
  'credits.dispute.returned',
  'balance.low',
  'subscription.updated',
  'checkout.completed',
  'webhook_endpoint.disabled',
];

// The list above must name every type the spec has (a new one fails to compile here).
type Missing = Exclude<EventType, (typeof EVENT_TYPES)[number]>;
const everyTypeListed: Missing extends never ? true : Missing = true;
void everyTypeListed;

/** A secret just made (by creating an endpoint or rotating its secret): shown this once. */
interface Shown {
  id: string;
  name: string;
  secret: string;
  title: string;
}

function EndpointForm({ onCreated }: { onCreated: (shown: Shown) => void }) {
  const queryClient = useQueryClient();
  const [url, setUrl] = useState('');
  const [all, setAll] = useState(true);
  const [chosen, setChosen] = useState<EventType[]>([]);
  const [description, setDescription] = useState('');

  const create = useMutation({
    mutationFn: (body: { url: string; events: SubscribedEventType[]; description: string | null }) =>
      unwrap(api.POST('/api/v1/webhook-endpoints', { body })),
    onSuccess: (created) => {
      setUrl('');
      setAll(true);
      setChosen([]);
      setDescription('');
      onCreated({ id: created.id, name: created.url, secret: created.secret, title: 'Endpoint added' });
      void queryClient.invalidateQueries({ queryKey: adminKeys.webhookEndpoints });
    },
  });
  const errors = formErrors(create.error, ['url', 'events', 'description']);

  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate({
      url: url.trim(),
      events: all ? ['*'] : EVENT_TYPES.filter((t) => chosen.includes(t)),
      description: description.trim() || null,
    });
  };

  return (
    <form onSubmit={onSubmit} noValidate className="space-y-4" aria-label="Add a webhook endpoint">
      {errors.general && <Alert tone="error">{errors.general}</Alert>}
      <TextField
        label="Endpoint URL"
        type="url"
        value={url}
        onChange={(e) => setUrl(e.target.value)}
        placeholder="https://api.example.com/tollgate/webhooks"
        error={errors.fields.url}
        maxLength={2048}
      />
      <fieldset aria-describedby={errors.fields.events ? 'webhook-events-error' : undefined}>
        <legend className="text-sm font-medium text-slate-800">Events to send</legend>
        <div className="mt-2 space-y-2 text-sm text-slate-800">
          <label className="flex items-center gap-2">
            <input type="radio" name="webhook-events" checked={all} onChange={() => setAll(true)} className="size-4" />
            All events, including types added later
          </label>
          <label className="flex items-center gap-2">
            <input type="radio" name="webhook-events" checked={!all} onChange={() => setAll(false)} className="size-4" />
            Only these:
          </label>
          <div className="grid grid-cols-1 gap-2 pl-6 sm:grid-cols-2 lg:grid-cols-3">
            {EVENT_TYPES.map((type) => (
              <label key={type} className={`flex items-center gap-2 ${all ? 'text-slate-400' : ''}`}>
                <input
                  type="checkbox"
                  className="size-4"
                  disabled={all}
                  checked={!all && chosen.includes(type)}
                  onChange={(e) =>
                    setChosen((current) => (e.target.checked ? [...current, type] : current.filter((t) => t !== type)))
                  }
                />
                <code>{type}</code>
              </label>
            ))}
          </div>
        </div>
        {errors.fields.events && (
          <p id="webhook-events-error" className="mt-1 text-sm text-red-700">
            {errors.fields.events}
          </p>
        )}
      </fieldset>
      <TextField
        label="Description (optional)"
        value={description}
        onChange={(e) => setDescription(e.target.value)}
        error={errors.fields.description}
        maxLength={500}
      />
      <Button type="submit" busy={create.isPending} busyLabel="Adding…">
        Add endpoint
      </Button>
    </form>
  );
}

function attemptResult(attempt: WebhookAttempt): { label: string; tone: 'good' | 'bad' | 'warn' } {
  if (attempt.succeeded) return { label: 'Delivered', tone: 'good' };
  if (attempt.delivery_status === 'failed') return { label: 'Failed', tone: 'bad' };
  if (attempt.delivery_status === 'succeeded') return { label: 'Failed, delivered later', tone: 'warn' };
  return { label: 'Failed, will retry', tone: 'warn' };
}

/** An endpoint's recent delivery attempts, with a redelivery of any event. */
function Deliveries({ endpoint }: { endpoint: WebhookEndpoint }) {
  const queryClient = useQueryClient();
  const attempts = useWebhookAttempts(endpoint.id);
  const redeliver = useMutation({
    mutationFn: (eventId: string) =>
      unwrap(
        api.POST('/api/v1/webhook-endpoints/{id}/events/{event_id}/redeliver', {
          params: { path: { id: endpoint.id, event_id: eventId } },
        }),
      ),
    onSuccess: () => void queryClient.invalidateQueries({ queryKey: adminKeys.webhookAttempts(endpoint.id) }),
  });
  const list = attempts.data?.pages.flatMap((p) => p.data) ?? [];

  return (
    <div className="mt-3 space-y-3 rounded-lg bg-slate-50 p-3">
      <div className="flex flex-wrap items-center justify-between gap-2">
        <h3 className="text-sm font-semibold text-slate-900">Recent deliveries</h3>
        <Button variant="secondary" onClick={() => void attempts.refetch()} busy={attempts.isFetching} busyLabel="Refreshing…">
          Refresh
        </Button>
      </div>
      {redeliver.isSuccess && (
        <Alert tone="success">Event {redeliver.variables} queued for delivery again.</Alert>
      )}
      {redeliver.isError && <ErrorAlert error={redeliver.error} title="Redelivery failed" />}
      {!attempts.data ? (
        attempts.isError ? <LoadError error={attempts.error} what="the deliveries" /> : <Loading />
      ) : list.length === 0 ? (
        <p className="text-sm text-slate-600">No deliveries yet.</p>
      ) : (
        <div className="overflow-x-auto">
          <table className="w-full text-left text-sm">
            <caption className="sr-only">Delivery attempts to {endpoint.url}, newest first</caption>
            <thead className="text-xs text-slate-600">
              <tr>
                <th scope="col" className="py-1 pr-3 font-medium">Event</th>
                <th scope="col" className="py-1 pr-3 font-medium">Attempt</th>
                <th scope="col" className="py-1 pr-3 font-medium">Status code</th>
                <th scope="col" className="py-1 pr-3 font-medium">Result</th>
                <th scope="col" className="py-1 pr-3 font-medium">Time</th>
                <th scope="col" className="py-1 pr-3 font-medium">Error</th>
                <th scope="col" className="py-1 font-medium">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody className="divide-y divide-slate-200">
              {list.map((a) => {
                const result = attemptResult(a);
                return (
                  <tr key={a.id}>
                    <td className="py-2 pr-3">
                      <span className="block font-medium text-slate-900">{a.event_type}</span>
                      <span className="block break-all font-mono text-xs text-slate-600">{a.event_id}</span>
                    </td>
                    <td className="py-2 pr-3">{formatNumber(a.attempt)}</td>
                    <td className="py-2 pr-3 font-mono">{a.status_code ?? '—'}</td>
                    <td className="py-2 pr-3">
                      <Badge tone={result.tone}>{result.label}</Badge>
                    </td>
                    <td className="whitespace-nowrap py-2 pr-3">
                      <time dateTime={a.attempted_at}>{formatDateTime(a.attempted_at)}</time>
                      <span className="block text-xs text-slate-600">{formatNumber(a.duration_ms)} ms</span>
                    </td>
                    <td className="max-w-64 break-words py-2 pr-3 text-red-800">{a.error ?? ''}</td>
                    <td className="py-2">
                      <Button
                        variant="secondary"
                        onClick={() => redeliver.mutate(a.event_id)}
                        busy={redeliver.isPending && redeliver.variables === a.event_id}
                        busyLabel="Redelivering…"
                        aria-label={`Redeliver ${a.event_type} ${a.event_id}`}
                      >
                        Redeliver
                      </Button>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {attempts.hasNextPage && (
        <Button variant="secondary" onClick={() => void attempts.fetchNextPage()} busy={attempts.isFetchingNextPage} busyLabel="Loading…">
          Load older deliveries
        </Button>
      )}
    </div>
  );
}

function EndpointRow({
  endpoint,
  onSecret,
  onDelete,
}: {
  endpoint: WebhookEndpoint;
  onSecret: (shown: Shown) => void;
  onDelete: (endpoint: WebhookEndpoint) => void;
}) {
  const queryClient = useQueryClient();
  const [open, setOpen] = useState(false);
  const [rotating, setRotating] = useState(false);
  const toggle = useMutation({
    mutationFn: (enabled: boolean) =>
      unwrap(api.PATCH('/api/v1/webhook-endpoints/{id}', { params: { path: { id: endpoint.id } }, body: { enabled } })),
    onSuccess: (updated) => {
      queryClient.setQueryData<WebhookEndpoint[]>(adminKeys.webhookEndpoints, (old) =>
        old?.map((e) => (e.id === updated.id ? updated : e)),
      );
    },
  });
  const rotate = useMutation({
    mutationFn: () => unwrap(api.POST('/api/v1/webhook-endpoints/{id}/rotate-secret', { params: { path: { id: endpoint.id } } })),
    onSuccess: (rotated) => {
      setRotating(false);
      onSecret({ id: `${rotated.id}-${Date.now()}`, name: rotated.url, secret: rotated.secret, title: 'New signing secret' });
      void queryClient.invalidateQueries({ queryKey: adminKeys.webhookEndpoints });
    },
  });
  const every = endpoint.events.includes('*');

  return (
    <li className="py-4">
      <div className="flex flex-col gap-3 sm:flex-row sm:items-start sm:justify-between">
        <div className="min-w-0 space-y-1">
          <p className="flex flex-wrap items-center gap-2">
            <span className="break-all font-medium text-slate-900">{endpoint.url}</span>
            {endpoint.enabled ? <Badge tone="good">Enabled</Badge> : <Badge tone="bad">Disabled</Badge>}
          </p>
          {endpoint.description && <p className="text-sm text-slate-700">{endpoint.description}</p>}
          <p className="flex flex-wrap items-center gap-1 text-xs">
            {every ? <Badge tone="brand">All events</Badge> : endpoint.events.map((t) => <Badge key={t}>{t}</Badge>)}
          </p>
          <p className="text-xs text-slate-600">
            Added {formatDateTime(endpoint.created_at)}
            {endpoint.previous_secret_expires_at &&
              ` · the previous secret also signs until ${formatDateTime(endpoint.previous_secret_expires_at)}`}
          </p>
          {!endpoint.enabled && endpoint.disabled_at && (
            <p className="text-xs text-red-800">
              Disabled {formatDateTime(endpoint.disabled_at)} after its deliveries kept failing. Enable it to send them again.
            </p>
          )}
          {endpoint.enabled && endpoint.failing_since && (
            <p className="text-xs text-amber-800">Deliveries failing since {formatDateTime(endpoint.failing_since)}.</p>
          )}
        </div>
        <div className="flex shrink-0 flex-wrap gap-2">
          <Button
            variant="secondary"
            aria-expanded={open}
            onClick={() => setOpen((o) => !o)}
            aria-label={`${open ? 'Hide' : 'Show'} deliveries to ${endpoint.url}`}
          >
            {open ? 'Hide deliveries' : 'Deliveries'}
          </Button>
          <Button
            variant="secondary"
            onClick={() => toggle.mutate(!endpoint.enabled)}
            busy={toggle.isPending}
            aria-label={`${endpoint.enabled ? 'Disable' : 'Enable'} ${endpoint.url}`}
          >
            {endpoint.enabled ? 'Disable' : 'Enable'}
          </Button>
          <Button variant="secondary" onClick={() => setRotating(true)} aria-label={`Rotate the secret of ${endpoint.url}`}>
            Rotate secret
          </Button>
          <Button variant="secondary" className="text-red-700" onClick={() => onDelete(endpoint)} aria-label={`Delete ${endpoint.url}`}>
            Delete
          </Button>
        </div>
      </div>
      {toggle.isError && (
        <div className="mt-2">
          <ErrorAlert error={toggle.error} title={endpoint.enabled ? 'Could not disable it' : 'Could not enable it'} />
        </div>
      )}
      {open && <Deliveries endpoint={endpoint} />}
      <ConfirmDialog
        open={rotating}
        title="Rotate the signing secret?"
        confirmLabel="Rotate secret"
        busy={rotate.isPending}
        onCancel={() => {
          setRotating(false);
          rotate.reset();
        }}
        onConfirm={() => rotate.mutate()}
      >
        <p>
          A new secret signs every delivery to {endpoint.url} from now on. The current one keeps signing beside it for
          24 hours, so the receiver can switch without missing a delivery.
        </p>
        {rotate.isError && (
          <div className="mt-3">
            <ErrorAlert error={rotate.error} />
          </div>
        )}
      </ConfirmDialog>
    </li>
  );
}

/**
 * Webhooks: the product's endpoints that Tollgate POSTs its events to (signed as Standard
 * Webhooks), their secrets (shown once), and what was delivered to each.
 */
export function Webhooks() {
  const queryClient = useQueryClient();
  const list = useWebhookEndpoints();
  const [shown, setShown] = useState<Shown | null>(null);
  const [deleting, setDeleting] = useState<WebhookEndpoint | null>(null);
  const [deletedUrl, setDeletedUrl] = useState<string | null>(null);

  const remove = useMutation({
    mutationFn: (endpoint: WebhookEndpoint) =>
      unwrap(api.DELETE('/api/v1/webhook-endpoints/{id}', { params: { path: { id: endpoint.id } } })),
    onSuccess: (_data, endpoint) => {
      setDeleting(null);
      setDeletedUrl(endpoint.url);
      queryClient.setQueryData<WebhookEndpoint[]>(adminKeys.webhookEndpoints, (old) => old?.filter((e) => e.id !== endpoint.id));
      void queryClient.invalidateQueries({ queryKey: adminKeys.webhookEndpoints });
    },
  });

  return (
    <Card title="Webhooks">
      <div className="space-y-6">
        <p className="text-sm text-slate-600">
          Tollgate POSTs each event to these URLs as it happens, signed as Standard Webhooks (headers{' '}
          <code>webhook-id</code>, <code>webhook-timestamp</code>, <code>webhook-signature</code>): verify them with the
          endpoint's secret. Failed deliveries are retried with backoff.
        </p>
        {shown && (
          <NewSecret
            key={shown.id}
            created={shown}
            title={`${shown.title}: ${shown.name}`}
            secretLabel="Signing secret"
            onDone={() => setShown(null)}
          />
        )}
        {deletedUrl && <Alert tone="success">Endpoint {deletedUrl} deleted. Nothing more is sent to it.</Alert>}
        <EndpointForm
          onCreated={(s) => {
            setDeletedUrl(null);
            setShown(s);
          }}
        />

        {!list.data ? (
          list.isError ? <LoadError error={list.error} what="the webhook endpoints" /> : <Loading />
        ) : list.data.length === 0 ? (
          <p className="text-sm text-slate-600">No webhook endpoints yet.</p>
        ) : (
          <ul className="divide-y divide-slate-100 border-t border-slate-100" aria-label="Webhook endpoints">
            {list.data.map((endpoint) => (
              <EndpointRow key={endpoint.id} endpoint={endpoint} onSecret={setShown} onDelete={setDeleting} />
            ))}
          </ul>
        )}
      </div>

      <ConfirmDialog
        open={deleting !== null}
        title="Delete this webhook endpoint?"
        confirmLabel="Delete endpoint"
        busy={remove.isPending}
        onCancel={() => {
          setDeleting(null);
          remove.reset();
        }}
        onConfirm={() => deleting && remove.mutate(deleting)}
      >
        <p>
          Nothing more is sent to {deleting?.url}, and its delivery history is deleted with it. This cannot be undone.
        </p>
        {remove.isError && (
          <div className="mt-3">
            <ErrorAlert error={remove.error} />
          </div>
        )}
      </ConfirmDialog>
    </Card>
  );
}

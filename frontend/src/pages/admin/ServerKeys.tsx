import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { api, unwrap, type ServerKey, type ServerKeyScope } from '../../api/client';
import { formErrors } from '../../api/errors';
import { adminKeys, useServerKeys } from '../../api/queries';
import { NewSecret } from '../../components/NewSecret';
import { LoadError } from '../../components/LoadErrors';
import { Alert, Badge, Button, Card, ConfirmDialog, ErrorAlert, Loading, TextField } from '../../components/ui';
import { formatDateTime } from '../../lib/format';

/** Every scope a server key can carry, in the order the form lists them. */
const SCOPES: readonly { value: ServerKeyScope; label: string }[] = [
  { value: 'customers:write', label: 'Create and update customers' },
  { value: 'customers:read', label: 'Read customers' },
  { value: 'credits:read', label: 'Read balances, history and usage' },
  { value: 'credits:spend', label: 'Spend and hold credits' },
  { value: 'credits:grant', label: 'Grant credits' },
  { value: 'billing:write', label: 'Start checkouts and open the customer portal' },
  { value: 'events:read', label: 'Read the event log' },
  { value: 'webhooks:write', label: 'Manage webhook endpoints' },
];

/**
 * Server keys: what a product's own backend uses to manage its customers' credits. Created with
 * the scopes it needs; the secret is shown once; revoking one needs a confirmation.
 */
export function ServerKeys() {
  const queryClient = useQueryClient();
  const list = useServerKeys();
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<ServerKeyScope[]>([]);
  const [revoking, setRevoking] = useState<ServerKey | null>(null);
  const [revokedName, setRevokedName] = useState<string | null>(null);

  const create = useMutation({
    mutationFn: (body: { name: string; scopes: ServerKeyScope[] }) => unwrap(api.POST('/api/v1/admin/server-keys', { body })),
    onSuccess: () => {
      setName('');
      setScopes([]);
      setRevokedName(null);
      void queryClient.invalidateQueries({ queryKey: adminKeys.serverKeys });
    },
  });

  const revoke = useMutation({
    mutationFn: (key: ServerKey) =>
      unwrap(api.DELETE('/api/v1/admin/server-keys/{id}', { params: { path: { id: key.id } } })),
    onSuccess: (_data, key) => {
      setRevoking(null);
      setRevokedName(key.name);
      queryClient.setQueryData<ServerKey[]>(adminKeys.serverKeys, (old) => old?.filter((k) => k.id !== key.id));
      void queryClient.invalidateQueries({ queryKey: adminKeys.serverKeys });
    },
  });

  const errors = formErrors(create.error, ['name', 'scopes']);

  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    // In the form's order, whatever order they were ticked in.
    const chosen = SCOPES.map((s) => s.value).filter((s) => scopes.includes(s));
    create.mutate({ name: name.trim(), scopes: chosen });
  };

  const toggleScope = (scope: ServerKeyScope, on: boolean) =>
    setScopes((current) => (on ? [...current.filter((s) => s !== scope), scope] : current.filter((s) => s !== scope)));

  return (
    <Card title="Server keys">
      <div className="space-y-6">
        <p className="text-sm text-slate-600">
          Your product's backend sends one as “Authorization: Bearer tg_sk_…” to create customers, read and move their
          credits, and open checkouts and the customer portal for them.
        </p>
        {create.data && (
          <NewSecret key={create.data.id} created={create.data} secretLabel="Secret of the new server key" onDone={() => create.reset()} />
        )}
        {revokedName && <Alert tone="success">Server key “{revokedName}” revoked. It no longer works.</Alert>}

        <form onSubmit={onSubmit} noValidate className="space-y-4" aria-label="Create a server key">
          {errors.general && <Alert tone="error">{errors.general}</Alert>}
          <TextField
            label="Key name"
            name="name"
            value={name}
            onChange={(e) => setName(e.target.value)}
            hint="What uses the key, e.g. “production backend”."
            error={errors.fields.name}
            maxLength={100}
          />
          <fieldset aria-describedby={errors.fields.scopes ? 'server-key-scopes-error' : undefined}>
            <legend className="text-sm font-medium text-slate-800">Scopes</legend>
            <div className="mt-2 grid grid-cols-1 gap-2 sm:grid-cols-2">
              {SCOPES.map((scope) => (
                <label key={scope.value} className="flex items-start gap-2 text-sm text-slate-800">
                  <input
                    type="checkbox"
                    className="mt-0.5 size-4 shrink-0 rounded border-slate-300 accent-brand-600"
                    checked={scopes.includes(scope.value)}
                    onChange={(e) => toggleScope(scope.value, e.target.checked)}
                  />
                  <span>
                    {scope.label} <code className="text-xs text-slate-600">({scope.value})</code>
                  </span>
                </label>
              ))}
            </div>
            {errors.fields.scopes && (
              <p id="server-key-scopes-error" className="mt-1 text-sm text-red-700">
                {errors.fields.scopes}
              </p>
            )}
          </fieldset>
          <Button type="submit" busy={create.isPending} busyLabel="Creating…">
            Create server key
          </Button>
        </form>

        {!list.data ? (
          list.isError ? <LoadError error={list.error} what="the server keys" /> : <Loading />
        ) : list.data.length === 0 ? (
          <p className="text-sm text-slate-600">There are no server keys.</p>
        ) : (
          <ul className="divide-y divide-slate-100 border-t border-slate-100" aria-label="Server keys">
            {list.data.map((key) => (
              <li key={key.id} className="flex flex-col gap-2 py-3 sm:flex-row sm:items-center sm:justify-between">
                <div className="min-w-0 space-y-1">
                  <p className="break-words font-medium text-slate-900">{key.name}</p>
                  <p className="flex flex-wrap items-center gap-2 text-xs text-slate-600">
                    <code className="rounded bg-slate-100 px-1.5 py-0.5 text-slate-800">{key.prefix}…</code>
                    {key.scopes.map((s) => (
                      <Badge key={s}>{s}</Badge>
                    ))}
                  </p>
                  <p className="text-xs text-slate-600">
                    Created {formatDateTime(key.created_at)} ·{' '}
                    {key.last_used_at ? `last used ${formatDateTime(key.last_used_at)}` : 'never used'}
                  </p>
                </div>
                <Button variant="secondary" className="text-red-700" onClick={() => setRevoking(key)} aria-label={`Revoke ${key.name}`}>
                  Revoke
                </Button>
              </li>
            ))}
          </ul>
        )}
      </div>

      <ConfirmDialog
        open={revoking !== null}
        title="Revoke this server key?"
        confirmLabel="Revoke key"
        busy={revoke.isPending}
        onCancel={() => {
          setRevoking(null);
          revoke.reset();
        }}
        onConfirm={() => revoking && revoke.mutate(revoking)}
      >
        <p>
          “{revoking?.name}” ({revoking?.prefix}…) stops working at once: the backend using it will be refused. This
          cannot be undone.
        </p>
        {revoke.isError && (
          <div className="mt-3">
            <ErrorAlert error={revoke.error} />
          </div>
        )}
      </ConfirmDialog>
    </Card>
  );
}

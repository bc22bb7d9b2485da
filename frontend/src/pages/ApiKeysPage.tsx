import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { api, unwrap, type ApiKey } from '../api/client';
import { formErrors } from '../api/errors';
import { modelKeys } from '../api/models';
import { keys, useApiKeys } from '../api/queries';
import { LoadError, PageLoadErrors } from '../components/LoadErrors';
import { NewSecret } from '../components/NewSecret';
import { Alert, Badge, Button, Card, ConfirmDialog, ErrorAlert, Loading, PageHeader, TextField } from '../components/ui';
import { formatDateTime } from '../lib/format';
import { useDocumentTitle } from '../lib/useDocumentTitle';
import { OpenAiSetup } from './gateway/OpenAiSetup';

const SCOPES = [
  { value: 'credits:read', label: 'Read balance and history', code: 'credits:read' },
  { value: 'credits:spend', label: 'Spend credits', code: 'credits:spend' },
] as const;

type Scope = (typeof SCOPES)[number]['value'];

export function ApiKeysPage() {
  useDocumentTitle('API keys');
  const queryClient = useQueryClient();
  const list = useApiKeys();
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<Scope[]>(['credits:read', 'credits:spend']);
  const [revoking, setRevoking] = useState<ApiKey | null>(null);
  const [revokedName, setRevokedName] = useState<string | null>(null);

  const create = useMutation({
    mutationFn: (body: { name: string; scopes: Scope[] }) => unwrap(api.POST('/api/v1/api-keys', { body })),
    onSuccess: () => {
      setName('');
      setRevokedName(null);
      void queryClient.invalidateQueries({ queryKey: keys.apiKeys });
    },
  });

  const revoke = useMutation({
    mutationFn: (key: ApiKey) => unwrap(api.DELETE('/api/v1/api-keys/{id}', { params: { path: { id: key.id } } })),
    onSuccess: (_data, key) => {
      setRevoking(null);
      setRevokedName(key.name);
      queryClient.setQueryData<ApiKey[]>(keys.apiKeys, (old) => old?.filter((k) => k.id !== key.id));
      void queryClient.invalidateQueries({ queryKey: keys.apiKeys });
    },
  });

  const errors = formErrors(create.error, ['name', 'scopes']);

  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    create.mutate({ name: name.trim(), scopes });
  };

  const toggleScope = (scope: Scope, on: boolean) =>
    setScopes((current) => (on ? [...current.filter((s) => s !== scope), scope] : current.filter((s) => s !== scope)));

  return (
    <>
      <PageHeader
        title="API keys"
        description="Keys let your own backend check balances and spend credits for you. Send one as “Authorization: Bearer tg_…”."
      />
      <div className="space-y-6">
        <PageLoadErrors queryKeys={[keys.apiKeys, modelKeys.active]} />
        {create.data && <NewSecret key={create.data.id} created={create.data} onDone={() => create.reset()} />}
        {revokedName && <Alert tone="success">Key “{revokedName}” revoked. It no longer works.</Alert>}

        <Card title="Create a key">
          <form onSubmit={onSubmit} noValidate className="space-y-4" aria-label="Create an API key">
            {errors.general && <Alert tone="error">{errors.general}</Alert>}
            <TextField
              label="Name"
              name="name"
              value={name}
              onChange={(e) => setName(e.target.value)}
              hint="What the key is for, e.g. “summarizer backend”."
              error={errors.fields.name}
              maxLength={100}
            />
            <fieldset aria-describedby={errors.fields.scopes ? 'scopes-error' : undefined}>
              <legend className="text-sm font-medium text-slate-800">Permissions</legend>
              <div className="mt-2 space-y-2">
                {SCOPES.map((scope) => (
                  <label key={scope.value} className="flex items-center gap-2 text-sm text-slate-800">
                    <input
                      type="checkbox"
                      className="size-4 rounded border-slate-300 accent-brand-600"
                      checked={scopes.includes(scope.value)}
                      onChange={(e) => toggleScope(scope.value, e.target.checked)}
                    />
                    {scope.label} <code className="text-xs text-slate-600">({scope.code})</code>
                  </label>
                ))}
              </div>
              {errors.fields.scopes && (
                <p id="scopes-error" className="mt-1 text-sm text-red-700">
                  {errors.fields.scopes}
                </p>
              )}
            </fieldset>
            <Button type="submit" busy={create.isPending} busyLabel="Creating…">
              Create key
            </Button>
          </form>
        </Card>

        <Card title="Your keys">
          {!list.data ? (
            list.isError ? <LoadError error={list.error} what="your keys" /> : <Loading />
          ) : list.data.length === 0 ? (
            <p className="text-sm text-slate-600">You have no API keys.</p>
          ) : (
            <ul className="divide-y divide-slate-100" aria-label="API keys">
              {list.data.map((key) => (
                <li key={key.id} className="flex flex-col gap-2 py-3 sm:flex-row sm:items-center sm:justify-between">
                  <div className="min-w-0 space-y-1">
                    <p className="font-medium text-slate-900">{key.name}</p>
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
        </Card>

        <OpenAiSetup freshKey={create.data ?? null} />
      </div>

      <ConfirmDialog
        open={revoking !== null}
        title="Revoke this key?"
        confirmLabel="Revoke key"
        busy={revoke.isPending}
        onCancel={() => {
          setRevoking(null);
          revoke.reset();
        }}
        onConfirm={() => revoking && revoke.mutate(revoking)}
      >
        <p>
          “{revoking?.name}” ({revoking?.prefix}…) stops working at once. Anything using it will be refused. This cannot
          be undone.
        </p>
        {revoke.isError && (
          <div className="mt-3">
            <ErrorAlert error={revoke.error} />
          </div>
        )}
      </ConfirmDialog>
    </>
  );
}

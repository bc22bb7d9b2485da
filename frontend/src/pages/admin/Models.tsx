import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent, type ReactNode } from 'react';
import { api, unwrap } from '../../api/client';
import { ApiError, errorMessage, formErrors } from '../../api/errors';
import { modelKeys, useAdminModels, type CreateModel, type Model, type UpdateModel } from '../../api/models';
import { LoadError } from '../../components/LoadErrors';
import { Alert, Badge, Button, Card, Loading, TextField } from '../../components/ui';
import { formatDateTime, formatNumber } from '../../lib/format';

/** The fields of a model the API names in its validation errors. */
const FIELDS = [
  'id',
  'upstream_model',
  'input_per_million',
  'cached_input_per_million',
  'output_per_million',
  'max_output_tokens',
  'active',
] as const;

type Field = (typeof FIELDS)[number];
type FieldErrors = Partial<Record<Field, string>>;

/** The form's text, as typed: numbers stay strings until sent. */
interface Draft {
  id: string;
  upstream_model: string;
  input_per_million: string;
  cached_input_per_million: string;
  output_per_million: string;
  max_output_tokens: string;
  active: boolean;
}

const EMPTY: Draft = {
  id: '',
  upstream_model: '',
  input_per_million: '',
  cached_input_per_million: '',
  output_per_million: '',
  max_output_tokens: '',
  active: true,
};

function draftOf(model: Model): Draft {
  return {
    id: model.id,
    upstream_model: model.upstream_model,
    input_per_million: String(model.input_per_million),
    cached_input_per_million: String(model.cached_input_per_million),
    output_per_million: String(model.output_per_million),
    max_output_tokens: String(model.max_output_tokens),
    active: model.active,
  };
}

/** A typed number, or undefined when the field is empty. Whatever else was typed is sent as is. */
function numberOf(text: string): number | undefined {
  const value = text.trim();
  return value === '' ? undefined : Number(value);
}

const REQUIRED: Partial<Record<Field, string>> = {
  input_per_million: 'Enter the price of input tokens (0 or more).',
  output_per_million: 'Enter the price of output tokens (0 or more).',
  max_output_tokens: 'Enter the most output tokens a call may ask for.',
};

/** Fields left empty that the request cannot do without (the server checks everything else). */
function missing(draft: Draft, fields: readonly Field[]): FieldErrors {
  const errors: FieldErrors = {};
  for (const field of fields) {
    const value = draft[field];
    if (typeof value === 'string' && value.trim() === '') {
      errors[field] = field === 'id' ? 'Enter the id clients will send as “model”.' : REQUIRED[field];
    }
  }
  return errors;
}

/**
 * What a refused request says: the problem's `detail` at the top, the `errors` the form has a
 * field for beside those fields, and the others under the detail.
 */
function problemOf(error: unknown): { summary: string | null; others: string | null; fields: FieldErrors } {
  if (!error) return { summary: null, others: null, fields: {} };
  const split = formErrors(error, FIELDS);
  const fields: FieldErrors = split.fields;
  if (error instanceof ApiError && error.code === 'model_exists') fields.id ??= 'A model with this id already exists.';
  const summary = errorMessage(error);
  return { summary, others: split.general && split.general !== summary ? split.general : null, fields };
}

function ProblemAlert({ summary, others }: { summary: string | null; others: string | null }) {
  if (!summary) return null;
  return (
    <Alert tone="error" title={summary}>
      {others}
    </Alert>
  );
}

/** The price and limit fields the create and edit forms share. */
function PriceFields({
  draft,
  set,
  errors,
  idPrefix,
  creating = false,
}: {
  draft: Draft;
  set: (patch: Partial<Draft>) => void;
  errors: FieldErrors;
  idPrefix: string;
  /** A new model may leave the cached input price to the server (the input price). */
  creating?: boolean;
}) {
  const number = (field: Field, label: string, hint?: ReactNode) => (
    <TextField
      label={label}
      name={`${idPrefix}${field}`}
      type="number"
      inputMode="numeric"
      min={0}
      step={1}
      value={draft[field] as string}
      onChange={(e) => set({ [field]: e.target.value })}
      error={errors[field]}
      hint={hint}
    />
  );
  return (
    <>
      <TextField
        label="Upstream model"
        name={`${idPrefix}upstream_model`}
        value={draft.upstream_model}
        onChange={(e) => set({ upstream_model: e.target.value })}
        error={errors.upstream_model}
        hint="The name sent to the upstream API. Empty: the model id."
        maxLength={200}
      />
      <div className="grid grid-cols-1 gap-4 sm:grid-cols-3">
        {number('input_per_million', 'Input price', 'Credits per 1M input tokens.')}
        {number(
          'cached_input_per_million',
          'Cached input price',
          creating ? 'Credits per 1M cached input tokens. Empty: the input price.' : 'Credits per 1M cached input tokens.',
        )}
        {number('output_per_million', 'Output price', 'Credits per 1M output tokens.')}
      </div>
      {number('max_output_tokens', 'Max output tokens', 'The most a call may ask for (1 to 1,000,000); holds are sized by it.')}
      <label className="flex items-center gap-2 text-sm text-slate-800">
        <input
          type="checkbox"
          name={`${idPrefix}active`}
          className="size-4 rounded border-slate-300 accent-brand-600"
          checked={draft.active}
          onChange={(e) => set({ active: e.target.checked })}
        />
        Active (listed and callable through the gateway)
      </label>
      {errors.active && <p className="text-sm text-red-700">{errors.active}</p>}
    </>
  );
}

function CreateModelForm() {
  const queryClient = useQueryClient();
  const [draft, setDraft] = useState<Draft>(EMPTY);
  const [local, setLocal] = useState<FieldErrors>({});
  const set = (patch: Partial<Draft>) => setDraft((d) => ({ ...d, ...patch }));

  const create = useMutation({
    mutationFn: (body: CreateModel) => unwrap(api.POST('/api/v1/models', { body })),
    onSuccess: (model) => {
      setDraft(EMPTY);
      queryClient.setQueryData<Model[]>(modelKeys.all, (old) => (old ? [...old.filter((m) => m.id !== model.id), model] : old));
      void queryClient.invalidateQueries({ queryKey: modelKeys.all });
      void queryClient.invalidateQueries({ queryKey: modelKeys.active });
    },
  });

  const problem = problemOf(create.error);
  const errors = { ...problem.fields, ...local };

  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    const empty = missing(draft, ['id', 'input_per_million', 'output_per_million', 'max_output_tokens']);
    setLocal(empty);
    if (Object.keys(empty).length > 0) {
      create.reset();
      return;
    }
    const upstream = draft.upstream_model.trim();
    const body: CreateModel = {
      id: draft.id.trim(),
      ...(upstream ? { upstream_model: upstream } : {}),
      input_per_million: numberOf(draft.input_per_million)!,
      output_per_million: numberOf(draft.output_per_million)!,
      max_output_tokens: numberOf(draft.max_output_tokens)!,
      active: draft.active,
    };
    const cached = numberOf(draft.cached_input_per_million);
    if (cached !== undefined) body.cached_input_per_million = cached;
    create.mutate(body);
  };

  return (
    <form onSubmit={onSubmit} noValidate className="space-y-4" aria-label="Add a model">
      {create.isSuccess && (
        <Alert tone="success">
          Model “{create.data.id}” added{create.data.active ? '' : ' (inactive)'}.
        </Alert>
      )}
      <ProblemAlert summary={problem.summary} others={problem.others} />
      <TextField
        label="Model id"
        name="id"
        value={draft.id}
        onChange={(e) => set({ id: e.target.value })}
        error={errors.id}
        hint="What clients send as “model”, e.g. gpt-4o-mini: 1 to 64 letters, digits and . _ : / -"
        maxLength={64}
        autoComplete="off"
      />
      <PriceFields draft={draft} set={set} errors={errors} idPrefix="" creating />
      <Button type="submit" busy={create.isPending} busyLabel="Adding…">
        Add model
      </Button>
    </form>
  );
}

/** The fields of `draft` that differ from `model`, as a PATCH body. */
function changes(model: Model, draft: Draft): UpdateModel {
  const body: UpdateModel = {};
  const upstream = draft.upstream_model.trim() || model.id;
  if (upstream !== model.upstream_model) body.upstream_model = upstream;
  for (const field of ['input_per_million', 'cached_input_per_million', 'output_per_million', 'max_output_tokens'] as const) {
    const value = numberOf(draft[field]);
    if (value !== undefined && value !== model[field]) body[field] = value;
  }
  if (draft.active !== model.active) body.active = draft.active;
  return body;
}

function EditModelForm({ model, onDone }: { model: Model; onDone: (saved: Model | null) => void }) {
  const queryClient = useQueryClient();
  const [draft, setDraft] = useState<Draft>(() => draftOf(model));
  const [local, setLocal] = useState<FieldErrors>({});
  const set = (patch: Partial<Draft>) => setDraft((d) => ({ ...d, ...patch }));

  const save = useMutation({
    mutationFn: (body: UpdateModel) =>
      unwrap(api.PATCH('/api/v1/models/{id}', { params: { path: { id: model.id } }, body })),
    onSuccess: (saved) => {
      queryClient.setQueryData<Model[]>(modelKeys.all, (old) => old?.map((m) => (m.id === saved.id ? saved : m)));
      void queryClient.invalidateQueries({ queryKey: modelKeys.all });
      void queryClient.invalidateQueries({ queryKey: modelKeys.active });
      onDone(saved);
    },
  });

  const problem = problemOf(save.error);
  const errors = { ...problem.fields, ...local };

  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    const empty = missing(draft, ['input_per_million', 'cached_input_per_million', 'output_per_million', 'max_output_tokens']);
    setLocal(empty);
    if (Object.keys(empty).length > 0) {
      save.reset();
      return;
    }
    const body = changes(model, draft);
    if (Object.keys(body).length === 0) {
      onDone(null);
      return;
    }
    save.mutate(body);
  };

  return (
    <form onSubmit={onSubmit} noValidate className="space-y-4 py-3" aria-label={`Edit ${model.id}`}>
      <p className="font-medium text-slate-900">
        Editing <code>{model.id}</code>
      </p>
      <ProblemAlert summary={problem.summary} others={problem.others} />
      <PriceFields draft={draft} set={set} errors={errors} idPrefix={`${model.id}-`} />
      <div className="flex flex-wrap gap-2">
        <Button type="submit" busy={save.isPending} busyLabel="Saving…">
          Save
        </Button>
        <Button variant="secondary" onClick={() => onDone(null)} disabled={save.isPending}>
          Cancel
        </Button>
      </div>
    </form>
  );
}

function ModelSummary({ model, onEdit }: { model: Model; onEdit: () => void }) {
  return (
    <div className="flex flex-col gap-2 py-3 sm:flex-row sm:items-start sm:justify-between">
      <div className="min-w-0 space-y-1 text-sm">
        <p className="flex flex-wrap items-center gap-2">
          <code className="font-medium text-slate-900 [overflow-wrap:anywhere]">{model.id}</code>
          <Badge tone={model.active ? 'good' : 'neutral'}>{model.active ? 'Active' : 'Inactive'}</Badge>
        </p>
        <p className="text-slate-700">
          Input {formatNumber(model.input_per_million)} · cached input {formatNumber(model.cached_input_per_million)} ·
          output {formatNumber(model.output_per_million)} credits per 1M tokens
        </p>
        <p className="text-xs text-slate-600 [overflow-wrap:anywhere]">
          Upstream <code>{model.upstream_model}</code> · tokenizer {model.tokenizer} · up to{' '}
          {formatNumber(model.max_output_tokens)} output tokens · updated {formatDateTime(model.updated_at)}
        </p>
      </div>
      <Button variant="secondary" onClick={onEdit} aria-label={`Edit ${model.id}`}>
        Edit
      </Button>
    </div>
  );
}

/**
 * The gateway's model rate card: every model (inactive ones too), a form to add one, and an edit
 * form per model for its upstream name, prices, output limit and whether it is active.
 */
export function Models() {
  const list = useAdminModels();
  const [editing, setEditing] = useState<string | null>(null);
  const [saved, setSaved] = useState<string | null>(null);

  return (
    <Card title="Models">
      <div className="space-y-6">
        <p className="text-sm text-slate-600">
          The LLM gateway's rate card: the models clients may call through <code>/gateway/v1</code> or spend by, and the
          credits a call costs per 1M input, cached input and output tokens (rounded up to a whole credit per call).
        </p>
        <CreateModelForm />
        {saved && <Alert tone="success">Model “{saved}” saved.</Alert>}
        {!list.data ? (
          list.isError ? <LoadError error={list.error} what="the models" /> : <Loading />
        ) : list.data.length === 0 ? (
          <p className="text-sm text-slate-600">There are no models yet.</p>
        ) : (
          <ul className="divide-y divide-slate-100 border-t border-slate-100" aria-label="Models">
            {list.data.map((model) => (
              <li key={model.id}>
                {editing === model.id ? (
                  <EditModelForm
                    model={model}
                    onDone={(result) => {
                      setEditing(null);
                      setSaved(result ? result.id : null);
                    }}
                  />
                ) : (
                  <ModelSummary
                    model={model}
                    onEdit={() => {
                      setEditing(model.id);
                      setSaved(null);
                    }}
                  />
                )}
              </li>
            ))}
          </ul>
        )}
      </div>
    </Card>
  );
}

import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { api, unwrap, type Alerts } from '../api/client';
import { formErrors } from '../api/errors';
import { keys, useAlerts } from '../api/queries';
import { formatCredits } from '../lib/format';
import { LoadError } from './LoadErrors';
import { Alert, Button, Card, Loading, TextField } from './ui';

/** The most thresholds the API keeps per wallet. */
export const MAX_THRESHOLDS = 5;

/** The form, once the saved thresholds are known (so it starts from them). */
function AlertsForm({ saved }: { saved: Alerts }) {
  const queryClient = useQueryClient();
  const [rows, setRows] = useState<string[]>(() => (saved.thresholds.length > 0 ? saved.thresholds.map(String) : ['']));
  const [invalid, setInvalid] = useState<Record<number, string>>({});

  const save = useMutation({
    mutationFn: (thresholds: number[]) => unwrap(api.PUT('/api/v1/credits/alerts', { body: { thresholds } })),
    onSuccess: (answer) => {
      queryClient.setQueryData(keys.alerts, answer);
      setRows(answer.thresholds.length > 0 ? answer.thresholds.map(String) : ['']);
    },
  });
  const errors = formErrors(save.error, ['thresholds']);

  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    const bad: Record<number, string> = {};
    rows.forEach((row, i) => {
      if (row.trim() !== '' && !/^\d+$/.test(row.trim())) bad[i] = 'Enter a whole number of credits, 0 or more.';
    });
    setInvalid(bad);
    if (Object.keys(bad).length > 0) return;
    save.mutate(rows.filter((r) => r.trim() !== '').map((r) => Number(r.trim())));
  };

  const edit = (index: number, value: string) => {
    save.reset();
    setRows((current) => current.map((r, i) => (i === index ? value : r)));
  };

  return (
    <form onSubmit={onSubmit} noValidate aria-label="Low-balance alerts" className="space-y-4">
      <p className="text-sm text-slate-600">
        Get a warning on every page when your available credits fall to or below an amount (up to {MAX_THRESHOLDS}).
      </p>
      {errors.general && <Alert tone="error">{errors.general}</Alert>}
      {errors.fields.thresholds && (
        <p role="alert" className="text-sm text-red-700">
          {errors.fields.thresholds}
        </p>
      )}
      <ul className="space-y-3">
        {rows.map((row, i) => (
          <li key={i} className="flex items-end gap-2">
            <TextField
              className="w-48"
              label={`Alert ${i + 1} (credits)`}
              inputMode="numeric"
              value={row}
              onChange={(e) => edit(i, e.target.value)}
              error={invalid[i]}
            />
            {rows.length > 1 && (
              <Button
                variant="ghost"
                aria-label={`Remove alert ${i + 1}`}
                onClick={() => {
                  save.reset();
                  setInvalid({});
                  setRows((current) => current.filter((_, j) => j !== i));
                }}
              >
                Remove
              </Button>
            )}
          </li>
        ))}
      </ul>
      <div className="flex flex-wrap items-center gap-2">
        <Button
          variant="secondary"
          disabled={rows.length >= MAX_THRESHOLDS}
          onClick={() => {
            save.reset();
            setRows((current) => [...current, '']);
          }}
        >
          Add an alert
        </Button>
        <Button type="submit" busy={save.isPending} busyLabel="Saving…">
          Save alerts
        </Button>
      </div>
      <p aria-live="polite" className="text-sm text-emerald-800">
        {save.isSuccess &&
          (save.data.thresholds.length === 0
            ? 'Alerts saved: none set.'
            : `Alerts saved: ${save.data.thresholds.map((t) => formatCredits(t)).join(', ')}.`)}
      </p>
    </form>
  );
}

/** Where the user sets the amounts of credits below which every page warns them. */
export function AlertSettings() {
  const alerts = useAlerts();
  return (
    <div id="alerts" className="scroll-mt-4">
      <Card title="Low-balance alerts">
        {alerts.data ? (
          <AlertsForm saved={alerts.data} />
        ) : alerts.isError ? (
          <LoadError error={alerts.error} what="your alerts" />
        ) : (
          <Loading />
        )}
      </Card>
    </div>
  );
}

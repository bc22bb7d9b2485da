import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { api, unwrap, type Customer } from '../../api/client';
import { ApiError, formErrors } from '../../api/errors';
import { adminKeys, keys } from '../../api/queries';
import { Alert, Button, Card, TextField } from '../../components/ui';
import { formatCredits } from '../../lib/format';
import { useIdempotencyKey } from '../../lib/idempotency';
import { customerLabel } from './customerLabel';

type GrantBody = { email: string; amount: number; reason: string } | { user_id: string; amount: number; reason: string };

/**
 * Grants credits, with one idempotency key per grant: to a user named by email, or, given a
 * customer, to that customer by its Tollgate id (which every customer has, with or without an
 * external id or email).
 */
export function GrantCredits({ customer }: { customer?: Customer }) {
  const queryClient = useQueryClient();
  const idempotency = useIdempotencyKey();
  const [email, setEmail] = useState('');
  const [amount, setAmount] = useState('');
  const [reason, setReason] = useState('');
  const target = customer ? customerLabel(customer) : null;

  const grant = useMutation({
    mutationFn: ({ body, key }: { body: GrantBody; key: string }) =>
      unwrap(api.POST('/api/v1/credits/grant', { body, params: { header: { 'Idempotency-Key': key } } })).then((result) => ({
        result,
        to: 'email' in body ? body.email : (target ?? body.user_id),
      })),
    onSuccess: () => {
      idempotency.done();
      void queryClient.invalidateQueries({ queryKey: keys.reconcile });
      void queryClient.invalidateQueries({ queryKey: adminKeys.customersAll });
      setAmount('');
      setReason('');
    },
    onError: (error) => {
      if (error instanceof ApiError && error.status >= 400 && error.status < 500) idempotency.done();
    },
  });

  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    const figures = { amount: Number(amount), reason: reason.trim() };
    const body: GrantBody = customer ? { user_id: customer.id, ...figures } : { email: email.trim(), ...figures };
    grant.mutate({ body, key: idempotency.keyFor(JSON.stringify(body)) });
  };

  const errors = formErrors(grant.error, ['email', 'user_id', 'amount', 'reason']);
  if (grant.error instanceof ApiError && grant.error.code === 'user_not_found') {
    if (customer) {
      errors.general = 'This customer no longer exists.';
    } else {
      errors.fields.email = 'No user has this email.';
      errors.general = null;
    }
  }

  return (
    <Card title={target ? 'Grant credits to this customer' : 'Grant credits'}>
      <form onSubmit={onSubmit} noValidate className="space-y-4" aria-label={target ? `Grant credits to ${target}` : 'Grant credits'}>
        {grant.isSuccess && (
          <Alert tone="success">
            Granted {formatCredits(grant.data.result.transfer.amount)} to {grant.data.to}. Their balance is now{' '}
            {formatCredits(grant.data.result.balance.balance)}.
          </Alert>
        )}
        {errors.general && <Alert tone="error">{errors.general}</Alert>}
        {!customer && (
          <TextField
            label="User's email"
            name="email"
            type="email"
            value={email}
            onChange={(e) => setEmail(e.target.value)}
            error={errors.fields.email ?? errors.fields.user_id}
          />
        )}
        <TextField
          label="Credits"
          name="amount"
          type="number"
          inputMode="numeric"
          min={1}
          step={1}
          value={amount}
          onChange={(e) => setAmount(e.target.value)}
          error={errors.fields.amount}
        />
        <TextField
          label="Reason"
          name="reason"
          value={reason}
          onChange={(e) => setReason(e.target.value)}
          hint={customer ? "Shown in the customer's history." : "Shown in the user's history."}
          error={errors.fields.reason}
        />
        <Button type="submit" busy={grant.isPending} busyLabel="Granting…">
          Grant credits
        </Button>
      </form>
    </Card>
  );
}

import { keepPreviousData, useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect, useRef, useState, type FormEvent } from 'react';
import { Link } from 'react-router';
import { api, unwrap, type SummarizeResult } from '../api/client';
import { ApiError, formErrors } from '../api/errors';
import { invalidateCredits, keys, useBalance, useFeatures } from '../api/queries';
import { PageLoadErrors, Unavailable } from '../components/LoadErrors';
import { Alert, Button, Card, PageHeader, Stat, TextArea, buttonClass } from '../components/ui';
import { formatCredits, formatNumber } from '../lib/format';
import { useIdempotencyKey } from '../lib/idempotency';
import { useDebounced } from '../lib/useDebounced';
import { useDocumentTitle } from '../lib/useDocumentTitle';

export const MAX_CHARS = 20_000;

/**
 * Brings a result that just appeared to the user: scrolled to (it may be far below the button on
 * a phone) and focused, so a screen reader reads it too.
 */
function useRevealOnChange<T>(value: T | undefined) {
  const ref = useRef<HTMLElement>(null);
  useEffect(() => {
    const el = ref.current;
    if (!value || !el) return;
    const reduced = window.matchMedia?.('(prefers-reduced-motion: reduce)').matches ?? false;
    el.scrollIntoView?.({ block: 'start', behavior: reduced ? 'auto' : 'smooth' });
    el.focus({ preventScroll: true });
  }, [value]);
  return ref;
}

const SAMPLE = `Tollgate puts a meter in front of AI features. Users buy credit packs or subscribe to a plan, and every call to an AI feature spends credits from their wallet. Credits move only as double-entry transfers, so the books always balance. A spend takes credits from lots in a fixed order: promotions first, then grants, then subscription credits, then purchased packs. Holds reserve credits while work runs, and release themselves if the work never finishes. Nobody can spend what they do not have, spend twice, or get credits for free. The example feature on this page summarises text by keeping its most informative sentences.`;

function InsufficientCredits({ error }: { error: ApiError }) {
  const { available, requested } = error.problem;
  return (
    <Alert
      tone="error"
      title="Not enough credits"
      action={
        <Link to="/credits" className={buttonClass('primary')}>
          Buy credits
        </Link>
      }
    >
      {typeof requested === 'number' && typeof available === 'number'
        ? `This summary needs up to ${formatCredits(requested)}, but you have ${formatCredits(available)} available.`
        : error.problem.detail}{' '}
      Buy credits to run it.
    </Alert>
  );
}

export function ExamplePage() {
  useDocumentTitle('Example AI');
  const queryClient = useQueryClient();
  const [text, setText] = useState('');
  const trimmed = text.trim();
  const debounced = useDebounced(trimmed, 400);
  const balance = useBalance();
  const features = useFeatures();
  const feature = features.data?.find((f) => f.key === 'example.summarize');
  const idempotency = useIdempotencyKey();

  const estimate = useQuery({
    queryKey: ['estimate', debounced],
    enabled: debounced.length > 0 && debounced.length <= MAX_CHARS,
    queryFn: () => unwrap(api.POST('/api/v1/example/estimate', { body: { text: debounced } })),
    placeholderData: keepPreviousData,
    staleTime: Infinity,
  });

  const run = useMutation({
    mutationFn: ({ text, key }: { text: string; key: string }) =>
      unwrap(api.POST('/api/v1/example/use-credits', { body: { text }, params: { header: { 'Idempotency-Key': key } } })),
    onSuccess: (result: SummarizeResult) => {
      idempotency.done();
      queryClient.setQueryData(['balance'], (old: object | undefined) => (old ? { ...old, ...result.balance } : old));
      void invalidateCredits(queryClient);
    },
    onError: (error) => {
      // A refusal is definitive; a network failure or 5xx is retried with the same key.
      if (error instanceof ApiError && error.status >= 400 && error.status < 500) idempotency.done();
    },
  });

  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    if (!trimmed) return;
    run.mutate({ text, key: idempotency.keyFor(text) });
  };

  const errors = formErrors(run.error, ['text']);
  const insufficient = run.error instanceof ApiError && run.error.code === 'insufficient_credits' ? run.error : null;
  const tooLong = text.length > MAX_CHARS;
  const estimateFresh = estimate.data && debounced === trimmed;
  const available = balance.data?.available;
  const cannotAfford = estimate.data && available !== undefined && estimate.data.estimated_cost > available;
  const result = run.data;
  const resultRef = useRevealOnChange(result);

  return (
    <>
      <PageHeader
        title="Example AI"
        description="Summarise a text with the example feature. You see what it will cost before it runs, and pay only for what it analyses."
      />
      <div className="grid grid-cols-1 gap-6 lg:grid-cols-3">
        <div className="empty:hidden lg:col-span-3">
          <PageLoadErrors queryKeys={[keys.balance, keys.features]} />
        </div>
        <Card className="lg:col-span-2">
          <form onSubmit={onSubmit} className="space-y-4" aria-label="Summarise a text">
            <TextArea
              label="Text to summarise"
              name="text"
              rows={10}
              value={text}
              onChange={(e) => setText(e.target.value)}
              error={tooLong ? `The text must be at most ${formatNumber(MAX_CHARS)} characters.` : errors.fields.text}
              hint={`${formatNumber(text.length)} of ${formatNumber(MAX_CHARS)} characters. Billed per started block of 1,000 characters.`}
              placeholder="Paste an article, notes or a report…"
            />
            <div aria-live="polite" className="min-h-6 text-sm text-slate-700" data-testid="estimate">
              {!trimmed ? (
                'Paste some text to see what it will cost.'
              ) : estimate.isError ? (
                <span className="text-red-700">The estimate is unavailable: {estimate.error.message}</span>
              ) : estimate.data ? (
                <span className={estimateFresh ? undefined : 'text-slate-500'}>
                  Estimated cost: <strong>{formatCredits(estimate.data.estimated_cost)}</strong> at most (
                  {formatNumber(estimate.data.units)} × {formatCredits(estimate.data.credits_per_unit)})
                </span>
              ) : (
                'Estimating…'
              )}
            </div>
            {cannotAfford && !insufficient && (
              <Alert
                tone="warning"
                action={
                  <Link to="/credits" className={buttonClass('secondary')}>
                    Buy credits
                  </Link>
                }
              >
                You have {formatCredits(available ?? 0)} available, less than this may cost.
              </Alert>
            )}
            {insufficient ? (
              <InsufficientCredits error={insufficient} />
            ) : (
              errors.general && <Alert tone="error">{errors.general}</Alert>
            )}
            <div className="flex flex-wrap gap-2">
              <Button type="submit" busy={run.isPending} busyLabel="Summarising…" disabled={!trimmed || tooLong}>
                Summarise
              </Button>
              <Button variant="secondary" onClick={() => setText(SAMPLE)} disabled={run.isPending}>
                Use sample text
              </Button>
            </div>
          </form>
        </Card>

        <div className="space-y-4">
          <dl className="grid grid-cols-1 gap-4">
            <Stat
              label="Available"
              testId="example-available"
              value={available !== undefined ? formatCredits(available) : balance.isError ? <Unavailable /> : '…'}
            />
          </dl>
          <Card title="Pricing">
            {feature ? (
              <div className="space-y-2 text-sm text-slate-700">
                <p>
                  <span className="font-semibold text-slate-900">{formatCredits(feature.credits_per_unit)}</span> per{' '}
                  {feature.unit}
                </p>
                {feature.description && <p>{feature.description}</p>}
                <p>
                  The estimate is held while the summary runs; you are charged for what it analysed and the rest is
                  released at once.
                </p>
              </div>
            ) : (
              <p className="text-sm text-slate-600">
                Priced per started block of 1,000 characters. The estimate is held while it runs, then you pay what it
                analysed.
              </p>
            )}
          </Card>
        </div>

        {result && (
          <Card title="Summary" className="lg:col-span-3" ref={resultRef} tabIndex={-1}>
            <div className="space-y-4" aria-live="polite">
              <p className="whitespace-pre-line text-slate-800" data-testid="summary">
                {result.summary}
              </p>
              <p className="text-sm text-slate-600">
                Kept {formatNumber(result.sentences_kept)} of {formatNumber(result.sentences_total)} sentences.
              </p>
              <dl className="grid grid-cols-1 gap-4 sm:grid-cols-3">
                <Stat label="Charged" testId="result-cost" value={formatCredits(result.cost)} hint={`Estimated at most ${formatCredits(result.estimated_cost)}`} />
                <Stat label="New balance" testId="result-balance" value={formatCredits(result.balance.balance)} />
                <Stat label="Available now" value={formatCredits(result.balance.available)} />
              </dl>
            </div>
          </Card>
        )}
      </div>
    </>
  );
}

import { useState } from 'react';
import { gatewayBaseUrl, useModels, type Model } from '../../api/models';
import { CodeBlock } from '../../components/CodeBlock';
import { LoadError } from '../../components/LoadErrors';
import { Card, Loading, SelectField } from '../../components/ui';
import { formatNumber } from '../../lib/format';
import { KEY_PLACEHOLDER, MODEL_PLACEHOLDER, curlSnippet, nodeSnippet, pythonSnippet } from '../../lib/snippets';

/** A key just created, whose secret the page may still show. */
export interface FreshKey {
  name: string;
  secret: string;
  scopes: readonly string[];
}

const SPEND_SCOPE = 'credits:spend';

/** The active models and what they cost, in credits per million tokens. */
function ModelPrices({ models }: { models: readonly Model[] }) {
  return (
    <div className="-mx-4 overflow-x-auto sm:mx-0">
      <table className="min-w-full divide-y divide-slate-200 text-sm">
        <caption className="sr-only">Models you can call and their prices, in credits per 1M tokens</caption>
        <thead>
          <tr className="text-left text-xs font-semibold uppercase tracking-wide text-slate-600">
            <th scope="col" className="py-2 pl-4 pr-2 sm:pl-0">
              Model
            </th>
            <th scope="col" className="px-2 py-2 text-right">
              Input
            </th>
            <th scope="col" className="px-2 py-2 text-right">
              Cached input
            </th>
            <th scope="col" className="py-2 pl-2 pr-4 text-right sm:pr-0">
              Output
            </th>
          </tr>
        </thead>
        <tbody className="divide-y divide-slate-100">
          {models.map((model) => (
            <tr key={model.id} className="align-top">
              <td className="min-w-0 py-3 pl-4 pr-2 sm:pl-0">
                <div className="flex flex-col gap-1">
                  <code className="font-medium text-slate-900 [overflow-wrap:anywhere]">{model.id}</code>
                  <span className="text-xs text-slate-600">
                    up to {formatNumber(model.max_output_tokens)} output tokens
                  </span>
                </div>
              </td>
              <td className="whitespace-nowrap px-2 py-3 text-right tabular-nums">{formatNumber(model.input_per_million)}</td>
              <td className="whitespace-nowrap px-2 py-3 text-right tabular-nums">
                {formatNumber(model.cached_input_per_million)}
              </td>
              <td className="whitespace-nowrap py-3 pl-2 pr-4 text-right tabular-nums sm:pr-0">
                {formatNumber(model.output_per_million)}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/**
 * How to call Tollgate's OpenAI-compatible gateway with the official SDKs: the base URL on this
 * origin, examples to copy (with a key just created, while its secret is still on the page), and
 * the models on offer with their prices.
 */
export function OpenAiSetup({ freshKey }: { freshKey?: FreshKey | null }) {
  const models = useModels();
  const [chosen, setChosen] = useState<string | null>(null);
  const baseUrl = gatewayBaseUrl();
  const usable = freshKey && freshKey.scopes.includes(SPEND_SCOPE) ? freshKey : null;
  const offered = models.data ?? [];
  // The model picked for the examples while it is on offer, else the first one.
  const model = offered.find((m) => m.id === chosen)?.id ?? offered[0]?.id ?? MODEL_PLACEHOLDER;
  const input = { baseUrl, apiKey: usable?.secret ?? KEY_PLACEHOLDER, model };

  return (
    <Card title="Use with the OpenAI SDKs">
      <div className="space-y-5">
        <div className="space-y-2 text-sm text-slate-700">
          <p>
            Tollgate's gateway speaks the OpenAI API: point an official OpenAI SDK at it and each call is charged in
            credits for the tokens it uses. Use one of your API keys with the <code>{SPEND_SCOPE}</code> scope as the
            SDK's API key.
          </p>
          <p>
            Base URL: <code className="break-all rounded bg-slate-100 px-1.5 py-0.5 text-slate-900">{baseUrl}</code>
            <br />
            Model list for the SDKs:{' '}
            <code className="break-all rounded bg-slate-100 px-1.5 py-0.5 text-slate-900">{`${baseUrl}/models`}</code>
          </p>
          {usable ? (
            <p className="text-emerald-900">
              The examples use the key “{usable.name}” you just created. Copy them now: the secret is not shown again.
            </p>
          ) : freshKey ? (
            <p className="text-amber-900">
              The key “{freshKey.name}” cannot spend credits, so the gateway would refuse it: create one with the{' '}
              <code>{SPEND_SCOPE}</code> scope. The examples show <code>{KEY_PLACEHOLDER}</code> in its place.
            </p>
          ) : (
            <p>
              Replace <code>{KEY_PLACEHOLDER}</code> with your key (create one above: its secret is shown once).
            </p>
          )}
        </div>

        {offered.length > 1 && (
          <SelectField
            label="Model in the examples"
            value={model}
            onChange={(e) => setChosen(e.target.value)}
            className="sm:max-w-xs"
          >
            {offered.map((m) => (
              <option key={m.id} value={m.id}>
                {m.id}
              </option>
            ))}
          </SelectField>
        )}

        <div className="grid grid-cols-1 gap-4">
          <CodeBlock title="Python" language="python" code={pythonSnippet(input)} />
          <CodeBlock title="Node.js" language="javascript" code={nodeSnippet(input)} />
          <CodeBlock title="curl" language="shell" code={curlSnippet(input)} />
        </div>

        <section aria-labelledby="gateway-models-heading" className="space-y-2">
          <h3 id="gateway-models-heading" className="text-sm font-semibold text-slate-900">
            Models
          </h3>
          {!models.data ? (
            models.isError ? <LoadError error={models.error} what="the models" /> : <Loading />
          ) : models.data.length === 0 ? (
            <p className="text-sm text-slate-600">No models are available yet: an admin adds them to the rate card.</p>
          ) : (
            <>
              <p className="text-sm text-slate-600">
                Prices in credits per 1M tokens. A call costs its uncached input, cached input and output tokens at these
                prices, rounded up to a whole credit.
              </p>
              <ModelPrices models={models.data} />
            </>
          )}
        </section>
      </div>
    </Card>
  );
}

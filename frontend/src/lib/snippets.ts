// The examples the API keys page shows for calling Tollgate's gateway with the official OpenAI
// SDKs (and curl). Plain ASCII only: a copied curly quote or ellipsis breaks a command.

/** What stands for a key in the examples when no new key's secret can be shown. */
export const KEY_PLACEHOLDER = 'tg_YOUR_API_KEY';

/** The model an example asks for when the rate card has none yet. */
export const MODEL_PLACEHOLDER = 'gpt-4o-mini';

export interface SnippetInput {
  /** The gateway's base URL, e.g. "https://tollgate.example.com/gateway/v1". */
  baseUrl: string;
  apiKey: string;
  model: string;
}

const PROMPT = 'Say hello in one short sentence.';

/** A string as a JSON (and so Python and JavaScript) literal with double quotes. */
const quoted = (value: string) => JSON.stringify(value);

/** A value inside single quotes for a POSIX shell. */
const shellQuoted = (value: string) => `'${value.replace(/'/g, `'\\''`)}'`;

export function pythonSnippet({ baseUrl, apiKey, model }: SnippetInput): string {
  return [
    'from openai import OpenAI',
    '',
    'client = OpenAI(',
    `    base_url=${quoted(baseUrl)},`,
    `    api_key=${quoted(apiKey)},`,
    ')',
    '',
    'response = client.chat.completions.create(',
    `    model=${quoted(model)},`,
    `    messages=[{"role": "user", "content": ${quoted(PROMPT)}}],`,
    ')',
    'print(response.choices[0].message.content)',
  ].join('\n');
}

export function nodeSnippet({ baseUrl, apiKey, model }: SnippetInput): string {
  return [
    "import OpenAI from 'openai';",
    '',
    'const client = new OpenAI({',
    `  baseURL: ${quoted(baseUrl)},`,
    `  apiKey: ${quoted(apiKey)},`,
    '});',
    '',
    'const completion = await client.chat.completions.create({',
    `  model: ${quoted(model)},`,
    `  messages: [{ role: 'user', content: ${quoted(PROMPT)} }],`,
    '});',
    'console.log(completion.choices[0].message.content);',
  ].join('\n');
}

export function curlSnippet({ baseUrl, apiKey, model }: SnippetInput): string {
  const body = JSON.stringify({ model, messages: [{ role: 'user', content: PROMPT }] });
  return [
    `curl ${shellQuoted(`${baseUrl}/chat/completions`)} \\`,
    `  -H ${shellQuoted(`Authorization: Bearer ${apiKey}`)} \\`,
    "  -H 'Content-Type: application/json' \\",
    `  -d ${shellQuoted(body)}`,
  ].join('\n');
}

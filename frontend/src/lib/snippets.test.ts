import { describe, expect, it } from 'vitest';
import { curlSnippet, nodeSnippet, pythonSnippet } from './snippets';

const input = { baseUrl: 'https://billing.example.com/gateway/v1', apiKey: 'tg_Xk3vQ9aB_secret', model: 'gpt-4o-mini' };

describe('gateway snippets', () => {
  it('point the Python SDK at the gateway with the key', () => {
    expect(pythonSnippet(input)).toBe(
      [
        'from openai import OpenAI',
        '',
        'client = OpenAI(',
        '    base_url="https://billing.example.com/gateway/v1",',
        '    api_key="tg_Xk3vQ9aB_secret",',
        ')',
        '',
        'response = client.chat.completions.create(',
        '    model="gpt-4o-mini",',
        '    messages=[{"role": "user", "content": "Say hello in one short sentence."}],',
        ')',
        'print(response.choices[0].message.content)',
      ].join('\n'),
    );
  });

  it('point the Node SDK at the gateway with baseURL and apiKey', () => {
    const code = nodeSnippet(input);
    expect(code).toContain("import OpenAI from 'openai';");
    expect(code).toContain(
      'const client = new OpenAI({\n  baseURL: "https://billing.example.com/gateway/v1",\n  apiKey: "tg_Xk3vQ9aB_secret",\n});',
    );
    expect(code).toContain('  model: "gpt-4o-mini",');
  });

  it('give curl a body that is valid JSON, quoted for the shell', () => {
    const code = curlSnippet({ ...input, model: "it's" });
    const lines = code.split('\n');
    expect(lines[0]).toBe("curl 'https://billing.example.com/gateway/v1/chat/completions' \\");
    expect(lines[1]).toBe("  -H 'Authorization: Bearer tg_Xk3vQ9aB_secret' \\");
    // A single quote inside the body closes, escapes and reopens the quoting.
    const body = /^ {2}-d '(.*)'$/.exec(lines[3]!)![1]!.replace(/'\\''/g, "'");
    expect(JSON.parse(body)).toEqual({ model: "it's", messages: [{ role: 'user', content: 'Say hello in one short sentence.' }] });
  });

  it('are plain ASCII, so a copied command runs as shown', () => {
    for (const snippet of [pythonSnippet, nodeSnippet, curlSnippet]) {
      expect(snippet(input)).toMatch(/^[\x20-\x7e\n]*$/);
    }
  });
});

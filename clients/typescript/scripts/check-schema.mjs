// Fails when src/schema.ts is not what openapi-typescript makes of ../../openapi.yaml.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const committed = join(root, 'src/schema.ts');
const dir = mkdtempSync(join(tmpdir(), 'tollgate-sdk-schema-'));
const fresh = join(dir, 'schema.ts');
try {
  execFileSync(
    process.execPath,
    // Keep these arguments as `npm run gen` has them. `--empty-objects-unknown`: the spec's "any JSON
    // object" fields (`metadata`) are `type: object` without `additionalProperties`, which
    // openapi-typescript would otherwise type as an object that can hold nothing.
    [
      join(root, 'node_modules/openapi-typescript/bin/cli.js'),
      join(root, '../../openapi.yaml'),
      '--empty-objects-unknown',
      '-o',
      fresh,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  let current = '';
  try {
    current = readFileSync(committed, 'utf8');
  } catch {
    // missing counts as stale
  }
  if (current !== readFileSync(fresh, 'utf8')) {
    console.error(
      'src/schema.ts is stale: it does not match ../../openapi.yaml. Run `npm run gen` in clients/typescript and commit the result.',
    );
    process.exit(1);
  }
  console.log('API types are fresh (src/schema.ts matches ../../openapi.yaml).');
} finally {
  rmSync(dir, { recursive: true, force: true });
}

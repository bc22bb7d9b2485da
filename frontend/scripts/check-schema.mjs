// Fails when src/api/schema.d.ts is not what openapi-typescript makes of ../openapi.yaml.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const committed = join(root, 'src/api/schema.d.ts');
const dir = mkdtempSync(join(tmpdir(), 'tollgate-schema-'));
const fresh = join(dir, 'schema.d.ts');
try {
  execFileSync(
    process.execPath,
    [join(root, 'node_modules/openapi-typescript/bin/cli.js'), join(root, '../openapi.yaml'), '-o', fresh],
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
      'src/api/schema.d.ts is stale: it does not match ../openapi.yaml. Run `npm run gen` in frontend/ and commit the result.',
    );
    process.exit(1);
  }
  console.log('API types are fresh (src/api/schema.d.ts matches ../openapi.yaml).');
} finally {
  rmSync(dir, { recursive: true, force: true });
}

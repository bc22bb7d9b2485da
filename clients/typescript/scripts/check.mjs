// `npm run check`: everything the SDK promises, in order, stopping at the first failure.
// Run by ../../scripts/test after the Rust tests (the integration test needs the debug binary).
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name) => join(root, 'node_modules', '.bin', name);

const steps = [
  { name: 'API types match ../../openapi.yaml', command: process.execPath, args: [join(root, 'scripts/check-schema.mjs')] },
  { name: 'typecheck (tsc --noEmit)', command: bin('tsc'), args: ['--noEmit', '-p', 'tsconfig.json'] },
  { name: 'build (tsc -p tsconfig.build.json)', command: bin('tsc'), args: ['-p', 'tsconfig.build.json'] },
  { name: 'tests (vitest run)', command: bin('vitest'), args: ['run'], filter: true },
];

// ../../scripts/test adds up every "N passed" it sees: keep vitest's count of test *files* out of it.
const ANSI = /\u001b\[[0-9;]*m/g;
function rewrite(line) {
  const plain = line.replace(ANSI, '');
  if (/^\s*Test Files\s/.test(plain)) {
    return plain.replace(/(\d+) passed/, '$1 ok').replace(/(\d+) failed/, '$1 with failures');
  }
  return line;
}

function run({ command, args, filter }) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: root, stdio: filter ? ['ignore', 'pipe', 'pipe'] : 'inherit' });
    if (filter) {
      for (const [from, to] of [
        [child.stdout, process.stdout],
        [child.stderr, process.stderr],
      ]) {
        let rest = '';
        from.setEncoding('utf8');
        from.on('data', (chunk) => {
          const lines = (rest + chunk).split('\n');
          rest = lines.pop() ?? '';
          for (const line of lines) to.write(`${rewrite(line)}\n`);
        });
        from.on('end', () => rest && to.write(rewrite(rest)));
      }
    }
    child.on('error', (error) => {
      console.error(`${command}: ${error.message}`);
      resolve(1);
    });
    child.on('close', (code, signal) => resolve(signal ? 1 : (code ?? 1)));
  });
}

for (const step of steps) {
  console.log(`\n--> clients/typescript: ${step.name}`);
  const code = await run(step);
  if (code !== 0) {
    console.error(`\nclients/typescript check failed at: ${step.name}`);
    process.exit(code);
  }
}
console.log('\nclients/typescript: all checks passed');

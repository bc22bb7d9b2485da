import { rmSync } from 'node:fs';

export default function globalTeardown(): void {
  const dir = process.env.TOLLGATE_E2E_DIR;
  if (dir && dir.includes('tollgate-e2e-')) rmSync(dir, { recursive: true, force: true });
}

import { defineConfig } from 'vitest/config';

// Unit tests run against a local stand-in server; the integration test starts the real Tollgate
// binary (TOLLGATE_BIN, default $CARGO_TARGET_DIR/debug/tollgate).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});

import react from '@vitejs/plugin-react';
import tailwindcss from '@tailwindcss/vite';
import { defineConfig } from 'vitest/config';

// The API is served on the same origin as the SPA. In `npm run dev`, requests to /api, /gateway,
// /readyz and /sandbox go to a Tollgate server (TOLLGATE_URL, default http://127.0.0.1:8080).
const backend = process.env.TOLLGATE_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [react(), tailwindcss()],
  server: {
    proxy: {
      '/api': backend,
      '/readyz': backend,
      '/sandbox': backend,
      '/gateway': backend,
    },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: true,
  },
  test: {
    environment: 'jsdom',
    include: ['src/**/*.test.ts', 'src/**/*.test.tsx'],
    setupFiles: ['src/test/setup.ts'],
    restoreMocks: true,
  },
});

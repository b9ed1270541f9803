import { readFileSync } from 'node:fs';
import { defineConfig, type Plugin } from 'vite';
import react from '@vitejs/plugin-react';

/** Copies src/routes.json (the UI's page patterns) into the build, where `lm-saes serve` reads it
 * to answer 404 for a path no page has (lm_saes/server/static.py). */
function routesJson(): Plugin {
  return {
    name: 'lm-saes-routes',
    generateBundle() {
      const source = readFileSync(new URL('./src/routes.json', import.meta.url), 'utf-8');
      this.emitFile({ type: 'asset', fileName: 'routes.json', source });
    },
  };
}

// The built UI is served by `lm-saes serve` from lm_saes/server/static; its assets get hashed
// names (a new build, new names), so the server caches them for a year.
// During `npm run dev`, API calls are proxied to LM_SAES_URL (default :8000).
export default defineConfig({
  base: '/',
  plugins: [react(), routesJson()],
  build: {
    outDir: '../lm_saes/server/static',
    emptyOutDir: true,
  },
  server: {
    proxy: {
      '/api': process.env.LM_SAES_URL ?? 'http://127.0.0.1:8000',
    },
  },
});

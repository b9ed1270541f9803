import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// The built UI is served by `lm-saes serve` from lm_saes/server/static.
// During `npm run dev`, API calls are proxied to LM_SAES_URL (default :8000).
export default defineConfig({
  base: '/',
  plugins: [react()],
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

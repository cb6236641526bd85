// Vite bundles the React Native screens for the web: `react-native` is react-native-web.
//
// The output (dist/) is committed and embedded into the conductor, so the build must be
// reproducible: fixed file names (no content hashes, so the conductor's embed sees the same set of
// files), no timestamps, no source maps with absolute paths. `npm run check-dist` rebuilds into a
// temporary directory and compares byte for byte.
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

export default defineConfig({
  plugins: [react()],
  base: '/',
  resolve: {
    alias: { 'react-native': 'react-native-web' },
    extensions: ['.web.tsx', '.web.ts', '.web.js', '.tsx', '.ts', '.mjs', '.js', '.json'],
  },
  // `npm run dev` against a running conductor: AEREKOS_URL=http://127.0.0.1:8080 npm run dev
  server: process.env.AEREKOS_URL ? { proxy: { '/api': process.env.AEREKOS_URL } } : {},
  define: {
    __DEV__: 'false',
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    reportCompressedSize: false,
    chunkSizeWarningLimit: 2048,
    assetsInlineLimit: 0,
    rolldownOptions: {
      output: {
        entryFileNames: 'assets/index.js',
        chunkFileNames: 'assets/[name].js',
        assetFileNames: 'assets/[name][extname]',
      },
    },
  },
});

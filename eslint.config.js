import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'web/dist/', 'node_modules/', 'models/', 'reports/', 'test/data/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { console: 'readonly', process: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', performance: 'readonly', URL: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Drives a browser: Node's fetch, and callbacks that run in the page.
    files: ['scripts/screenshots.mjs'],
    languageOptions: { globals: { fetch: 'readonly', document: 'readonly' } },
  },
  {
    // The web page of `maria serve`: plain browser scripts.
    files: ['web/**/*.js'],
    languageOptions: { globals: { window: 'readonly', document: 'readonly', fetch: 'readonly', TextDecoder: 'readonly', Event: 'readonly', AbortController: 'readonly', performance: 'readonly', console: 'readonly' } },
  },
);

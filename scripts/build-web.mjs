// `npm run build:web`: bundles the in-browser runner (src/web/browser-maria.ts, with
// @huggingface/tokenizers and onnxruntime-web's WebAssembly build) into web/dist/maria-web.js and
// copies onnxruntime-web's .wasm next to it, so the page loads nothing from any other server.
// The shared modules' node: imports (used only by their file-reading functions, never called in
// the browser) resolve to stubs that throw.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = `${root}web/dist`;
const WASM = 'ort-wasm-simd-threaded.wasm';

const STUBS = {
  'node:fs': ['existsSync', 'readFileSync', 'statSync', 'readdirSync', 'writeFileSync', 'mkdirSync', 'openSync', 'closeSync', 'readSync', 'fstatSync'],
  'node:path': ['join', 'resolve', 'dirname', 'basename', 'extname', 'isAbsolute', 'relative'],
};

const nodeStubs = {
  name: 'node-stubs',
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (args) => {
      if (!(args.path in STUBS)) return { errors: [{ text: `${args.path} (imported by ${args.importer}) has no browser stub; keep it out of the browser bundle` }] };
      return { path: args.path, namespace: 'node-stub' };
    });
    b.onLoad({ filter: /.*/, namespace: 'node-stub' }, (args) => ({
      contents: STUBS[args.path]
        .map((name) => `export function ${name}() { throw new Error(${JSON.stringify(`${args.path} ${name}() is not available in the browser`)}); }`)
        .join('\n'),
      loader: 'js',
    }));
  },
};

const t0 = performance.now();
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [`${root}src/web/browser-maria.ts`],
  outfile: `${out}/maria-web.js`,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  legalComments: 'eof',
  logLevel: 'warning',
  plugins: [nodeStubs],
});
copyFileSync(`${root}node_modules/onnxruntime-web/dist/${WASM}`, `${out}/${WASM}`);
const mb = (f) => `${(statSync(`${out}/${f}`).size / 1e6).toFixed(1)} MB`;
console.log(`build:web: web/dist/maria-web.js ${mb('maria-web.js')}, ${WASM} ${mb(WASM)} (${(performance.now() - t0).toFixed(0)} ms)`);

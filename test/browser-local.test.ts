// The page's in-browser mode end to end in headless Chromium, on the tiny random-weight bundle:
// the server exports the bundle's graphs on the first /models/ request, the page switches to
// "in this browser", loads them into onnxruntime-web (WebAssembly) with a progress indicator, and
// fills and scores there. The same graphs give the same tokens: in-browser greedy (and seeded
// sampled) infilling equals the server's, log-probabilities agree to float precision.
// Needs the built runner (web/dist/maria-web.js: `npm run build:web`, part of `npm run build`).
// MARIA_SCREENSHOTS=1 also writes docs/screenshot-browser.png.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Maria } from '../src/maria/maria.js';
import { buildServer } from '../src/server/app.js';
import { ensureWebExport } from '../src/web/export.js';
import { WEB_VERSION, type WebManifest } from '../src/web/manifest.js';
import { HAVE_CHROMIUM, launchChromium, warnIfNoChromium, watchedPage } from './helpers/chromium.js';
import { REPO_ROOT, buildTinyPair, removeTinyPair, type TinyPair } from './helpers/tiny-pair.js';

warnIfNoChromium('test/browser-local.test.ts');
const RUNNER = join(REPO_ROOT, 'web/dist/maria-web.js');

const TEXT = 'The old man walked down to the [MASK:2] and looked at the [MASK] for a long time.';
const SENTENCE = 'The old man walked down to the harbour and looked at the sea.';

/** What the page's in-browser backend answers, fetched inside the page (its own module instance). */
interface PageInfill {
  samples: Array<{ text: string; filled: Array<{ position: number; id: number; logprob: number; alternatives: Array<{ id: number; logprob: number }> }> }>;
}

describe.skipIf(!HAVE_CHROMIUM)('the in-browser mode in headless Chromium', () => {
  let pair: TinyPair;
  let maria: Maria;
  let app: FastifyInstance;
  let base: string;
  let browser: Browser;
  let page: Page;
  let cacheDir: string;
  const problems: string[] = [];
  const foreign: string[] = [];

  beforeAll(async () => {
    if (!existsSync(RUNNER)) throw new Error(`${RUNNER} is missing: run \`npm run build:web\` (npm run build does) before this test`);
    pair = buildTinyPair('maria-browser-local-');
    cacheDir = join(pair.root, 'web-cache');
    maria = await Maria.load(pair.bundleDir, { threads: 1 });
    app = buildServer(maria, { webModelsDir: cacheDir });
    base = await app.listen({ host: '127.0.0.1', port: 0 });
    browser = await launchChromium();
    page = await watchedPage(browser, base, problems, foreign, true);
  });

  afterAll(async () => {
    await browser?.close();
    await app?.close();
    await maria?.release();
    removeTinyPair(pair);
  });

  it('exports the web models on the first request, into a content-keyed cache folder, and serves them', async () => {
    const res = await fetch(`${base}/models/web-manifest.json`);
    expect(res.status).toBe(200);
    const m = (await res.json()) as WebManifest;
    expect(m).toMatchObject({ format: 'maria-web', version: WEB_VERSION, dtype: 'float32', vocabSize: 8192, maxTokens: maria.maxTokens, arBosId: maria.manifest.arBosId });
    expect(m.mlm).toMatchObject({ family: 'modernbert', layers: 2, hiddenSize: 32 });
    expect(m.ar).toMatchObject({ family: 'llama', layers: 2, hiddenSize: 32, kvHeads: 1, headDim: 16 });
    expect(m.graphs.arStep.inputs).toEqual(expect.arrayContaining(['head_index', 'mlm_logits', 'past_key_0', 'key_valid']));
    expect(m.graphs.arStep.inputs).not.toContain('mlm_hidden');
    expect(m.graphs.arStep.outputs).toContain('maria_logits');
    expect(m.graphs.arStep.outputs).not.toContain('logits');
    expect(m.graphs.mlm.inputs).toContain('head_rows');
    expect(m.graphs.mlm.outputs).toEqual(['hidden', 'maria_mlm_logits']);
    expect(Object.keys(m.files).sort()).toEqual(['ar-step.onnx', 'mlm.onnx', 'special_tokens_map.json', 'tokenizer.json', 'tokenizer_config.json']);
    expect(statSync(join(cacheDir, m.id, 'mlm.onnx')).size).toBe(m.files['mlm.onnx']);
    console.log(`tiny bundle web export: ${Object.entries(m.files).map(([k, v]) => `${k} ${(v / 1e6).toFixed(2)} MB`).join(', ')}`);

    const graph = await fetch(`${base}/models/ar-step.onnx`);
    expect(graph.status).toBe(200);
    expect((await graph.arrayBuffer()).byteLength).toBe(m.files['ar-step.onnx']);
    const etag = graph.headers.get('etag')!;
    expect((await fetch(`${base}/models/ar-step.onnx`, { headers: { 'if-none-match': etag } })).status).toBe(304);
    expect((await fetch(`${base}/models/maria.json`)).status).toBe(404);
    expect((await fetch(`${base}/models/..%2Fweb-manifest.json`)).status).toBe(404);
    // The same bundle maps to the same folder: a second server (or a restart) reuses it.
    expect(ensureWebExport(maria, cacheDir)).toMatchObject({ exported: false, dir: join(cacheDir, m.id) });
    const model = (await (await fetch(`${base}/v1/model`)).json()) as { in_browser: { available: boolean } };
    expect(model.in_browser.available).toBe(true);
  });

  it('with the in-browser mode off, serves no model files and says why', async () => {
    const off = buildServer(maria, { webModelsDir: false });
    const url = await off.listen({ host: '127.0.0.1', port: 0 });
    try {
      expect((await fetch(`${url}/models/web-manifest.json`)).status).toBe(404);
      const model = (await (await fetch(`${url}/v1/model`)).json()) as { in_browser: { available: boolean; reason: string } };
      expect(model.in_browser).toEqual({ available: false, reason: 'the in-browser mode is turned off on this server' });
    } finally {
      await off.close();
    }
  });

  it('switches to "in this browser", showing the bytes loaded', async () => {
    await page.goto(base);
    await expect.poll(() => page.textContent('#model-info')).toContain(`context ${maria.maxTokens} tokens`);
    expect(await page.isChecked('input[name="runs-on"][value="server"]')).toBe(true);
    // Record every progress message the page shows while loading.
    await page.evaluate(() => {
      const seen: string[] = [];
      (window as unknown as { seen: string[] }).seen = seen;
      const info = document.getElementById('runs-on-info')!;
      new MutationObserver(() => seen.push(info.textContent ?? '')).observe(info, { childList: true, characterData: true, subtree: true });
    });
    await page.check('input[name="runs-on"][value="browser"]');
    await expect.poll(() => page.textContent('#runs-on-info'), { timeout: 60_000 }).toMatch(/^Loaded [\d.]+ MB of models/);
    const seen = await page.evaluate(() => (window as unknown as { seen: string[] }).seen);
    expect(seen.some((s) => /Loading the models into this browser: [\d.]+ MB of [\d.]+ MB/.test(s))).toBe(true);
    expect(await page.isVisible('#load-progress')).toBe(false);
    await expect.poll(() => page.textContent('#model-info')).toContain('running in this browser');
  });

  it('fills in the browser, token by token, with the tokens the server chooses', async () => {
    await page.fill('#text', TEXT);
    await page.fill('#samples', '1');
    await page.fill('#temperature', '0');
    await page.fill('#seed', '0');
    await page.click('#fill');
    const n = maria.parse(TEXT).masked.filter(Boolean).length;
    await expect.poll(() => page.locator('#samples-out .tok.filled').count()).toBe(n);
    await expect.poll(() => page.textContent('#status')).toMatch(/Filled 3 tokens in 1 sample in \d+ ms in this browser/);
    const shown = await page.locator('#samples-out .sample-text').first().evaluate((node) => {
      const copy = node.cloneNode(true) as HTMLElement;
      copy.querySelectorAll('.p').forEach((p) => p.remove());
      return copy.textContent;
    });
    const server = await maria.infill(TEXT, { temperature: 0 });
    expect(shown).toBe(server.samples[0].text);
    // Alternatives on focus, as in server mode.
    const first = page.locator('#samples-out .tok.filled').first();
    await first.focus();
    await expect.poll(() => page.isVisible('#tip')).toBe(true);
    expect(await page.locator('#tip tr').count()).toBe(5);
    if (process.env.MARIA_SCREENSHOTS === '1') {
      mkdirSync(join(REPO_ROOT, 'docs'), { recursive: true });
      await page.screenshot({ path: join(REPO_ROOT, 'docs/screenshot-browser.png'), fullPage: true });
    }
    await page.keyboard.press('Escape');
  });

  it('gives the same ids and log-probabilities as the server, greedy and sampled (same graphs, same loop)', async () => {
    // Written as a string: vitest would rewrite an import() inside a function passed to the page.
    const run = (req: Record<string, unknown>): Promise<unknown> =>
      page.evaluate(`(async (r) => {
        const mod = await import('/static/dist/maria-web.js');
        window.testBackend ??= await mod.loadBrowserBackend({ modelsUrl: '/models/', wasmUrl: '/static/dist/' });
        return 'mask' in r ? window.testBackend.score(r) : window.testBackend.infill(r, () => {});
      })(${JSON.stringify(req)})`);
    for (const opts of [{ temperature: 0, samples: 2 }, { temperature: 0.7, samples: 3, seed: 5, top_p: 0.95 }]) {
      const inBrowser = (await run({ text: TEXT, ...opts })) as PageInfill;
      const server = await maria.infill(TEXT, { temperature: opts.temperature, samples: opts.samples, seed: 'seed' in opts ? opts.seed : undefined, topP: 'top_p' in opts ? opts.top_p : undefined });
      expect(inBrowser.samples.map((s) => s.text)).toEqual(server.samples.map((s) => s.text));
      inBrowser.samples.forEach((s, b) => {
        s.filled.forEach((t, k) => {
          const want = server.samples[b].filled[k];
          expect(t.id).toBe(want.id);
          expect(t.position).toBe(want.position);
          expect(t.logprob).toBeCloseTo(want.logprob, 4);
          expect(t.alternatives.map((a) => a.id)).toEqual(want.alternatives.map((a) => a.id));
        });
      });
    }
    // Exact scoring: the whole text left to right.
    const ids = maria.tokenizer.encode(SENTENCE).ids;
    const scored = (await run({ text: SENTENCE, mask: 'all' })) as { nll: number; kind: string; token_logprobs: Array<{ logprob: number }> };
    const want = await maria.score(ids, ids.map(() => true));
    expect(scored.kind).toBe('exact');
    expect(scored.nll).toBeCloseTo(want.nll, 4);
    scored.token_logprobs.forEach((t, i) => expect(t.logprob).toBeCloseTo(want.tokens[i].logprob, 4));
  });

  it('scores in the browser, every token coloured', async () => {
    await page.fill('#text', SENTENCE);
    await page.click('#tab-score');
    await page.check('input[name="score-mode"][value="all"]');
    await page.click('#score');
    const n = maria.tokenizer.encode(SENTENCE).ids.length;
    await expect.poll(() => page.locator('#score-out .tok').count()).toBe(n);
    await expect.poll(() => page.textContent('#status')).toContain('in this browser');
    expect(await page.textContent('#score-out')).toBe(SENTENCE);
    const ids = maria.tokenizer.encode(SENTENCE).ids;
    const want = await maria.score(ids, ids.map(() => true));
    expect(await page.textContent('#score-summary')).toContain(`NLL ${want.nll.toFixed(3)}`);
    // Back to the server: the page uses it again (the loaded models are kept for a later switch).
    await page.check('input[name="runs-on"][value="server"]');
    await page.click('#score');
    await expect.poll(() => page.textContent('#status')).toContain('on the server');
  });

  it('made no requests beyond this server and logged no errors', () => {
    expect(foreign).toEqual([]);
    expect(problems).toEqual([]);
  });
});

describe('maria export-web', () => {
  let pair: TinyPair;
  const cli = join(REPO_ROOT, 'dist/cli/main.js');

  beforeAll(() => {
    if (!existsSync(join(REPO_ROOT, 'dist/cli/export-web.js'))) throw new Error('dist/cli/export-web.js is missing: run `npx tsc -p tsconfig.json` (or npm run build) first');
    pair = buildTinyPair('maria-export-web-');
  });
  afterAll(() => removeTinyPair(pair));

  const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, MARIA_THREADS: '1', MARIA_DEBUG: '' }, timeout: 120_000 });

  it('writes the graphs, the tokenizer and web-manifest.json', () => {
    const out = join(pair.root, 'web');
    const r = run(['export-web', '--bundle', pair.bundleDir, '--out', out, '--json']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const { manifest } = JSON.parse(r.stdout) as { manifest: WebManifest };
    for (const [name, size] of Object.entries(manifest.files)) expect(statSync(join(out, name)).size).toBe(size);
    expect(JSON.parse(readFileSync(join(out, 'web-manifest.json'), 'utf8'))).toEqual(manifest);
    const plain = run(['export-web', '--bundle', pair.bundleDir, '--out', out]);
    expect(plain.stdout).toMatch(/^wrote .* mlm\.onnx [\d.]+ MB, ar-step\.onnx [\d.]+ MB/);
  });

  it('names a missing bundle in one line, exit 2', () => {
    const r = run(['export-web', '--bundle', join(pair.root, 'nope'), '--out', join(pair.root, 'x')]);
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^error: --bundle .*nope: no such folder/);
  });
});

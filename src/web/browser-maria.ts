// MARIA in the browser: the graphs `maria serve` runs, exported by src/web/export.ts, run by
// onnxruntime-web (WebAssembly, CPU) in the page. The infilling loop, the scoring, the mask syntax,
// the sampling and the KV-cache bookkeeping are the Node code itself (core.ts, masks.ts,
// sampling.ts, kv-cache.ts), and the JSON the page receives is built by the same shapes.ts as the
// server's and the CLI's, so both backends of the page answer alike. Bundled by `npm run build:web`
// into web/dist/maria-web.js (esbuild; node: imports of the shared modules are stubbed, never called).
//
// Threads: single-threaded WebAssembly unless the page is cross-origin isolated (COOP/COEP, which
// `maria serve` does not send), as SharedArrayBuffer needs it. The models run on the page's main
// thread; the loop yields to the event loop after every token so the page repaints and Stop works.
import * as ort from 'onnxruntime-web/wasm';
import { infillLoop, parseInput, scoreMasked, type InfillEvent, type InfillOptions, type InfillResult, type MariaRuntime, type MariaSpec, type ScoreResult } from '../maria/core.js';
import { InputError, parseMaskedText, positionsMask, randomMask, spanMask, splitMaskMarkers, type MaskedSequence } from '../maria/masks.js';
import { checkSampling } from '../maria/sampling.js';
import { cacheDims, commitStep, newKvCache, stepFeeds, type CacheShape, type KvCache } from '../models/kv-cache.js';
import { infillJson, infillSegments, scoreJson, tokenEventJson, tokenPieces, type InfillJson } from '../maria/shapes.js';
import { TextTokenizer } from '../tokenizer/tokenizer.js';
import { WEB_GRAPH_FILES, WEB_MANIFEST_FILE, type WebManifest } from './manifest.js';

/** The WebAssembly file the runner needs (copied next to maria-web.js by build:web). */
export const WASM_FILE = 'ort-wasm-simd-threaded.wasm';

export interface LoadOptions {
  /** URL of the folder with web-manifest.json and the model files (default "/models/"). */
  modelsUrl?: string;
  /** URL of the folder with ort-wasm-simd-threaded.wasm (default: this script's folder). */
  wasmUrl?: string;
  /** Called as bytes arrive: loaded and total over every file (the WebAssembly included). */
  onProgress?: (loaded: number, total: number) => void;
  signal?: AbortSignal;
}

const abortError = (): DOMException => new DOMException('stopped', 'AbortError');

/** Fetches several files at once, reporting the bytes received over all of them. */
async function fetchAll(urls: string[], expected: number[], onProgress: LoadOptions['onProgress'], signal?: AbortSignal): Promise<Uint8Array[]> {
  const responses = await Promise.all(
    urls.map(async (url) => {
      const res = await fetch(url, { signal });
      if (!res.ok) {
        let detail = `${res.status} ${res.statusText}`;
        try {
          const body = (await res.json()) as { error?: { message?: string } };
          if (body.error?.message) detail = body.error.message;
        } catch {
          // not JSON
        }
        throw new Error(`cannot load ${url}: ${detail}`);
      }
      return res;
    }),
  );
  const sizes = responses.map((r, i) => Number(r.headers.get('content-length')) || expected[i] || 0);
  const total = sizes.reduce((a, b) => a + b, 0);
  let loaded = 0;
  onProgress?.(0, total);
  return Promise.all(
    responses.map(async (res, i) => {
      if (!res.body) return new Uint8Array(await res.arrayBuffer());
      const out = new Uint8Array(sizes[i]);
      const chunks: Uint8Array[] = [];
      let n = 0;
      const reader = res.body.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (n + value.byteLength <= out.byteLength) out.set(value, n);
        else chunks.push(value);
        n += value.byteLength;
        loaded += value.byteLength;
        onProgress?.(loaded, Math.max(total, loaded));
      }
      if (n === out.byteLength && chunks.length === 0) return out;
      // The size was unknown or wrong: concatenate what arrived.
      const all = new Uint8Array(n);
      all.set(out.subarray(0, Math.min(n, out.byteLength)));
      let at = Math.min(n, out.byteLength);
      for (const c of chunks) {
        all.set(c, at);
        at += c.byteLength;
      }
      return all;
    }),
  );
}

function int64(data: ArrayLike<number> | BigInt64Array, dims: number[]): ort.Tensor {
  if (data instanceof BigInt64Array) return new ort.Tensor('int64', data, dims);
  const arr = new BigInt64Array(data.length);
  for (let i = 0; i < data.length; i++) arr[i] = BigInt(data[i]);
  return new ort.Tensor('int64', arr, dims);
}

/** The default bundle's graphs in onnxruntime-web: a MariaRuntime for core.ts's loop. */
export class BrowserMaria implements MariaRuntime {
  readonly spec: MariaSpec;
  private readonly cacheShape: CacheShape;
  private readonly stepFetches: string[];

  private constructor(
    readonly manifest: WebManifest,
    readonly tokenizer: TextTokenizer,
    private readonly mlm: ort.InferenceSession,
    private readonly ar: ort.InferenceSession,
  ) {
    const m = manifest;
    this.spec = {
      mlmMaskId: m.mlmMaskId,
      mlmPrefixIds: m.mlmPrefixIds,
      mlmSuffixIds: m.mlmSuffixIds,
      arBosId: m.arBosId,
      bannedIds: m.bannedIds,
      vocabSize: m.vocabSize,
      maxTokens: m.maxTokens,
      arToMlm: m.arToMlm ? Int32Array.from(m.arToMlm) : null,
      mlmVocabSize: m.mlm.vocabSize,
      mlmUnkId: m.mlmUnkId,
    };
    this.cacheShape = { numLayers: m.ar.layers, kvHeads: m.ar.kvHeads, headDim: m.ar.headDim };
    // The step's hidden output is not needed: fetch the head's logits and the new keys and values.
    this.stepFetches = m.graphs.arStep.outputs.filter((n) => n !== 'hidden');
  }

  /** Fetches the manifest, the graphs, the tokenizer and the WebAssembly, and starts both sessions. */
  static async load(options: LoadOptions = {}): Promise<BrowserMaria> {
    const modelsUrl = new URL(options.modelsUrl ?? '/models/', location.href).href;
    const wasmUrl = new URL(options.wasmUrl ?? './', import.meta.url).href;
    const manifestRes = await fetch(new URL(WEB_MANIFEST_FILE, modelsUrl), { signal: options.signal });
    if (!manifestRes.ok) throw new Error(`cannot load the model manifest (${manifestRes.status} ${manifestRes.statusText})`);
    const manifest = (await manifestRes.json()) as WebManifest;
    const names = [WEB_GRAPH_FILES.mlm, WEB_GRAPH_FILES.arStep, 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'].filter(
      (n) => n in manifest.files,
    );
    const urls = [...names.map((n) => new URL(n, modelsUrl).href), new URL(WASM_FILE, wasmUrl).href];
    const bytes = await fetchAll(urls, [...names.map((n) => manifest.files[n]), 0], options.onProgress, options.signal);
    const file = (n: string): Uint8Array | null => (names.includes(n) ? bytes[names.indexOf(n)] : null);
    const json = (n: string): Record<string, unknown> | null => {
      const b = file(n);
      return b ? (JSON.parse(new TextDecoder().decode(b)) as Record<string, unknown>) : null;
    };

    // The WebAssembly comes from this server (fetched above with the models, for the progress bar);
    // its JavaScript glue is inside this bundle (onnxruntime-web's "bundle" build).
    ort.env.wasm.wasmPaths = { wasm: new URL(WASM_FILE, wasmUrl).href };
    ort.env.wasm.wasmBinary = bytes[bytes.length - 1];
    ort.env.wasm.numThreads = globalThis.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
    ort.env.wasm.proxy = false;
    const sessionOptions: ort.InferenceSession.SessionOptions = { executionProviders: ['wasm'], graphOptimizationLevel: 'all' };
    const mlm = await ort.InferenceSession.create(file(WEB_GRAPH_FILES.mlm)!, sessionOptions);
    const ar = await ort.InferenceSession.create(file(WEB_GRAPH_FILES.arStep)!, sessionOptions);
    const tokenizer = TextTokenizer.fromJson(json('tokenizer.json'), { config: json('tokenizer_config.json'), specialTokensMap: json('special_tokens_map.json'), source: 'tokenizer.json' });
    if (tokenizer.vocabSize > manifest.ar.vocabSize) throw new Error(`the tokenizer has ${tokenizer.vocabSize} tokens but the AR only ${manifest.ar.vocabSize}`);
    return new BrowserMaria(manifest, tokenizer, mlm, ar);
  }

  async encodeMlm(ids: number[], at: number[]): Promise<Float32Array> {
    const T = ids.length;
    if (T > this.manifest.mlm.maxPositions) throw new InputError(`sequence of ${T} tokens exceeds the MLM's context of ${this.manifest.mlm.maxPositions}`);
    const out = await this.mlm.run(
      {
        input_ids: int64(ids, [1, T]),
        position_ids: int64(this.manifest.mlm.positionIds.slice(0, T), [1, T]),
        attention_mask: int64(new Array<number>(T).fill(1), [1, T]),
        head_rows: int64(at, [1, at.length]),
      },
      ['maria_mlm_logits'],
    );
    return out.maria_mlm_logits.data as Float32Array;
  }

  newCache(batch: number): KvCache {
    return newKvCache(this.cacheShape, batch);
  }

  async headStep(cache: KvCache, rows: number[][], headIndex: number[], mlmLogits: Float32Array): Promise<Float32Array> {
    const shape = this.cacheShape;
    const f = stepFeeds(cache, rows, this.manifest.ar.maxPositions);
    const { B, T, C } = f;
    const feeds: Record<string, ort.Tensor> = {
      input_ids: int64(f.ids, [B, T]),
      position_ids: int64(f.positions, [B, T]),
      key_valid: int64(f.keyValid, [B, C + T]),
      key_positions: int64(f.keyPositions, [B, C + T]),
      head_index: int64(headIndex, [headIndex.length]),
      mlm_logits: new ort.Tensor('float32', mlmLogits, [B, headIndex.length, this.spec.vocabSize]),
    };
    const dims = cacheDims(shape, B, C);
    cache.layers.forEach((l, i) => {
      feeds[`past_key_${i}`] = new ort.Tensor('float32', l.k, dims.keys);
      feeds[`past_value_${i}`] = new ort.Tensor('float32', l.v, dims.values);
    });
    const out = await this.ar.run(feeds, this.stepFetches);
    commitStep(cache, shape, f, rows, (i) => ({ k: out[`present_key_${i}`].data as Float32Array, v: out[`present_value_${i}`].data as Float32Array }));
    return out.maria_logits.data as Float32Array;
  }

  /** Fills the masked positions, yielding each token as it is chosen (core.ts's loop). */
  async *infillStream(input: string, options: InfillOptions = {}): AsyncGenerator<InfillEvent, InfillResult> {
    let result: InfillResult | null = null;
    yield* infillLoop(this, input, options, (r) => (result = r));
    return result!;
  }

  /** Exact log p(x_M | x_¬M) of the masked tokens (core.ts's scoring). */
  score(ids: number[], masked: boolean[]): Promise<ScoreResult> {
    return scoreMasked(this, ids, masked);
  }

  async release(): Promise<void> {
    await Promise.all([this.mlm.release(), this.ar.release()]);
  }
}

/** Lets the page repaint and handle input (Stop) between model calls. */
function yieldToPage(): Promise<void> {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => resolve();
    channel.port2.postMessage(null);
  });
}

/** An error the page shows as it is (the server's JSON error fields). */
export class BackendError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function userError(err: unknown, code = 'invalid_input'): never {
  if (err instanceof InputError || err instanceof RangeError) throw new BackendError(/no mask/.test(err.message) ? 'no_mask' : code, err.message);
  throw err;
}

export interface InfillRequestJson {
  text: string;
  temperature?: number;
  top_k?: number;
  top_p?: number;
  seed?: number;
  samples?: number;
  alternatives?: number;
}

export interface ScoreRequestJson {
  text: string;
  mask?: number[] | 'all' | 'each';
  mask_rate?: number;
  seed?: number;
  spans?: boolean;
}

/**
 * The page's backend interface (web/app.js) over a BrowserMaria: the same JSON as the server's
 * /v1/model, /v1/tokenize, /v1/infill (with its start/token events) and /v1/score (method "maria").
 */
export function browserBackend(maria: BrowserMaria, limits: { maxSamples?: number } = {}) {
  const m = maria.manifest;
  const tok = maria.tokenizer;
  const maxSamples = limits.maxSamples ?? 16;
  const describe = (x: WebManifest['mlm'] | WebManifest['ar']) => ({
    family: x.family,
    layers: x.layers,
    hidden_size: x.hiddenSize,
    vocab_size: x.vocabSize,
    max_positions: x.maxPositions,
    parameters: x.parameters,
  });
  return {
    name: 'browser',
    maria,
    async model() {
      return {
        bundle: m.bundle,
        context: m.maxTokens,
        vocab_size: m.vocabSize,
        alignment: m.alignment,
        models: { mlm: describe(m.mlm), ar: describe(m.ar) },
        head: { init: m.head.init, parameters: m.head.parameters, training: m.head.training },
        methods: ['maria'],
        runs_on: 'browser',
        limits: { max_samples: maxSamples },
      };
    },
    async tokenize(text: string) {
      const { ids, tokens } = tok.encode(text);
      return { ids, tokens, pieces: tokenPieces(tok, ids) };
    },
    async infill(
      req: InfillRequestJson,
      onToken: (t: ReturnType<typeof tokenEventJson>) => void,
      { onStart, signal }: { onStart?: (s: { samples: number; masked: number; segments: ReturnType<typeof infillSegments> }) => void; signal?: AbortSignal } = {},
    ): Promise<InfillJson> {
      const samples = req.samples ?? 1;
      if (!Number.isInteger(samples) || samples < 1 || samples > maxSamples) throw new BackendError('invalid_input', `samples must be an integer between 1 and ${maxSamples}`);
      const options: InfillOptions = { temperature: req.temperature, topK: req.top_k, topP: req.top_p, seed: req.seed, samples, alternatives: req.alternatives };
      let seq: MaskedSequence;
      try {
        checkSampling(options);
        seq = parseInput(maria, parseMaskedText(req.text, (s) => tok.encode(s).ids));
      } catch (err) {
        userError(err, 'invalid_mask');
      }
      onStart?.({ samples, masked: seq.masked.filter(Boolean).length, segments: infillSegments(tok, seq) });
      let result: InfillResult | null = null;
      const gen = infillLoop(maria, seq, options, (r) => (result = r));
      for (;;) {
        await yieldToPage();
        if (signal?.aborted) {
          await gen.return(undefined);
          throw abortError();
        }
        const step = await gen.next();
        if (step.done) break;
        onToken(tokenEventJson(tok, step.value));
      }
      return infillJson(result!);
    },
    async score(req: ScoreRequestJson, { signal }: { signal?: AbortSignal } = {}) {
      if (splitMaskMarkers(req.text).some((p) => 'mask' in p)) {
        throw new BackendError('invalid_input', 'the text to score must be the full text, without [MASK] markers; choose what to score with "mask" or "mask_rate"');
      }
      const { ids } = tok.encode(req.text);
      if (ids.length === 0) throw new BackendError('empty_text', 'the text has no tokens to score');
      if (ids.length > m.maxTokens) throw new BackendError('too_long', `the text is ${ids.length} tokens long; this model takes at most ${m.maxTokens}`);
      const pieces = tokenPieces(tok, ids);
      if (req.mask === 'each') {
        // Every token scored alone given all the others (pseudo-log-likelihood): one pass each.
        const scored: ScoreResult['tokens'] = [];
        for (let i = 0; i < ids.length; i++) {
          await yieldToPage();
          if (signal?.aborted) throw abortError();
          scored.push((await maria.score(ids, ids.map((_, j) => j === i))).tokens[0]);
        }
        const nll = -scored.reduce((a, t) => a + t.logprob, 0) / scored.length;
        return { ...scoreJson({ nll, tokens: scored.length, method: 'maria' }), kind: 'pseudo', mask: 'each', token_logprobs: scored, pieces };
      }
      let masked: boolean[];
      try {
        if (Array.isArray(req.mask)) masked = positionsMask(ids.length, req.mask);
        else if (req.mask === 'all') masked = ids.map(() => true);
        else masked = req.spans ? spanMask(ids, req.mask_rate ?? 0.15, req.seed ?? 0) : randomMask(ids, req.mask_rate ?? 0.15, req.seed ?? 0);
      } catch (err) {
        userError(err, 'invalid_mask');
      }
      const r = await maria.score(ids, masked);
      const mask = Array.isArray(req.mask) ? 'positions' : (req.mask ?? (req.spans ? 'spans' : 'random'));
      return { ...scoreJson({ nll: r.nll, tokens: r.tokens.length, method: 'maria' }), kind: 'exact', mask, token_logprobs: r.tokens, pieces };
    },
  };
}

/** Loads the models and returns the page's backend. */
export async function loadBrowserBackend(options: LoadOptions & { maxSamples?: number } = {}) {
  const maria = await BrowserMaria.load(options);
  return browserBackend(maria, { maxSamples: options.maxSamples });
}

// MARIA: a frozen masked LM and a frozen causal LM joined by one linear head. Infilling runs left to
// right over the AR's KV cache: one MLM pass over the masked text, AR prefill of each unmasked run,
// one cached AR step per masked token. Scoring is one MLM pass plus one teacher-forced AR pass.
import { floatTensor, int64Tensor, type SessionOptions } from '../engine/runtime.js';
import { mulberry32 } from '../engine/random.js';
import { CausalLM } from '../models/causal-lm.js';
import { MaskedLM } from '../models/masked-lm.js';
import type { TextTokenizer } from '../tokenizer/tokenizer.js';
import { loadModelTokenizer } from '../models/load.js';
import { pairTokenizers } from '../tokenizer/pairing.js';
import { BundleError, bundlePath, readHead, readManifest, type BundleManifest } from './bundle.js';
import { pairModels } from './create.js';
import { headExtension, type HeadWeights } from './head.js';
import { InputError, parseMaskedText, type MaskedSequence } from './masks.js';
import { checkSampling, logSoftmaxRow, sampleToken, topIds, type SamplingOptions } from './sampling.js';

export interface InfillOptions extends SamplingOptions {
  /** Seed of the sampler (default 0). */
  seed?: number;
  /** Number of samples, run as one batch (default 1). */
  samples?: number;
  /** Give up after this many milliseconds. */
  maxTimeMs?: number;
  /** Alternatives reported per filled token (default 5). */
  alternatives?: number;
}

export interface FilledToken {
  /** Token index in the text (0-based, decoder tokens, specials excluded). */
  position: number;
  token: string;
  id: number;
  /**
   * log p of the chosen token under the distribution sampled from, before temperature: the model's,
   * renormalised without the special tokens infilling never produces (score() uses the full one).
   */
  logprob: number;
  alternatives: Array<{ token: string; id: number; logprob: number }>;
}

export interface InfillSample {
  text: string;
  ids: number[];
  filled: FilledToken[];
}

export interface InfillResult {
  samples: InfillSample[];
  timing: { totalMs: number; mlmMs: number; arMs: number; arCalls: number; filledTokens: number; tokensPerSecond: number };
}

/** One token as it is chosen, for streaming. */
export interface InfillEvent extends FilledToken {
  sample: number;
}

export interface ScoreResult {
  /** log p(x_i | x_<i, x~) for each masked position, in order. */
  tokens: Array<{ position: number; token: string; id: number; logprob: number }>;
  /** Σ log p over the masked tokens: log p(x_M | x_¬M), exact. */
  logprob: number;
  /** Mean negative log-likelihood per masked token (natural log). */
  nll: number;
}

export class InfillTimeout extends Error {
  override name = 'InfillTimeout';
}

/** Input: text with [MASK] / [MASK:n] markers, or ids with a mask. */
export type InfillInput = string | MaskedSequence;

export class Maria {
  private constructor(
    readonly manifest: BundleManifest,
    readonly mlm: MaskedLM,
    /** The AR with MARIA's head compiled into its step graph. */
    readonly ar: CausalLM,
    readonly tokenizer: TextTokenizer,
    /** AR id → MLM id (null when the ids are identical). */
    readonly arToMlm: Int32Array | null,
    readonly head: HeadWeights,
    readonly dir: string,
  ) {}

  /**
   * Loads a bundle folder (maria.json + head.safetensors + the two model folders). With
   * `head: 'product-of-experts'` the trained head is ignored and the untrained PoE head is used.
   */
  static async load(dir: string, options: SessionOptions = {}, which: { head?: 'trained' | 'product-of-experts' } = {}): Promise<Maria> {
    const manifest = readManifest(dir);
    const head = which.head === 'product-of-experts' ? pairModels(bundlePath(dir, manifest.mlm), bundlePath(dir, manifest.ar), dir).head : readHead(dir, manifest);
    const mlmDir = bundlePath(dir, manifest.mlm);
    const arDir = bundlePath(dir, manifest.ar);
    const mlm = await MaskedLM.load(mlmDir, options);
    const ar = await CausalLM.load(arDir, options, headExtension(head));
    const arTok = loadModelTokenizer(arDir, ar.config.vocabSize);
    const mlmTok = loadModelTokenizer(mlmDir, mlm.config.vocabSize);
    const pairing = pairTokenizers(mlmTok, arTok, { mlmVocabSize: mlm.config.vocabSize, arVocabSize: ar.config.vocabSize });
    if (pairing.kind === 'incompatible') throw new BundleError(`${dir}: the MLM and AR vocabularies do not align: ${pairing.reason}`);
    if (pairing.kind !== manifest.alignment) throw new BundleError(`${dir}: maria.json says alignment "${manifest.alignment}" but the tokenizers align as "${pairing.kind}"`);
    if (head.vocabSize !== ar.config.vocabSize) throw new BundleError(`${dir}: the head has ${head.vocabSize} rows but the AR's vocabulary has ${ar.config.vocabSize}`);
    if (head.mlmHidden !== mlm.config.hiddenSize || head.arHidden !== ar.config.hiddenSize) {
      throw new BundleError(`${dir}: the head expects hidden sizes ${head.mlmHidden}+${head.arHidden}, the models have ${mlm.config.hiddenSize}+${ar.config.hiddenSize}`);
    }
    return new Maria(manifest, mlm, ar, arTok, pairing.kind === 'id-map' ? pairing.arToMlm : null, head, dir);
  }

  /** The longest text (in decoder tokens) both models can take. */
  get maxTokens(): number {
    const mlmRoom = this.mlm.config.maxPositions - this.manifest.mlmPrefixIds.length - this.manifest.mlmSuffixIds.length;
    // The AR sees [BOS] x_0 … x_{n-2}: the last token is predicted, never fed.
    return Math.min(mlmRoom, this.ar.config.maxPositions);
  }

  /** Tokenizes text with mask markers. */
  parse(input: InfillInput): MaskedSequence {
    const seq = typeof input === 'string' ? parseMaskedText(input, (s) => this.tokenizer.encode(s).ids) : input;
    if (seq.ids.length !== seq.masked.length) throw new InputError(`ids (${seq.ids.length}) and mask (${seq.masked.length}) differ in length`);
    if (seq.ids.length > this.maxTokens) {
      throw new InputError(`the text is ${seq.ids.length} tokens long; these models take at most ${this.maxTokens}`);
    }
    if (!seq.masked.some(Boolean)) throw new InputError('nothing is masked');
    seq.ids.forEach((id, i) => {
      if (!seq.masked[i] && (!Number.isInteger(id) || id < 0 || id >= this.head.vocabSize)) throw new InputError(`token id ${id} at position ${i} is outside the vocabulary`);
    });
    return seq;
  }

  /** The MLM's features for every text position: [n, dM] (one bidirectional pass). */
  async mlmFeatures(seq: MaskedSequence): Promise<Float32Array> {
    const { mlmPrefixIds: pre, mlmSuffixIds: post, mlmMaskId } = this.manifest;
    const mlmIds = seq.ids.map((id, i) => (seq.masked[i] ? mlmMaskId : this.arToMlm ? this.arToMlm[id] : id));
    const out = await this.mlm.forward([[...pre, ...mlmIds, ...post]]);
    const dM = this.head.mlmHidden;
    return out.hidden.slice(pre.length * dM, (pre.length + seq.ids.length) * dM);
  }

  /** Fills the masked positions; the samples run as one batch. */
  async infill(input: InfillInput, options: InfillOptions = {}): Promise<InfillResult> {
    const samples: InfillSample[] = [];
    let timing: InfillResult['timing'] | null = null;
    for await (const ev of this.run(input, options, (r) => ((timing = r.timing), samples.push(...r.samples)))) void ev;
    return { samples, timing: timing! };
  }

  /** The same as infill, yielding each token as it is chosen. */
  async *infillStream(input: InfillInput, options: InfillOptions = {}): AsyncGenerator<InfillEvent, InfillResult> {
    let result: InfillResult | null = null;
    yield* this.run(input, options, (r) => (result = r));
    return result!;
  }

  private async *run(input: InfillInput, options: InfillOptions, done: (r: InfillResult) => void): AsyncGenerator<InfillEvent> {
    checkSampling(options);
    const N = options.samples ?? 1;
    if (!Number.isInteger(N) || N < 1) throw new InputError(`samples must be a positive integer, got ${N}`);
    const nAlt = options.alternatives ?? 5;
    const t0 = performance.now();
    const deadline = options.maxTimeMs ? t0 + options.maxTimeMs : Infinity;
    const seq = this.parse(input);
    const n = seq.ids.length;
    const dM = this.head.mlmHidden;
    const V = this.head.vocabSize;
    const H = await this.mlmFeatures(seq);
    const mlmMs = performance.now() - t0;

    const rand = mulberry32(options.seed ?? 0);
    const banned = new Set(this.manifest.bannedIds);
    const rows = Array.from({ length: N }, () => [...seq.ids]);
    const filled: FilledToken[][] = Array.from({ length: N }, () => []);
    const cache = this.ar.newCache(N);
    let pending: number[][] = Array.from({ length: N }, () => [this.manifest.arBosId]);
    let arCalls = 0;
    const logp = new Float64Array(V);
    for (let i = 0; i < n; i++) {
      if (!seq.masked[i]) {
        for (const p of pending) p.push(seq.ids[i]);
        continue;
      }
      if (performance.now() > deadline) throw new InfillTimeout(`infilling took longer than ${options.maxTimeMs} ms (filled ${filled[0].length} of ${seq.masked.filter(Boolean).length} tokens)`);
      const T = pending[0].length;
      const feature = H.subarray(i * dM, (i + 1) * dM);
      const mlmHidden = new Float32Array(N * dM);
      for (let b = 0; b < N; b++) mlmHidden.set(feature, b * dM);
      const out = await this.ar.step(cache, pending, {
        head_index: int64Tensor([T - 1], [1]),
        mlm_hidden: floatTensor(mlmHidden, [N, 1, dM]),
      });
      arCalls++;
      const logits = out.extra.maria_logits.data as Float32Array;
      pending = [];
      for (let b = 0; b < N; b++) {
        const row = logits.slice(b * V, (b + 1) * V);
        for (const id of banned) row[id] = -Infinity;
        logSoftmaxRow(row, logp);
        const id = sampleToken(logp, options, rand);
        const alternatives = topIds(logp, nAlt).map((a) => ({ token: this.tokenizer.idToToken(a) ?? '', id: a, logprob: logp[a] }));
        const tok: FilledToken = { position: i, token: this.tokenizer.idToToken(id) ?? '', id, logprob: logp[id], alternatives };
        rows[b][i] = id;
        filled[b].push(tok);
        pending.push([id]);
        yield { ...tok, sample: b };
      }
    }
    const totalMs = performance.now() - t0;
    const filledTokens = N * seq.masked.filter(Boolean).length;
    done({
      samples: rows.map((ids, b) => ({ text: this.tokenizer.decode(ids), ids, filled: filled[b] })),
      timing: { totalMs, mlmMs, arMs: totalMs - mlmMs, arCalls, filledTokens, tokensPerSecond: filledTokens / (totalMs / 1000) },
    });
  }

  /**
   * Exact log p(x_M | x_¬M) of the true tokens at the masked positions: one MLM pass on the masked
   * text and one teacher-forced AR pass.
   */
  async score(ids: number[], masked: boolean[]): Promise<ScoreResult> {
    const seq = this.parse({ ids, masked });
    const positions = masked.flatMap((m, i) => (m ? [i] : []));
    const H = await this.mlmFeatures(seq);
    const dM = this.head.mlmHidden;
    const V = this.head.vocabSize;
    const K = positions.length;
    const last = positions[K - 1];
    const mlmHidden = new Float32Array(K * dM);
    positions.forEach((p, k) => mlmHidden.set(H.subarray(p * dM, (p + 1) * dM), k * dM));
    // AR input [BOS, x_0 … x_{last-1}]: the state at index p predicts x_p.
    const out = await this.ar.step(this.ar.newCache(1), [[this.manifest.arBosId, ...ids.slice(0, last)]], {
      head_index: int64Tensor(positions, [K]),
      mlm_hidden: floatTensor(mlmHidden, [1, K, dM]),
    });
    const logits = out.extra.maria_logits.data as Float32Array;
    const logp = new Float64Array(V);
    const tokens = positions.map((p, k) => {
      logSoftmaxRow(logits.subarray(k * V, (k + 1) * V), logp);
      return { position: p, token: this.tokenizer.idToToken(ids[p]) ?? '', id: ids[p], logprob: logp[ids[p]] };
    });
    const total = tokens.reduce((a, t) => a + t.logprob, 0);
    return { tokens, logprob: total, nll: -total / K };
  }

  async release(): Promise<void> {
    await Promise.all([this.mlm.release(), this.ar.release()]);
  }
}

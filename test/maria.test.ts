// MARIA end to end on a tiny random-weight pair (test/helpers/tiny-pair.ts): what a user depends on.
// Every check is against an independent reference built from the plain runners (MaskedLM.forward,
// CausalLM.forward without any KV cache) and the head computed in JS from head.safetensors.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { infillWithMethod, mdlmElbo, METHODS, mlmLogitsModel, plainArModel, scoreWithMethod } from '../src/maria/baselines.js';
import { BundleError, readHead, readManifest, writeBundle, type BundleManifest } from '../src/maria/bundle.js';
import { mlmHeadLogits, mlmInputRow, scoreMasked, type MariaRuntime } from '../src/maria/core.js';
import { createPoeBundle } from '../src/maria/create.js';
import type { HeadWeights } from '../src/maria/head.js';
import { InfillTimeout, Maria, type InfillEvent, type InfillResult } from '../src/maria/maria.js';
import { InputError, positionsMask, randomMask, type MaskedSequence } from '../src/maria/masks.js';
import { topIds } from '../src/maria/sampling.js';
import { trainHead } from '../src/maria/train-head.js';
import { mulberry32 } from '../src/engine/random.js';
import { floatTensor, int64Tensor } from '../src/engine/runtime.js';
import { CausalLM } from '../src/models/causal-lm.js';
import { MaskedLM } from '../src/models/masked-lm.js';
import { TextTokenizer } from '../src/tokenizer/tokenizer.js';
import { tokenStream } from '../src/train/data.js';
import { DEFAULT_SPECIALS } from '../src/train/presets.js';
import { buildTinyPair, mobyDickText, removeTinyPair, tinyArConfig, writeOtherTokenizer, writeRandomModel, type TinyPair } from './helpers/tiny-pair.js';

const THREADS = { threads: 1 };
const { bos: BOS, eos: EOS, mask: MASK } = DEFAULT_SPECIALS;
const TOL = 1e-4;

let pair: TinyPair;
let maria: Maria;
let refMlm: MaskedLM;
let refAr: CausalLM;
let head: HeadWeights;
let manifest: BundleManifest;
let tok: TextTokenizer;

beforeAll(async () => {
  pair = buildTinyPair('maria-test-');
  maria = await Maria.load(pair.bundleDir, THREADS);
  refMlm = await MaskedLM.load(pair.mlmDir, THREADS);
  refAr = await CausalLM.load(pair.arDir, THREADS);
  manifest = readManifest(pair.bundleDir);
  head = readHead(pair.bundleDir, manifest);
  tok = TextTokenizer.load(pair.arDir);
});

afterAll(async () => {
  await maria?.release();
  await refMlm?.release();
  await refAr?.release();
  removeTinyPair(pair);
});

// ---------------------------------------------------------------------------------------------
// The reference: no KV cache, head in JS.

const V = 8192;
const D = 32;

/** One MLM pass on the masked text ([BOS] x~ [EOS]): hidden and logits rows per text position. */
async function refMlmRows(seq: MaskedSequence): Promise<{ hidden: Float32Array[]; logits: Float32Array[] }> {
  const row = [BOS, ...seq.ids.map((id, i) => (seq.masked[i] ? MASK : id)), EOS];
  const out = await refMlm.forward([row]);
  const n = seq.ids.length;
  return {
    hidden: Array.from({ length: n }, (_, i) => out.hidden.slice((i + 1) * D, (i + 2) * D)),
    logits: Array.from({ length: n }, (_, i) => out.logits.slice((i + 1) * V, (i + 2) * V)),
  };
}

/** The AR run from scratch on [BOS, ...prefix]: hidden and logits of the last position. */
async function refArLast(prefix: number[]): Promise<{ hidden: Float32Array; logits: Float32Array }> {
  const out = await refAr.forward([BOS, ...prefix]);
  const t = out.T - 1;
  return { hidden: out.hidden.slice(t * D, (t + 1) * D), logits: out.logits.slice(t * V, (t + 1) * V) };
}

/** W3·[hM; hA] + b3 in float64 (the bundle's head unless `h` is given). */
function jsHead(hM: Float32Array, hA: Float32Array, h: HeadWeights = head): Float64Array {
  const d = h.mlmHidden + h.arHidden;
  const out = new Float64Array(h.vocabSize);
  for (let v = 0; v < h.vocabSize; v++) {
    let s = h.bias[v];
    const o = v * d;
    for (let j = 0; j < h.mlmHidden; j++) s += h.weight[o + j] * hM[j];
    for (let j = 0; j < h.arHidden; j++) s += h.weight[o + h.mlmHidden + j] * hA[j];
    out[v] = s;
  }
  return out;
}

function logSoftmax(x: ArrayLike<number>, banned: Iterable<number> = []): Float64Array {
  const row = Float64Array.from(x);
  for (const b of banned) row[b] = -Infinity;
  let m = -Infinity;
  for (const v of row) if (v > m) m = v;
  let s = 0;
  for (const v of row) s += Math.exp(v - m);
  const lse = m + Math.log(s);
  return row.map((v) => v - lse);
}

function argmaxWithGap(row: Float64Array): { id: number; gap: number } {
  let best = 0;
  let second = -Infinity;
  for (let i = 1; i < row.length; i++) {
    if (row[i] > row[best]) {
      second = row[best];
      best = i;
    } else if (row[i] > second) second = row[i];
  }
  return { id: best, gap: row[best] - second };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** The infill distribution at each masked position of `ids` (teacher-forced on `ids`), no cache. */
async function refDistributions(seq: MaskedSequence, ids: number[], banned: Iterable<number> = [], h = head): Promise<Map<number, Float64Array>> {
  const { hidden } = await refMlmRows(seq);
  const out = new Map<number, Float64Array>();
  for (let i = 0; i < ids.length; i++) {
    if (!seq.masked[i]) continue;
    const { hidden: hA } = await refArLast(ids.slice(0, i));
    out.set(i, logSoftmax(jsHead(hidden[i], hA, h), banned));
  }
  return out;
}

/** Greedy infill recomputed without any cache: returns the ids and per-token log p. */
async function refGreedy(seq: MaskedSequence): Promise<{ ids: number[]; logprobs: number[]; minGap: number }> {
  const { hidden } = await refMlmRows(seq);
  const ids = [...seq.ids];
  const logprobs: number[] = [];
  let minGap = Infinity;
  for (let i = 0; i < ids.length; i++) {
    if (!seq.masked[i]) continue;
    const { hidden: hA } = await refArLast(ids.slice(0, i));
    const logits = jsHead(hidden[i], hA);
    for (const b of manifest.bannedIds) logits[b] = -Infinity;
    const { id, gap } = argmaxWithGap(logits);
    minGap = Math.min(minGap, gap);
    ids[i] = id;
    logprobs.push(logSoftmax(logits)[id]);
  }
  return { ids, logprobs, minGap };
}

const SENTENCE = 'Call me Ishmael. Some years ago, never mind how long precisely, I thought I would sail about a little.';

function expectUnmaskedKept(seq: MaskedSequence, ids: number[]): void {
  expect(ids).toHaveLength(seq.ids.length);
  seq.ids.forEach((id, i) => {
    if (!seq.masked[i]) expect(ids[i], `position ${i}`).toBe(id);
  });
}

// ---------------------------------------------------------------------------------------------

describe('bundle created from the pair', () => {
  it('records the special tokens of the default tokenizer and bans them', () => {
    expect(manifest.alignment).toBe('identical');
    expect(manifest.mlmMaskId).toBe(MASK);
    expect(manifest.mlmPrefixIds).toEqual([BOS]);
    expect(manifest.mlmSuffixIds).toEqual([EOS]);
    expect(manifest.arBosId).toBe(BOS);
    for (const id of [0, 1, 2, 3, 4]) expect(manifest.bannedIds).toContain(id);
    expect(manifest.head).toMatchObject({ vocabSize: V, mlmHidden: D, arHidden: D, init: 'product-of-experts' });
    expect(maria.maxTokens).toBe(126);
  });
});

describe('product-of-experts initialisation', () => {
  it('the head logits equal the mean of the MLM logits at i and the AR logits at i-1', async () => {
    const ids = tok.encode(SENTENCE).ids;
    const n = ids.length;
    const positions = [0, 3, 4, 9, n - 1];
    const seq = { ids, masked: positionsMask(n, positions) };
    // MARIA's logits through its compiled graphs: the MLM half, then the AR over [BOS, x_<last].
    const mlmLogits = await mlmHeadLogits(maria.runtime, seq, positions);
    const out = await maria.ar.step(maria.ar.newCache(1), [[BOS, ...ids.slice(0, n - 1)]], {
      head_index: int64Tensor(positions, [positions.length]),
      mlm_logits: floatTensor(mlmLogits, [1, positions.length, V]),
    });
    const got = out.extra.maria_logits.data as Float32Array;
    expect(got.length).toBe(positions.length * V);

    const mlm = await refMlmRows(seq);
    for (const [k, p] of positions.entries()) {
      const ar = await refArLast(ids.slice(0, p));
      const want = Float32Array.from({ length: V }, (_, v) => (mlm.logits[p][v] + ar.logits[v]) / 2);
      // Not trivially equal: the experts disagree.
      expect(maxAbsDiff(mlm.logits[p], ar.logits)).toBeGreaterThan(0.5);
      expect(maxAbsDiff(got.subarray(k * V, (k + 1) * V), want), `position ${p}`).toBeLessThan(TOL);
    }
  });

  it("infill's reported alternatives are the PoE distribution (banned ids excluded)", async () => {
    const text = 'Call me [MASK]. Some years ago';
    const seq = maria.parse(text);
    const i = seq.masked.indexOf(true);
    const r = await maria.infill(text, { alternatives: 5 });
    const mlm = await refMlmRows(seq);
    const ar = await refArLast(seq.ids.slice(0, i));
    const logp = logSoftmax(Float64Array.from({ length: V }, (_, v) => (mlm.logits[i][v] + ar.logits[v]) / 2), manifest.bannedIds);
    const alts = r.samples[0].filled[0].alternatives;
    expect(alts).toHaveLength(5);
    const order = Array.from(logp.keys()).sort((a, b) => logp[b] - logp[a]);
    expect(alts.map((a) => a.id)).toEqual(order.slice(0, 5));
    for (const a of alts) {
      expect(Math.abs(a.logprob - logp[a.id])).toBeLessThan(TOL);
      expect(a.token).toBe(tok.idToToken(a.id));
    }
  });
});

describe('the split head', () => {
  it('maria_logits (MLM half in the MLM graph, AR half in the step) equal W3·[h_mlm; h_ar] + b3', async () => {
    // A random head with a bias: a split that lost or doubled b3, or swapped the halves, shows.
    const rand = mulberry32(17);
    const random: HeadWeights = {
      weight: Float32Array.from({ length: V * 2 * D }, () => rand() - 0.5),
      bias: Float32Array.from({ length: V }, () => 2 * rand() - 1),
      vocabSize: V,
      mlmHidden: D,
      arHidden: D,
    };
    const dir = join(pair.root, 'random-head');
    mkdirSync(dir, { recursive: true });
    writeBundle(dir, { ...manifest, mlm: '../mlm', ar: '../ar', head: { ...manifest.head, init: 'trained' } }, random);
    const m = await Maria.load(dir, THREADS);
    try {
      // Several positions decoded in one step (as scoring does)...
      const ids = tok.encode(SENTENCE).ids;
      const positions = [0, 2, 7, ids.length - 1];
      const seq = { ids, masked: positionsMask(ids.length, positions) };
      const mlmLogits = await mlmHeadLogits(m.runtime, seq, positions);
      const got = await m.runtime.headStep(m.runtime.newCache(1), [[BOS, ...ids.slice(0, -1)]], positions, mlmLogits);
      const { hidden } = await refMlmRows(seq);
      for (const [k, p] of positions.entries()) {
        const want = jsHead(hidden[p], (await refArLast(ids.slice(0, p))).hidden, random);
        expect(maxAbsDiff(got.subarray(k * V, (k + 1) * V), want), `position ${p}`).toBeLessThan(TOL);
      }
      // ...and one per cached step, for a batch of samples (as infilling does).
      const r = await m.infill(seq, { temperature: 1, seed: 2, samples: 3 });
      for (const s of r.samples) {
        const ref = await refDistributions(seq, s.ids, manifest.bannedIds, random);
        for (const f of s.filled) expect(Math.abs(f.logprob - ref.get(f.position)![f.id]), `position ${f.position}`).toBeLessThan(TOL);
      }
    } finally {
      await m.release();
    }
  });
});

describe('greedy infill', () => {
  const texts = [
    'Call me [MASK]. Some years ago, never mind how long',
    '[MASK] me Ishmael. Some years ago',
    'Some years ago, never mind how long precisely [MASK]',
    'I thought I would [MASK] [MASK] [MASK] about a little and see the watery part',
    '[MASK:3] the watery part of the world [MASK:2]',
    '[MASK:4]',
    'a[MASK]b[MASK:2]c',
  ];
  it.each(texts)('through the KV cache equals recomputation without a cache: %s', async (text) => {
    const seq = maria.parse(text);
    const ref = await refGreedy(seq);
    // The reference's choices are well separated, so float noise cannot flip an argmax.
    expect(ref.minGap).toBeGreaterThan(1e-3);
    const r = await maria.infill(text, { temperature: 0 });
    expect(r.samples).toHaveLength(1);
    const s = r.samples[0];
    expect(s.ids).toEqual(ref.ids);
    expect(s.filled.map((f) => f.position)).toEqual(seq.masked.flatMap((m, i) => (m ? [i] : [])));
    expect(s.filled.map((f) => f.id)).toEqual(s.filled.map((f) => ref.ids[f.position]));
    s.filled.forEach((f, k) => {
      expect(Math.abs(f.logprob - ref.logprobs[k])).toBeLessThan(TOL);
      expect(f.token).toBe(tok.idToToken(f.id));
      expect(manifest.bannedIds).not.toContain(f.id);
    });
    expect(s.text).toBe(tok.decode(s.ids));
    expect(r.timing.arCalls).toBe(s.filled.length);
  });
});

describe('sampling', () => {
  const text = 'Call me [MASK:2]. Some years ago, [MASK] mind how long precisely, [MASK:3] would sail';

  it('never changes unmasked tokens (temperature 1.5, top-k 0, several seeds, 4 samples)', async () => {
    const seq = maria.parse(text);
    const literals = ['Call me', '. Some years ago,', ' mind how long precisely,', ' would sail'];
    for (const seed of [1, 2, 3]) {
      const r = await maria.infill(text, { temperature: 1.5, topK: 0, seed, samples: 4 });
      expect(r.samples).toHaveLength(4);
      for (const s of r.samples) {
        expectUnmaskedKept(seq, s.ids);
        expect(s.filled).toHaveLength(6);
        for (const f of s.filled) {
          expect(f.id).toBeGreaterThanOrEqual(0);
          expect(f.id).toBeLessThan(V);
          expect(manifest.bannedIds).not.toContain(f.id);
          expect(s.ids[f.position]).toBe(f.id);
        }
        expect(s.text).toBe(tok.decode(s.ids));
        for (const l of literals) expect(s.text).toContain(l);
      }
    }
  });

  it('the same seed gives the same samples; different seeds differ', async () => {
    const opts = { temperature: 1.5, samples: 3 };
    const a = await maria.infill(text, { ...opts, seed: 7 });
    const b = await maria.infill(text, { ...opts, seed: 7 });
    expect(b.samples.map((s) => s.ids)).toEqual(a.samples.map((s) => s.ids));
    const others = await Promise.all([8, 9, 10].map((seed) => maria.infill(text, { ...opts, seed })));
    const distinct = new Set([a, ...others].map((r) => JSON.stringify(r.samples.map((s) => s.ids))));
    expect(distinct.size).toBeGreaterThan(1);
    // Within one batch the samples differ too (each has its own generator).
    expect(new Set(a.samples.map((s) => JSON.stringify(s.ids))).size).toBeGreaterThan(1);
  });

  it('sample b does not depend on how many samples run with it (MARIA and every baseline)', async () => {
    const opts = { temperature: 1.5, seed: 7, alternatives: 0 };
    const run = (method: string, samples: number) => infillWithMethod(maria, text, method, { ...opts, samples, steps: method === 'mdlm' ? 3 : undefined });
    for (const method of METHODS) {
      const ids = async (samples: number) => (await run(method, samples)).samples.map((s) => s.ids);
      const [one, two, five] = [await ids(1), await ids(2), await ids(5)];
      expect(two.slice(0, 1), method).toEqual(one);
      expect(five.slice(0, 2), method).toEqual(two);
      expect(new Set(five.map((x) => JSON.stringify(x))).size, method).toBeGreaterThan(1);
    }
  });

  it('samples=N runs as one batch; each sample follows the exact distribution along its own prefix', async () => {
    const seq = maria.parse(text);
    const M = seq.masked.filter(Boolean).length;
    const r = await maria.infill(text, { temperature: 1, topK: 3, seed: 3, samples: 4 });
    expect(r.timing.arCalls).toBe(M); // one AR call per masked position, whatever N
    expect(r.timing.filledTokens).toBe(4 * M);
    for (const s of r.samples) {
      const ref = await refDistributions(seq, s.ids, manifest.bannedIds);
      for (const f of s.filled) {
        const logp = ref.get(f.position)!;
        expect(Math.abs(f.logprob - logp[f.id]), `position ${f.position}`).toBeLessThan(TOL);
        // top-k 3: the choice is among the three most likely tokens.
        const rank = Array.from(logp).filter((x) => x > logp[f.id]).length;
        expect(rank).toBeLessThan(3);
      }
    }
  });

  it('greedy with samples=N gives N identical copies of the single greedy infill', async () => {
    const one = await maria.infill(text, { temperature: 0 });
    const many = await maria.infill(text, { temperature: 0, samples: 3, seed: 5 });
    expect(many.samples).toHaveLength(3);
    for (const s of many.samples) {
      expect(s.ids).toEqual(one.samples[0].ids);
      expect(s.text).toBe(one.samples[0].text);
    }
  });

  it('sampled tokens follow softmax(logits / temperature) over the top k', async () => {
    const one = 'Call me Ishmael. Some years [MASK]';
    const seq = maria.parse(one);
    const i = seq.masked.indexOf(true);
    const logp = (await refDistributions(seq, seq.ids, manifest.bannedIds)).get(i)!;
    const top = Array.from(logp.keys()).sort((a, b) => logp[b] - logp[a]).slice(0, 3);
    const expected = (t: number): number[] => {
      const w = top.map((id) => Math.exp(logp[id] / t));
      const s = w.reduce((a, b) => a + b, 0);
      return w.map((x) => x / s);
    };
    // The two temperatures must be distinguishable for the check to mean anything.
    expect(maxAbsDiff(expected(1), expected(0.1))).toBeGreaterThan(0.1);
    const N = 1500;
    for (const t of [1, 0.1]) {
      const r = await maria.infill(one, { temperature: t, topK: 3, seed: 21, samples: N, alternatives: 0 });
      const counts = top.map((id) => r.samples.filter((s) => s.filled[0].id === id).length);
      expect(counts.reduce((a, b) => a + b, 0)).toBe(N);
      expected(t).forEach((p, k) => {
        const sd = Math.sqrt((p * (1 - p)) / N);
        expect(Math.abs(counts[k] / N - p), `T=${t} token ${top[k]}`).toBeLessThan(5 * sd);
      });
    }
  });

  it('top-p keeps the nucleus', async () => {
    const seq = maria.parse(text);
    const r = await maria.infill(text, { temperature: 1, topP: 0.3, seed: 11, samples: 2 });
    for (const s of r.samples) {
      const ref = await refDistributions(seq, s.ids, manifest.bannedIds);
      for (const f of s.filled) {
        const logp = ref.get(f.position)!;
        // The mass strictly above the chosen token is below p (otherwise it is outside the nucleus).
        let above = 0;
        for (const x of logp) if (x > logp[f.id]) above += Math.exp(x);
        expect(above).toBeLessThan(0.3 + 1e-6);
      }
    }
  });
});

describe('infillStream', () => {
  it('yields exactly the filled tokens in order and returns the same result as infill', async () => {
    const text = 'Call me [MASK:2]. Some [MASK] ago';
    const opts = { temperature: 1.2, seed: 4, samples: 2 };
    const gen = maria.infillStream(text, opts);
    const events: InfillEvent[] = [];
    let result: InfillResult | undefined;
    for (;;) {
      const next = await gen.next();
      if (next.done) {
        result = next.value;
        break;
      }
      events.push(next.value);
    }
    const plain = await maria.infill(text, opts);
    expect(result).toBeDefined();
    expect(result!.samples).toEqual(plain.samples);
    // Per masked position, sample 0 then sample 1.
    const expected = plain.samples[0].filled.flatMap((_, k) => plain.samples.map((s, b) => ({ ...s.filled[k], sample: b })));
    expect(events).toEqual(expected);
  });
});

describe('score', () => {
  it('equals the sum of the no-cache reference log-probs at the true tokens (teacher forcing, no banning)', async () => {
    const ids = tok.encode(SENTENCE).ids;
    for (const seed of [0, 1]) {
      const masked = randomMask(ids, 0.4, seed);
      const seq = { ids, masked };
      const r = await maria.score(ids, masked);
      const ref = await refDistributions(seq, ids);
      const positions = masked.flatMap((m, i) => (m ? [i] : []));
      expect(r.tokens.map((t) => t.position)).toEqual(positions);
      let total = 0;
      r.tokens.forEach((t) => {
        const want = ref.get(t.position)![ids[t.position]];
        expect(t.id).toBe(ids[t.position]);
        expect(Math.abs(t.logprob - want), `position ${t.position}`).toBeLessThan(TOL);
        total += want;
      });
      expect(Math.abs(r.logprob - total)).toBeLessThan(TOL);
      expect(Math.abs(r.nll + total / positions.length)).toBeLessThan(TOL);
    }
  });

  it('with one masked position, the scores of candidate tokens are the reference distribution', async () => {
    const ids = tok.encode(SENTENCE).ids;
    const p = 5;
    const masked = positionsMask(ids.length, [p]);
    const ref = (await refDistributions({ ids, masked }, ids)).get(p)!;
    const order = Array.from(ref.keys()).sort((a, b) => ref[b] - ref[a]);
    const rand = mulberry32(3);
    const candidates = [...order.slice(0, 8), ...Array.from({ length: 8 }, () => Math.floor(rand() * V)), BOS, EOS];
    let mass = 0;
    for (const c of new Set(candidates)) {
      const withC = [...ids];
      withC[p] = c;
      const r = await maria.score(withC, masked);
      expect(Math.abs(r.logprob - ref[c]), `candidate ${c}`).toBeLessThan(TOL);
      mass += Math.exp(r.logprob);
    }
    expect(mass).toBeLessThanOrEqual(1 + 1e-6);
    // The top candidates carry visible mass, so the check is not only on the far tail.
    expect(Math.exp(ref[order[0]])).toBeGreaterThan(1e-3);
  });

  it('does not depend on the tokens written at other masked positions beyond teacher forcing', async () => {
    // Changing the true token at the LAST masked position only changes that position's term.
    const ids = tok.encode(SENTENCE).ids;
    const masked = positionsMask(ids.length, [2, 6, 10]);
    const a = await maria.score(ids, masked);
    const changed = [...ids];
    changed[10] = ids[10] === 100 ? 101 : 100;
    const b = await maria.score(changed, masked);
    expect(Math.abs(a.tokens[0].logprob - b.tokens[0].logprob)).toBeLessThan(1e-6);
    expect(Math.abs(a.tokens[1].logprob - b.tokens[1].logprob)).toBeLessThan(1e-6);
    expect(Math.abs(a.tokens[2].logprob - b.tokens[2].logprob)).toBeGreaterThan(1e-6);
  });
});

describe('scoring with the baselines', () => {
  const ids = (): number[] => tok.encode(SENTENCE).ids;

  it("MARIA's MLM session has the head's MLM half, not the MLM's logits; the baselines' own session has them", async () => {
    const out = await maria.mlm.forward([[BOS, 100, MASK, EOS]], { feeds: { head_rows: int64Tensor([2], [1, 1]) } });
    expect(out.logits).toHaveLength(0);
    expect(out.hidden).toHaveLength(4 * D);
    expect(out.extra.maria_mlm_logits.dims).toEqual([1, 1, V]);
    // mlm-oneshot: Σ −log p_MLM(x_i | x~), against the reference MLM's logits.
    const x = ids();
    const positions = [2, 7];
    const masked = positionsMask(x.length, positions);
    const ref = await refMlmRows({ ids: x, masked });
    const want = -positions.reduce((a, p) => a + logSoftmax(ref.logits[p])[x[p]], 0) / positions.length;
    const got = await scoreWithMethod(maria, x, masked, 'mlm-oneshot');
    expect(Math.abs(got.nll - want)).toBeLessThan(TOL);
  });

  it('mlm-l2r is the MLM chain rule, revealing the masked tokens left to right', async () => {
    const x = ids();
    const positions = [1, 4, 5, 9, 12];
    let total = 0;
    for (const [k, p] of positions.entries()) {
      const still = positions.slice(k);
      const { logits } = await refMlmRows({ ids: x, masked: x.map((_, i) => still.includes(i)) });
      total -= logSoftmax(logits[p])[x[p]];
    }
    const got = await scoreWithMethod(maria, x, positionsMask(x.length, positions), 'mlm-l2r');
    expect(Math.abs(got.nll - total / positions.length)).toBeLessThan(TOL);
  });

  it('score "mdlm" reports the continuous-time bound; mdlmElbo with steps gives the T-step one', async () => {
    const x = ids();
    const masked = randomMask(x, 0.4, 3);
    const K = masked.filter(Boolean).length;
    const s = await scoreWithMethod(maria, x, masked, 'mdlm', { seed: 3 });
    expect(s.kind).toBe('elbo');
    expect(s.nll).toBe((await mdlmElbo(maria, x, masked, { draws: 16, seed: 3 ^ 0xe1b0 })) / K);
    // T = 1: t = 1, every masked token is masked in every draw, so L_1 = Σ −log p_MLM(x_i | x~).
    const oneshot = await scoreWithMethod(maria, x, masked, 'mlm-oneshot');
    expect(Math.abs((await mdlmElbo(maria, x, masked, { steps: 1, draws: 3, seed: 1 })) - oneshot.nll * K)).toBeLessThan(TOL * K);
    await expect(mdlmElbo(maria, x, masked, { steps: 0 })).rejects.toThrow(InputError);
  });

  it('a scored id outside the vocabulary is an InputError (never a NaN score)', async () => {
    const x = ids();
    const masked = positionsMask(x.length, [4]);
    for (const bad of [V, -1, 2.5]) {
      const withBad = [...x];
      withBad[4] = bad;
      await expect(maria.score(withBad, masked)).rejects.toThrow(/scored token id .* at position 4 is outside the vocabulary/);
      for (const method of METHODS) await expect(scoreWithMethod(maria, withBad, masked, method), method).rejects.toThrow(InputError);
    }
  });

  it('baselines give up past maxTimeMs with InfillTimeout, as MARIA does', async () => {
    const text = '[MASK:6] the watery part of the world';
    for (const method of ['mlm-l2r', 'ar']) {
      await expect(infillWithMethod(maria, text, method, { maxTimeMs: 0.001 }), method).rejects.toThrow(InfillTimeout);
      expect((await infillWithMethod(maria, text, method, { maxTimeMs: 60_000 })).samples[0].filled).toHaveLength(6);
    }
    const x = tok.encode(mobyDickText(400)).ids.slice(0, 60);
    const all = x.map(() => true); // 60 tokens: several MLM batches for mlm-l2r, 32 draws for mdlm
    await expect(scoreWithMethod(maria, x, all, 'mlm-l2r', { maxTimeMs: 0.001 })).rejects.toThrow(InfillTimeout);
    await expect(scoreWithMethod(maria, x, all, 'mdlm', { mdlmSamples: 32, maxTimeMs: 0.001 })).rejects.toThrow(InfillTimeout);
  });

  it('Maria.release() releases the sessions the baselines built', async () => {
    const m = await Maria.load(pair.bundleDir, THREADS);
    const ar = await plainArModel(m);
    const mlm = await mlmLogitsModel(m);
    expect((await ar.forward([BOS, 100])).logits).toHaveLength(2 * V);
    expect((await mlm.forward([[BOS, MASK, EOS]])).logits).toHaveLength(3 * V);
    await m.release();
    await expect(ar.forward([BOS, 100])).rejects.toThrow();
    await expect(mlm.forward([[BOS, MASK, EOS]])).rejects.toThrow();
  });
});

describe('the MLM input row', () => {
  const spec = { mlmMaskId: 9, mlmPrefixIds: [1], mlmSuffixIds: [2], arToMlm: Int32Array.from([0, 5, -1, 7]), mlmVocabSize: 8, mlmUnkId: 3 };

  it('maps ids, puts [MASK] at masked positions, and sends a token the MLM lacks to its unknown token', () => {
    expect(mlmInputRow(spec, [1, 3, 2, 0], [false, true, false, false])).toEqual([1, 5, 9, 3, 0, 2]);
    expect(mlmInputRow(spec, [2], [true])).toEqual([1, 9, 2]); // masked: whatever the id
    // Identical ids: an AR id past the MLM's vocabulary (padding rows).
    expect(mlmInputRow({ ...spec, arToMlm: null }, [4, 8], [false, false])).toEqual([1, 4, 3, 2]);
  });

  it('without an unknown token, refuses with an InputError naming the token', () => {
    const noUnk = { ...spec, mlmUnkId: null };
    expect(() => mlmInputRow(noUnk, [1, 2], [false, false], (id) => `tok${id}`)).toThrow(InputError);
    expect(() => mlmInputRow(noUnk, [1, 2], [false, false], (id) => `tok${id}`)).toThrow(/token "tok2" \(id 2\) at position 1 is not in the MLM's vocabulary/);
    expect(() => mlmInputRow({ ...noUnk, arToMlm: null }, [8], [false])).toThrow(/token id 8 at position 0/);
  });

  it('is what MARIA and the baselines feed the MLM', async () => {
    // The tiny pair shares ids: make token 100 one the MLM lacks.
    const arToMlm = Int32Array.from({ length: V }, (_, i) => (i === 100 ? -1 : i));
    const runtime = (mlmUnkId: number | null): MariaRuntime => ({ ...maria.runtime, spec: { ...maria.runtime.spec, arToMlm, mlmUnkId } });
    const x = tok.encode(SENTENCE).ids;
    x[3] = 100;
    const masked = positionsMask(x.length, [5]);
    await expect(scoreMasked(runtime(null), x, masked)).rejects.toThrow(/id 100\) at position 3 is not in the MLM's vocabulary/);
    const withoutUnk = Object.assign(Object.create(maria) as Maria, { runtime: runtime(null) });
    await expect(scoreWithMethod(withoutUnk, x, masked, 'mlm-oneshot')).rejects.toThrow(InputError);
    // With an unknown token, the MLM reads it in that token's place.
    const UNK = 4;
    const got = await mlmHeadLogits(runtime(UNK), { ids: x, masked }, [5]);
    const want = await mlmHeadLogits(maria.runtime, { ids: x.map((id, i) => (i === 3 ? UNK : id)), masked }, [5]);
    expect(maxAbsDiff(got, want)).toBe(0);
  });
});

describe('topIds', () => {
  it('gives the k best ids, best first, ties to the lower id (as a full sort does)', () => {
    const rand = mulberry32(5);
    for (let trial = 0; trial < 200; trial++) {
      const n = 1 + Math.floor(rand() * 40);
      const row = Float64Array.from({ length: n }, () => (rand() < 0.1 ? -Infinity : Math.floor(rand() * 6)));
      for (const k of [0, 1, 3, 5, n, n + 2]) {
        const want = Array.from(row.keys())
          .sort((a, b) => row[b] - row[a] || a - b)
          .slice(0, k);
        expect(topIds(row, k)).toEqual(want);
      }
    }
  });
});

describe('errors', () => {
  it('text without a mask', async () => {
    await expect(maria.infill('Call me Ishmael.')).rejects.toThrow(InputError);
    await expect(maria.infill('Call me Ishmael.')).rejects.toThrow(/no mask.*\[MASK\]/);
  });

  it('text longer than the models take', async () => {
    const long = `${mobyDickText(2000)} [MASK]`;
    await expect(maria.infill(long)).rejects.toThrow(InputError);
    await expect(maria.infill(long)).rejects.toThrow(/tokens long; these models take at most 126/);
    const ids = new Array(127).fill(100);
    await expect(maria.score(ids, positionsMask(127, [3]))).rejects.toThrow(InputError);
  });

  it('bad [MASK:n] and bad options', async () => {
    await expect(maria.infill('a [MASK:0] b')).rejects.toThrow(InputError);
    await expect(maria.infill('a [MASK:0] b')).rejects.toThrow(/span length must be between 1 and/);
    await expect(maria.infill('a [MASK:99999] b')).rejects.toThrow(InputError);
    await expect(maria.infill('a [MASK] b', { samples: 0 })).rejects.toThrow(InputError);
    await expect(maria.infill('a [MASK] b', { temperature: -1 })).rejects.toThrow(InputError);
    await expect(maria.infill('a [MASK] b', { topP: 0 })).rejects.toThrow(InputError);
    await expect(maria.score([5, 6, 7], [false, false, false])).rejects.toThrow(InputError);
  });

  it('a bundle whose maria.json points to a missing folder', async () => {
    const dir = join(pair.root, 'broken-bundle');
    mkdirSync(dir, { recursive: true });
    copyFileSync(join(pair.bundleDir, 'head.safetensors'), join(dir, 'head.safetensors'));
    writeFileSync(join(dir, 'maria.json'), JSON.stringify({ ...manifest, mlm: '../no-such-mlm', ar: '../ar' }));
    await expect(Maria.load(dir, THREADS)).rejects.toThrow(BundleError);
    await expect(Maria.load(dir, THREADS)).rejects.toThrow(/"mlm" points to .*no-such-mlm, which does not exist/);
    await expect(Maria.load(join(pair.root, 'nothing-here'), THREADS)).rejects.toThrow(/maria\.json: not found/);
  });

  it('an MLM and an AR with different tokenizers', async () => {
    const otherAr = join(pair.root, 'ar-other-tokenizer');
    writeRandomModel(otherAr, tinyArConfig(), 33);
    writeOtherTokenizer(otherAr);
    expect(() => createPoeBundle(pair.mlmDir, otherAr, join(pair.root, 'bad-bundle'))).toThrow(BundleError);
    expect(() => createPoeBundle(pair.mlmDir, otherAr, join(pair.root, 'bad-bundle'))).toThrow(/cannot be paired: incompatible: .*split the same text differently/);
    // A hand-edited bundle pointing at that AR is refused at load time too.
    const dir = join(pair.root, 'edited-bundle');
    mkdirSync(dir, { recursive: true });
    copyFileSync(join(pair.bundleDir, 'head.safetensors'), join(dir, 'head.safetensors'));
    writeFileSync(join(dir, 'maria.json'), JSON.stringify({ ...manifest, mlm: '../mlm', ar: '../ar-other-tokenizer' }));
    await expect(Maria.load(dir, THREADS)).rejects.toThrow(/vocabularies do not align/);
  });
});

describe('bundle files', () => {
  it('writeBundle / readManifest / readHead round trip', () => {
    const dir = join(pair.root, 'roundtrip');
    mkdirSync(dir, { recursive: true });
    const rand = mulberry32(9);
    const V2 = 50;
    const h: HeadWeights = {
      weight: Float32Array.from({ length: V2 * 7 }, () => rand() - 0.5),
      bias: Float32Array.from({ length: V2 }, () => rand()),
      vocabSize: V2,
      mlmHidden: 3,
      arHidden: 4,
    };
    const m: BundleManifest = {
      ...manifest,
      mlm: '../mlm',
      ar: '../ar',
      head: { file: 'head.safetensors', vocabSize: V2, mlmHidden: 3, arHidden: 4, init: 'trained' },
      training: { steps: 3, note: 'round trip' },
    };
    writeBundle(dir, m, h);
    const m2 = readManifest(dir);
    expect(m2).toEqual(m);
    const h2 = readHead(dir, m2);
    expect(h2).toEqual(h);
    // A manifest that disagrees with the head file is refused.
    writeFileSync(join(dir, 'maria.json'), JSON.stringify({ ...m, head: { ...m.head, arHidden: 5 } }));
    expect(() => readHead(dir, readManifest(dir))).toThrow(/"weight" has shape \[50,7\] but maria.json says \[50, 8\]/);
    writeFileSync(join(dir, 'maria.json'), JSON.stringify({ ...m, version: 99 }));
    expect(() => readManifest(dir)).toThrow(BundleError);
  });
});

describe('trainHead', () => {
  const text = mobyDickText(9000, 30000);
  const chunks = text.match(/[\s\S]{1,900}/g)!.map((t, i) => ({ id: `moby#${i}`, text: t }));
  const encode = (t: string): number[] => tok.encode(t).ids;
  const streams = (): { train: Uint16Array; validation: Uint16Array } => {
    const cache = join(pair.root, 'cache');
    const key = readFileSync(join(pair.arDir, 'tokenizer.json'), 'utf8');
    return {
      train: tokenStream(chunks.slice(0, 8), encode, { bos: BOS, eos: EOS }, cache, key),
      validation: tokenStream(chunks.slice(8), encode, { bos: BOS, eos: EOS }, cache, key),
    };
  };
  const base = (out: string, steps: number) => ({
    mlmDir: pair.mlmDir,
    arDir: pair.arDir,
    out,
    ...streams(),
    steps,
    batch: 4,
    length: 24,
    maskSamples: 2,
    spanProbability: 0.25,
    lr: 1e-2,
    warmup: 2,
    weightDecay: 0,
    seed: 5,
    validateEvery: 1000,
    validationWindows: 4,
    checkpointEvery: 1000,
    resume: false,
    isSpecial: (id: number) => id < 5,
    session: THREADS,
  });

  it('lowers the validation L_MARIA below the PoE start, and the bundle loads', async () => {
    const out = join(pair.root, 'trained-30');
    const r = await trainHead(base(out, 30));
    expect(r.finished).toBe(true);
    expect(r.steps).toBe(30);
    const start = Object.values(r.poe);
    const final = r.validation[r.validation.length - 1];
    expect(final.step).toBe(30);
    const avgStart = start.reduce((a, b) => a + b, 0) / start.length;
    expect(final.loss).toBeLessThan(avgStart - 0.5);
    for (const rate of Object.keys(r.poe)) expect(final.byRate[rate]).toBeLessThan(r.poe[rate]);
    const m = readManifest(out);
    expect(m.head.init).toBe('trained');
    expect(m.training).toMatchObject({ steps: 30, finished: true });
    const trained = await Maria.load(out, THREADS);
    try {
      // Trained MARIA scores held-out text better than the PoE start did.
      const ids = Array.from(streams().validation.subarray(1, 25));
      const masked = randomMask(ids, 0.5, 1);
      const after = await trained.score(ids, masked);
      const before = await maria.score(ids, masked);
      expect(after.nll).toBeLessThan(before.nll);
    } finally {
      await trained.release();
    }
  });

  it('resuming gives bit-identical head weights (10 steps vs 5 + resume 5)', async () => {
    const full = join(pair.root, 'full-10');
    await trainHead(base(full, 10));
    const split = join(pair.root, 'split-10');
    let at = 0;
    const first = await trainHead({ ...base(split, 10), onStep: (s) => (at = s.step), shouldStop: () => at >= 5 });
    expect(first).toMatchObject({ steps: 5, finished: false });
    expect(readManifest(split).training).toMatchObject({ steps: 5, finished: false });
    const second = await trainHead({ ...base(split, 10), resume: true });
    expect(second).toMatchObject({ steps: 10, finished: true });
    const a = readHead(full, readManifest(full));
    const b = readHead(split, readManifest(split));
    expect(Buffer.from(b.weight.buffer).equals(Buffer.from(a.weight.buffer))).toBe(true);
    expect(Buffer.from(b.bias.buffer).equals(Buffer.from(a.bias.buffer))).toBe(true);
  });
});

// Causal families against reference outputs of Hugging Face transformers (test/data/hf-parity):
// full-sequence and incremental (KV cache) hidden states and logits within 5e-5.
import { readFileSync, existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CausalLM } from '../src/models/causal-lm.js';
import { newKvCache } from '../src/models/kv-cache.js';

const root = new URL('./data/hf-parity/', import.meta.url).pathname;
const TOL = 5e-5;

interface Expected {
  cases: Array<{
    last_hidden_state: { shape: number[]; data: number[] };
    head_transform?: { shape: number[]; data: number[] };
    logits: { shape: number[]; data: number[] };
    incremental?: { prompt_length: number; logits: { data: number[] } };
  }>;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export const CAUSAL_FIXTURES = ['llama-a', 'qwen2-a', 'olmo-a', 'olmo2-a', 'gpt2-a', 'modernbert-decoder-a'];

describe('causal LM parity with HF transformers', () => {
  for (const name of CAUSAL_FIXTURES) {
    const dir = root + name;
    it.skipIf(!existsSync(dir + '/config.json'))(name, async () => {
      const inputs = JSON.parse(readFileSync(dir + '/inputs.json', 'utf8')) as { cases: Array<{ input_ids: number[]; prompt_length: number }> };
      const expected = JSON.parse(readFileSync(dir + '/expected.json', 'utf8')) as Expected;
      const lm = await CausalLM.load(dir, { threads: 1 });
      for (const [i, c] of inputs.cases.entries()) {
        const exp = expected.cases[i];
        const full = await lm.forward(c.input_ids);
        const hiddenRef = exp.head_transform ?? exp.last_hidden_state;
        expect(maxDiff(full.hidden, hiddenRef.data)).toBeLessThan(TOL);
        expect(maxDiff(full.logits, exp.logits.data)).toBeLessThan(TOL);

        // Prefill the prompt, then one token at a time through the cache.
        const cache = lm.newCache(1);
        const rows: Float32Array[] = [];
        const first = await lm.step(cache, [c.input_ids.slice(0, c.prompt_length)]);
        rows.push(first.logits);
        for (const id of c.input_ids.slice(c.prompt_length)) rows.push((await lm.step(cache, [[id]])).logits);
        const inc = Float32Array.from(rows.flatMap((r) => Array.from(r)));
        expect(maxDiff(inc, exp.logits.data)).toBeLessThan(TOL);
        if (exp.incremental) expect(maxDiff(inc, exp.incremental.logits.data)).toBeLessThan(TOL);

        // A cache that starts with 2 slots must grow (2 → 7 → 14 → …) without changing anything.
        const small = lm.newCache(1, 2);
        const grown: Float32Array[] = [];
        for (const id of c.input_ids) grown.push((await lm.step(small, [[id]])).logits);
        expect(small.capacity).toBeGreaterThanOrEqual(c.input_ids.length);
        expect(maxDiff(Float32Array.from(grown.flatMap((r) => Array.from(r))), exp.logits.data)).toBeLessThan(TOL);

        // logits: 'last' gives each row's last real token only, also for a shorter (padded) row.
        const V = lm.config.vocabSize;
        const short = c.input_ids.slice(0, c.prompt_length);
        const lastOnly = await lm.step(lm.newCache(2), [c.input_ids, short], {}, { logits: 'last' });
        expect(lastOnly.logitRows).toBe(1);
        expect(lastOnly.logits.length).toBe(2 * V);
        const at = (t: number) => exp.logits.data.slice(t * V, (t + 1) * V);
        expect(maxDiff(lastOnly.logits.subarray(0, V), at(c.input_ids.length - 1))).toBeLessThan(TOL);
        expect(maxDiff(lastOnly.logits.subarray(V), at(short.length - 1))).toBeLessThan(TOL);
      }
      await lm.release();
    });
  }
});

describe('KV cache bookkeeping', () => {
  it('refuses a capacity (or batch) that is not a positive integer', () => {
    const shape = { numLayers: 1, kvHeads: 1, headDim: 2 };
    for (const c of [0, -1, 1.5, NaN]) expect(() => newKvCache(shape, 1, c)).toThrow(/capacity must be a positive integer/);
    expect(() => newKvCache(shape, 0)).toThrow(/batch must be a positive integer/);
    expect(newKvCache(shape, 2, 1)).toMatchObject({ capacity: 1, used: 0 });
  });

  const dir = root + 'llama-a';
  it.skipIf(!existsSync(dir + '/config.json'))('rows of different lengths in one batch, through a growing cache, equal each row run alone', async () => {
    const lm = await CausalLM.load(dir, { threads: 1 });
    const V = lm.config.vocabSize;
    const a = [3, 17, 5, 9, 11, 2, 7, 13];
    const b = [8, 4, 6];
    // Per step, the tokens each row adds (the shorter row is padded; a row may add nothing).
    const steps = [
      [a.slice(0, 4), b.slice(0, 1)],
      [a.slice(4, 5), b.slice(1, 3)],
      [a.slice(5, 6), []],
      [a.slice(6, 7), []],
      [a.slice(7, 8), []],
    ];
    const cache = lm.newCache(2, 1); // grows 1 → 8 (4 needed + 2√4) → 15 (9 needed + 6), copying the used slots
    const seen: number[][] = [[], []];
    for (const rows of steps) {
      const out = await lm.step(cache, rows);
      for (let r = 0; r < 2; r++) {
        for (let t = 0; t < rows[r].length; t++) {
          seen[r].push(rows[r][t]);
          const ref = await lm.forward(seen[r]);
          const last = ref.logits.subarray((seen[r].length - 1) * V, seen[r].length * V);
          expect(maxDiff(out.logits.subarray((r * out.T + t) * V, (r * out.T + t + 1) * V), last)).toBeLessThan(TOL);
        }
      }
    }
    expect(cache.used).toBe(4 + 2 + 1 + 1 + 1);
    expect(cache.capacity).toBe(15);
    expect(cache.next).toEqual([a.length, b.length]);
    await lm.release();
  });
});

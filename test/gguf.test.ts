// GGUF export: the v3 writer and reader, refusals, and parity with llama.cpp (node-llama-cpp's
// prebuilt CPU binary) on the same token ids: log-probabilities and a greedy continuation.
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getLlama, LlamaLogLevel, type Llama } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportGguf, ropeRowsToInterleaved } from '../src/export/gguf.js';
import { GgufError, readGguf, readGgufTensor, writeGguf, type GgufValue } from '../src/io/gguf.js';
import { CausalLM } from '../src/models/causal-lm.js';
import { ModelFolderError } from '../src/models/config.js';
import { TextTokenizer } from '../src/tokenizer/tokenizer.js';

const AR = new URL('../models/default/ar', import.meta.url).pathname;
const FIXTURES = new URL('./data/hf-parity/', import.meta.url).pathname;
const LLAMA_A = FIXTURES + 'llama-a';
const tmp = mkdtempSync(join(tmpdir(), 'maria-gguf-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('GGUF writer and reader', () => {
  it('round-trips typed metadata and aligned tensors', () => {
    const file = join(tmp, 'roundtrip.gguf');
    const metadata: Record<string, GgufValue> = {
      'general.architecture': { type: 'string', value: 'llama' },
      u8: { type: 'uint8', value: 255 },
      i8: { type: 'int8', value: -128 },
      u16: { type: 'uint16', value: 65535 },
      i16: { type: 'int16', value: -32768 },
      u32: { type: 'uint32', value: 4294967295 },
      i32: { type: 'int32', value: -2147483648 },
      f32: { type: 'float32', value: 1e-5 },
      f64: { type: 'float64', value: Math.PI },
      u64: { type: 'uint64', value: 2n ** 64n - 1n },
      i64: { type: 'int64', value: -(2n ** 63n) },
      yes: { type: 'bool', value: true },
      strs: { type: 'array', itemType: 'string', value: ['Ġthe', '', 'ü日本'] },
      ints: { type: 'array', itemType: 'int32', value: [1, 3, -4] },
      floats: { type: 'array', itemType: 'float32', value: [0.5, -2] },
    };
    const a = Float32Array.from({ length: 15 }, (_, i) => i - 7.5); // 60 bytes: the next tensor needs padding
    const b = Uint16Array.from({ length: 6 }, (_, i) => 0x3c00 + i);
    writeGguf(file, metadata, [
      { name: 'a', type: 'F32', dims: [5, 3], data: () => new Uint8Array(a.buffer) },
      { name: 'b', type: 'F16', dims: [6], data: () => new Uint8Array(b.buffer) },
    ]);
    const g = readGguf(file);
    expect(g.version).toBe(3);
    expect(g.alignment).toBe(32);
    expect(g.dataOffset % 32).toBe(0);
    for (const [k, v] of Object.entries(metadata)) {
      const got = g.metadata.get(k)!;
      if (v.type === 'float32' || v.itemType === 'float32') expect(got.value).toEqual(v.type === 'array' ? v.value.map((x) => Math.fround(x as number)) : Math.fround(v.value as number));
      else expect(got).toEqual(v);
    }
    expect(g.metadata.get('general.alignment')).toEqual({ type: 'uint32', value: 32 });
    expect(g.tensors).toEqual([
      { name: 'a', dims: [5, 3], type: 0, offset: 0 },
      { name: 'b', dims: [6], type: 1, offset: 64 },
    ]);
    expect(readGgufTensor(file, g, 'a')).toEqual(new Uint8Array(a.buffer));
    expect(readGgufTensor(file, g, 'b')).toEqual(new Uint8Array(b.buffer));
  });

  it('rejects bad values and wrong sizes without leaving a file behind', () => {
    const dir = mkdtempSync(join(tmp, 'bad-'));
    const file = join(dir, 'bad.gguf');
    expect(() => writeGguf(file, { n: { type: 'uint32', value: -1 } }, [])).toThrow(GgufError);
    expect(() => writeGguf(file, {}, [{ name: 'w', type: 'F32', dims: [4], data: () => new Uint8Array(8) }])).toThrow(/need 16/);
    expect(readdirSync(dir)).toEqual([]);
    writeFileSync(file, 'not a gguf file at all');
    expect(() => readGguf(file)).toThrow(/magic/);
  });

  it("permutes q/k rows from rotate_half to llama.cpp's interleaved pairs", () => {
    // 2 heads of dim 4, one column: per head, rows (0, 1 | 2, 3) → (0, 2, 1, 3).
    expect(Array.from(ropeRowsToInterleaved(Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]), 2, 1))).toEqual([0, 2, 1, 3, 4, 6, 5, 7]);
  });
});

describe('exportGguf', () => {
  it('refuses other model types and Llama features llama.cpp would compute differently', () => {
    expect(() => exportGguf(FIXTURES + 'qwen2-a', join(tmp, 'q.gguf'))).toThrow(/model_type "qwen2" cannot be exported to GGUF/);
    const config = JSON.parse(readFileSync(join(LLAMA_A, 'config.json'), 'utf8')) as Record<string, unknown>;
    const dir = mkdtempSync(join(tmp, 'scaled-'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, rope_scaling: { rope_type: 'linear', factor: 2 }, attention_bias: true }));
    copyFileSync(join(LLAMA_A, 'model.safetensors'), join(dir, 'model.safetensors'));
    const err = (() => {
      try {
        exportGguf(dir, join(dir, 'x.gguf'));
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err).toBeInstanceOf(ModelFolderError);
    expect(err?.message).toMatch(/does not support RoPE scaling "linear", attention biases/);
    expect(existsSync(join(dir, 'x.gguf'))).toBe(false);
  });

  it('writes the metadata, vocabulary and tensors llama.cpp expects', () => {
    const file = join(tmp, 'ar-f16.gguf');
    const r = exportGguf(AR, file, { dtype: 'F16' });
    expect(r).toMatchObject({ dtype: 'F16', vocabSize: 8192, preTokenizer: 'gpt-2', tensors: 2 + 6 * 9 });
    const g = readGguf(file);
    const meta = (k: string): unknown => g.metadata.get(k)?.value;
    expect(meta('general.architecture')).toBe('llama');
    expect(meta('general.file_type')).toBe(1);
    expect([meta('llama.block_count'), meta('llama.embedding_length'), meta('llama.attention.head_count'), meta('llama.rope.dimension_count')]).toEqual([6, 256, 4, 64]);
    expect(g.metadata.has('llama.attention.key_length')).toBe(false); // 64 = 256 / 4
    const tokens = meta('tokenizer.ggml.tokens') as string[];
    expect(tokens.slice(0, 5)).toEqual(['[PAD]', '[BOS]', '[EOS]', '[MASK]', '[UNK]']);
    expect((meta('tokenizer.ggml.token_type') as number[]).slice(0, 6)).toEqual([3, 3, 3, 3, 3, 1]);
    expect([meta('tokenizer.ggml.bos_token_id'), meta('tokenizer.ggml.eos_token_id'), meta('tokenizer.ggml.padding_token_id')]).toEqual([1, 2, 0]);
    const types = new Map(g.tensors.map((t) => [t.name, t.type]));
    expect([types.get('token_embd.weight'), types.get('blk.0.attn_q.weight'), types.get('blk.0.attn_norm.weight')]).toEqual([1, 1, 0]);
    expect(types.has('output.weight')).toBe(false); // tied: llama.cpp reuses token_embd
    // The untied fixture keeps its head, and GQA's k_proj is [2 heads × 16, 64] → ggml [64, 32].
    const a = readGguf((exportGguf(LLAMA_A, join(tmp, 'a.gguf')), join(tmp, 'a.gguf')));
    expect(a.tensors.find((t) => t.name === 'blk.0.attn_k.weight')?.dims).toEqual([64, 32]);
    expect(a.tensors.some((t) => t.name === 'output.weight')).toBe(true);
  });
});

/** log-softmax of one row. */
function logSoftmax(row: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) max = Math.max(max, row[i]);
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(row, (x) => x - lse);
}

function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

interface Run {
  /** The prompt followed by the greedy continuation. */
  ids: number[];
  /** One row of logits per position (the prediction for the next token). */
  logits: Float32Array[];
}

async function mariaGreedy(dir: string, prompt: number[], steps: number): Promise<Run> {
  const lm = await CausalLM.load(dir, { threads: 1 });
  const V = lm.config.vocabSize;
  const cache = lm.newCache(1);
  const out = await lm.step(cache, [prompt]);
  const logits = Array.from({ length: prompt.length }, (_, t) => out.logits.slice(t * V, (t + 1) * V));
  const ids = [...prompt];
  for (let s = 0; s < steps; s++) {
    ids.push(argmax(logits[logits.length - 1]));
    if (s < steps - 1) logits.push((await lm.step(cache, [[ids[ids.length - 1]]])).logits.slice());
  }
  await lm.release();
  return { ids, logits };
}

async function llamaCppGreedy(llama: Llama, file: string, prompt: number[], steps: number, vocab: number): Promise<Run> {
  const model = await llama.loadModel({ modelPath: file });
  // Flash attention and an F16 KV cache (llama.cpp's defaults) round q·k and v to F16 on the CPU.
  const context = await model.createContext({ contextSize: prompt.length + steps, threads: 1, flashAttention: false, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' });
  const seq = context.getSequence();
  const dense = (m: Map<number, number> | undefined): Float32Array => {
    const row = new Float32Array(vocab).fill(NaN);
    for (const [id, x] of m ?? []) row[id] = x;
    return row;
  };
  const withLogits = (id: number): [number, { generateNext: { logits: true } }] => [id, { generateNext: { logits: true } }];
  const logits = (await seq.controlledEvaluate(prompt.map(withLogits))).map((r) => dense(r?.next.logits));
  const ids = [...prompt];
  for (let s = 0; s < steps; s++) {
    ids.push(argmax(logits[logits.length - 1]));
    if (s < steps - 1) logits.push(dense((await seq.controlledEvaluate([withLogits(ids[ids.length - 1])]))[0]?.next.logits));
  }
  await context.dispose();
  await model.dispose();
  return { ids, logits };
}

describe('parity with llama.cpp (node-llama-cpp, CPU, 1 thread)', () => {
  let llama: Llama;
  beforeAll(async () => {
    llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, maxThreads: 1 });
  });
  afterAll(async () => llama?.dispose());

  const text = 'It was the best of times, it was the worst of times, it was the age of wisdom';
  const cases = [
    // The untied, GQA fixture runs at its full context of 64 positions.
    { name: 'hf-parity llama-a, F32', dir: LLAMA_A, dtype: 'F32', tol: 1e-4, prompt: () => (JSON.parse(readFileSync(join(LLAMA_A, 'inputs.json'), 'utf8')) as { cases: Array<{ input_ids: number[] }> }).cases[1].input_ids },
    { name: 'default AR, F32', dir: AR, dtype: 'F32', tol: 1e-4, prompt: () => TextTokenizer.load(AR).encode(text).ids },
    // F16 weights are maria's own bits, but llama.cpp also rounds the activations to F16 for each matmul.
    { name: 'default AR, F16', dir: AR, dtype: 'F16', tol: 2e-2, prompt: () => TextTokenizer.load(AR).encode(text).ids },
  ] as const;
  for (const c of cases) {
    it(c.name, async () => {
      const file = join(tmp, `${c.name.replace(/\W+/g, '-')}.gguf`);
      exportGguf(c.dir, file, { dtype: c.dtype });
      const prompt = [...c.prompt()];
      const steps = 32;
      const ours = await mariaGreedy(c.dir, prompt, steps);
      const theirs = await llamaCppGreedy(llama, file, prompt, steps, ours.logits[0].length);
      expect(theirs.ids).toEqual(ours.ids);
      let maxDiff = 0;
      ours.logits.forEach((row, t) => {
        const a = logSoftmax(row);
        const b = logSoftmax(theirs.logits[t]);
        for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
      });
      console.log(`${c.name}: ${ours.logits.length} positions, max |Δ log p| = ${maxDiff.toExponential(2)}`);
      expect(maxDiff).toBeLessThan(c.tol);
    });
  }

  it("tokenizes text as maria's tokenizer does", async () => {
    const file = join(tmp, 'ar-tokenizer.gguf');
    exportGguf(AR, file, { dtype: 'F16' });
    const model = await llama.loadModel({ modelPath: file });
    const sample = "Call me Ishmael. Some years ago—never mind how long precisely—I thought I'd sail about 3,000 miles.\n  Done!";
    expect(Array.from(model.tokenize(sample))).toEqual(TextTokenizer.load(AR).encode(sample).ids);
    await model.dispose();
  });
});

// Config variations that real checkpoints use but the HF parity fixtures do not. Without HF at
// hand, each variation is checked by an exact equivalence: the fixture's weights are transformed
// into the other configuration (written as config.json + model.safetensors in a temporary folder)
// in a way that must not change the model's function, and the outputs must agree. Where no such
// transformation exists (head_dim ≠ hidden/heads, biases, RoPE scaling) a small float64 Llama
// forward written here is the reference; it is itself checked against the llama-a fixture.
// Malformed folders must fail with a ModelFolderError that names the file and the key or tensor.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { mulberry32, normal } from '../src/engine/random.js';
import { openCheckpoint, writeSafetensors, type TensorToWrite } from '../src/io/safetensors.js';
import { CausalLM } from '../src/models/causal-lm.js';
import { ModelFolderError } from '../src/models/config.js';

const root = new URL('./data/hf-parity/', import.meta.url).pathname;
/** Parity tolerance (as in parity-causal.test.ts). */
const TOL = 5e-5;
/** Exact equivalences differ only by float32 rounding of a different graph. */
const SAME = 1e-5;

type Json = Record<string, unknown>;
type Tensors = Map<string, { data: Float32Array; shape: number[] }>;
interface Case {
  input_ids: number[];
  prompt_length: number;
}
interface Fixture {
  config: Json;
  tensors: Tensors;
  cases: Case[];
  expected: Array<{ logits: { data: number[] } }>;
}

const tmpRoot = mkdtempSync(join(tmpdir(), 'maria-model-configs-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));
let folders = 0;

function fixture(name: string): Fixture {
  const dir = root + name;
  const src = openCheckpoint(dir);
  const tensors: Tensors = new Map();
  for (const n of src.names()) tensors.set(n, { data: src.getFloat32(n), shape: src.info(n).shape });
  return {
    config: JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Json,
    tensors,
    cases: (JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8')) as { cases: Case[] }).cases,
    expected: (JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as { cases: Fixture['expected'] }).cases,
  };
}

/** Writes a model folder; `config` may be a raw string (for broken JSON). */
function writeModel(config: Json | string | null, tensors: Tensors | null): string {
  const dir = join(tmpRoot, `m${folders++}`);
  mkdirSync(dir);
  if (config !== null) writeFileSync(join(dir, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config, null, 2));
  if (tensors !== null) {
    const out: Record<string, TensorToWrite> = {};
    for (const [n, t] of tensors) out[n] = { dtype: 'F32', shape: t.shape, data: t.data };
    writeSafetensors(join(dir, 'model.safetensors'), out);
  }
  return dir;
}

function clone(t: Tensors): Tensors {
  return new Map([...t].map(([n, v]) => [n, { data: v.data.slice(), shape: [...v.shape] }]));
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

interface RunOut {
  logits: number[];
  hidden: number[];
}

/**
 * Loads a folder and runs every case in full; checks that prefill + one-token steps through the
 * KV cache give the same logits. Returns all cases' logits and hidden states, concatenated.
 */
async function run(dir: string, cases: Case[]): Promise<RunOut> {
  const lm = await CausalLM.load(dir, { threads: 1 });
  const logits: number[] = [];
  const hidden: number[] = [];
  try {
    for (const c of cases) {
      const full = await lm.forward(c.input_ids);
      logits.push(...full.logits);
      hidden.push(...full.hidden);
      const cache = lm.newCache(1);
      const inc = [...(await lm.step(cache, [c.input_ids.slice(0, c.prompt_length)])).logits];
      for (const id of c.input_ids.slice(c.prompt_length)) inc.push(...(await lm.step(cache, [[id]])).logits);
      expect(maxDiff(inc, full.logits)).toBeLessThan(TOL);
    }
  } finally {
    await lm.release();
  }
  return { logits, hidden };
}

async function expectSame(a: string, b: string, cases: Case[]): Promise<RunOut> {
  const [x, y] = [await run(a, cases), await run(b, cases)];
  expect(maxDiff(x.logits, y.logits)).toBeLessThan(SAME);
  expect(maxDiff(x.hidden, y.hidden)).toBeLessThan(SAME);
  return x;
}

async function expectLoadError(dir: string, ...fragments: string[]): Promise<void> {
  const err = await CausalLM.load(dir, { threads: 1 }).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ModelFolderError);
  for (const f of fragments) expect((err as Error).message).toContain(f);
}

function gaussian(seed: number): () => number {
  return normal(mulberry32(seed));
}

// --- a float64 Llama forward ------------------------------------------------------------------------

interface RefConfig {
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  inter: number;
  layers: number;
  vocab: number;
  eps: number;
  invFreq: number[];
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
  tied: boolean;
}

function refConfig(cfg: Json, invFreq?: number[]): RefConfig {
  const hidden = cfg.hidden_size as number;
  const heads = cfg.num_attention_heads as number;
  const headDim = (cfg.head_dim as number | undefined) ?? hidden / heads;
  const theta = (cfg.rope_theta as number | undefined) ?? 10000;
  return {
    hidden,
    heads,
    kvHeads: (cfg.num_key_value_heads as number | undefined) ?? heads,
    headDim,
    inter: cfg.intermediate_size as number,
    layers: cfg.num_hidden_layers as number,
    vocab: cfg.vocab_size as number,
    eps: cfg.rms_norm_eps as number,
    invFreq: invFreq ?? Array.from({ length: headDim / 2 }, (_, i) => 1 / theta ** ((2 * i) / headDim)),
    qkvBias: cfg.attention_bias === true,
    oBias: cfg.attention_bias === true,
    mlpBias: cfg.mlp_bias === true,
    tied: cfg.tie_word_embeddings !== false,
  };
}

/** Llama logits [T·V] in float64 (causal, no cache). */
function refLlama(c: RefConfig, w: Tensors, ids: number[]): number[] {
  const T = ids.length;
  const W = (n: string): Float32Array => w.get(n)!.data;
  const lin = (x: number[], inp: number, name: string, out: number, bias: boolean): number[] => {
    const m = W(`${name}.weight`);
    const b = bias ? W(`${name}.bias`) : null;
    const y = new Array<number>(T * out).fill(0);
    for (let t = 0; t < T; t++) {
      for (let o = 0; o < out; o++) {
        let s = b ? b[o] : 0;
        for (let i = 0; i < inp; i++) s += x[t * inp + i] * m[o * inp + i];
        y[t * out + o] = s;
      }
    }
    return y;
  };
  const rms = (x: number[], name: string): number[] => {
    const g = W(name);
    const D = c.hidden;
    const y = x.slice();
    for (let t = 0; t < T; t++) {
      let ss = 0;
      for (let i = 0; i < D; i++) ss += x[t * D + i] ** 2;
      const r = 1 / Math.sqrt(ss / D + c.eps);
      for (let i = 0; i < D; i++) y[t * D + i] = x[t * D + i] * r * g[i];
    }
    return y;
  };
  const rope = (x: number[], heads: number): void => {
    const d = c.headDim;
    for (let t = 0; t < T; t++) {
      for (let h = 0; h < heads; h++) {
        const o = (t * heads + h) * d;
        for (let j = 0; j < d / 2; j++) {
          const [a, b] = [x[o + j], x[o + j + d / 2]];
          const [cs, sn] = [Math.cos(t * c.invFreq[j]), Math.sin(t * c.invFreq[j])];
          x[o + j] = a * cs - b * sn;
          x[o + j + d / 2] = b * cs + a * sn;
        }
      }
    }
  };
  const { hidden: D, heads: H, kvHeads: K, headDim: d } = c;
  const emb = W('model.embed_tokens.weight');
  let x = ids.flatMap((id) => Array.from(emb.subarray(id * D, (id + 1) * D)));
  for (let l = 0; l < c.layers; l++) {
    const p = `model.layers.${l}`;
    const xn = rms(x, `${p}.input_layernorm.weight`);
    const q = lin(xn, D, `${p}.self_attn.q_proj`, H * d, c.qkvBias);
    const k = lin(xn, D, `${p}.self_attn.k_proj`, K * d, c.qkvBias);
    const v = lin(xn, D, `${p}.self_attn.v_proj`, K * d, c.qkvBias);
    rope(q, H);
    rope(k, K);
    const att = new Array<number>(T * H * d).fill(0);
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / (H / K));
      for (let t = 0; t < T; t++) {
        const scores: number[] = [];
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          for (let j = 0; j < d; j++) dot += q[(t * H + h) * d + j] * k[(s * K + kh) * d + j];
          scores.push(dot / Math.sqrt(d));
        }
        const mx = Math.max(...scores);
        const e = scores.map((z) => Math.exp(z - mx));
        const sum = e.reduce((a, b) => a + b, 0);
        for (let s = 0; s <= t; s++) for (let j = 0; j < d; j++) att[(t * H + h) * d + j] += (e[s] / sum) * v[(s * K + kh) * d + j];
      }
    }
    const o = lin(att, H * d, `${p}.self_attn.o_proj`, D, c.oBias);
    x = x.map((z, i) => z + o[i]);
    const y = rms(x, `${p}.post_attention_layernorm.weight`);
    const gate = lin(y, D, `${p}.mlp.gate_proj`, c.inter, c.mlpBias);
    const up = lin(y, D, `${p}.mlp.up_proj`, c.inter, c.mlpBias);
    const down = lin(
      gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]),
      c.inter,
      `${p}.mlp.down_proj`,
      D,
      c.mlpBias,
    );
    x = x.map((z, i) => z + down[i]);
  }
  return lin(rms(x, 'model.norm.weight'), D, c.tied ? 'model.embed_tokens' : 'lm_head', c.vocab, false);
}

function refAll(c: RefConfig, w: Tensors, cases: Case[]): number[] {
  return cases.flatMap((cs) => refLlama(c, w, cs.input_ids));
}

// --- Llama family -----------------------------------------------------------------------------------

describe('llama-family config variations', () => {
  const fx = fixture('llama-a');
  const embed = fx.tensors.get('model.embed_tokens.weight')!;

  it('the float64 reference forward reproduces the llama-a fixture', () => {
    const ref = refAll(refConfig(fx.config), fx.tensors, fx.cases);
    expect(maxDiff(ref, fx.expected.flatMap((e) => e.logits.data))).toBeLessThan(1e-5);
  });

  it('tie_word_embeddings true (or absent) equals an untied head that copies the embedding', async () => {
    const untied = clone(fx.tensors);
    untied.get('lm_head.weight')!.data.set(embed.data);
    const tied = clone(fx.tensors);
    tied.delete('lm_head.weight');
    const a = writeModel(fx.config, untied);
    await expectSame(a, writeModel({ ...fx.config, tie_word_embeddings: true }, tied), fx.cases);
    const { tie_word_embeddings: _drop, ...noKey } = fx.config;
    await expectSame(a, writeModel(noKey, tied), fx.cases);
  });

  it('a single KV head equals several KV heads that are copies of it', async () => {
    const d = fx.config.head_dim as number;
    const D = fx.config.hidden_size as number;
    const withKv = (n: number): Tensors => {
      const t = clone(fx.tensors);
      for (let l = 0; l < (fx.config.num_hidden_layers as number); l++) {
        for (const proj of ['k_proj', 'v_proj']) {
          const name = `model.layers.${l}.self_attn.${proj}.weight`;
          const head0 = fx.tensors.get(name)!.data.subarray(0, d * D);
          const data = new Float32Array(n * d * D);
          for (let h = 0; h < n; h++) data.set(head0, h * d * D);
          t.set(name, { data, shape: [n * d, D] });
        }
      }
      return t;
    };
    const one = writeModel({ ...fx.config, num_key_value_heads: 1 }, withKv(1));
    const out = await expectSame(one, writeModel({ ...fx.config, num_key_value_heads: 2 }, withKv(2)), fx.cases);
    await expectSame(one, writeModel({ ...fx.config, num_key_value_heads: 4 }, withKv(4)), fx.cases);
    const ref = refAll(refConfig({ ...fx.config, num_key_value_heads: 1 }), withKv(1), fx.cases);
    expect(maxDiff(out.logits, ref)).toBeLessThan(TOL);
  });

  it('explicit head_dim smaller than hidden/heads, with attention and MLP biases', async () => {
    // hidden 64, 4 heads of 8 (not 16), 2 KV heads: q/k/v keep the first rows, o_proj the first columns.
    const d = 8;
    const D = 64;
    const gauss = gaussian(7);
    const t = clone(fx.tensors);
    for (let l = 0; l < 2; l++) {
      const p = `model.layers.${l}`;
      const rows = (name: string, n: number): void => {
        t.set(name, { data: fx.tensors.get(name)!.data.slice(0, n * D), shape: [n, D] });
      };
      rows(`${p}.self_attn.q_proj.weight`, 4 * d);
      rows(`${p}.self_attn.k_proj.weight`, 2 * d);
      rows(`${p}.self_attn.v_proj.weight`, 2 * d);
      const o = fx.tensors.get(`${p}.self_attn.o_proj.weight`)!.data;
      const oNew = new Float32Array(D * 4 * d);
      for (let r = 0; r < D; r++) oNew.set(o.subarray(r * 64, r * 64 + 4 * d), r * 4 * d);
      t.set(`${p}.self_attn.o_proj.weight`, { data: oNew, shape: [D, 4 * d] });
      const bias = (name: string, n: number): void => {
        t.set(`${p}.${name}.bias`, { data: Float32Array.from({ length: n }, () => 0.1 * gauss()), shape: [n] });
      };
      bias('self_attn.q_proj', 4 * d);
      bias('self_attn.k_proj', 2 * d);
      bias('self_attn.v_proj', 2 * d);
      bias('self_attn.o_proj', D);
      bias('mlp.gate_proj', 96);
      bias('mlp.up_proj', 96);
      bias('mlp.down_proj', D);
    }
    const config = { ...fx.config, head_dim: d, attention_bias: true, mlp_bias: true };
    const out = await run(writeModel(config, t), fx.cases);
    expect(maxDiff(out.logits, refAll(refConfig(config), t, fx.cases))).toBeLessThan(TOL);
    // The biases matter: without them (same weights) the outputs move.
    const noBias = new Map([...t].filter(([n]) => !n.endsWith('.bias')));
    const without = await run(writeModel({ ...fx.config, head_dim: d }, noBias), fx.cases);
    expect(maxDiff(out.logits, without.logits)).toBeGreaterThan(1e-3);
  });

  it('attention_bias / mlp_bias true with zero biases equal the bias-free model', async () => {
    const t = clone(fx.tensors);
    for (let l = 0; l < 2; l++) {
      for (const [name, n] of [
        ['self_attn.q_proj', 64],
        ['self_attn.k_proj', 32],
        ['self_attn.v_proj', 32],
        ['self_attn.o_proj', 64],
        ['mlp.gate_proj', 96],
        ['mlp.up_proj', 96],
        ['mlp.down_proj', 64],
      ] as const) {
        t.set(`model.layers.${l}.${name}.bias`, { data: new Float32Array(n), shape: [n] });
      }
    }
    await expectSame(writeModel(fx.config, fx.tensors), writeModel({ ...fx.config, attention_bias: true, mlp_bias: true }, t), fx.cases);
  });

  it('transformers-5 rope_parameters and torch_dtype spellings equal the old ones', async () => {
    const { rope_theta: _theta, dtype: _dtype, ...rest } = fx.config;
    const old = writeModel({ ...fx.config, rope_theta: 2500 }, fx.tensors);
    const v5 = writeModel({ ...rest, dtype: 'float32', rope_parameters: { rope_theta: 2500, rope_type: 'default' } }, fx.tensors);
    const out = await expectSame(old, v5, fx.cases);
    await expectSame(old, writeModel({ ...rest, rope_theta: 2500, torch_dtype: 'float32' }, fx.tensors), fx.cases);
    // And the theta is honoured: the fixture's 10000 gives other logits.
    expect(maxDiff(out.logits, fx.expected.flatMap((e) => e.logits.data))).toBeGreaterThan(1e-3);
  });

  it('rope_scaling: linear and llama3 rescale the frequencies; factor 1 is plain RoPE', async () => {
    const plain = writeModel(fx.config, fx.tensors);
    await expectSame(plain, writeModel({ ...fx.config, rope_scaling: { type: 'linear', factor: 1 } }, fx.tensors), fx.cases);
    const llama3 = { rope_type: 'llama3', factor: 1, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };
    await expectSame(plain, writeModel({ ...fx.config, rope_scaling: llama3 }, fx.tensors), fx.cases);

    const base = refConfig(fx.config).invFreq;
    const linear = await run(writeModel({ ...fx.config, rope_scaling: { rope_type: 'linear', factor: 4 } }, fx.tensors), fx.cases);
    expect(maxDiff(linear.logits, refAll(refConfig(fx.config, base.map((f) => f / 4)), fx.tensors, fx.cases))).toBeLessThan(TOL);

    // head_dim 16, theta 1e4, original context 64: frequency 0 is high (kept), 1-2 are smoothed, 3+ are divided.
    const l3 = { ...llama3, factor: 8 };
    const l3Freq = base.map((f) => {
      const wavelen = (2 * Math.PI) / f;
      const [lowWl, highWl] = [64 / l3.low_freq_factor, 64 / l3.high_freq_factor];
      if (wavelen < highWl) return f;
      if (wavelen > lowWl) return f / l3.factor;
      const s = (64 / wavelen - l3.low_freq_factor) / (l3.high_freq_factor - l3.low_freq_factor);
      return (1 - s) * (f / l3.factor) + s * f;
    });
    expect(l3Freq.filter((f, i) => f === base[i])).toHaveLength(1);
    expect(l3Freq.filter((f, i) => Math.abs(f - base[i] / 8) < 1e-12)).toHaveLength(5);
    // Written the transformers-5 way: the scaling lives in rope_parameters next to rope_theta.
    const { rope_theta: _t, rope_scaling: _s, ...rest } = fx.config;
    const scaled = await run(writeModel({ ...rest, rope_parameters: { ...l3, rope_theta: 10000 } }, fx.tensors), fx.cases);
    expect(maxDiff(scaled.logits, refAll(refConfig(fx.config, l3Freq), fx.tensors, fx.cases))).toBeLessThan(TOL);
    expect(maxDiff(scaled.logits, linear.logits)).toBeGreaterThan(1e-3);
  });

  it('refuses RoPE scalings it does not implement, naming the key', async () => {
    const dir = writeModel({ ...fx.config, rope_scaling: { rope_type: 'yarn', factor: 4 } }, fx.tensors);
    await expectLoadError(dir, join(dir, 'config.json'), 'rope_scaling', 'yarn');
    const bad = writeModel({ ...fx.config, rope_scaling: { rope_type: 'llama3', factor: 8 } }, fx.tensors);
    await expectLoadError(bad, join(bad, 'config.json'), 'rope_scaling.low_freq_factor');
  });

  it('clip_qkv: a huge bound is no clip; a small one changes the outputs (OLMo)', async () => {
    const olmo = fixture('olmo-a');
    const none = writeModel(olmo.config, olmo.tensors);
    await expectSame(none, writeModel({ ...olmo.config, clip_qkv: 1e30 }, olmo.tensors), olmo.cases);
    const clipped = await run(writeModel({ ...olmo.config, clip_qkv: 0.5 }, olmo.tensors), olmo.cases);
    expect(maxDiff(clipped.logits, olmo.expected.flatMap((e) => e.logits.data))).toBeGreaterThan(1e-3);
  });
});

// --- GPT-2 ------------------------------------------------------------------------------------------

describe('gpt2 config variations', () => {
  const fx = fixture('gpt2-a');
  const D = 32;
  const L = 2;

  it('newer key spellings (hidden_size, num_hidden_layers, ...) equal n_embd, n_layer, ...', async () => {
    const { n_embd: _e, n_layer: _l, n_head: _h, n_positions: _p, ...rest } = fx.config;
    const renamed = { ...rest, hidden_size: D, num_hidden_layers: L, num_attention_heads: 4, max_position_embeddings: 64 };
    await expectSame(writeModel(fx.config, fx.tensors), writeModel(renamed, fx.tensors), fx.cases);
  });

  it('weights saved without the "transformer." prefix (GPT2Model, old Hub uploads) load the same', async () => {
    const bare: Tensors = new Map([...fx.tensors].map(([n, v]) => [n.replace(/^transformer\./, ''), v]));
    // Old checkpoints also carry the causal-mask buffers; they are not weights.
    for (let l = 0; l < L; l++) bare.set(`h.${l}.attn.bias`, { data: new Float32Array(64 * 64).fill(1), shape: [1, 1, 64, 64] });
    await expectSame(writeModel(fx.config, fx.tensors), writeModel(fx.config, bare), fx.cases);
  });

  it('tie_word_embeddings false with lm_head equal to wte', async () => {
    const t = clone(fx.tensors);
    t.set('lm_head.weight', { data: fx.tensors.get('transformer.wte.weight')!.data.slice(), shape: [97, D] });
    await expectSame(writeModel(fx.config, fx.tensors), writeModel({ ...fx.config, tie_word_embeddings: false }, t), fx.cases);
  });

  it('n_inner set: extra MLP units whose output rows are zero change nothing', async () => {
    const inner = 160;
    const gauss = gaussian(11);
    const t = clone(fx.tensors);
    for (let l = 0; l < L; l++) {
      const p = `transformer.h.${l}.mlp`;
      const fc = fx.tensors.get(`${p}.c_fc.weight`)!.data; // [32, 128]
      const fcNew = new Float32Array(D * inner);
      for (let r = 0; r < D; r++) {
        fcNew.set(fc.subarray(r * 128, (r + 1) * 128), r * inner);
        for (let j = 128; j < inner; j++) fcNew[r * inner + j] = gauss();
      }
      const bNew = new Float32Array(inner);
      bNew.set(fx.tensors.get(`${p}.c_fc.bias`)!.data);
      for (let j = 128; j < inner; j++) bNew[j] = gauss();
      const proj = new Float32Array(inner * D); // rows 128.. stay zero
      proj.set(fx.tensors.get(`${p}.c_proj.weight`)!.data);
      t.set(`${p}.c_fc.weight`, { data: fcNew, shape: [D, inner] });
      t.set(`${p}.c_fc.bias`, { data: bNew, shape: [inner] });
      t.set(`${p}.c_proj.weight`, { data: proj, shape: [inner, D] });
    }
    await expectSame(writeModel(fx.config, fx.tensors), writeModel({ ...fx.config, n_inner: inner }, t), fx.cases);
    // n_inner = 4·n_embd written out equals null.
    await expectSame(writeModel(fx.config, fx.tensors), writeModel({ ...fx.config, n_inner: 4 * D }, fx.tensors), fx.cases);
  });

  it('scale_attn_weights false and scale_attn_by_inverse_layer_idx true, with q rescaled to match', async () => {
    // Scores are q·k·scale: scaling q's columns (and bias) of c_attn by s' / s keeps them.
    const rescaleQ = (factor: (layer: number) => number): Tensors => {
      const t = clone(fx.tensors);
      for (let l = 0; l < L; l++) {
        const w = t.get(`transformer.h.${l}.attn.c_attn.weight`)!.data; // [32, 96], q = columns 0..31
        const b = t.get(`transformer.h.${l}.attn.c_attn.bias`)!.data;
        for (let r = 0; r < D; r++) for (let j = 0; j < D; j++) w[r * 3 * D + j] *= factor(l);
        for (let j = 0; j < D; j++) b[j] *= factor(l);
      }
      return t;
    };
    const plain = writeModel(fx.config, fx.tensors);
    await expectSame(plain, writeModel({ ...fx.config, scale_attn_weights: false }, rescaleQ(() => 1 / Math.sqrt(8))), fx.cases);
    await expectSame(plain, writeModel({ ...fx.config, scale_attn_by_inverse_layer_idx: true }, rescaleQ((l) => l + 1)), fx.cases);
    await expectSame(plain, writeModel({ ...fx.config, reorder_and_upcast_attn: true }, fx.tensors), fx.cases);
  });

  it('activation_function is honoured, and an unknown one is refused by name', async () => {
    const gelu = await run(writeModel({ ...fx.config, activation_function: 'gelu' }, fx.tensors), fx.cases);
    expect(maxDiff(gelu.logits, fx.expected.flatMap((e) => e.logits.data))).toBeGreaterThan(1e-4);
    const dir = writeModel({ ...fx.config, activation_function: 'no_such_gelu' }, fx.tensors);
    await expectLoadError(dir, join(dir, 'config.json'), 'activation_function', 'no_such_gelu');
  });
});

// --- ModernBERT decoder -----------------------------------------------------------------------------

describe('modernbert-decoder config variations', () => {
  const fx = fixture('modernbert-decoder-a');
  const D = 32;
  const L = 3;

  it('layer_types absent: derived from global_attn_every_n_layers (layer 0 full)', async () => {
    const { layer_types: _t, ...rest } = fx.config;
    await expectSame(writeModel(fx.config, fx.tensors), writeModel(rest, fx.tensors), fx.cases);
  });

  it("a missing size takes transformers' default, and the weights that do not fit it are named", async () => {
    const { intermediate_size: _i, ...rest } = fx.config;
    const dir = writeModel(rest, fx.tensors);
    // ModernBertDecoderConfig's intermediate_size defaults to 1152: Wi is then [2304, D].
    await expectLoadError(dir, 'model.layers.0.mlp.Wi.weight', `[${2 * 1152},${D}]`);
  });

  it('the sliding window is local_attention // 2 and matters; a window wider than the text is full attention', async () => {
    const full = writeModel({ ...fx.config, layer_types: ['full_attention', 'full_attention', 'full_attention'] }, fx.tensors);
    const out = await expectSame(full, writeModel({ ...fx.config, local_attention: 200, sliding_window: 100 }, fx.tensors), fx.cases);
    expect(maxDiff(out.logits, fx.expected.flatMap((e) => e.logits.data))).toBeGreaterThan(1e-3);
    // A stale `sliding_window` key is ignored, as HF does: local_attention alone decides.
    await expectSame(writeModel(fx.config, fx.tensors), writeModel({ ...fx.config, sliding_window: 64 }, fx.tensors), fx.cases);
  });

  it('bias switches with zero biases equal the bias-free model; decoder_bias false drops the decoder bias', async () => {
    const t = clone(fx.tensors);
    const zero = (name: string, n: number): void => void t.set(name, { data: new Float32Array(n), shape: [n] });
    for (const n of ['model.embeddings.norm', 'model.final_norm', 'lm_head.norm']) zero(`${n}.bias`, D);
    for (let l = 0; l < L; l++) {
      const p = `model.layers.${l}`;
      if (l > 0) zero(`${p}.attn_norm.bias`, D);
      zero(`${p}.mlp_norm.bias`, D);
      for (const proj of ['q_proj', 'k_proj', 'v_proj', 'Wo']) zero(`${p}.attn.${proj}.bias`, D);
      zero(`${p}.mlp.Wi.bias`, 96);
      zero(`${p}.mlp.Wo.bias`, D);
    }
    zero('lm_head.dense.bias', D);
    const biased = { ...fx.config, norm_bias: true, attention_bias: true, mlp_bias: true, classifier_bias: true };
    await expectSame(writeModel(fx.config, fx.tensors), writeModel(biased, t), fx.cases);

    const noDecoderBias = clone(fx.tensors);
    noDecoderBias.delete('decoder.bias');
    const zeroed = clone(fx.tensors);
    zeroed.get('decoder.bias')!.data.fill(0);
    await expectSame(writeModel(fx.config, zeroed), writeModel({ ...fx.config, decoder_bias: false }, noDecoderBias), fx.cases);
  });

  it('tie_word_embeddings false with decoder.weight equal to the embeddings', async () => {
    const t = clone(fx.tensors);
    t.set('decoder.weight', { data: fx.tensors.get('model.embeddings.tok_embeddings.weight')!.data.slice(), shape: [109, D] });
    await expectSame(writeModel(fx.config, fx.tensors), writeModel({ ...fx.config, tie_word_embeddings: false }, t), fx.cases);
  });

  it('transformers-5 per-layer-type rope_parameters equal global_rope_theta', async () => {
    const { global_rope_theta: _g, local_rope_theta: _l, ...rest } = fx.config;
    const v5 = {
      ...rest,
      rope_parameters: { full_attention: { rope_type: 'default', rope_theta: 160000 }, sliding_attention: { rope_type: 'default', rope_theta: 160000 } },
    };
    const out = await expectSame(writeModel(fx.config, fx.tensors), writeModel(v5, fx.tensors), fx.cases);
    // The theta is read: another global base changes the logits.
    const other = await run(writeModel({ ...fx.config, global_rope_theta: 1000 }, fx.tensors), fx.cases);
    expect(maxDiff(out.logits, other.logits)).toBeGreaterThan(1e-3);
  });
});

// --- malformed folders ------------------------------------------------------------------------------

describe('malformed model folders give a ModelFolderError naming the file and the field', () => {
  const fx = fixture('llama-a');

  it('missing config.json', async () => {
    const dir = writeModel(null, fx.tensors);
    await expectLoadError(dir, join(dir, 'config.json'), 'not found');
  });

  it('config.json that is not JSON', async () => {
    const dir = writeModel('{"model_type": "llama",', fx.tensors);
    await expectLoadError(dir, join(dir, 'config.json'), 'not valid JSON');
  });

  it('unknown model_type', async () => {
    const dir = writeModel({ ...fx.config, model_type: 'mamba9' }, fx.tensors);
    await expectLoadError(dir, join(dir, 'config.json'), 'model_type "mamba9"', 'not supported', 'llama', 'gpt2', 'modernbert-decoder');
  });

  it('missing or mistyped config keys', async () => {
    const { hidden_size: _h, ...rest } = fx.config;
    const dir = writeModel(rest, fx.tensors);
    await expectLoadError(dir, join(dir, 'config.json'), '"hidden_size"');
    const typed = writeModel({ ...fx.config, num_attention_heads: '4' }, fx.tensors);
    await expectLoadError(typed, join(typed, 'config.json'), '"num_attention_heads"', 'must be a number');
    const gpt2 = fixture('gpt2-a');
    const { n_embd: _e, ...noEmbd } = gpt2.config;
    const g = writeModel(noEmbd, gpt2.tensors);
    await expectLoadError(g, join(g, 'config.json'), '"n_embd"', 'hidden_size');
  });

  it('missing weights', async () => {
    const dir = writeModel(fx.config, null);
    await expectLoadError(dir, dir, 'model.safetensors');
  });

  it('a tensor with the wrong shape, and a missing tensor', async () => {
    const t = clone(fx.tensors);
    t.set('model.layers.1.mlp.up_proj.weight', { data: new Float32Array(95 * 64), shape: [95, 64] });
    const dir = writeModel(fx.config, t);
    await expectLoadError(dir, dir, '"model.layers.1.mlp.up_proj.weight"', '[95,64]', '[96,64]');
    t.delete('model.layers.1.mlp.up_proj.weight');
    const missing = writeModel(fx.config, t);
    await expectLoadError(missing, missing, '"model.layers.1.mlp.up_proj.weight"');
    // A family's own tensors are checked the same way.
    const mbd = fixture('modernbert-decoder-a');
    const m = clone(mbd.tensors);
    m.set('lm_head.dense.weight', { data: new Float32Array(32 * 31), shape: [32, 31] });
    const mdir = writeModel(mbd.config, m);
    await expectLoadError(mdir, mdir, '"lm_head.dense.weight"', '[32,31]');
  });
});

// Masked (encoder) families against reference outputs of Hugging Face transformers 4.57.5
// (test/data/hf-parity): BERT, RoBERTa and ModernBERT head-transform vectors and logits within
// 5e-5 on every non-padding position, alone and batched with padding. Then config variations
// checked by exact equivalence transformations of the fixtures' weights (the numbers must not move,
// or must move in a way computable from the reference), and malformed folders.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../src/io/safetensors.js';
import { ModelFolderError } from '../src/models/config.js';
import { MaskedLM, type MaskedOutput } from '../src/models/masked-lm.js';

const root = new URL('./data/hf-parity/', import.meta.url).pathname;
const TOL = 5e-5;

interface Inputs {
  cases: Array<{ name: string; input_ids: number[]; attention_mask: number[] }>;
}
interface Expected {
  cases: Array<{ head_transform: { shape: number[]; data: number[] }; logits: { shape: number[]; data: number[] } }>;
}
type Raw = Record<string, unknown>;
type Tensors = Record<string, TensorToWrite>;

const FIXTURES = ['bert-a', 'roberta-a', 'modernbert-a'] as const;
const present = FIXTURES.every((f) => existsSync(join(root, f, 'config.json')));

function fixture(name: string): { dir: string; inputs: Inputs; expected: Expected; config: Raw } {
  const dir = join(root, name);
  return {
    dir,
    inputs: JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8')) as Inputs,
    expected: JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Expected,
    config: JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Raw,
  };
}

function fixtureTensors(name: string): Tensors {
  const f = readSafetensors(join(root, name, 'model.safetensors'));
  const out: Tensors = {};
  for (const n of f.names()) out[n] = { dtype: 'F32', shape: [...f.info(n).shape], data: f.getFloat32(n) };
  return out;
}

const tmpRoot = mkdtempSync(join(tmpdir(), 'maria-parity-masked-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));
let folderCount = 0;

/** A model folder holding a copy of fixture `name` with its config and tensors edited. */
function variant(name: string, edit: { config?: (c: Raw) => void; tensors?: (t: Tensors) => void } = {}): string {
  const config = structuredClone(fixture(name).config);
  const tensors = fixtureTensors(name);
  edit.config?.(config);
  edit.tensors?.(tensors);
  const dir = join(tmpRoot, `${name}-${folderCount++}`);
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  return dir;
}

/** Row `b`'s positions `t` (those with mask 1) of a [B, T, W] output, concatenated. */
function rows(data: Float32Array, out: MaskedOutput, b: number, mask: number[]): Float32Array {
  const W = data.length / (out.B * out.T);
  const parts: number[] = [];
  mask.forEach((m, t) => {
    if (m) for (let i = 0; i < W; i++) parts.push(data[(b * out.T + t) * W + i]);
  });
  return Float32Array.from(parts);
}

/** The reference rows with mask 1 of a [T, W] tensor. */
function refRows(ref: { shape: number[]; data: number[] }, mask: number[]): Float32Array {
  const W = ref.shape[ref.shape.length - 1];
  const parts: number[] = [];
  mask.forEach((m, t) => {
    if (m) for (let i = 0; i < W; i++) parts.push(ref.data[t * W + i]);
  });
  return Float32Array.from(parts);
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Largest differences seen per fixture, reported at the end. */
const observed: Record<string, { hidden: number; logits: number }> = {};
function note(key: string, hidden: number, logits: number): void {
  const o = (observed[key] ??= { hidden: 0, logits: 0 });
  o.hidden = Math.max(o.hidden, hidden);
  o.logits = Math.max(o.logits, logits);
}
afterAll(() => {
  if (Object.keys(observed).length) console.log('max abs diff vs HF (hidden = head transform):', JSON.stringify(observed));
});

interface CaseOut {
  hidden: Float32Array;
  logits: Float32Array;
  mask: number[];
}

/** Runs every fixture case on its own, returning the non-padding rows. */
async function runCases(dir: string, inputs: Inputs, padId: number): Promise<CaseOut[]> {
  const lm = await MaskedLM.load(dir, { threads: 1 });
  try {
    const outs: CaseOut[] = [];
    for (const c of inputs.cases) {
      const out = await lm.forward([c.input_ids], { padId, masks: [c.attention_mask] });
      outs.push({ hidden: rows(out.hidden, out, 0, c.attention_mask), logits: rows(out.logits, out, 0, c.attention_mask), mask: c.attention_mask });
    }
    return outs;
  } finally {
    await lm.release();
  }
}

/** Checks outputs against the fixture's reference, with the logits optionally transformed. */
function expectReference(name: string, outs: CaseOut[], logitsRef: (ref: Float32Array, caseIndex: number) => Float32Array = (r) => r, key?: string): void {
  const { expected } = fixture(name);
  outs.forEach((o, i) => {
    const h = maxDiff(o.hidden, refRows(expected.cases[i].head_transform, o.mask));
    const l = maxDiff(o.logits, logitsRef(refRows(expected.cases[i].logits, o.mask), i));
    if (key) note(key, h, l);
    expect(h).toBeLessThanOrEqual(TOL);
    expect(l).toBeLessThanOrEqual(TOL);
  });
}

function expectSame(a: CaseOut[], b: CaseOut[], tol = TOL): void {
  a.forEach((o, i) => {
    expect(maxDiff(o.hidden, b[i].hidden)).toBeLessThanOrEqual(tol);
    expect(maxDiff(o.logits, b[i].logits)).toBeLessThanOrEqual(tol);
  });
}

const padOf = (name: string): number => fixture(name).config.pad_token_id as number;

/** Logits ref - bias (per vocabulary entry) for all rows. */
function minusBias(ref: Float32Array, bias: Float32Array): Float32Array {
  return ref.map((v, i) => v - bias[i % bias.length]);
}

describe.skipIf(!present)('masked LM parity with HF transformers', () => {
  for (const name of FIXTURES) {
    it(`${name}: each case alone`, async () => {
      const { dir, inputs } = fixture(name);
      expectReference(name, await runCases(dir, inputs, padOf(name)), undefined, name);
    });

    it(`${name}: both cases in one padded batch`, async () => {
      const { dir, inputs, expected } = fixture(name);
      const lm = await MaskedLM.load(dir, { threads: 1 });
      try {
        const out = await lm.forward(
          inputs.cases.map((c) => c.input_ids),
          { padId: padOf(name), masks: inputs.cases.map((c) => c.attention_mask) },
        );
        expect(out.B).toBe(2);
        inputs.cases.forEach((c, b) => {
          const mask = [...c.attention_mask, ...new Array(out.T - c.attention_mask.length).fill(0)];
          const h = maxDiff(rows(out.hidden, out, b, mask), refRows(expected.cases[b].head_transform, c.attention_mask));
          const l = maxDiff(rows(out.logits, out, b, mask), refRows(expected.cases[b].logits, c.attention_mask));
          note(`${name} (batched)`, h, l);
          expect(h).toBeLessThanOrEqual(TOL);
          expect(l).toBeLessThanOrEqual(TOL);
        });
      } finally {
        await lm.release();
      }
    });
  }

  it('roberta-a: position ids count from padding_idx + 1, pad tokens get padding_idx', async () => {
    const lm = await MaskedLM.load(fixture('roberta-a').dir, { threads: 1 });
    try {
      expect(lm.positionIds([0, 50, 1, 60, 2, 1, 1], [1, 1, 1, 1, 1, 0, 0])).toEqual([2, 3, 1, 4, 5, 1, 1]);
    } finally {
      await lm.release();
    }
  });

  it('logitsAt: logits at chosen positions per row (lists of different lengths) equal those rows of the full output', async () => {
    const lm = await MaskedLM.load(fixture('modernbert-a').dir, { threads: 1 });
    try {
      const rows = [
        [1, 40, 41, 42, 43, 2],
        [1, 50, 51, 2],
      ];
      const full = await lm.forward(rows);
      expect(full.logitRows).toBe(full.T);
      const V = lm.config.vocabSize;
      const at = [[4, 1], [2]];
      const some = await lm.forward(rows, { logitsAt: at });
      expect(some.logitRows).toBe(2);
      const row = (o: typeof full, b: number, k: number) => Array.from(o.logits.subarray((b * o.logitRows + k) * V, (b * o.logitRows + k + 1) * V));
      expect(maxDiff(row(some, 0, 0), row(full, 0, 4))).toBeLessThan(1e-5);
      expect(maxDiff(row(some, 0, 1), row(full, 0, 1))).toBeLessThan(1e-5);
      expect(maxDiff(row(some, 1, 0), row(full, 1, 2))).toBeLessThan(1e-5);
      await expect(lm.forward(rows, { logitsAt: [[6], [0]] })).rejects.toThrow(/outside the 6 tokens/);
    } finally {
      await lm.release();
    }
  });
});

describe.skipIf(!present)('BERT / RoBERTa config variations', () => {
  it('bert: TF-era names (LayerNorm.gamma/beta), no "bert." prefix, cls.predictions.decoder.bias, torch_dtype', async () => {
    const dir = variant('bert-a', {
      config: (c) => {
        delete c.dtype;
        c.torch_dtype = 'float32';
        c.transformers_version = '4.6.0';
      },
      tensors: (t) => {
        for (const [k, v] of Object.entries(t)) {
          delete t[k];
          let n = k.replace(/LayerNorm\.weight$/, 'LayerNorm.gamma').replace(/LayerNorm\.bias$/, 'LayerNorm.beta');
          if (n === 'cls.predictions.bias') n = 'cls.predictions.decoder.bias';
          t[n.replace(/^bert\./, '')] = v;
        }
      },
    });
    expectReference('bert-a', await runCases(dir, fixture('bert-a').inputs, 0));
  });

  it('bert: an untied decoder is used (decoder = 2 × word embeddings gives 2·(logits − bias) + bias)', async () => {
    const t0 = fixtureTensors('bert-a');
    const bias = t0['cls.predictions.bias'].data as Float32Array;
    const dir = variant('bert-a', {
      config: (c) => {
        c.tie_word_embeddings = false;
      },
      tensors: (t) => {
        const w = t['bert.embeddings.word_embeddings.weight'];
        t['cls.predictions.decoder.weight'] = { dtype: 'F32', shape: w.shape, data: (w.data as Float32Array).map((v) => 2 * v) };
      },
    });
    const outs = await runCases(dir, fixture('bert-a').inputs, 0);
    expectReference('bert-a', outs, (ref) => ref.map((v, i) => 2 * (v - bias[i % bias.length]) + bias[i % bias.length]));
  });

  it('bert: extra token-type rows do not matter (row 0 is used)', async () => {
    const dir = variant('bert-a', {
      config: (c) => {
        c.type_vocab_size = 4;
      },
      tensors: (t) => {
        const tt = t['bert.embeddings.token_type_embeddings.weight'];
        const D = tt.shape[1];
        const data = new Float32Array(4 * D).map((_, i) => Math.sin(i) * 3);
        data.set((tt.data as Float32Array).subarray(0, D), 0);
        t['bert.embeddings.token_type_embeddings.weight'] = { dtype: 'F32', shape: [4, D], data };
      },
    });
    expectReference('bert-a', await runCases(dir, fixture('bert-a').inputs, 0));
  });

  it('bert: is_decoder masks causally (a prefix is unaffected by what follows it)', async () => {
    const { inputs } = fixture('bert-a');
    const dir = variant('bert-a', {
      config: (c) => {
        c.is_decoder = true;
      },
    });
    const ids = inputs.cases[1].input_ids.slice(0, 19);
    const lm = await MaskedLM.load(dir, { threads: 1 });
    const plain = await MaskedLM.load(fixture('bert-a').dir, { threads: 1 });
    try {
      const full = await lm.forward([ids]);
      const prefix = await lm.forward([ids.slice(0, 8)]);
      const D = full.hidden.length / full.T;
      expect(maxDiff(full.hidden.subarray(0, 8 * D), prefix.hidden)).toBeLessThanOrEqual(TOL);
      const bidir = await plain.forward([ids]);
      expect(maxDiff(full.hidden.subarray(0, 8 * D), bidir.hidden.subarray(0, 8 * D))).toBeGreaterThan(1e-2);
    } finally {
      await lm.release();
      await plain.release();
    }
  });

  it('roberta: model_type xlm-roberta and an explicit untied copy of the decoder give the same numbers', async () => {
    const dir = variant('roberta-a', {
      config: (c) => {
        c.model_type = 'xlm-roberta';
        c.architectures = ['XLMRobertaForMaskedLM'];
        c.tie_word_embeddings = false;
      },
      tensors: (t) => {
        const w = t['roberta.embeddings.word_embeddings.weight'];
        t['lm_head.decoder.weight'] = { dtype: 'F32', shape: w.shape, data: (w.data as Float32Array).slice() };
        t['lm_head.decoder.bias'] = t['lm_head.bias'];
        delete t['lm_head.bias'];
      },
    });
    expectReference('roberta-a', await runCases(dir, fixture('roberta-a').inputs, 1));
  });
});

describe.skipIf(!present)('ModernBERT config variations', () => {
  const mb = 'modernbert-a';
  const inputs = (): Inputs => fixture(mb).inputs;

  it('transformers 5 spelling (layer_types, rope_parameters per layer type) matches the 4.57 reference', async () => {
    const dir = variant(mb, {
      config: (c) => {
        delete c.global_attn_every_n_layers;
        delete c.global_rope_theta;
        delete c.local_rope_theta;
        c.layer_types = ['full_attention', 'sliding_attention', 'sliding_attention'];
        c.rope_parameters = {
          full_attention: { rope_type: 'default', rope_theta: 160000 },
          sliding_attention: { rope_type: 'default', rope_theta: 10000 },
        };
        c.transformers_version = '5.0.0';
      },
    });
    expectReference(mb, await runCases(dir, inputs(), 0));
  });

  it('weights saved from the bare ModernBertModel (no "model." prefix) match the reference', async () => {
    const dir = variant(mb, {
      tensors: (t) => {
        for (const [k, v] of Object.entries(t)) {
          delete t[k];
          t[k.replace(/^model\./, '')] = v;
        }
      },
    });
    expectReference(mb, await runCases(dir, inputs(), 0));
  });

  it('all-global two ways: global_attn_every_n_layers = 1 equals a window wider than the input with equal RoPE bases', async () => {
    const everyLayer = variant(mb, {
      config: (c) => {
        c.global_attn_every_n_layers = 1;
      },
    });
    const wide = variant(mb, {
      config: (c) => {
        c.local_attention = 64; // half-width 32 > 23, the largest distance in a 24-token input
        c.local_rope_theta = c.global_rope_theta;
      },
    });
    const a = await runCases(everyLayer, inputs(), 0);
    const b = await runCases(wide, inputs(), 0);
    expectSame(a, b);
    // ...and it is not what the fixture's alternation computes.
    const ref = await runCases(fixture(mb).dir, inputs(), 0);
    expect(maxDiff(a[1].logits, ref[1].logits)).toBeGreaterThan(1e-2);
  });

  it('local_rope_theta null means the global base on local layers', async () => {
    const nulled = variant(mb, {
      config: (c) => {
        c.local_rope_theta = null;
      },
    });
    const explicit = variant(mb, {
      config: (c) => {
        c.local_rope_theta = c.global_rope_theta;
      },
    });
    const a = await runCases(nulled, inputs(), 0);
    expectSame(a, await runCases(explicit, inputs(), 0));
    const ref = await runCases(fixture(mb).dir, inputs(), 0);
    expect(maxDiff(a[0].logits, ref[0].logits)).toBeGreaterThan(1e-3);
  });

  it('the local window only matters for inputs longer than it (half-width = local_attention // 2)', async () => {
    const w16 = variant(mb, {
      config: (c) => {
        c.local_attention = 16; // half-width 8: covers all of the 7-token case
      },
    });
    const w64 = variant(mb, {
      config: (c) => {
        c.local_attention = 64;
      },
    });
    const w9 = variant(mb, {
      config: (c) => {
        c.local_attention = 9; // 9 // 2 = 4, the same half-width as the fixture's 8
      },
    });
    const a = await runCases(w16, inputs(), 0);
    const b = await runCases(w64, inputs(), 0);
    expect(maxDiff(a[0].logits, b[0].logits)).toBeLessThanOrEqual(TOL);
    expect(maxDiff(a[0].hidden, b[0].hidden)).toBeLessThanOrEqual(TOL);
    expect(maxDiff(a[1].logits, b[1].logits)).toBeGreaterThan(1e-3);
    expectReference(mb, await runCases(w9, inputs(), 0));
  });

  it('optional biases set to zero (norm_bias, attention_bias, mlp_bias, classifier_bias) change nothing', async () => {
    const dir = variant(mb, {
      config: (c) => {
        c.norm_bias = true;
        c.attention_bias = true;
        c.mlp_bias = true;
        c.classifier_bias = true;
      },
      tensors: (t) => {
        for (const [k, v] of Object.entries({ ...t })) {
          if (!k.endsWith('.weight') || k === 'model.embeddings.tok_embeddings.weight') continue;
          const base = k.slice(0, -'.weight'.length);
          if (base === 'decoder') continue;
          t[`${base}.bias`] = { dtype: 'F32', shape: [v.shape[0]], data: new Float32Array(v.shape[0]) };
        }
      },
    });
    expectReference(mb, await runCases(dir, inputs(), 0));
  });

  it('decoder_bias false drops the bias; an untied copy of the decoder changes nothing', async () => {
    const bias = fixtureTensors(mb)['decoder.bias'].data as Float32Array;
    const noBias = variant(mb, {
      config: (c) => {
        c.decoder_bias = false;
      },
      tensors: (t) => {
        delete t['decoder.bias'];
      },
    });
    expectReference(mb, await runCases(noBias, inputs(), 0), (ref) => minusBias(ref, bias));
    const untied = variant(mb, {
      config: (c) => {
        c.tie_word_embeddings = false;
      },
      tensors: (t) => {
        const w = t['model.embeddings.tok_embeddings.weight'];
        t['decoder.weight'] = { dtype: 'F32', shape: w.shape, data: (w.data as Float32Array).slice() };
      },
    });
    expectReference(mb, await runCases(untied, inputs(), 0));
  });
});

describe.skipIf(!present)('malformed masked-LM folders', () => {
  async function loadError(dir: string): Promise<ModelFolderError> {
    const err = await MaskedLM.load(dir, { threads: 1 }).then(
      async (lm) => {
        await lm.release();
        return null;
      },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ModelFolderError);
    return err as ModelFolderError;
  }

  it('a tensor of the wrong shape names the folder and the tensor', async () => {
    const dir = variant('bert-a', {
      tensors: (t) => {
        const w = t['bert.embeddings.word_embeddings.weight'];
        t['bert.embeddings.word_embeddings.weight'] = { dtype: 'F32', shape: [w.shape[0] - 1, w.shape[1]], data: (w.data as Float32Array).slice(w.shape[1]) };
      },
    });
    const err = await loadError(dir);
    expect(err.message).toContain(dir);
    expect(err.message).toContain('bert.embeddings.word_embeddings.weight');
    expect(err.message).toMatch(/shape \[100,32\]/);
  });

  it('a missing tensor is named', async () => {
    const dir = variant('modernbert-a', {
      tensors: (t) => {
        delete t['head.dense.weight'];
      },
    });
    const err = await loadError(dir);
    expect(err.message).toContain(dir);
    expect(err.message).toContain('head.dense.weight');
  });

  const configErrors: Array<[string, string, (c: Raw) => void, RegExp]> = [
    ['bert-a', 'position_embedding_type relative_key', (c) => void (c.position_embedding_type = 'relative_key'), /"position_embedding_type" is "relative_key"/],
    ['roberta-a', 'position_embedding_type relative_key_query', (c) => void (c.position_embedding_type = 'relative_key_query'), /"position_embedding_type"/],
    ['bert-a', 'an unknown hidden_act', (c) => void (c.hidden_act = 'gelu_13'), /"hidden_act" is "gelu_13"/],
    ['modernbert-a', 'layer_types of the wrong length', (c) => void (c.layer_types = ['full_attention', 'sliding_attention']), /"layer_types"/],
    ['modernbert-a', 'an unknown layer type', (c) => void (c.layer_types = ['full_attention', 'chunked_attention', 'full_attention']), /"layer_types\[1\]"/],
    [
      'modernbert-a',
      'scaled RoPE',
      (c) => void (c.rope_parameters = { full_attention: { rope_type: 'linear', factor: 2, rope_theta: 160000 } }),
      /"rope_parameters\.full_attention" uses rope type "linear"/,
    ],
    ['modernbert-a', 'sliding_window disagreeing with local_attention', (c) => void (c.sliding_window = 16), /"sliding_window" \(16\) disagrees with "local_attention" \(8/],
    ['modernbert-a', 'an unknown classifier_activation', (c) => void (c.classifier_activation = 'swiglu'), /"classifier_activation" is "swiglu"/],
  ];
  for (const [name, what, edit, pattern] of configErrors) {
    it(`${name}: ${what} is refused, naming config.json and the field`, async () => {
      const dir = variant(name, { config: edit });
      const err = await loadError(dir);
      expect(err.message).toContain(join(dir, 'config.json'));
      expect(err.message).toMatch(pattern);
    });
  }
});

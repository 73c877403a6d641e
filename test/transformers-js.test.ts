// The transformers.js export (src/export/transformers-js.ts): transformers.js loads the folders fully
// offline and, on a padded batch, computes the logits of maria's MaskedLM and of HF's reference
// fixtures (test/data/hf-parity, transformers 4.57.5) for ModernBERT, BERT and RoBERTa.
import { AutoModelForMaskedLM, AutoTokenizer, Tensor, env } from '@huggingface/transformers';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportTransformersJs } from '../src/export/transformers-js.js';
import { ModelFolderError } from '../src/models/config.js';
import { MaskedLM } from '../src/models/masked-lm.js';

const repo = new URL('../', import.meta.url).pathname;
const defaultMlm = join(repo, 'models/default/mlm');
const parity = join(repo, 'test/data/hf-parity');
// Bitwise equality is not expected (ORT may fuse the two graphs differently); 1e-4 still catches
// a wrong norm epsilon (~1.6e-4, see test/data/hf-parity/README.md).
const TOL = 1e-4;

interface Case {
  input_ids: number[];
  attention_mask: number[];
}
interface Reference {
  logits: { shape: number[]; data: number[] };
}

/** What the test needs of a transformers.js masked LM (its typings describe a generic callable). */
interface TjsModel {
  (inputs: { input_ids: Tensor; attention_mask: Tensor }): Promise<{ logits: { dims: number[]; data: Float32Array } }>;
  sessions: Record<string, { inputNames: string[]; outputNames: string[] }>;
  dispose(): Promise<unknown>;
}

const tmp = mkdtempSync(join(tmpdir(), 'maria-tjs-'));
const observed: Record<string, { maria: number; hf?: number }> = {};

beforeAll(() => {
  // Nothing may come from the network or land in transformers.js's own cache folder.
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.useFSCache = false;
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
  console.log('max abs logits diff (transformers.js vs maria / vs HF):', JSON.stringify(observed));
});

async function loadTjs(dir: string): Promise<TjsModel> {
  const model = await AutoModelForMaskedLM.from_pretrained(dir, {
    local_files_only: true,
    dtype: 'fp32',
    device: 'cpu',
    session_options: { intraOpNumThreads: 1 },
  });
  return model as unknown as TjsModel;
}

/** Rows right-padded with `padId` into [B, T] int64 tensors. */
function batch(rows: Case[], padId: number): { ids: Tensor; mask: Tensor; B: number; T: number } {
  const B = rows.length;
  const T = Math.max(...rows.map((r) => r.input_ids.length));
  const ids = new BigInt64Array(B * T).fill(BigInt(padId));
  const mask = new BigInt64Array(B * T);
  rows.forEach((r, b) =>
    r.input_ids.forEach((id, t) => {
      ids[b * T + t] = BigInt(id);
      mask[b * T + t] = BigInt(r.attention_mask[t]);
    }),
  );
  return { ids: new Tensor('int64', ids, [B, T]), mask: new Tensor('int64', mask, [B, T]), B, T };
}

/** Max |a - b| over the positions of row `b` with mask 1; `ref` rows are [T_ref, V] from position 0. */
function rowDiff(a: Float32Array, T: number, b: number, V: number, mask: number[], ref: ArrayLike<number>, refOffset = 0): number {
  let m = 0;
  mask.forEach((keep, t) => {
    if (!keep) return;
    for (let v = 0; v < V; v++) m = Math.max(m, Math.abs(a[(b * T + t) * V + v] - ref[refOffset + t * V + v]));
  });
  return m;
}

/**
 * Exports `modelDir`, runs the padded batch `rows` through transformers.js and maria, and returns
 * the largest differences (maria over every row; HF per case where `refs` are given).
 */
async function compare(name: string, modelDir: string, rows: Case[], padId: number, refs?: Reference[]): Promise<{ maria: number; hf?: number }> {
  const out = join(tmp, name);
  const info = exportTransformersJs(modelDir, out);
  expect(info.inputNames).toEqual(['input_ids', 'attention_mask']);
  expect(info.outputNames).toEqual(['logits']);

  const tjs = await loadTjs(out);
  const lm = await MaskedLM.load(modelDir, { threads: 1 });
  try {
    expect(tjs.sessions.model.inputNames).toEqual(['input_ids', 'attention_mask']);
    const { ids, mask, B, T } = batch(rows, padId);
    const { logits } = await tjs({ input_ids: ids, attention_mask: mask });
    const V = lm.config.vocabSize;
    expect(logits.dims).toEqual([B, T, V]);
    const ours = await lm.forward(
      rows.map((r) => r.input_ids),
      { padId, masks: rows.map((r) => r.attention_mask) },
    );
    const result: { maria: number; hf?: number } = { maria: 0 };
    rows.forEach((r, b) => {
      result.maria = Math.max(result.maria, rowDiff(logits.data, T, b, V, r.attention_mask, ours.logits, b * T * V));
      if (refs) result.hf = Math.max(result.hf ?? 0, rowDiff(logits.data, T, b, V, r.attention_mask, refs[b].logits.data));
    });
    observed[name] = result;
    return result;
  } finally {
    await tjs.dispose();
    await lm.release();
  }
}

function fixture(name: string): { dir: string; cases: Case[]; refs: Reference[]; padId: number } {
  const dir = join(parity, name);
  const read = <X>(file: string): X => JSON.parse(readFileSync(join(dir, file), 'utf8')) as X;
  const padId = read<{ pad_token_id?: number }>('config.json').pad_token_id ?? 0;
  return { dir, cases: read<{ cases: Case[] }>('inputs.json').cases, refs: read<{ cases: Reference[] }>('expected.json').cases, padId };
}

describe('transformers.js export', () => {
  it.skipIf(!existsSync(join(defaultMlm, 'model.safetensors')))('the default MLM: a padded batch matches maria', async () => {
    // Deterministic ids past the special tokens, a [MASK] (3) in each row, one row padded by 7.
    const row = (n: number, seed: number): number[] => [1, ...Array.from({ length: n - 2 }, (_, i) => (i === 2 ? 3 : 5 + ((seed * 7919 + i * 104729) % 8000))), 2];
    const rows = [row(40, 1), row(33, 2), row(40, 3)].map((ids) => ({ input_ids: ids, attention_mask: ids.map(() => 1) }));
    const { maria } = await compare('default-mlm', defaultMlm, rows, 0);
    expect(maria).toBeLessThan(TOL);

    const config = JSON.parse(readFileSync(join(tmp, 'default-mlm', 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(config.model_type).toBe('modernbert');
    expect(config['transformers.js_config']).toEqual({ dtype: 'fp32' });
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
      expect(readFileSync(join(tmp, 'default-mlm', f))).toEqual(readFileSync(join(defaultMlm, f)));
    }
    const tokenizer = await AutoTokenizer.from_pretrained(join(tmp, 'default-mlm'), { local_files_only: true });
    expect(tokenizer.encode('Call me [MASK].')).toContain(3);
  });

  for (const name of ['modernbert-a', 'bert-a', 'roberta-a']) {
    it.skipIf(!existsSync(join(parity, name, 'config.json')))(`${name}: both cases in one padded batch match HF and maria`, async () => {
      const f = fixture(name);
      const { maria, hf } = await compare(name, f.dir, f.cases, f.padId, f.refs);
      expect(maria).toBeLessThan(TOL);
      expect(hf).toBeLessThan(TOL);
    });
  }

  it('refuses a non-empty target unless told to overwrite, and causal models', () => {
    const src = join(parity, 'modernbert-a');
    const out = join(tmp, 'occupied');
    mkdirSync(out);
    writeFileSync(join(out, 'keep.txt'), 'x');
    expect(() => exportTransformersJs(src, out)).toThrow(/not empty/);
    expect(existsSync(join(out, 'keep.txt'))).toBe(true);
    exportTransformersJs(src, out, { overwrite: true });
    expect(existsSync(join(out, 'keep.txt'))).toBe(false);
    expect(existsSync(join(out, 'onnx/model.onnx'))).toBe(true);
    expect(() => exportTransformersJs(join(parity, 'gpt2-a'), join(tmp, 'gpt2'))).toThrow(ModelFolderError);
    expect(existsSync(join(tmp, 'gpt2'))).toBe(false);
  });
});

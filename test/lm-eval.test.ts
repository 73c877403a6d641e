// The Brown evaluation of the default models (src/eval/lm-eval.ts) and the model cards of
// `maria evaluate-models`: the bigram baseline's distributions, deterministic passages and masks,
// perplexity plumbing, and a smoke run on tiny random models with the default tokenizer.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pairStages, renderCard, readRun, writeCard, type RunRecord } from '../src/cli/evaluate-models.js';
import { loadBrown, type BrownDoc } from '../src/data/corpus.js';
import { saveCheckpoint } from '../src/engine/checkpoint.js';
import { mulberry32 } from '../src/engine/random.js';
import {
  arPerplexity,
  bigramArPerplexity,
  bigramMaskedPerplexity,
  BigramModel,
  brownPassages,
  evaluate,
  maskPassages,
  mlmPerplexity,
  type EvaluationReport,
  type Passage,
} from '../src/eval/lm-eval.js';
import { logSoftmaxRow } from '../src/maria/sampling.js';
import { CausalLM } from '../src/models/causal-lm.js';
import { readModelInfo } from '../src/models/load.js';
import { MaskedLM } from '../src/models/masked-lm.js';
import { TextTokenizer } from '../src/tokenizer/tokenizer.js';
import { DEFAULT_SPECIALS } from '../src/train/presets.js';
import { DEFAULT_TOKENIZER_DIR, mobyDickText, tinyArConfig, tinyMlmConfig, writeRandomModel } from './helpers/tiny-pair.js';

const sum = (a: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
};

describe('BigramModel (interpolated Kneser–Ney)', () => {
  // A random stream over a small vocabulary with some structure, ids 0 and 9 never seen.
  const V = 10;
  const rand = mulberry32(3);
  const stream: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const prev = stream.at(-1) ?? 1;
    stream.push(rand() < 0.5 ? 1 + ((prev * 3) % 7) : 1 + Math.floor(rand() * 8));
  }
  const model = BigramModel.train(stream, V);

  it('p(· | v) sums to 1 over the vocabulary, for seen and unseen contexts, and matches prob()', () => {
    expect(model.discount).toBeGreaterThan(0);
    expect(model.discount).toBeLessThan(1);
    for (const v of [0, 1, 4, 8, 9]) {
      const d = model.nextDistribution(v);
      expect(sum(d)).toBeCloseTo(1, 12);
      for (let w = 0; w < V; w++) {
        expect(d[w]).toBeGreaterThan(0);
        expect(model.prob(w, v)).toBeCloseTo(d[w], 14);
      }
    }
  });

  it('counts and the add-one unigram', () => {
    let c = 0;
    for (let i = 0; i + 1 < stream.length; i++) if (stream[i] === 2 && stream[i + 1] === 7) c++;
    expect(model.count(2, 7)).toBe(c);
    let u = 0;
    for (let w = 0; w < V; w++) u += model.unigram(w);
    expect(u).toBeCloseTo(1, 12);
    expect(model.trainingTokens).toBe(stream.length);
  });

  it('the two-sided predictor is normalised and equals p(x|prev)·p(next|x) renormalised', () => {
    for (const [prev, next] of [
      [3, 5],
      [null, 5],
      [3, null],
      [null, null],
      [0, 9],
    ] as Array<[number | null, number | null]>) {
      const d = model.twoSided(prev, next);
      expect(sum(d)).toBeCloseTo(1, 12);
      const brute = Array.from({ length: V }, (_, x) => (prev === null ? model.unigram(x) : model.prob(x, prev)) * (next === null ? 1 : model.prob(next, x)));
      const z = sum(brute);
      for (let x = 0; x < V; x++) expect(d[x]).toBeCloseTo(brute[x] / z, 12);
    }
  });

  it('a trivially predictable stream has perplexity near 1, as an AR and two-sided', () => {
    const cyc = Array.from({ length: 30_000 }, (_, i) => 5 + (i % 3));
    const m = BigramModel.train(cyc, 16);
    const passages: Passage[] = [{ docId: 'x', genre: 'g', start: 0, ids: [5, 6, 7, 5, 6, 7, 5, 6] }];
    const ar = bigramArPerplexity(m, passages, 7);
    expect(ar.tokens).toBe(8);
    expect(ar.ppl).toBeGreaterThan(1);
    expect(ar.ppl).toBeLessThan(1.001);
    // Each masked token has a known neighbour on one side at least (left, right, left, left).
    const masks = [[true, false, true, true, false, false, true, false]];
    const two = bigramMaskedPerplexity(m, passages, masks, 7);
    expect(two.tokens).toBe(4);
    expect(two.ppl).toBeLessThan(1.001);
    // With both neighbours unknown only the unigram is left: 1/3 for each of the three tokens.
    const alone = bigramMaskedPerplexity(m, passages, [[false, false, false, false, false, false, true, true]], 7);
    expect(alone.tokens).toBe(2);
    expect(alone.ppl).toBeGreaterThan(1.5);
    // The left bigram ignores the right neighbour: the third masked token (after a masked one) is
    // then a unigram guess, 1 of 3; the others have their left neighbour.
    const left = bigramMaskedPerplexity(m, passages, masks, 7, 'left');
    expect(left.tokens).toBe(4);
    expect(left.nll).toBeCloseTo(Math.log(3) / 4, 2);
    // An unpredictable stream is not: uniform i.i.d. tokens give about V.
    const r = mulberry32(1);
    const noise = Array.from({ length: 50_000 }, () => Math.floor(r() * 16));
    const n = BigramModel.train(noise, 16);
    const p2: Passage[] = [{ docId: 'y', genre: 'g', start: 0, ids: noise.slice(0, 2000) }];
    expect(bigramArPerplexity(n, p2, 0).ppl).toBeGreaterThan(15);
  });

  it('rejects ids outside the vocabulary', () => {
    expect(() => BigramModel.train([1, 2, 20], 10)).toThrow(/outside the vocabulary/);
  });
});

describe('Brown passages and masks', () => {
  const tokenizer = TextTokenizer.load(DEFAULT_TOKENIZER_DIR);
  const special = new Set(Object.values(tokenizer.specialTokens).flatMap((s) => (s ? [s.id] : [])));
  let brown: BrownDoc[];
  beforeAll(() => {
    brown = loadBrown();
  });

  it('are deterministic, special-free, non-overlapping, from distinct documents, and prefix-stable in n', () => {
    const a = brownPassages(tokenizer, { length: 32, n: 12, seed: 0, docs: brown });
    const b = brownPassages(tokenizer, { length: 32, n: 12, seed: 0, docs: brown });
    expect(b).toEqual(a);
    expect(a).toHaveLength(12);
    expect(new Set(a.map((p) => p.docId)).size).toBe(12);
    for (const p of a) {
      expect(p.ids).toHaveLength(32);
      expect(p.start % 32).toBe(0);
      expect(p.ids.some((id) => special.has(id))).toBe(false);
      // The window is the document's own tokenization at that offset.
      const doc = brown.find((d) => d.id === p.docId)!;
      expect(tokenizer.encode(doc.text).ids.slice(p.start, p.start + 32)).toEqual(p.ids);
      expect(p.genre).toBe(doc.genre);
    }
    expect(brownPassages(tokenizer, { length: 32, n: 5, seed: 0, docs: brown })).toEqual(a.slice(0, 5));
    const other = brownPassages(tokenizer, { length: 32, n: 12, seed: 1, docs: brown });
    expect(other.map((p) => p.docId)).not.toEqual(a.map((p) => p.docId));
  });

  it('take further windows round-robin, never overlapping, and skip windows holding special tokens', () => {
    const docs: BrownDoc[] = [
      { id: 'x1', genre: 'g', text: mobyDickText(600, 1000), paragraphs: [], sentences: [] },
      { id: 'x2', genre: 'h', text: `${mobyDickText(300, 5000)} [MASK] ${mobyDickText(300, 9000)}`, paragraphs: [], sentences: [] },
    ];
    const ps = brownPassages(tokenizer, { length: 16, n: 12, seed: 0, docs });
    expect(ps).toHaveLength(12);
    expect(ps.slice(0, 2).map((p) => p.docId).sort()).toEqual(['x1', 'x2']);
    const seen = new Set(ps.map((p) => `${p.docId}@${p.start}`));
    expect(seen.size).toBe(12);
    for (const p of ps) expect(p.ids.some((id) => special.has(id))).toBe(false);
    expect(() => brownPassages(tokenizer, { length: 16, n: 1000, docs })).toThrow(/windows/);
  });

  it('masks are seeded per passage and rate, independent of the other passages', () => {
    const ps = brownPassages(tokenizer, { length: 64, n: 10, docs: brown });
    const m1 = maskPassages(ps, 0.5, 0);
    expect(maskPassages(ps, 0.5, 0)).toEqual(m1);
    expect(maskPassages(ps.slice(3), 0.5, 0)).not.toEqual(m1.slice(3)); // keyed by index in the list
    expect(maskPassages(ps.slice(0, 4), 0.5, 0)).toEqual(m1.slice(0, 4));
    const frac = m1.flat().filter(Boolean).length / (10 * 64);
    expect(frac).toBeGreaterThan(0.4);
    expect(frac).toBeLessThan(0.6);
    for (const m of maskPassages(ps, 0.01, 0)) expect(m.some(Boolean)).toBe(true); // at least one
    expect(maskPassages(ps, 0.15, 0)).not.toEqual(maskPassages(ps, 0.15, 1));
  });
});

describe('evaluation on tiny random models', () => {
  const root = mkdtempSync(join(tmpdir(), 'maria-lm-eval-'));
  const arDir = join(root, 'ar');
  const mlmDir = join(root, 'mlm');
  let ar: CausalLM;
  let mlm: MaskedLM;
  let tokenizer: TextTokenizer;
  let passages: Passage[];
  let bigram: BigramModel;
  let report: EvaluationReport;
  const sp = DEFAULT_SPECIALS;

  beforeAll(async () => {
    writeRandomModel(arDir, { ...tinyArConfig(), initializer_range: 0.02 }, 5);
    writeRandomModel(mlmDir, { ...tinyMlmConfig(), initializer_range: 0.02 }, 6);
    ar = await CausalLM.load(arDir, { threads: 1 });
    mlm = await MaskedLM.load(mlmDir, { threads: 1 });
    tokenizer = TextTokenizer.load(arDir);
    passages = brownPassages(tokenizer, { length: 24, n: 7 });
    const text = mobyDickText(20_000, 30_000);
    bigram = BigramModel.train([sp.bos, ...tokenizer.encode(text).ids, sp.eos], tokenizer.vocabSize);
    report = await evaluate({ passages, bigram, tokenizer, ar, mlm, seed: 0, batch: 3 });
  });
  afterAll(async () => {
    await ar?.release();
    await mlm?.release();
    rmSync(root, { recursive: true, force: true });
  });

  it('AR perplexity: batched equals one row at a time, and matches a direct computation', async () => {
    const one = await arPerplexity(ar, passages, sp.bos, { batch: 1 });
    expect(report.ar!.model.tokens).toBe(7 * 24);
    expect(report.ar!.model.nll).toBeCloseTo(one.nll, 4);
    // Direct: the first passage alone through forward().
    const row = [sp.bos, ...passages[0].ids];
    const out = await ar.forward(row);
    const V = ar.config.vocabSize;
    let s = 0;
    for (let t = 0; t + 1 < row.length; t++) s -= logSoftmaxRow(out.logits.subarray(t * V, (t + 1) * V))[row[t + 1]];
    const first = await arPerplexity(ar, passages.slice(0, 1), sp.bos);
    expect(first.nll).toBeCloseTo(s / 24, 4);
    // A near-uniform random model: perplexity near the vocabulary size.
    expect(report.ar!.model.ppl).toBeGreaterThan(V / 3);
    expect(report.ar!.model.ppl).toBeLessThan(V * 3);
  });

  it('MLM perplexity: masked tokens only, independent of the batch size', async () => {
    const masks = maskPassages(passages, 0.5, 0);
    const nMasked = masks.flat().filter(Boolean).length;
    const one = await mlmPerplexity(mlm, passages, masks, sp, { batch: 1 });
    const m = report.mlm!.find((x) => x.rate === 0.5)!;
    expect(m.model.tokens).toBe(nMasked);
    expect(m.bigram.tokens).toBe(nMasked);
    expect(m.model.nll).toBeCloseTo(one.nll, 4);
    expect(report.mlm!.map((x) => x.rate)).toEqual([0.15, 0.5]);
    for (const x of report.mlm!) {
      expect(Number.isFinite(x.bigram.ppl)).toBe(true);
      expect(x.ratio).toBeCloseTo(x.bigram.ppl / x.model.ppl, 10);
      expect(x.leftBigram.tokens).toBe(x.model.tokens);
      expect(x.leftRatio).toBeCloseTo(x.leftBigram.ppl / x.model.ppl, 10);
    }
  });

  it('samples: five AR continuations (seeded) and five single-token fills with the top 5', async () => {
    expect(report.samples.ar).toHaveLength(5);
    for (const s of report.samples.ar!) {
      expect(s.ids.length).toBeGreaterThan(0);
      expect(s.ids.length).toBeLessThanOrEqual(40);
    }
    const again = await evaluate({ passages, bigram, tokenizer, ar, seed: 0 });
    expect(again.samples.ar).toEqual(report.samples.ar);
    expect(again.mlm).toBeUndefined();
    const fills = report.samples.mlm!;
    expect(fills).toHaveLength(5);
    for (const [i, f] of fills.entries()) {
      expect(f.position).toBe(12);
      expect(f.truth.id).toBe(passages[i].ids[12]);
      expect(f.top).toHaveLength(5);
      for (let k = 1; k < 5; k++) expect(f.top[k].prob).toBeLessThanOrEqual(f.top[k - 1].prob);
      expect(f.context).toContain('[MASK]');
      expect(f.truth.rank).toBeGreaterThanOrEqual(1);
    }
  });

  /** A run's record, its losses written as [step, loss] pairs. */
  interface RunSpec extends Omit<RunRecord, 'path' | 'validation' | 'trainLoss'> {
    validation: Array<[number, number]>;
    trainLoss: Array<[number, number]>;
  }

  /** A tiny `maria pretrain --out` folder: a train state whose metadata records these steps and history. */
  function writeRun(name: string, spec: RunSpec): string {
    const points = (pairs: Array<[number, number]>): RunRecord['validation'] => pairs.map(([step, loss]) => ({ step, loss }));
    const r = { ...spec, validation: points(spec.validation), trainLoss: points(spec.trainLoss) };
    const runDir = join(root, name);
    mkdirSync(runDir);
    saveCheckpoint(join(runDir, 'train-state.safetensors'), {
      params: new Map([['w', new Float32Array([1, 2])]]),
      shapes: new Map([['w', [2]]]),
      optimizer: { step: r.steps, m: new Map([['w', new Float32Array(2)]]), v: new Map([['w', new Float32Array(2)]]) },
      progress: { seed: r.seed, config: {}, history: { validation: r.validation, trainLoss: r.trainLoss, wallSeconds: r.wallSeconds } },
    });
    return runDir;
  }

  /** The first (or only) stage's run: 30 steps, validated at 20 and 30. */
  const STAGE_1: RunSpec = { steps: 30, seed: 3, wallSeconds: 125, validation: [[20, 6.5], [30, 6.25]], trainLoss: [[10, 7], [20, 6.6], [30, 6.2]] };

  it('model cards: rendered from the config, the run record and the report; the block is replaced in place', () => {
    const runDir = writeRun('run', STAGE_1);
    const run = readRun(runDir);
    expect(run).toMatchObject({ steps: 30, seed: 3, wallSeconds: 125 });
    const info = readModelInfo(arDir);
    const card = renderCard(
      {
        kind: 'ar',
        dir: arDir,
        info,
        parameters: 1234567,
        tokenizerSha256: 'ab'.repeat(32),
        stages: [{ run, command: 'node dist/cli/main.js pretrain --preset default-ar --out runs/default-ar --steps 30 --batch 4 --seq-len 64' }],
        data: { trainTokens: 1000, validationTokens: 100 },
        evalCommand: 'maria evaluate-models --ar a --mlm b',
      },
      report,
    );
    expect(card).toContain('1 234 567');
    expect(card).toContain('--preset default-ar');
    expect(card).toContain('30 optimiser steps (AdamW, batch 4 × 64 tokens');
    expect(card).toContain('2 min 05 s');
    expect(card).toContain(`the bigram's ${report.ar!.bigram.ppl.toFixed(2)}`);
    expect(card).toContain('6.250');
    // One stage: the Training section keeps its single-run shape.
    expect(card).toContain('- **Command** (this folder is a copy of its `--out` folder `runs/default-ar`):');
    expect(card).toContain('- **Final validation loss** (step 30, next-token');
    expect(card).toContain('  | step | 20 | 30 |');
    expect(card).not.toContain('Stage 1');
    expect(card).not.toContain('**Total**');
    const mlmCard = renderCard({ kind: 'mlm', dir: mlmDir, info: readModelInfo(mlmDir), parameters: 10, tokenizerSha256: 'cd'.repeat(32), stages: [{ run: null, command: null }], data: { trainTokens: 1000, validationTokens: 100 }, evalCommand: 'x' }, report);
    expect(mlmCard).toContain('| 0.15 |');
    expect(mlmCard).toContain('rank');
    expect(mlmCard).not.toContain('in-domain');
    // With an in-domain report (here the same numbers), each card adds its own table of it.
    const withInDomain = (kind: 'ar' | 'mlm'): string =>
      renderCard({ kind, dir: mlmDir, info: readModelInfo(kind === 'ar' ? arDir : mlmDir), parameters: 10, tokenizerSha256: 'cd'.repeat(32), stages: [{ run: null, command: null }], data: { trainTokens: 1000, validationTokens: 100 }, evalCommand: 'x' }, report, report);
    expect(withInDomain('ar')).toContain(`### The same check in-domain`);
    expect(withInDomain('ar')).toContain(`| validation split | **${report.ar!.model.ppl.toFixed(2)}** | ${report.ar!.bigram.ppl.toFixed(2)} |`);
    const m0 = report.mlm![0];
    expect(withInDomain('mlm')).toContain(`| ${m0.rate} | **${m0.model.ppl.toFixed(2)}** | ${m0.bigram.ppl.toFixed(2)} | ${m0.ratio.toFixed(2)}× | ${m0.leftBigram.ppl.toFixed(2)} | ${m0.leftRatio.toFixed(2)}× |`);

    const dir = join(root, 'card');
    mkdirSync(dir);
    const file = join(dir, 'README.md');
    writeCard(dir, 'first');
    writeFileSync(file, `notes above\n\n${readFileSync(file, 'utf8')}\nnotes below\n`);
    writeCard(dir, 'second');
    const text = readFileSync(file, 'utf8');
    expect(text).toContain('notes above');
    expect(text).toContain('notes below');
    expect(text).toContain('second');
    expect(text).not.toContain('first');
  });

  it('model cards of a model trained in two stages: both commands and runs, summed totals, the last stage as final', () => {
    const stage1 = readRun(writeRun('stage1', STAGE_1));
    const stage2 = readRun(writeRun('stage2', { steps: 40, seed: 10, wallSeconds: 3665, validation: [[20, 5.9], [40, 5.75]], trainLoss: [[10, 6.0], [20, 5.8], [40, 5.7]] }));
    const command1 = 'maria pretrain --preset default-ar --out runs/s1 --steps 30 --batch 4 --seq-len 64 --seed 3';
    const command2 = 'maria pretrain --config m/config.json --init-from m --out runs/s2 --steps 40 --batch 2 --seq-len 32 --seed 10';
    const input = {
      dir: arDir,
      parameters: 1234567,
      tokenizerSha256: 'ab'.repeat(32),
      stages: [
        { run: stage1, command: command1 },
        { run: stage2, command: command2 },
      ],
      data: { trainTokens: 1000, validationTokens: 100 },
      evalCommand: 'x',
    };
    const card = renderCard({ kind: 'ar', info: readModelInfo(arDir), ...input }, report);
    const training = card.slice(card.indexOf('## Training'), card.indexOf('## Evaluation'));
    const at = (s: string): number => {
      const i = training.indexOf(s);
      expect(i, s).toBeGreaterThanOrEqual(0);
      return i;
    };
    // Stage by stage, in order: each command in its sh block, each run line from its own file.
    const order = [
      '- **Stage 1**: from scratch.',
      '  - **Command**:',
      `    ${command1}`,
      '  - **Run**: 30 optimiser steps (AdamW, batch 4 × 64 tokens: 7 680 text tokens seen, 7.7 passes over the training split), seed 3, 2 min 05 s of wall time',
      `(from \`${stage1.path}\`)`,
      "- **Stage 2**: continued from the previous stage's weights with a fresh AdamW state and learning-rate schedule (`--init-from`).",
      // Only the last stage wrote the folder this card describes.
      '  - **Command** (this folder is a copy of its `--out` folder `runs/s2`):',
      `    ${command2}`,
      '  - **Run**: 40 optimiser steps (AdamW, batch 2 × 32 tokens: 2 560 text tokens seen, 2.6 passes over the training split), seed 10, 1 h 01 min of wall time',
      `(from \`${stage2.path}\`)`,
      // 30 + 40 steps, 7 680 + 2 560 tokens, 125 + 3665 s.
      '- **Total**: 70 optimiser steps in 2 stages, 10 240 text tokens seen (10.2 passes over the training split), 1 h 03 min of wall time',
      // The final losses are stage 2's: mean(6.0, 5.8, 5.7) and its last validation.
      '- **Final training loss** (next-token cross-entropy, nats per token): 5.833, the mean of the last 3 logged steps of stage 2 (10–40;',
      '- **Final validation loss** (stage 2, step 40, next-token cross-entropy, nats per token): 5.750, perplexity 314.19',
      '  | stage 1 step | 20 | 30 |',
      '  | validation loss | 6.500 | 6.250 |',
      '  | stage 2 step | 20 | 40 |',
      '  | validation loss | 5.900 | 5.750 |',
    ];
    const positions = order.map(at);
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
    expect(training.match(/```sh/g)).toHaveLength(2);
    expect(training).not.toContain('`runs/s1`)');
    // The context and window remarks follow the last stage's --seq-len; the time is the total.
    expect(card).toContain('trained on windows of 32 tokens)');
    expect(card).toContain('beyond the training window (32 tokens)');
    expect(card).toContain('trained for 1 h 03 min on');

    // The MLM's windows spend two positions on [BOS] and [EOS]: (64 − 2)·4·30 + (32 − 2)·2·40 = 9 840.
    const mlmCard = renderCard({ ...input, kind: 'mlm', dir: mlmDir, info: readModelInfo(mlmDir) }, report);
    expect(mlmCard).toContain('- **Total**: 70 optimiser steps in 2 stages, 9 840 text tokens seen (9.8 passes');
    expect(mlmCard).toContain('- **Final validation loss** (stage 2, step 40, masked-token cross-entropy');
  });

  it('stages pair the i-th --ar-command with the i-th --ar-run; other counts are usage errors', () => {
    expect(pairStages('ar', ['a', 'b'], ['x', 'y'])).toEqual([
      { run: 'a', command: 'x' },
      { run: 'b', command: 'y' },
    ]);
    // As before stages: one run with or without its command, or the model folder's own record.
    expect(pairStages('ar', ['a'], [])).toEqual([{ run: 'a', command: null }]);
    expect(pairStages('ar', undefined, ['x'])).toEqual([{ run: undefined, command: 'x' }]);
    expect(pairStages('mlm')).toEqual([{ run: undefined, command: null }]);
    expect(() => pairStages('ar', ['a', 'b'], ['x'])).toThrow('1 --ar-command for 2 --ar-run');
    expect(() => pairStages('ar', ['a', 'b'])).toThrow('0 --ar-command for 2 --ar-run');
    expect(() => pairStages('mlm', ['a'], ['x', 'y'])).toThrow('2 --mlm-command for 1 --mlm-run');
    expect(() => pairStages('mlm', [], ['x', 'y'])).toThrow('2 --mlm-command for 0 --mlm-run');
  });

  it('maria evaluate-models: a run/command count mismatch exits 2 with one line, before evaluating', () => {
    const repo = new URL('..', import.meta.url).pathname;
    const cli = join(repo, 'dist/cli/main.js');
    if (!existsSync(cli) || !existsSync(join(repo, 'dist/cli/evaluate-models.js'))) {
      throw new Error('dist/cli/main.js or dist/cli/evaluate-models.js is missing: run `npx tsc -p tsconfig.json` (or npm run build) first');
    }
    const args = ['evaluate-models', '--ar', arDir, '--mlm', mlmDir, '--cards', '--ar-run', 'r1', '--ar-command', 'c1', '--ar-run', 'r2'];
    const r = spawnSync(process.execPath, [cli, ...args], { cwd: repo, encoding: 'utf8', env: { ...process.env, MARIA_THREADS: '1', MARIA_DEBUG: '' }, timeout: 60_000 });
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('error: 1 --ar-command for 2 --ar-run: pass one --ar-command per --ar-run, in stage order\n');
  });
});

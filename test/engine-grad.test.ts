// Every differentiable op's gradient against central finite differences, computed by running the
// compiled forward graph through ONNX Runtime.
import { describe, expect, it } from 'vitest';
import { Graph, type Tensor } from '../src/engine/graph.js';
import * as F from '../src/engine/ops.js';
import * as nn from '../src/engine/nn.js';
import { grad } from '../src/engine/autodiff.js';
import { compile } from '../src/engine/onnx.js';
import { Session, floatTensor, int64Tensor } from '../src/engine/runtime.js';
import { mulberry32 } from '../src/engine/random.js';

interface Case {
  name: string;
  shapes: number[][];
  build: (g: Graph, xs: Tensor[]) => Tensor;
  /** Keep inputs away from kinks (relu at 0, clip bounds). */
  avoid?: (v: number) => boolean;
  positive?: boolean;
}

async function checkGradient(c: Case): Promise<void> {
  const rand = mulberry32(1234);
  const g = new Graph();
  const xs = c.shapes.map((s, i) => g.input(`x${i}`, s));
  const y = c.build(g, xs);
  // A random projection makes the scalar loss sensitive to every output element differently.
  const yShape = y.shape as number[];
  const wData = Float32Array.from({ length: yShape.reduce((a, b) => a * b, 1) }, () => rand() * 2 - 1);
  const loss = F.sum(F.mul(y, g.constant(wData, yShape)), yShape.map((_, i) => i));
  const grads = grad(loss, xs);
  const outputs: Record<string, Tensor> = { loss };
  grads.forEach((gr, i) => (outputs[`g${i}`] = gr));
  const session = await Session.create(compile(g, { outputs }), { threads: 1 });

  const values = c.shapes.map((s) =>
    Float32Array.from({ length: s.reduce((a, b) => a * b, 1) }, () => {
      let v = 0;
      do v = c.positive ? 0.5 + rand() * 1.5 : rand() * 2 - 1;
      while (c.avoid?.(v));
      return v;
    }),
  );
  const run = async (vals: Float32Array[]) => {
    const feeds = Object.fromEntries(vals.map((v, i) => [`x${i}`, floatTensor(v, c.shapes[i])]));
    return session.run(feeds);
  };
  const base = await run(values);
  const eps = 1e-2;
  for (let i = 0; i < values.length; i++) {
    const analytic = base[`g${i}`].data as Float32Array;
    expect(Array.from(base[`g${i}`].dims)).toEqual(c.shapes[i]);
    for (let j = 0; j < values[i].length; j++) {
      const plus = values.map((v) => Float32Array.from(v));
      const minus = values.map((v) => Float32Array.from(v));
      plus[i][j] += eps;
      minus[i][j] -= eps;
      const lp = (await run(plus)).loss.data as Float32Array;
      const lm = (await run(minus)).loss.data as Float32Array;
      const numeric = (lp[0] - lm[0]) / (2 * eps);
      const tol = 5e-4 + 5e-3 * Math.abs(numeric);
      if (Math.abs(analytic[j] - numeric) > tol) {
        throw new Error(`${c.name}: d/dx${i}[${j}] analytic ${analytic[j]} vs numeric ${numeric}`);
      }
    }
  }
  await session.release();
}

const cases: Case[] = [
  { name: 'add (broadcast)', shapes: [[2, 3], [3]], build: (_, [a, b]) => F.add(a, b) },
  { name: 'sub (broadcast)', shapes: [[2, 1], [1, 3]], build: (_, [a, b]) => F.sub(a, b) },
  { name: 'mul (broadcast)', shapes: [[2, 3], [2, 1]], build: (_, [a, b]) => F.mul(a, b) },
  { name: 'div', shapes: [[2, 3], [2, 3]], build: (_, [a, b]) => F.div(a, F.add(F.mul(b, b), b.graph.scalar(0.5))) },
  { name: 'neg', shapes: [[4]], build: (_, [a]) => F.neg(a) },
  { name: 'exp', shapes: [[4]], build: (_, [a]) => F.exp(a) },
  { name: 'log', shapes: [[4]], build: (_, [a]) => F.log(a), positive: true },
  { name: 'sqrt', shapes: [[4]], build: (_, [a]) => F.sqrt(a), positive: true },
  { name: 'reciprocal', shapes: [[4]], build: (_, [a]) => F.reciprocal(a), positive: true },
  { name: 'tanh', shapes: [[4]], build: (_, [a]) => F.tanh(a) },
  { name: 'erf', shapes: [[4]], build: (_, [a]) => F.erf(a) },
  { name: 'sigmoid', shapes: [[4]], build: (_, [a]) => F.sigmoid(a) },
  { name: 'relu', shapes: [[6]], build: (_, [a]) => F.relu(a), avoid: (v) => Math.abs(v) < 0.05 },
  { name: 'pow', shapes: [[4]], build: (_, [a]) => F.pow(a, 3) },
  { name: 'clip', shapes: [[6]], build: (_, [a]) => F.clip(a, -0.5, 0.5), avoid: (v) => Math.abs(Math.abs(v) - 0.5) < 0.05 },
  { name: 'where', shapes: [[2, 3], [2, 3]], build: (_, [a, b]) => F.where(F.greater(a, b.graph.scalar(0)), a, b) , avoid: (v) => Math.abs(v) < 0.05 },
  { name: 'sum', shapes: [[2, 3, 2]], build: (_, [a]) => F.sum(a, [1]) },
  { name: 'sum keepdims', shapes: [[2, 3, 2]], build: (_, [a]) => F.sum(a, [0, 2], true) },
  { name: 'mean', shapes: [[2, 3, 2]], build: (_, [a]) => F.mean(a, [-1]) },
  { name: 'max', shapes: [[2, 4]], build: (_, [a]) => F.max(a, [-1]) },
  { name: 'reshape', shapes: [[2, 6]], build: (_, [a]) => F.mul(F.reshape(a, [3, -1]), F.reshape(a, [3, 4])) },
  { name: 'transpose', shapes: [[2, 3, 4]], build: (_, [a]) => F.transpose(a, [2, 0, 1]) },
  { name: 'slice', shapes: [[3, 5]], build: (_, [a]) => F.mul(F.slice(a, 1, 1, 4), F.slice(a, 1, -3)) },
  { name: 'concat', shapes: [[2, 3], [2, 2]], build: (_, [a, b]) => F.concat([a, b, a], 1) },
  { name: 'expand', shapes: [[1, 3]], build: (_, [a]) => F.expand(a, [4, 3]) },
  { name: 'gather (embedding)', shapes: [[5, 3]], build: (g, [t]) => F.gather(t, g.constant(BigInt64Array.from([1n, 3n, 1n, 0n]), [2, 2], 'int64')) },
  { name: 'matmul 2d', shapes: [[3, 4], [4, 2]], build: (_, [a, b]) => F.matmul(a, b) },
  { name: 'matmul batch × weight', shapes: [[2, 3, 4], [4, 2]], build: (_, [a, b]) => F.matmul(a, b) },
  { name: 'matmul broadcast batch', shapes: [[2, 1, 3, 4], [3, 4, 2]], build: (_, [a, b]) => F.matmul(a, b) },
  { name: 'softmax', shapes: [[2, 5]], build: (_, [a]) => F.softmax(a) },
  { name: 'logSoftmax', shapes: [[2, 5]], build: (_, [a]) => F.logSoftmax(a) },
  { name: 'layerNorm', shapes: [[2, 5], [5], [5]], build: (_, [x, w, b]) => F.layerNorm(x, w, b, 1e-5) },
  { name: 'rmsNorm', shapes: [[2, 5], [5]], build: (_, [x, w]) => nn.rmsNorm(x, w, 1e-6) },
  {
    // Both outputs (the normed sum and the sum itself, which the residual stream reads) get gradients.
    name: 'addRmsNorm (fused residual + RMSNorm)',
    shapes: [[2, 3, 5], [2, 3, 5], [5]],
    build: (_, [x, skip, w]) => {
      const [y, s] = F.addRmsNorm(x, skip, w, 1e-6);
      return F.add(y, F.mul(s, s));
    },
  },
  { name: 'gelu (erf)', shapes: [[6]], build: (_, [x]) => nn.gelu(x) },
  { name: 'gelu (tanh)', shapes: [[6]], build: (_, [x]) => nn.geluTanh(x) },
  { name: 'silu', shapes: [[6]], build: (_, [x]) => nn.silu(x) },
  {
    name: 'rotary',
    shapes: [[1, 2, 3, 4]],
    build: (g, [x]) => {
      const pos = g.constant(BigInt64Array.from([0n, 1n, 5n]), [1, 3], 'int64');
      const { cos, sin } = nn.rotaryTables(pos, 4, 10000);
      return nn.applyRotary(x, cos, sin);
    },
  },
  {
    // ORT's fused RotaryEmbedding on [B, T, H·d], with scaled caches as the queries use them.
    name: 'rotary (fused, [B, T, H·d], scaled)',
    shapes: [[2, 3, 8]],
    build: (g, [x]) => {
      const pos = g.constant(BigInt64Array.from([0n, 1n, 5n, 7n, 2n, 9n]), [2, 3], 'int64');
      return nn.rotate(x, nn.scaledRotaryCache(nn.rotaryCache(pos, nn.rotaryInvFreq(4, 10000)), 0.7));
    },
  },
  {
    name: 'rotary (fused, [B, H, T, d])',
    shapes: [[1, 2, 3, 4]],
    build: (g, [x]) => {
      const pos = g.constant(BigInt64Array.from([0n, 1n, 5n]), [1, 3], 'int64');
      return nn.rotate(x, nn.rotaryCache(pos, nn.rotaryInvFreq(4, 10000)));
    },
  },
  {
    name: 'attention (causal, GQA)',
    shapes: [[1, 4, 3, 2], [1, 2, 3, 2], [1, 2, 3, 2]],
    build: (g, [q, k, v]) => {
      const pos = g.constant(BigInt64Array.from([0n, 1n, 2n]), [1, 3], 'int64');
      const mask = nn.attentionMask({ queryPositions: pos, keyPositions: pos, causal: true });
      return nn.attention(q, k, v, mask, 0.7);
    },
  },
  {
    name: 'attention over two KV blocks (cache + new)',
    shapes: [[1, 4, 2, 2], [1, 2, 3, 2], [1, 2, 3, 2], [1, 2, 2, 2], [1, 2, 2, 2]],
    build: (g, [q, kc, vc, kn, vn]) => {
      const keyPos = g.constant(BigInt64Array.from([0n, 1n, 2n, 3n, 4n]), [1, 5], 'int64');
      const qPos = g.constant(BigInt64Array.from([3n, 4n]), [1, 2], 'int64');
      const valid = g.constant(BigInt64Array.from([1n, 0n, 1n, 1n, 1n]), [1, 5], 'int64');
      const mask = nn.attentionMask({ queryPositions: qPos, keyPositions: keyPos, keyValid: valid, causal: true });
      return nn.attention(q, [kc, kn], [vc, vn], mask, 0.7);
    },
  },
  { name: 'split', shapes: [[2, 5]], build: (_, [x]) => F.concat(F.split(x, [2, 3], 1).reverse(), 1) },
  {
    // Fused projections: the concatenated weights and biases get their gradients through the split.
    name: 'linears (one product for several weights)',
    shapes: [[2, 3], [4, 3], [2, 3], [2]],
    build: (_, [x, w1, w2, b2]) => {
      const [y1, y2] = nn.linears(x, [{ weight: w1 }, { weight: w2, bias: b2 }]);
      return F.concat([F.mul(y1, y1), y2], 1);
    },
  },
  { name: 'splitLike', shapes: [[2, 5], [2, 2], [2, 3]], build: (_, [x, a, b]) => F.mul(F.splitLike(x, [a, b], 1)[1], b) },
  {
    name: 'cross-entropy',
    shapes: [[2, 3, 5]],
    build: (g, [logits]) => nn.crossEntropy(logits, g.constant(BigInt64Array.from([1n, 4n, -100n, 0n, 2n, 2n]), [2, 3], 'int64')),
  },
];

describe('gradients match central finite differences', () => {
  for (const c of cases) it(c.name, () => checkGradient(c));
});

describe('engine basics', () => {
  it('runs with dynamic batch and sequence axes', async () => {
    const g = new Graph();
    const x = g.input('x', ['B', 'T', 4]);
    const w = g.param('w', Float32Array.from({ length: 8 }, (_, i) => i), [4, 2]);
    const y = F.reshape(F.matmul(x, w), ['B', -1]);
    const s = await Session.create(compile(g, { outputs: { y } }));
    for (const [b, t] of [[1, 1], [2, 3], [3, 7]]) {
      const xs = Float32Array.from({ length: b * t * 4 }, (_, i) => (i % 5) - 2);
      const out = await s.run({ x: floatTensor(xs, [b, t, 4]) });
      expect(Array.from(out.y.dims)).toEqual([b, t * 2]);
      const data = out.y.data as Float32Array;
      for (let r = 0; r < b * t; r++) {
        for (let c = 0; c < 2; c++) {
          let acc = 0;
          for (let k = 0; k < 4; k++) acc += xs[r * 4 + k] * (k * 2 + c);
          expect(data[r * 2 + c]).toBeCloseTo(acc, 4);
        }
      }
    }
  });

  it('gives a clear error on mismatched shapes', () => {
    const g = new Graph();
    const a = g.input('a', ['B', 3]);
    const b = g.input('b', [4, 2]);
    expect(() => F.matmul(a, b)).toThrow(/matmul: inner dimensions differ/);
    expect(() => F.add(a, g.input('c', [2]))).toThrow(/do not broadcast/);
  });

  it('fused rotary matches the rotate-half composite, on both layouts and with a scale', async () => {
    const g = new Graph();
    const x = g.input('x', ['B', 'T', 8]);
    const pos = g.input('pos', ['B', 'T'], 'int64');
    const tables = nn.rotaryTables(pos, 4, 500);
    const scale = 0.3;
    const ref = nn.mergeHeads(nn.applyRotary(nn.splitHeads(x, 2, 4), F.mul(tables.cos, g.scalar(scale)), F.mul(tables.sin, g.scalar(scale))));
    const cache = nn.scaledRotaryCache(nn.rotaryCache(pos, nn.rotaryInvFreq(4, 500)), scale);
    const flat = nn.rotate(x, cache);
    const heads = nn.mergeHeads(nn.rotate(nn.splitHeads(x, 2, 4), cache));
    const s = await Session.create(compile(g, { outputs: { ref, flat, heads } }), { threads: 1 });
    const rand = mulberry32(7);
    const xs = Float32Array.from({ length: 2 * 3 * 8 }, () => rand() * 2 - 1);
    const out = await s.run({ x: floatTensor(xs, [2, 3, 8]), pos: int64Tensor([0, 1, 2, 40, 41, 300], [2, 3]) });
    const want = Array.from(out.ref.data as Float32Array);
    for (const name of ['flat', 'heads']) {
      const got = out[name].data as Float32Array;
      want.forEach((v, i) => expect(got[i]).toBeCloseTo(v, 6));
    }
    await s.release();
  });

  it('fused addRmsNorm matches add + rmsNorm', async () => {
    const g = new Graph();
    const x = g.input('x', ['B', 'T', 6]);
    const skip = g.input('skip', ['B', 'T', 6]);
    const w = g.constant(Float32Array.from([0.5, 1, 1.5, -1, 2, 0.25]), [6]);
    const [y, s] = F.addRmsNorm(x, skip, w, 1e-5);
    const sum = F.add(x, skip);
    const ref = nn.rmsNorm(sum, w, 1e-5);
    const session = await Session.create(compile(g, { outputs: { y, s, ref, sum } }), { threads: 1 });
    const rand = mulberry32(3);
    const data = () => Float32Array.from({ length: 2 * 3 * 6 }, () => rand() * 4 - 2);
    const out = await session.run({ x: floatTensor(data(), [2, 3, 6]), skip: floatTensor(data(), [2, 3, 6]) });
    for (const [got, want] of [['y', 'ref'], ['s', 'sum']]) {
      const a = out[got].data as Float32Array;
      (out[want].data as Float32Array).forEach((v, i) => expect(a[i]).toBeCloseTo(v, 5));
    }
    await session.release();
  });

  it('uses int64 inputs for ids', async () => {
    const g = new Graph();
    const ids = g.input('ids', ['B', 'T'], 'int64');
    const table = g.param('table', Float32Array.from([0, 1, 10, 11, 20, 21]), [3, 2]);
    const y = F.gather(table, ids);
    const s = await Session.create(compile(g, { outputs: { y } }));
    const out = await s.run({ ids: int64Tensor([2, 0], [1, 2]) });
    expect(Array.from(out.y.data as Float32Array)).toEqual([20, 21, 0, 1]);
  });
});

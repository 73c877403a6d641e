// The engine bench: how close the engine's compiled graphs come to ONNX Runtime's best.
//   (i)   matmul GFLOP/s through Graph → compile() (weight as an initializer) against a
//         hand-written one-MatMul ONNX model, same shapes, same session settings;
//   (ii)  a whole training step (forward, backward, clipping, AdamW) of a small transformer:
//         tokens/s and achieved GFLOP/s, and its ratio to the bare-MatMul figure;
//   (iii) incremental decode steps of the same transformer with a KV cache (batch 1).
// Everything is measured in one run with 1 and 2 intra-op threads; each figure is the median of
// repeated timed runs after warm-up. Engine and bare runs alternate so that load from other
// processes on the shared machine hits both alike.
import onnxProto from 'onnx-proto';
import { Graph } from '../engine/graph.js';
import * as F from '../engine/ops.js';
import { compile, OPSET, type CompiledModel } from '../engine/onnx.js';
import { Session, floatTensor, int64Tensor, type OrtTensor } from '../engine/runtime.js';
import { TrainStep } from '../engine/trainer.js';
import { buildToyDecoder, buildToyLM, toyTrainFlops, type ToyConfig } from '../engine/toy.js';
import { mulberry32 } from '../engine/random.js';

const { onnx } = onnxProto;

interface Options {
  threads: number[];
  reps: number;
  trainReps: number;
  decode: boolean;
  profile: string | null;
  optimizedModel: string | null;
}

const HELP = `usage: npm run bench -- engine [options]
  --threads=1,2       thread counts to measure (default 1,2)
  --reps=N            timed runs per matmul figure (default 40)
  --train-reps=N      timed training steps per thread count (default 10)
  --no-decode         skip the KV-cache decode timings
  --profile=PREFIX    write ORT profiles of the training step (PREFIX_*.json)
  --optimized=PATH    write the ORT-optimised training-step graph to PATH`;

function parseArgs(args: string[]): Options | null {
  const o: Options = { threads: [1, 2], reps: 40, trainReps: 10, decode: true, profile: null, optimizedModel: null };
  for (const a of args) {
    const [k, v] = a.split('=', 2);
    const int = (): number => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1) throw new Error(`${k} needs a positive integer, got ${JSON.stringify(v)}`);
      return n;
    };
    if (k === '--help' || k === '-h') return null;
    else if (k === '--threads') o.threads = (v ?? '').split(',').map((s) => Number(s)).filter((n) => Number.isInteger(n) && n > 0);
    else if (k === '--reps') o.reps = int();
    else if (k === '--train-reps') o.trainReps = int();
    else if (k === '--no-decode') o.decode = false;
    else if (k === '--profile') o.profile = v ?? 'engine-train';
    else if (k === '--optimized') o.optimizedModel = v ?? 'engine-train.opt.onnx';
    else throw new Error(`unknown option ${a}\n${HELP}`);
  }
  if (o.threads.length === 0) throw new Error('--threads: give a comma-separated list of positive integers');
  return o;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

function randomFloats(n: number, seed: number, scale = 1): Float32Array {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
}

/** A one-node ONNX model: Y = X @ W with W as an initializer, written directly with onnx-proto. */
function bareMatMul(m: number, k: number, n: number, w: Float32Array): CompiledModel {
  const vi = (name: string, dims: number[]): InstanceType<typeof onnx.ValueInfoProto> =>
    onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType: 1, shape: { dim: dims.map((d) => ({ dimValue: d })) } } } });
  const graph = onnx.GraphProto.create({
    name: 'bare_matmul',
    node: [onnx.NodeProto.create({ opType: 'MatMul', input: ['X', 'W'], output: ['Y'], name: 'mm' })],
    initializer: [onnx.TensorProto.create({ name: 'W', dims: [k, n], dataType: 1, rawData: new Uint8Array(w.buffer, w.byteOffset, w.byteLength) })],
    input: [vi('X', [m, k])],
    output: [vi('Y', [m, n])],
  });
  const model = onnx.ModelProto.create({ irVersion: 8, producerName: 'bench', opsetImport: [{ domain: '', version: OPSET }], graph });
  return { bytes: onnx.ModelProto.encode(model).finish(), inputNames: ['X'], outputNames: ['Y'] };
}

/** The same product through the engine: a Graph with the weight as a parameter (initializer). */
function engineMatMul(m: number, k: number, n: number, w: Float32Array): CompiledModel {
  const g = new Graph();
  const x = g.input('X', [m, k]);
  const y = F.matmul(x, g.param('W', w, [k, n]));
  return compile(g, { outputs: { Y: y } });
}

async function timeIt(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

interface MatmulRow {
  shape: string;
  threads: number;
  engine: number;
  bare: number;
  ratio: number;
}

async function benchMatmul(o: Options): Promise<MatmulRow[]> {
  const rows: MatmulRow[] = [];
  for (const [m, k, n] of [[128, 768, 3072], [512, 512, 2048]]) {
    const w = randomFloats(k * n, 1, 0.05);
    const feeds = { X: floatTensor(randomFloats(m * k, 2), [m, k]) };
    const engineModel = engineMatMul(m, k, n, w);
    const bareModel = bareMatMul(m, k, n, w);
    for (const threads of o.threads) {
      const eng = await Session.create(engineModel, { threads });
      const bare = await Session.create(bareModel, { threads });
      const a = (await eng.run(feeds)).Y.data as Float32Array;
      const b = (await bare.run(feeds)).Y.data as Float32Array;
      for (let i = 0; i < a.length; i += 997) {
        if (Math.abs(a[i] - b[i]) > 1e-3 * (1 + Math.abs(b[i]))) throw new Error(`matmul ${m}x${k}x${n}: engine and bare results differ at ${i}`);
      }
      for (let i = 0; i < 5; i++) {
        await eng.run(feeds);
        await bare.run(feeds);
      }
      const te: number[] = [];
      const tb: number[] = [];
      for (let i = 0; i < o.reps; i++) {
        te.push(await timeIt(() => eng.run(feeds)));
        tb.push(await timeIt(() => bare.run(feeds)));
      }
      const flop = 2 * m * k * n;
      const engine = flop / median(te) / 1e6;
      const bareG = flop / median(tb) / 1e6;
      rows.push({ shape: `[${m},${k}]x[${k},${n}]`, threads, engine, bare: bareG, ratio: engine / bareG });
      await eng.release();
      await bare.release();
    }
  }
  return rows;
}

const TRAIN_CFG: ToyConfig = { vocab: 8192, d: 256, heads: 4, layers: 4, seed: 1 };
const TRAIN_B = 8;
const TRAIN_T = 128;

interface TrainRow {
  threads: number;
  msPerStep: number;
  tokensPerS: number;
  gflops: number;
  /** Bare MatMul [128,768]x[768,3072] GFLOP/s, timed between the training steps. */
  bareDuring: number;
}

function tokenBatch(rand: () => number, vocab: number, B: number, T: number): Record<string, OrtTensor> {
  const ids = BigInt64Array.from({ length: B * T }, () => BigInt(Math.floor(rand() * vocab)));
  const targets = BigInt64Array.from({ length: B * T }, () => BigInt(Math.floor(rand() * vocab)));
  return { input_ids: int64Tensor(ids, [B, T]), targets: int64Tensor(targets, [B, T]) };
}

async function benchTrain(o: Options): Promise<{ rows: TrainRow[]; flops: number; params: number }> {
  const flops = toyTrainFlops(TRAIN_CFG, TRAIN_B, TRAIN_T);
  const rows: TrainRow[] = [];
  let params = 0;
  for (const threads of o.threads) {
    const model = buildToyLM(TRAIN_CFG);
    params = model.paramCount;
    const profiling = o.profile !== null && threads === o.threads[0];
    const trainer = await TrainStep.create(model.graph, model.loss, {
      noEval: true,
      session: {
        threads,
        ...(profiling ? { profilePrefix: o.profile! } : {}),
        ...(o.optimizedModel && threads === o.threads[0] ? { optimizedModelPath: o.optimizedModel } : {}),
      },
    });
    // The reference product is timed between the steps, so that both see the same machine load.
    const bare = await Session.create(bareMatMul(128, 768, 3072, randomFloats(768 * 3072, 1, 0.05)), { threads });
    const bareFeeds = { X: floatTensor(randomFloats(128 * 768, 2), [128, 768]) };
    const rand = mulberry32(threads);
    const batches = Array.from({ length: 4 }, () => tokenBatch(rand, TRAIN_CFG.vocab, TRAIN_B, TRAIN_T));
    for (let i = 0; i < 3; i++) {
      await trainer.step(batches[i % batches.length], 1e-4);
      await bare.run(bareFeeds);
    }
    const times: number[] = [];
    const bareTimes: number[] = [];
    for (let i = 0; i < o.trainReps; i++) {
      times.push(await timeIt(() => trainer.step(batches[i % batches.length], 1e-4)));
      for (let j = 0; j < 4; j++) bareTimes.push(await timeIt(() => bare.run(bareFeeds)));
    }
    const ms = median(times);
    const bareDuring = (2 * 128 * 768 * 3072) / median(bareTimes) / 1e6;
    rows.push({ threads, msPerStep: ms, tokensPerS: (TRAIN_B * TRAIN_T) / (ms / 1000), gflops: flops / ms / 1e6, bareDuring });
    await trainer.release();
    await bare.release();
  }
  return { rows, flops, params };
}

interface DecodeRow {
  threads: number;
  context: number;
  msPerToken: number;
}

async function benchDecode(o: Options): Promise<DecodeRow[]> {
  const dec = buildToyDecoder(TRAIN_CFG);
  const model = compile(dec.graph, { outputs: dec.outputs });
  const headDim = TRAIN_CFG.d / TRAIN_CFG.heads;
  const rows: DecodeRow[] = [];
  for (const threads of o.threads) {
    const session = await Session.create(model, { threads });
    for (const context of [64, 1024]) {
      const P = context - 1;
      const feeds: Record<string, OrtTensor> = { input_ids: int64Tensor([5], [1, 1]), position_ids: int64Tensor([P], [1, 1]) };
      for (let l = 0; l < TRAIN_CFG.layers; l++) {
        feeds[`past.${l}.key`] = floatTensor(randomFloats(TRAIN_CFG.heads * P * headDim, 10 + l), [1, TRAIN_CFG.heads, P, headDim]);
        feeds[`past.${l}.value`] = floatTensor(randomFloats(TRAIN_CFG.heads * P * headDim, 20 + l), [1, TRAIN_CFG.heads, P, headDim]);
      }
      for (let i = 0; i < 5; i++) await session.run(feeds);
      const times: number[] = [];
      for (let i = 0; i < o.reps; i++) times.push(await timeIt(() => session.run(feeds)));
      rows.push({ threads, context, msPerToken: median(times) });
    }
    await session.release();
  }
  return rows;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(header), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...rows.map(line)].join('\n');
}

export async function benchEngine(args: string[]): Promise<void> {
  const o = parseArgs(args);
  if (!o) {
    console.log(HELP);
    return;
  }
  console.log(`engine bench: threads ${o.threads.join(', ')}; medians of ${o.reps} runs (matmul, decode), ${o.trainReps} steps (training)`);

  const mm = await benchMatmul(o);
  console.log('\n(i) matrix product, GFLOP/s = 2·M·K·N / time; weight as initializer');
  console.log(
    table(
      ['shape', 'threads', 'engine', 'bare MatMul', 'ratio'],
      mm.map((r) => [r.shape, String(r.threads), r.engine.toFixed(1), r.bare.toFixed(1), r.ratio.toFixed(2)]),
    ),
  );

  const train = await benchTrain(o);
  const c = TRAIN_CFG;
  console.log(
    `\n(ii) training step (forward + backward + clip + AdamW, one ORT session): ${c.layers} layers, d=${c.d}, ${c.heads} heads, ` +
      `vocab ${c.vocab}, batch ${TRAIN_B}×${TRAIN_T} tokens, ${(train.params / 1e6).toFixed(2)}M params`,
  );
  console.log(
    `FLOPs/step = 6·N·tokens + 12·L·T²·d·B with N = matrix params (tied embedding once) = ${(train.flops / 1e9).toFixed(2)} GFLOP; ` +
      'ratio vs the bare MatMul [128,768]x[768,3072] timed between the steps, same thread count',
  );
  console.log(
    table(
      ['threads', 'ms/step', 'tokens/s', 'GFLOP/s', 'bare MatMul GFLOP/s', 'ratio'],
      train.rows.map((r) => [
        String(r.threads),
        r.msPerStep.toFixed(1),
        r.tokensPerS.toFixed(0),
        r.gflops.toFixed(1),
        r.bareDuring.toFixed(1),
        `${((100 * r.gflops) / r.bareDuring).toFixed(0)}%`,
      ]),
    ),
  );

  let decode: DecodeRow[] = [];
  if (o.decode) {
    decode = await benchDecode(o);
    console.log('\n(iii) decode step, batch 1, same transformer, past K/V in and present K/V out (models bench: real models)');
    console.log(table(['threads', 'context', 'ms/token'], decode.map((r) => [String(r.threads), String(r.context), r.msPerToken.toFixed(2)])));
  }

  console.log(
    JSON.stringify({
      bench: 'engine',
      matmul: mm.map((r) => ({ ...r, engine: +r.engine.toFixed(2), bare: +r.bare.toFixed(2), ratio: +r.ratio.toFixed(3) })),
      train: {
        config: { ...c, batch: TRAIN_B, seq: TRAIN_T, params: train.params, gflopPerStep: +(train.flops / 1e9).toFixed(3) },
        rows: train.rows.map((r) => ({
          threads: r.threads,
          msPerStep: +r.msPerStep.toFixed(2),
          tokensPerS: Math.round(r.tokensPerS),
          gflops: +r.gflops.toFixed(2),
          bareGflops: +r.bareDuring.toFixed(2),
          vsBare: +(r.gflops / r.bareDuring).toFixed(3),
        })),
      },
      decode: decode.map((r) => ({ ...r, msPerToken: +r.msPerToken.toFixed(3) })),
    }),
  );
}

// ONNX Runtime sessions for compiled graphs. Few, large sessions: each session owns a thread pool
// and switching between many small ones costs milliseconds in wake-ups (ENGINE-NOTES).
import ort from 'onnxruntime-node';
import { availableParallelism } from 'node:os';
import type { CompiledModel } from './onnx.js';

export type OrtTensor = ort.Tensor;
export const OrtTensorCtor = ort.Tensor;

/** Session settings; the defaults are tuned for CPU inference on this machine. */
export interface SessionOptions {
  /** Intra-op threads; default: all cores (MARIA_THREADS overrides). */
  threads?: number;
  /** Run ORT's graph optimiser ('all' fuses norms, GELU, attention patterns and transposed products). */
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /** Write the optimised graph here (for inspection while profiling). */
  optimizedModelPath?: string;
  /** Enable ORT's profiler, writing JSON with this prefix. */
  profilePrefix?: string;
}

/** The default thread count: MARIA_THREADS if set, else the number of cores. */
export function defaultThreads(): number {
  const env = Number(process.env.MARIA_THREADS);
  return Number.isInteger(env) && env > 0 ? env : availableParallelism();
}

/** A compiled graph loaded into ONNX Runtime. */
export class Session {
  private constructor(
    readonly session: ort.InferenceSession,
    readonly inputNames: string[],
    readonly outputNames: string[],
  ) {}

  /** Loads a compiled model. */
  static async create(model: CompiledModel, options: SessionOptions = {}): Promise<Session> {
    const ortOptions: ort.InferenceSession.SessionOptions = {
      intraOpNumThreads: options.threads ?? defaultThreads(),
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: options.optimization ?? 'all',
      enableCpuMemArena: true,
      enableMemPattern: true,
    };
    if (options.optimizedModelPath) ortOptions.optimizedModelFilePath = options.optimizedModelPath;
    if (options.profilePrefix) {
      ortOptions.enableProfiling = true;
      ortOptions.profileFilePrefix = options.profilePrefix;
    }
    const session = await ort.InferenceSession.create(model.bytes, ortOptions);
    return new Session(session, model.inputNames, model.outputNames);
  }

  /** Runs the model; `feeds` must name every input. Returns every output (or only `fetch`). */
  async run(feeds: Record<string, ort.Tensor>, fetch?: string[]): Promise<Record<string, ort.Tensor>> {
    for (const name of this.inputNames) {
      if (!(name in feeds)) throw new Error(`missing input "${name}" (the model takes ${this.inputNames.join(', ')})`);
    }
    return (await this.session.run(feeds, fetch ?? this.outputNames)) as Record<string, ort.Tensor>;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

/** A float32 ORT tensor. */
export function floatTensor(data: Float32Array | number[], dims: number[]): ort.Tensor {
  return new ort.Tensor('float32', data instanceof Float32Array ? data : Float32Array.from(data), dims);
}

/** An int64 ORT tensor from numbers (a BigInt64Array is used as it is). */
export function int64Tensor(data: ArrayLike<number> | BigInt64Array, dims: number[]): ort.Tensor {
  if (data instanceof BigInt64Array) return new ort.Tensor('int64', data, dims);
  const arr = new BigInt64Array(data.length);
  for (let i = 0; i < data.length; i++) arr[i] = BigInt(data[i]);
  return new ort.Tensor('int64', arr, dims);
}

/** A bool ORT tensor. */
export function boolTensor(data: ArrayLike<boolean | number>, dims: number[]): ort.Tensor {
  return new ort.Tensor('bool', Uint8Array.from(Array.from(data, (v) => (v ? 1 : 0))), dims);
}

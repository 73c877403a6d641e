// Training checkpoints as one safetensors file, written atomically (a crash leaves the previous
// checkpoint intact). Layout:
//   <param name>            F32  the weights (a file an inference loader can read directly)
//   optim.m.<param name>    F32  AdamW first moments   (optional)
//   optim.v.<param name>    F32  AdamW second moments  (optional)
//   __metadata__: format "maria-checkpoint", version "1", "optim.step" (completed steps, when
//   the optimiser state is present), "progress" (JSON of training progress, RNG state, config).
// Float32 data is stored bit for bit, so a resumed run continues exactly where it stopped.
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { TRAIN_NAMES } from './optim.js';
import type { TrainState } from './trainer.js';

export const CHECKPOINT_FORMAT = 'maria-checkpoint';
export const CHECKPOINT_VERSION = '1';

/** Optimiser state saved with the weights. */
export interface OptimizerState {
  step: number;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
}

export interface Checkpoint {
  params: Map<string, Float32Array>;
  shapes: Map<string, number[]>;
  optimizer?: OptimizerState;
  /** Any JSON value: epoch, data position, RNG seeds and counters, the model config. */
  progress?: unknown;
}

const OPTIM_PREFIX = 'optim.';

/** Writes `ckpt` to `path` atomically. */
export function saveCheckpoint(path: string, ckpt: Checkpoint): void {
  const tensors: Record<string, TensorToWrite> = {};
  const shapeOf = (name: string): number[] => {
    const s = ckpt.shapes.get(name);
    if (!s) throw new Error(`saveCheckpoint: no shape given for "${name}"`);
    return s;
  };
  for (const [name, data] of ckpt.params) {
    if (name.startsWith(OPTIM_PREFIX)) throw new Error(`saveCheckpoint: parameter name "${name}" clashes with the optimiser's "${OPTIM_PREFIX}" prefix`);
    tensors[name] = { dtype: 'F32', shape: shapeOf(name), data };
  }
  const metadata: Record<string, string> = { format: CHECKPOINT_FORMAT, version: CHECKPOINT_VERSION };
  if (ckpt.optimizer) {
    const { m, v, step } = ckpt.optimizer;
    for (const name of ckpt.params.keys()) {
      const mm = m.get(name);
      const vv = v.get(name);
      if (!mm || !vv) throw new Error(`saveCheckpoint: optimiser state lacks the moments of "${name}"`);
      tensors[TRAIN_NAMES.m(name)] = { dtype: 'F32', shape: shapeOf(name), data: mm };
      tensors[TRAIN_NAMES.v(name)] = { dtype: 'F32', shape: shapeOf(name), data: vv };
    }
    metadata['optim.step'] = String(step);
  }
  if (ckpt.progress !== undefined) metadata.progress = JSON.stringify(ckpt.progress);
  writeSafetensors(path, tensors, metadata);
}

/** Reads a checkpoint written by {@link saveCheckpoint} (all data is read eagerly). */
export function loadCheckpoint(path: string): Checkpoint {
  const file = readSafetensors(path);
  const meta = file.metadata;
  if (meta.format !== CHECKPOINT_FORMAT) {
    throw new Error(`${path}: not a maria checkpoint (metadata format is ${JSON.stringify(meta.format)})`);
  }
  const params = new Map<string, Float32Array>();
  const shapes = new Map<string, number[]>();
  const m = new Map<string, Float32Array>();
  const v = new Map<string, Float32Array>();
  const mPrefix = TRAIN_NAMES.m('');
  const vPrefix = TRAIN_NAMES.v('');
  for (const name of file.names()) {
    if (name.startsWith(mPrefix)) m.set(name.slice(mPrefix.length), file.getFloat32(name));
    else if (name.startsWith(vPrefix)) v.set(name.slice(vPrefix.length), file.getFloat32(name));
    else {
      params.set(name, file.getFloat32(name));
      shapes.set(name, [...file.info(name).shape]);
    }
  }
  const ckpt: Checkpoint = { params, shapes };
  if (meta['optim.step'] !== undefined) {
    const step = Number(meta['optim.step']);
    if (!Number.isSafeInteger(step) || step < 0) throw new Error(`${path}: invalid optim.step ${JSON.stringify(meta['optim.step'])}`);
    for (const name of params.keys()) {
      if (!m.has(name) || !v.has(name)) throw new Error(`${path}: optimiser state lacks the moments of "${name}"`);
    }
    ckpt.optimizer = { step, m, v };
  }
  if (meta.progress !== undefined) ckpt.progress = JSON.parse(meta.progress);
  return ckpt;
}

/** A checkpoint of a trainer's full state (weights, moments, step) plus `progress`. */
export function trainCheckpoint(state: TrainState, shapes: Map<string, number[]>, progress?: unknown): Checkpoint {
  return { params: state.params, shapes, optimizer: { step: state.step, m: state.m, v: state.v }, progress };
}

/** The {@link TrainState} stored in a checkpoint (throws if it holds no optimiser state). */
export function trainStateOf(ckpt: Checkpoint): TrainState {
  if (!ckpt.optimizer) throw new Error('checkpoint holds weights only, no optimiser state to resume from');
  return { step: ckpt.optimizer.step, params: ckpt.params, m: ckpt.optimizer.m, v: ckpt.optimizer.v };
}

// Parameter sources: a loaded checkpoint (shape-checked against what the family expects) or an
// in-memory set of arrays (training from scratch, random benchmarks).
import type { Graph, Tensor } from '../engine/graph.js';
import { mulberry32, normal } from '../engine/random.js';
import { openCheckpoint, type WeightSource } from '../io/safetensors.js';
import { ModelFolderError } from './config.js';
import type { ParamSource, ParamSpec } from './family.js';

/** Named float32 arrays with shapes: what a model's weights are in memory. */
export type ParamMap = Map<string, { data: Float32Array; shape: number[] }>;

/** Reads every parameter a family lists from a checkpoint folder, checking names and shapes. */
export function loadParams(dir: string, specs: ParamSpec[]): ParamMap {
  let source: WeightSource;
  try {
    source = openCheckpoint(dir);
  } catch (err) {
    throw new ModelFolderError((err as Error).message);
  }
  const out: ParamMap = new Map();
  for (const spec of specs) {
    const stored = [spec.name, ...(spec.aliases ?? [])].find((name) => source.has(name));
    if (stored === undefined) {
      const spellings = spec.aliases?.length ? ` (nor ${spec.aliases.map((a) => `"${a}"`).join(', ')})` : '';
      throw new ModelFolderError(`${dir}: the weights have no tensor "${spec.name}"${spellings} that config.json implies (found ${source.names().length} tensors, e.g. ${source.names().slice(0, 3).join(', ')})`);
    }
    const info = source.info(stored);
    if (info.shape.length !== spec.shape.length || info.shape.some((d, i) => d !== spec.shape[i])) {
      throw new ModelFolderError(`${dir}: tensor "${stored}" has shape [${info.shape}] but config.json implies [${spec.shape}]`);
    }
    out.set(spec.name, { data: source.getFloat32(stored), shape: spec.shape });
  }
  return out;
}

/**
 * How many scalar weights a model has: the values of its loaded weights, or the sizes of its
 * family's parameter specs (`family.params(config)`, no loading needed). Both list a tied
 * embedding once, so tied weights count once, as Hugging Face's num_parameters() counts them.
 */
export function countParameters(weights: ParamMap | readonly ParamSpec[]): number {
  let n = 0;
  if (weights instanceof Map) for (const p of weights.values()) n += p.data.length;
  else for (const spec of weights) n += spec.shape.reduce((a, b) => a * b, 1);
  return n;
}

/** Random initial weights for training from scratch, reproducible from `seed`. */
export function initParams(specs: ParamSpec[], seed: number): ParamMap {
  const gauss = normal(mulberry32(seed));
  const out: ParamMap = new Map();
  for (const s of specs) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (s.init.kind === 'ones') data.fill(1);
    else if (s.init.kind === 'normal') for (let i = 0; i < n; i++) data[i] = gauss() * s.init.std;
    out.set(s.name, { data, shape: s.shape });
  }
  return out;
}

/** A ParamSource over a ParamMap that creates each graph parameter once. */
export function paramSource(g: Graph, params: ParamMap, label = 'weights'): ParamSource {
  const made = new Map<string, Tensor>();
  return {
    get(name, shape) {
      let t = made.get(name);
      if (t) return t;
      const p = params.get(name);
      if (!p) throw new ModelFolderError(`${label}: no tensor "${name}"`);
      if (p.shape.length !== shape.length || p.shape.some((d, i) => d !== shape[i])) {
        throw new ModelFolderError(`${label}: tensor "${name}" has shape [${p.shape}] but the model needs [${shape}]`);
      }
      t = g.param(name, p.data, shape);
      made.set(name, t);
      return t;
    },
  };
}

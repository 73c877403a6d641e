// The bookkeeping of an incremental decode's KV cache, independent of any ONNX Runtime package: it
// builds a step's feeds as plain arrays and commits the step's new keys and values into the slot
// buffers. CausalLM (onnxruntime-node) and the in-browser runner (onnxruntime-web) both use it, so
// the two feed the step graph exactly the same numbers.

/**
 * Per-row state of an incremental decode. Keys and values live in preallocated buffers of
 * `capacity` slots per layer, [B, Hkv, capacity, d], fed to every step as they are; a step returns
 * only the new tokens' keys and values, which are written into the next free slots. So a decode
 * step never copies the cache; the capacity doubles (one copy) when it runs out.
 */
export interface KvCache {
  batch: number;
  /** Slots per row and layer. */
  capacity: number;
  /** Per layer, the key and value buffers [B, Hkv, capacity, d]. */
  layers: Array<{ k: Float32Array; v: Float32Array }>;
  /** [B][used slots]: whether each cached key is real (1) or padding (0). */
  valid: number[][];
  /** [B][used slots]: the position of each cached key. */
  positions: number[][];
  /** Per row: the position the next token gets. */
  next: number[];
}

/** The cache geometry of a causal LM. */
export interface CacheShape {
  numLayers: number;
  kvHeads: number;
  headDim: number;
}

/** The inputs of one step, as plain arrays (row-major), before they become tensors. */
export interface StepFeeds {
  B: number;
  /** New tokens per row (the longest row; shorter rows are padded). */
  T: number;
  /** Cache slots fed (the capacity at the time of the step). */
  C: number;
  /** Used slots before the step. */
  used: number;
  /** [B, T]. */
  ids: number[];
  /** [B, T]. */
  positions: number[];
  /** [B, C + T]. */
  keyValid: number[];
  /** [B, C + T]. */
  keyPositions: number[];
}

/** An empty cache for `batch` rows. */
export function newKvCache(shape: CacheShape, batch: number, capacity = 64): KvCache {
  const size = batch * shape.kvHeads * capacity * shape.headDim;
  return {
    batch,
    capacity,
    layers: Array.from({ length: shape.numLayers }, () => ({ k: new Float32Array(size), v: new Float32Array(size) })),
    valid: Array.from({ length: batch }, () => []),
    positions: Array.from({ length: batch }, () => []),
    next: new Array(batch).fill(0),
  };
}

/** Grows the buffers to hold at least `needed` slots (doubling), copying each row's slots. */
export function reserveKvCache(cache: KvCache, shape: CacheShape, needed: number): void {
  if (needed <= cache.capacity) return;
  let capacity = cache.capacity;
  while (capacity < needed) capacity *= 2;
  const { kvHeads, headDim } = shape;
  const rows = cache.batch * kvHeads;
  const used = cache.valid[0].length;
  const grow = (old: Float32Array): Float32Array => {
    const out = new Float32Array(rows * capacity * headDim);
    for (let r = 0; r < rows; r++) out.set(old.subarray(r * cache.capacity * headDim, (r * cache.capacity + used) * headDim), r * capacity * headDim);
    return out;
  };
  cache.layers = cache.layers.map((l) => ({ k: grow(l.k), v: grow(l.v) }));
  cache.capacity = capacity;
}

/**
 * The feeds of a step appending `rows` (one token list per batch row; rows may differ in length,
 * shorter ones are padded and the padding is masked out forever). Throws past `maxPositions`.
 */
export function stepFeeds(cache: KvCache, rows: number[][], maxPositions: number): StepFeeds {
  if (rows.length !== cache.batch) throw new Error(`step: ${rows.length} rows for a cache of batch ${cache.batch}`);
  const T = Math.max(...rows.map((r) => r.length));
  if (T === 0) throw new Error('step: no tokens to add');
  const B = cache.batch;
  rows.forEach((r, b) => {
    if (cache.next[b] + r.length > maxPositions) throw new Error(`sequence of ${cache.next[b] + r.length} tokens exceeds the model's context of ${maxPositions}`);
  });
  const used = cache.valid[0].length;
  const C = cache.capacity;
  const ids = new Array<number>(B * T);
  const positions = new Array<number>(B * T);
  const keyValid = new Array<number>(B * (C + T)).fill(0);
  const keyPositions = new Array<number>(B * (C + T)).fill(0);
  for (let b = 0; b < B; b++) {
    for (let s = 0; s < used; s++) {
      keyValid[b * (C + T) + s] = cache.valid[b][s];
      keyPositions[b * (C + T) + s] = cache.positions[b][s];
    }
    for (let t = 0; t < T; t++) {
      const real = t < rows[b].length;
      ids[b * T + t] = real ? rows[b][t] : 0;
      positions[b * T + t] = cache.next[b] + (real ? t : 0);
      keyValid[b * (C + T) + C + t] = real ? 1 : 0;
      keyPositions[b * (C + T) + C + t] = positions[b * T + t];
    }
  }
  return { B, T, C, used, ids, positions, keyValid, keyPositions };
}

/**
 * Commits a step: the new tokens' keys and values (`present(i)`: layer i's [B, Hkv, T, d]) go into
 * the next free slots, growing the buffers if needed; the rows' validity and positions advance.
 */
export function commitStep(
  cache: KvCache,
  shape: CacheShape,
  feeds: StepFeeds,
  rows: number[][],
  present: (layer: number) => { k: Float32Array; v: Float32Array },
): void {
  const { B, T, C, used } = feeds;
  const { kvHeads, headDim } = shape;
  reserveKvCache(cache, shape, used + T);
  const Cn = cache.capacity;
  cache.layers.forEach((l, i) => {
    const { k, v } = present(i);
    for (let r = 0; r < B * kvHeads; r++) {
      l.k.set(k.subarray(r * T * headDim, (r + 1) * T * headDim), (r * Cn + used) * headDim);
      l.v.set(v.subarray(r * T * headDim, (r + 1) * T * headDim), (r * Cn + used) * headDim);
    }
  });
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      cache.valid[b].push(feeds.keyValid[b * (C + T) + C + t]);
      cache.positions[b].push(feeds.positions[b * T + t]);
    }
    cache.next[b] += rows[b].length;
  }
}

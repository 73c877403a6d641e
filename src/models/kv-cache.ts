// The bookkeeping of an incremental decode's KV cache, independent of any ONNX Runtime package: it
// builds a step's feeds as typed arrays and commits the step's new keys and values into the slot
// buffers. CausalLM (onnxruntime-node) and the in-browser runner (onnxruntime-web) both use it, so
// the two feed the step graph exactly the same numbers.

/**
 * Per-row state of an incremental decode. Keys and values live in slot buffers per layer — keys
 * transposed, [B, Hkv, d, capacity], so that a decode step's q·Kᵀ is a plain matrix-vector
 * product; values [B, Hkv, capacity, d] — fed to every step as they are. A step returns only the
 * new tokens' keys and values, which are written into the next free slots, so a decode step never
 * copies the cache. When the slots run out the buffers grow (one copy) to what is needed plus
 * 2√needed spare slots: attention reads every slot fed, the empty ones too, and a growth copies
 * every used one, so with s spare slots a decode at n slots pays about s/2 wasted slot reads plus
 * 2n/s copied slots per step, least at s = 2√n (64 spare slots at 1024: 6% over the used ones,
 * where growing by an eighth would waste 12% and doubling up to half). The attention
 * mask's cached part (validity and position of every slot) is kept the same way, as int64 buffers
 * [B, capacity] written only at a step's new slots, so a step's mask feeds are copied, not rebuilt.
 */
export interface KvCache {
  batch: number;
  /** Slots per row and layer. */
  capacity: number;
  /** Per layer, the key buffer [B, Hkv, d, capacity] and the value buffer [B, Hkv, capacity, d]. */
  layers: Array<{ k: Float32Array; v: Float32Array }>;
  /** Slots used so far (the same in every row: shorter rows are padded). */
  used: number;
  /** [B, capacity]: whether each cached key is real (1) or padding (0); 0 past `used`. */
  valid: BigInt64Array;
  /** [B, capacity]: the position of each cached key; 0 past `used`. */
  positions: BigInt64Array;
  /** Per row: the position the next token gets. */
  next: number[];
}

/** The cache geometry of a causal LM. */
export interface CacheShape {
  numLayers: number;
  kvHeads: number;
  headDim: number;
}

/** The inputs of one step as int64 arrays (row-major), ready to become tensors. */
export interface StepFeeds {
  B: number;
  /** New tokens per row (the longest row; shorter rows are padded). */
  T: number;
  /** Cache slots fed (the capacity at the time of the step). */
  C: number;
  /** Used slots before the step. */
  used: number;
  /** [B, T]. */
  ids: BigInt64Array;
  /** [B, T]. */
  positions: BigInt64Array;
  /** [B, C + T]. */
  keyValid: BigInt64Array;
  /** [B, C + T]. */
  keyPositions: BigInt64Array;
}

/** The ORT dims of a cache of `capacity` slots: keys [B, Hkv, d, C], values [B, Hkv, C, d]. */
export function cacheDims(shape: CacheShape, batch: number, capacity: number): { keys: number[]; values: number[] } {
  return { keys: [batch, shape.kvHeads, shape.headDim, capacity], values: [batch, shape.kvHeads, capacity, shape.headDim] };
}

/** An empty cache for `batch` rows. */
export function newKvCache(shape: CacheShape, batch: number, capacity = 1): KvCache {
  if (!Number.isInteger(batch) || batch < 1) throw new RangeError(`KV cache: the batch must be a positive integer, got ${batch}`);
  if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`KV cache: the capacity must be a positive integer, got ${capacity}`);
  const size = batch * shape.kvHeads * capacity * shape.headDim;
  return {
    batch,
    capacity,
    layers: Array.from({ length: shape.numLayers }, () => ({ k: new Float32Array(size), v: new Float32Array(size) })),
    used: 0,
    valid: new BigInt64Array(batch * capacity),
    positions: new BigInt64Array(batch * capacity),
    next: new Array(batch).fill(0),
  };
}

/** Grows the buffers to hold at least `needed` slots (plus 2√needed spare), copying each row's slots. */
export function reserveKvCache(cache: KvCache, shape: CacheShape, needed: number): void {
  if (needed <= cache.capacity) return;
  const capacity = needed + Math.ceil(2 * Math.sqrt(needed));
  const { kvHeads, headDim } = shape;
  const { used, batch } = cache;
  const old = cache.capacity;
  // Values: rows of `headDim` floats per slot; keys: per (row, head, feature) a run of slots.
  const growValues = (a: Float32Array): Float32Array => {
    const out = new Float32Array(batch * kvHeads * capacity * headDim);
    for (let r = 0; r < batch * kvHeads; r++) out.set(a.subarray(r * old * headDim, (r * old + used) * headDim), r * capacity * headDim);
    return out;
  };
  const growKeys = (a: Float32Array): Float32Array => {
    const out = new Float32Array(batch * kvHeads * headDim * capacity);
    for (let r = 0; r < batch * kvHeads * headDim; r++) out.set(a.subarray(r * old, r * old + used), r * capacity);
    return out;
  };
  const growMask = (a: BigInt64Array): BigInt64Array => {
    const out = new BigInt64Array(batch * capacity);
    for (let b = 0; b < batch; b++) out.set(a.subarray(b * old, b * old + used), b * capacity);
    return out;
  };
  cache.layers = cache.layers.map((l) => ({ k: growKeys(l.k), v: growValues(l.v) }));
  cache.valid = growMask(cache.valid);
  cache.positions = growMask(cache.positions);
  cache.capacity = capacity;
}

/**
 * The feeds of a step appending `rows` (one token list per batch row; rows may differ in length,
 * shorter ones are padded and the padding is masked out forever). Throws past `maxPositions`.
 * The mask's cached part is copied from the cache's int64 buffers; only the T new entries per row
 * are converted.
 */
export function stepFeeds(cache: KvCache, rows: number[][], maxPositions: number): StepFeeds {
  if (rows.length !== cache.batch) throw new Error(`step: ${rows.length} rows for a cache of batch ${cache.batch}`);
  const T = Math.max(...rows.map((r) => r.length));
  if (T === 0) throw new Error('step: no tokens to add');
  const B = cache.batch;
  rows.forEach((r, b) => {
    if (cache.next[b] + r.length > maxPositions) throw new Error(`sequence of ${cache.next[b] + r.length} tokens exceeds the model's context of ${maxPositions}`);
  });
  const { used } = cache;
  const C = cache.capacity;
  const ids = new BigInt64Array(B * T);
  const positions = new BigInt64Array(B * T);
  const keyValid = new BigInt64Array(B * (C + T));
  const keyPositions = new BigInt64Array(B * (C + T));
  for (let b = 0; b < B; b++) {
    const at = b * (C + T);
    keyValid.set(cache.valid.subarray(b * C, b * C + used), at);
    keyPositions.set(cache.positions.subarray(b * C, b * C + used), at);
    for (let t = 0; t < T; t++) {
      const real = t < rows[b].length;
      const p = BigInt(cache.next[b] + (real ? t : 0));
      ids[b * T + t] = real ? BigInt(rows[b][t]) : 0n;
      positions[b * T + t] = p;
      keyValid[at + C + t] = real ? 1n : 0n;
      keyPositions[at + C + t] = p;
    }
  }
  return { B, T, C, used, ids, positions, keyValid, keyPositions };
}

/**
 * Commits a step: the new tokens' keys and values (`present(i)`: layer i's keys [B, Hkv, d, T] and
 * values [B, Hkv, T, d]) go into the next free slots, growing the buffers if needed; the rows'
 * validity and positions advance.
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
    for (let r = 0; r < B * kvHeads; r++) l.v.set(v.subarray(r * T * headDim, (r + 1) * T * headDim), (r * Cn + used) * headDim);
    for (let r = 0; r < B * kvHeads * headDim; r++) {
      if (T === 1) l.k[r * Cn + used] = k[r];
      else l.k.set(k.subarray(r * T, (r + 1) * T), r * Cn + used);
    }
  });
  for (let b = 0; b < B; b++) {
    cache.valid.set(feeds.keyValid.subarray(b * (C + T) + C, (b + 1) * (C + T)), b * Cn + used);
    cache.positions.set(feeds.positions.subarray(b * T, (b + 1) * T), b * Cn + used);
    cache.next[b] += rows[b].length;
  }
  cache.used = used + T;
}

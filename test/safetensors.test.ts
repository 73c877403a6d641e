import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { replaceDirectory, writeFileAtomic, writeFileAtomicAsync } from '../src/io/atomic.js';
import {
  bfloat16BitsToFloat32,
  encodeSafetensors,
  float16BitsToFloat32,
  float32ToBFloat16Bits,
  float32ToFloat16Bits,
  openCheckpoint,
  parseSafetensors,
  readSafetensors,
  SafetensorsError,
  ShardedCheckpoint,
  writeSafetensors,
  type TensorToWrite,
} from '../src/io/safetensors.js';

const root = mkdtempSync(join(tmpdir(), 'maria-safetensors-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let dir = '';
let counter = 0;
beforeEach(() => {
  dir = join(root, `t${counter++}`);
  mkdirSync(dir);
});

/** Float32 bit pattern of a value, so NaN and -0 compare exactly. */
function bits32(v: number): number {
  return new Uint32Array(new Float32Array([v]).buffer)[0]!;
}

function expectSameFloats(actual: Float32Array, expected: number[]): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const e = Math.fround(expected[i]!);
    if (Number.isNaN(e)) expect(Number.isNaN(actual[i]!), `element ${i}`).toBe(true);
    else expect(Object.is(actual[i], e), `element ${i}: ${actual[i]} vs ${e}`).toBe(true);
  }
}

/** Returns the SafetensorsError `fn` throws (failing the test on success or any other error). */
function safetensorsError(fn: () => unknown): SafetensorsError {
  try {
    fn();
  } catch (err) {
    if (err instanceof SafetensorsError) return err;
    throw err;
  }
  throw new Error('expected a SafetensorsError, but nothing was thrown');
}

// --- scalar conversions ---------------------------------------------------------------------------

describe('float16 conversions', () => {
  it('encodes known values to the exact bit patterns', () => {
    const cases: Array<[number, number]> = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.5, 0x3800],
      [1 / 3, 0x3555],
      [0.1, 0x2e66],
      [65504, 0x7bff], // max finite
      [65519, 0x7bff], // just below the rounding midpoint to infinity
      [65520, 0x7c00], // the midpoint rounds (to even) to infinity
      [1e6, 0x7c00],
      [-1e6, 0xfc00],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -14 - 2 ** -24, 0x03ff], // largest subnormal
      [2 ** -24, 0x0001], // smallest subnormal
      [-(2 ** -24), 0x8001],
      [2 ** -25, 0x0000], // exactly half the smallest subnormal: ties to even (zero)
      [1.5 * 2 ** -25, 0x0001],
      [3 * 2 ** -25, 0x0002], // 1.5 units: ties to even (2)
      [2 ** -26, 0x0000],
      [1e-45, 0x0000], // float32 subnormal underflows
      [1 + 2 ** -11, 0x3c00], // tie, rounds to even
      [1 + 3 * 2 ** -11, 0x3c02], // tie, rounds to even (up)
      [2049, 0x6800],
      [2051, 0x6802],
    ];
    for (const [v, h] of cases) expect(float32ToFloat16Bits(v), `${v}`).toBe(h);
    const nan = float32ToFloat16Bits(NaN);
    expect(nan & 0x7c00).toBe(0x7c00);
    expect(nan & 0x03ff).not.toBe(0);
  });

  it('decodes known bit patterns', () => {
    expect(float16BitsToFloat32(0x3c00)).toBe(1);
    expect(float16BitsToFloat32(0x7bff)).toBe(65504);
    expect(float16BitsToFloat32(0x0001)).toBe(2 ** -24);
    expect(float16BitsToFloat32(0x03ff)).toBe(2 ** -14 - 2 ** -24);
    expect(float16BitsToFloat32(0x0400)).toBe(2 ** -14);
    expect(float16BitsToFloat32(0x3555)).toBe(0.333251953125);
    expect(float16BitsToFloat32(0x7c00)).toBe(Infinity);
    expect(float16BitsToFloat32(0xfc00)).toBe(-Infinity);
    expect(Object.is(float16BitsToFloat32(0x8000), -0)).toBe(true);
    expect(Number.isNaN(float16BitsToFloat32(0x7e00))).toBe(true);
    expect(Number.isNaN(float16BitsToFloat32(0xfc01))).toBe(true);
  });

  it('round-trips every non-NaN half exactly', () => {
    for (let h = 0; h < 0x10000; h++) {
      const v = float16BitsToFloat32(h);
      if (Number.isNaN(v)) continue;
      if (float32ToFloat16Bits(v) !== h) expect(float32ToFloat16Bits(v), `0x${h.toString(16)}`).toBe(h);
    }
  });
});

describe('bfloat16 conversions', () => {
  it('encodes known values to the exact bit patterns', () => {
    const cases: Array<[number, number]> = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3f80],
      [-2, 0xc000],
      [Math.PI, 0x4049],
      [1 + 2 ** -8, 0x3f80], // tie, rounds to even (down)
      [1 + 3 * 2 ** -8, 0x3f82], // tie, rounds to even (up)
      [Infinity, 0x7f80],
      [-Infinity, 0xff80],
      [3.4028234663852886e38, 0x7f80], // float32 max rounds to infinity
      [1e-40, 0x0001], // float32 subnormal 0x000116c2 rounds to 0x0001
    ];
    for (const [v, h] of cases) expect(float32ToBFloat16Bits(v), `${v}`).toBe(h);
    const nan = float32ToBFloat16Bits(NaN);
    expect(nan & 0x7f80).toBe(0x7f80);
    expect(nan & 0x007f).not.toBe(0);
  });

  it('decodes as the top half of a float32', () => {
    expect(bfloat16BitsToFloat32(0x3f80)).toBe(1);
    expect(bfloat16BitsToFloat32(0x4049)).toBe(3.140625);
    expect(bfloat16BitsToFloat32(0xff80)).toBe(-Infinity);
    expect(Number.isNaN(bfloat16BitsToFloat32(0x7fc0))).toBe(true);
    for (let h = 0; h < 0x10000; h += 7) {
      const v = bfloat16BitsToFloat32(h);
      if (!Number.isNaN(v)) expect(float32ToBFloat16Bits(v)).toBe(h);
    }
  });
});

// --- round trips ----------------------------------------------------------------------------------

describe('writeSafetensors / readSafetensors', () => {
  const specials = [0, -0, 1, -1.5, 65504, 65520, 1e6, -1e6, Infinity, -Infinity, NaN, 2 ** -24, 1.5 * 2 ** -25, 1 / 3, 1e-40, 3.4e38];

  it('round-trips F32 exactly, including special values', () => {
    const p = join(dir, 'f32.safetensors');
    writeSafetensors(p, { x: { dtype: 'F32', shape: [4, 4], data: new Float32Array(specials) } });
    const f = readSafetensors(p);
    expect(f.info('x')).toEqual({ dtype: 'F32', shape: [4, 4] });
    const got = f.getFloat32('x');
    for (let i = 0; i < specials.length; i++) {
      if (!Number.isNaN(specials[i]!)) expect(bits32(got[i]!)).toBe(bits32(specials[i]!));
    }
    expect(Number.isNaN(got[10]!)).toBe(true);
  });

  it('round-trips F16 with rounding, overflow to inf, subnormals and NaN', () => {
    const p = join(dir, 'f16.safetensors');
    writeSafetensors(p, { x: { dtype: 'F16', shape: [16], data: new Float32Array(specials) } });
    const f = readSafetensors(p);
    expect(f.info('x').dtype).toBe('F16');
    expect(f.getRaw('x').length).toBe(32);
    expectSameFloats(f.getFloat32('x'), [
      0, -0, 1, -1.5, 65504, Infinity, Infinity, -Infinity, Infinity, -Infinity, NaN, 2 ** -24, 2 ** -24, 0.333251953125, 0, Infinity,
    ]);
    // The stored bytes are the exact little-endian halves.
    const raw = f.getRaw('x');
    const halves = Array.from({ length: 16 }, (_, i) => raw[2 * i]! | (raw[2 * i + 1]! << 8));
    expect(halves.slice(0, 6)).toEqual([0x0000, 0x8000, 0x3c00, 0xbe00, 0x7bff, 0x7c00]);
  });

  it('round-trips BF16 with rounding and keeps NaN a NaN even when its payload is in the low bits', () => {
    const p = join(dir, 'bf16.safetensors');
    const data = new Float32Array([1, -0, Math.PI, Infinity, -Infinity, 3.4028234663852886e38, 0, 0]);
    const u = new Uint32Array(data.buffer);
    u[6] = 0x7f800001; // signalling NaN, payload only in bits bf16 drops
    u[7] = 0xffc00000; // negative quiet NaN
    writeSafetensors(p, { w: { dtype: 'BF16', shape: [2, 4], data } });
    const f = readSafetensors(p);
    const raw = f.getRaw('w');
    const halves = Array.from({ length: 8 }, (_, i) => raw[2 * i]! | (raw[2 * i + 1]! << 8));
    expect(halves).toEqual([0x3f80, 0x8000, 0x4049, 0x7f80, 0xff80, 0x7f80, 0x7fc0, 0xffc0]);
    expectSameFloats(f.getFloat32('w'), [1, -0, 3.140625, Infinity, -Infinity, Infinity, NaN, NaN]);
  });

  it('round-trips I64 and I32, with int32 narrowing checked', () => {
    const p = join(dir, 'ints.safetensors');
    const big = new BigInt64Array([0n, -1n, 2n ** 62n, -(2n ** 63n), 2n ** 63n - 1n, 42n]);
    writeSafetensors(p, {
      big: { dtype: 'I64', shape: [2, 3], data: big },
      small: { dtype: 'I64', shape: [3], data: new Int32Array([-5, 0, 2147483647]) },
      i32: { dtype: 'I32', shape: [2], data: new Int32Array([-2147483648, 7]) },
      empty: { dtype: 'I64', shape: [0, 5], data: new BigInt64Array(0) },
    });
    const f = readSafetensors(p);
    expect(Array.from(f.getBigInt64('big'))).toEqual(Array.from(big));
    expect(Array.from(f.getInt32('small'))).toEqual([-5, 0, 2147483647]);
    expect(Array.from(f.getBigInt64('small'))).toEqual([-5n, 0n, 2147483647n]);
    expect(Array.from(f.getInt32('i32'))).toEqual([-2147483648, 7]);
    expect(Array.from(f.getBigInt64('i32'))).toEqual([-2147483648n, 7n]);
    expect(f.info('empty')).toEqual({ dtype: 'I64', shape: [0, 5] });
    expect(f.getBigInt64('empty').length).toBe(0);
    expect(safetensorsError(() => f.getInt32('big')).message).toMatch(/tensor "big": element 2 is 4611686018427387904, outside the int32 range/);
    expect(safetensorsError(() => f.getFloat32('big')).message).toMatch(/dtype I64 is not a float type/);
  });

  it('writes a space-padded, 8-byte aligned header, sorted by name, with metadata, deterministically', () => {
    const t = (v: number): TensorToWrite => ({ dtype: 'F32', shape: [1], data: new Float32Array([v]) });
    const a = join(dir, 'a.safetensors');
    const b = join(dir, 'b.safetensors');
    writeSafetensors(a, { zeta: t(3), alpha: t(1), mid: t(2) }, { format: 'pt', note: 'hi' });
    writeSafetensors(b, { mid: t(2), zeta: t(3), alpha: t(1) }, { format: 'pt', note: 'hi' });
    const bytes = readFileSync(a);
    expect(bytes.equals(readFileSync(b))).toBe(true);
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const header = bytes.subarray(8, 8 + n).toString('utf8');
    expect(header.trimEnd().endsWith('}')).toBe(true);
    expect(header.slice(header.trimEnd().length)).toMatch(/^ *$/); // padding is spaces only
    const f = readSafetensors(a);
    expect(f.names()).toEqual(['alpha', 'mid', 'zeta']);
    expect(f.dataOffsets('alpha')).toEqual([0, 4]);
    expect(f.dataOffsets('mid')).toEqual([4, 8]);
    expect(f.dataOffsets('zeta')).toEqual([8, 12]);
    expect(f.metadata).toEqual({ format: 'pt', note: 'hi' });
    expect(Array.from(parseSafetensors(bytes).getFloat32('zeta'))).toEqual([3]);
  });

  it('handles tensor names that are JavaScript-special', () => {
    const p = join(dir, 'odd.safetensors');
    const data = { dtype: 'F32' as const, shape: [1], data: new Float32Array([5]) };
    const tensors: Record<string, TensorToWrite> = {};
    for (const name of ['__proto__', 'constructor', 'toString', '0', 'ünï.cödé']) {
      Object.defineProperty(tensors, name, { value: data, enumerable: true });
    }
    writeSafetensors(p, tensors);
    const f = readSafetensors(p);
    expect(f.names()).toEqual(['0', '__proto__', 'constructor', 'toString', 'ünï.cödé']);
    expect(Array.from(f.getFloat32('__proto__'))).toEqual([5]);
    expect(f.has('hasOwnProperty')).toBe(false);
  });

  it('rejects writes whose shape and data disagree, leaving an existing file untouched', () => {
    const p = join(dir, 'w.safetensors');
    writeFileSync(p, 'old contents');
    const cases: Array<[Record<string, TensorToWrite>, RegExp]> = [
      [{ x: { dtype: 'F32', shape: [2, 3], data: new Float32Array(5) } }, /tensor "x": shape \[2,3\] has 6 elements but data has 5/],
      [{ x: { dtype: 'F16', shape: [2], data: new Int32Array(2) } }, /tensor "x": dtype F16 is written from a Float32Array, got Int32Array/],
      [{ x: { dtype: 'I32', shape: [2], data: new BigInt64Array(2) } }, /tensor "x": dtype I32 is written from an Int32Array/],
      [{ x: { dtype: 'F32', shape: [-1], data: new Float32Array(0) } }, /tensor "x": shape must be an array of non-negative integers/],
      [{ x: { dtype: 'U8' as 'F32', shape: [1], data: new Float32Array(1) } }, /cannot write dtype "U8"/],
      [{ __metadata__: { dtype: 'F32', shape: [1], data: new Float32Array(1) } }, /reserved/],
    ];
    for (const [tensors, re] of cases) {
      const err = safetensorsError(() => writeSafetensors(p, tensors));
      expect(err.message).toMatch(re);
      expect(err.message).toContain(p);
    }
    expect(safetensorsError(() => writeSafetensors(p, {}, { n: 1 as unknown as string })).message).toMatch(/metadata value for "n" must be a string/);
    expect(readFileSync(p, 'utf8')).toBe('old contents');
    expect(readdirSync(dir)).toEqual(['w.safetensors']);
  });

  it('names close matches for an unknown tensor', () => {
    const p = join(dir, 'm.safetensors');
    const t: TensorToWrite = { dtype: 'F32', shape: [1], data: new Float32Array(1) };
    writeSafetensors(p, { 'transformer.h.0.attn.c_attn.weight': t, 'transformer.h.0.mlp.c_fc.weight': t, 'transformer.wte.weight': t });
    const f = readSafetensors(p);
    const err = safetensorsError(() => f.getFloat32('h.0.attn.c_attn.weight'));
    expect(err.message).toContain(`${p}: no tensor named "h.0.attn.c_attn.weight"; available: "transformer.h.0.attn.c_attn.weight"`);
    expect(safetensorsError(() => f.info('nope')).message).toContain('"transformer.wte.weight"');
  });

  const hf = 'test/data/hf-parity/gpt2-a/model.safetensors';
  it.skipIf(!existsSync(hf))('reads the Hugging Face GPT-2 fixture', () => {
    const f = readSafetensors(hf);
    expect(f.metadata['format']).toBe('pt');
    expect(f.names()).toContain('transformer.h.0.attn.c_attn.weight');
    expect(f.info('transformer.h.0.attn.c_attn.weight')).toEqual({ dtype: 'F32', shape: [32, 96] });
    let total = 0;
    for (const name of f.names()) {
      const { dtype, shape } = f.info(name);
      expect(dtype).toBe('F32');
      const v = f.getFloat32(name);
      expect(v.length).toBe(shape.reduce((a, d) => a * d, 1));
      expect(v.every(Number.isFinite)).toBe(true);
      total += v.byteLength;
    }
    const size = statSync(hf).size;
    expect(total).toBe(size - 8 - Number(readFileSync(hf).readBigUInt64LE(0)));
    // What we write back is read back identically.
    const out = join(dir, 'copy.safetensors');
    writeSafetensors(out, Object.fromEntries(f.names().map((n) => [n, { ...f.info(n), dtype: 'F32' as const, data: f.getFloat32(n) }])), { ...f.metadata });
    const g = readSafetensors(out);
    for (const n of f.names()) expect(Buffer.from(g.getRaw(n)).equals(Buffer.from(f.getRaw(n)))).toBe(true);
  });
});

// --- sharded checkpoints --------------------------------------------------------------------------

describe('openCheckpoint', () => {
  const f32 = (...v: number[]): TensorToWrite => ({ dtype: 'F32', shape: [v.length], data: new Float32Array(v) });

  function writeSharded(d: string, weightMap?: Record<string, string>): void {
    writeSafetensors(join(d, 'model-00001-of-00002.safetensors'), { 'a.weight': f32(1, 2), 'b.weight': f32(3) }, { format: 'pt' });
    writeSafetensors(join(d, 'model-00002-of-00002.safetensors'), { 'c.weight': { dtype: 'F16', shape: [2], data: new Float32Array([0.5, -4]) } });
    writeFileSync(
      join(d, 'model.safetensors.index.json'),
      JSON.stringify({
        metadata: { total_size: 16 },
        weight_map: weightMap ?? {
          'a.weight': 'model-00001-of-00002.safetensors',
          'b.weight': 'model-00001-of-00002.safetensors',
          'c.weight': 'model-00002-of-00002.safetensors',
        },
      }),
    );
  }

  it('reads a sharded checkpoint through its index', () => {
    writeSharded(dir);
    const w = openCheckpoint(dir);
    expect(w).toBeInstanceOf(ShardedCheckpoint);
    expect(w.names()).toEqual(['a.weight', 'b.weight', 'c.weight']);
    expect(w.has('b.weight')).toBe(true);
    expect(w.has('d.weight')).toBe(false);
    expect(w.info('c.weight')).toEqual({ dtype: 'F16', shape: [2] });
    expect(Array.from(w.getFloat32('a.weight'))).toEqual([1, 2]);
    expect(Array.from(w.getFloat32('c.weight'))).toEqual([0.5, -4]);
    expect(w.metadata).toEqual({ format: 'pt', total_size: '16' });
    expect((w as ShardedCheckpoint).shardPath('c.weight')).toBe(join(dir, 'model-00002-of-00002.safetensors'));
    expect(safetensorsError(() => w.getFloat32('z')).message).toMatch(/model\.safetensors\.index\.json: no tensor named "z"; available:/);
  });

  it('prefers model.safetensors when both exist', () => {
    writeSharded(dir);
    writeSafetensors(join(dir, 'model.safetensors'), { only: f32(9) });
    const w = openCheckpoint(dir);
    expect(w.names()).toEqual(['only']);
    expect(Array.from(w.getFloat32('only'))).toEqual([9]);
  });

  it('says which files it looked for when there is neither', () => {
    const err = safetensorsError(() => openCheckpoint(dir));
    expect(err.message).toBe(`${dir}: no weights found: looked for model.safetensors and model.safetensors.index.json`);
    expect(safetensorsError(() => openCheckpoint(join(dir, 'missing'))).message).toMatch(/missing: not a folder/);
  });

  it('rejects an index pointing to a missing shard', () => {
    writeSharded(dir, { 'a.weight': 'model-00001-of-00002.safetensors', 'x.weight': 'model-00003-of-00003.safetensors' });
    const err = safetensorsError(() => openCheckpoint(dir));
    expect(err.message).toContain('model.safetensors.index.json');
    expect(err.message).toMatch(/shard "model-00003-of-00003.safetensors" \(holding tensor "x.weight"\) does not exist/);
  });

  it('rejects an index naming a tensor absent from its shard', () => {
    writeSharded(dir, { 'a.weight': 'model-00001-of-00002.safetensors', 'c.weight': 'model-00001-of-00002.safetensors' });
    const err = safetensorsError(() => openCheckpoint(dir));
    expect(err.message).toMatch(/weight_map puts tensor "c.weight" in shard "model-00001-of-00002.safetensors", but that shard has no such tensor/);
  });

  it('rejects malformed indexes and shard names outside the folder', () => {
    writeSharded(dir, { 'a.weight': '../model-00001-of-00002.safetensors' });
    expect(safetensorsError(() => openCheckpoint(dir)).message).toMatch(/must be a shard file name/);
    writeFileSync(join(dir, 'model.safetensors.index.json'), '{"weight_map": [1]}');
    expect(safetensorsError(() => openCheckpoint(dir)).message).toMatch(/"weight_map" must be an object/);
    writeFileSync(join(dir, 'model.safetensors.index.json'), '{oops');
    expect(safetensorsError(() => openCheckpoint(dir)).message).toMatch(/index\.json: cannot read the shard index/);
  });

  it('reports a corrupt shard with the shard file name', () => {
    writeSharded(dir);
    const shard = join(dir, 'model-00002-of-00002.safetensors');
    truncateSync(shard, statSync(shard).size - 1);
    const err = safetensorsError(() => openCheckpoint(dir));
    expect(err.message).toContain(`${shard}: tensor "c.weight": data_offsets [0, 4] reach past the end`);
  });
});

// --- malformed files ------------------------------------------------------------------------------

/** A safetensors file with an arbitrary header (object or raw text) and data region. */
function craft(header: unknown, data: Uint8Array | number = 0, headerLen?: bigint): Uint8Array {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const h = Buffer.from(text, 'utf8');
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(headerLen ?? BigInt(h.length));
  return Buffer.concat([prefix, h, d]);
}

const entry = (dtype: string, shape: unknown, offsets: unknown): unknown => ({ dtype, shape, data_offsets: offsets });

describe('malformed files', () => {
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['empty file', new Uint8Array(0), /file is 0 bytes, too short to be safetensors/],
    ['file shorter than 8 bytes', new Uint8Array([1, 0, 0, 0, 0]), /file is 5 bytes, too short/],
    ['header length larger than the file', craft({}, 0, 1000n), /header length 1000 is larger than the 2 bytes that follow it/],
    ['huge header length (2^63 - 1)', craft({}, 0, 2n ** 63n - 1n), /header length 9223372036854775807 exceeds the 100000000-byte limit/],
    ['huge header length (2^64 - 1)', craft({}, 0, 2n ** 64n - 1n), /header length 18446744073709551615 exceeds the 100000000-byte limit/],
    ['header not JSON', craft('{"a": {"dtype": '), /header \(16 bytes\) is not valid JSON/],
    ['header not UTF-8', craft(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]).toString('latin1')), /is not valid (UTF-8|JSON)/],
    ['header is a JSON array', craft([1, 2]), /header must be a JSON object mapping tensor names to entries, but it is an array/],
    ['header is JSON null', craft('null'), /but it is null/],
    ['entry is not an object', craft({ x: 3 }), /tensor "x": header entry must be an object/],
    ['unknown dtype', craft({ x: entry('F8_E4M3', [2], [0, 2]) }, 2), /tensor "x": dtype "F8_E4M3" is not supported \(supported: F64, F32, F16, BF16, I64, I32, I8, U8, BOOL\)/],
    ['missing dtype', craft({ x: { shape: [1], data_offsets: [0, 4] } }, 4), /tensor "x": dtype is missing/],
    ['negative shape', craft({ x: entry('F32', [-1, 2], [0, 8]) }, 8), /tensor "x": shape \[-1,2\]: dimension 0 is -1, not a non-negative integer/],
    ['non-integer shape', craft({ x: entry('F32', [2, 1.5], [0, 12]) }, 12), /tensor "x": shape \[2,1.5\]: dimension 1 is 1.5/],
    ['shape not an array', craft({ x: entry('F32', '2', [0, 8]) }, 8), /tensor "x": shape must be an array/],
    ['offsets not a pair', craft({ x: entry('F32', [1], [0, 4, 8]) }, 4), /tensor "x": data_offsets must be \[begin, end\], got \[0,4,8\]/],
    ['negative offset', craft({ x: entry('F32', [1], [-4, 0]) }, 4), /tensor "x": data_offsets \[-4,0\]: begin -4 is not a non-negative integer/],
    ['offsets out of range', craft({ x: entry('F32', [4], [0, 16]) }, 8), /tensor "x": data_offsets \[0, 16\] reach past the end of the data region, which is only 8 bytes/],
    ['begin > end', craft({ x: entry('F32', [1], [8, 4]) }, 8), /tensor "x": data_offsets \[8, 4\] has begin > end/],
    ['overlapping tensors', craft({ a: entry('F32', [4], [0, 16]), b: entry('F32', [4], [8, 24]) }, 24), /tensor "b": data_offsets \[8, 24\] overlap tensor "a" at \[0, 16\]/],
    ['hole between tensors', craft({ a: entry('F32', [4], [0, 16]), b: entry('F32', [4], [20, 36]) }, 36), /tensor "b": data_offsets \[20, 36\] leave a hole: bytes \[16, 20\) between tensor "a" \(ends at 16\) and this tensor belong to no tensor/],
    ['hole at the start', craft({ a: entry('F32', [1], [4, 8]) }, 8), /bytes \[0, 4\) between the start of the data region and this tensor/],
    ['trailing bytes', craft({ a: entry('F32', [1], [0, 4]) }, 10), /data region is 10 bytes but the tensors cover only \[0, 4\): 6 trailing bytes belong to no tensor/],
    ['size mismatch with shape', craft({ 'h.0.attn.c_attn.weight': entry('F32', [5, 7], [0, 100]) }, 100), /: tensor "h.0.attn.c_attn.weight": data_offsets \[0, 100\] is 100 bytes but dtype F32 with shape \[5, 7\] needs 140$/],
    ['shape whose element count overflows doubles', craft({ a: entry('F32', [2 ** 52, 2 ** 52, 0.5 + 0.5], [0, 4]) }, 4), /needs 81129638414606681695789005144064/],
    ['metadata not strings', craft({ __metadata__: { n: 3 } }), /__metadata__ value for "n" must be a string, got 3/],
  ];

  it.each(cases)('%s', (_label, bytes, re) => {
    const p = join(dir, 'model.safetensors');
    writeFileSync(p, bytes);
    const err = safetensorsError(() => readSafetensors(p));
    expect(err.message.startsWith(`${p}: `)).toBe(true);
    expect(err.message).toMatch(re);
    // The in-memory parser validates identically.
    expect(safetensorsError(() => parseSafetensors(bytes, 'mem')).message).toBe(err.message.replace(p, 'mem'));
  });

  it('rejects a truncated data section', () => {
    const p = join(dir, 'model.safetensors');
    writeSafetensors(p, { a: { dtype: 'F32', shape: [4], data: new Float32Array(4) }, b: { dtype: 'F32', shape: [2, 2], data: new Float32Array(4) } });
    truncateSync(p, statSync(p).size - 3);
    expect(safetensorsError(() => readSafetensors(p)).message).toMatch(/tensor "b": data_offsets \[16, 32\] reach past the end of the data region, which is only 29 bytes \(truncated file\?\)/);
  });

  it('reports a missing file or a folder as a SafetensorsError', () => {
    expect(safetensorsError(() => readSafetensors(join(dir, 'nope.safetensors'))).message).toMatch(/nope\.safetensors: cannot open file: ENOENT/);
    expect(safetensorsError(() => readSafetensors(dir)).message).toMatch(/cannot (open|read) file/);
  });

  it('survives random corruption: every outcome is a valid read or a SafetensorsError', () => {
    const base = encodeSafetensors(
      {
        'blk.0.w': { dtype: 'F32', shape: [3, 2], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
        'blk.0.h': { dtype: 'F16', shape: [4], data: new Float32Array([0.5, -1, 65504, 2 ** -24]) },
        'blk.0.b': { dtype: 'BF16', shape: [2], data: new Float32Array([1, -2]) },
        ids: { dtype: 'I64', shape: [2], data: new BigInt64Array([7n, -7n]) },
        n: { dtype: 'I32', shape: [1], data: new Int32Array([3]) },
      },
      { format: 'pt' },
    );
    const headerEnd = 8 + Number(Buffer.from(base).readBigUInt64LE(0));
    let seed = 0x5eed1234;
    const rand = (): number => {
      // mulberry32: small, fixed-seed, reproducible
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const randInt = (n: number): number => Math.floor(rand() * n);
    const digits = Buffer.from('0123456789-.e[]{}",: ');
    const outcomes = { ok: 0, error: 0 };
    const p = join(dir, 'fuzz.safetensors');
    for (let iter = 0; iter < 300; iter++) {
      let bytes = Uint8Array.from(base);
      const kind = iter % 5;
      if (kind === 0) {
        for (let k = 1 + randInt(3); k > 0; k--) bytes[randInt(bytes.length)] ^= 1 << randInt(8);
      } else if (kind === 1) {
        // header-targeted edits with JSON-ish characters: keeps the JSON parseable more often
        for (let k = 1 + randInt(2); k > 0; k--) bytes[8 + randInt(headerEnd - 8)] = digits[randInt(digits.length)]!;
      } else if (kind === 2) {
        bytes = bytes.slice(0, randInt(bytes.length));
      } else if (kind === 3) {
        const view = new DataView(bytes.buffer);
        const choices = [0n, 1n, BigInt(headerEnd - 9), BigInt(headerEnd - 7), BigInt(bytes.length), 2n ** 63n, BigInt(randInt(2 ** 31)) * BigInt(randInt(2 ** 31))];
        view.setBigUint64(0, choices[randInt(choices.length)]!, true);
      } else {
        const extra = new Uint8Array(1 + randInt(16)).map(() => randInt(256));
        bytes = Buffer.concat([bytes, extra]);
        bytes[8 + randInt(headerEnd - 8)] = digits[randInt(digits.length)]!;
      }
      writeFileSync(p, bytes);
      for (const open of [() => readSafetensors(p), () => parseSafetensors(bytes, 'fuzz')]) {
        try {
          const f = open();
          for (const name of f.names()) {
            const { dtype } = f.info(name);
            if (['F32', 'F16', 'BF16', 'F64'].includes(dtype)) f.getFloat32(name);
            else f.getBigInt64(name);
            f.getRaw(name);
          }
          outcomes.ok++;
        } catch (err) {
          if (!(err instanceof SafetensorsError)) {
            throw new Error(`iteration ${iter} (mutation ${kind}) threw ${String(err)}`, { cause: err });
          }
          expect(err.message.length).toBeGreaterThan(10);
          outcomes.error++;
        }
      }
    }
    expect(outcomes.ok + outcomes.error).toBe(600);
    expect(outcomes.error).toBeGreaterThan(100);
    expect(outcomes.ok).toBeGreaterThan(0);
  });
});

// --- atomic writes --------------------------------------------------------------------------------

describe('writeFileAtomic', () => {
  it('replaces the file and leaves no temp files', async () => {
    const p = join(dir, 'out.txt');
    writeFileAtomic(p, 'first');
    expect(readFileSync(p, 'utf8')).toBe('first');
    writeFileAtomic(p, new Uint8Array([104, 105]));
    expect(readFileSync(p, 'utf8')).toBe('hi');
    writeFileAtomic(p, [Buffer.from('a'), new Uint8Array(0), Buffer.from('bc')]);
    expect(readFileSync(p, 'utf8')).toBe('abc');
    await writeFileAtomicAsync(p, 'async');
    expect(readFileSync(p, 'utf8')).toBe('async');
    expect(readdirSync(dir)).toEqual(['out.txt']);
  });

  it('keeps the permission bits of the file it replaces', async () => {
    const p = join(dir, 'secret');
    writeFileSync(p, 'x');
    chmodSync(p, 0o600);
    writeFileAtomic(p, 'y');
    expect(statSync(p).mode & 0o777).toBe(0o600);
    chmodSync(p, 0o640);
    await writeFileAtomicAsync(p, 'z');
    expect(statSync(p).mode & 0o777).toBe(0o640);
  });

  it('leaves the old file intact and no temp file when the data is invalid midway', async () => {
    const p = join(dir, 'keep.txt');
    writeFileSync(p, 'original');
    const bad = [Buffer.from('partial'), 42 as unknown as Uint8Array];
    expect(() => writeFileAtomic(p, bad)).toThrow(TypeError);
    await expect(writeFileAtomicAsync(p, bad)).rejects.toThrow(TypeError);
    expect(() => writeFileAtomic(p, null as unknown as string)).toThrow(TypeError);
    expect(readFileSync(p, 'utf8')).toBe('original');
    expect(readdirSync(dir)).toEqual(['keep.txt']);
  });

  it('leaves no temp file when the final rename fails', async () => {
    const p = join(dir, 'target');
    mkdirSync(p);
    writeFileSync(join(p, 'inside'), 'x'); // renaming a file over a non-empty folder fails
    expect(() => writeFileAtomic(p, 'data')).toThrow();
    await expect(writeFileAtomicAsync(p, 'data')).rejects.toThrow();
    expect(readdirSync(dir)).toEqual(['target']);
    expect(readdirSync(p)).toEqual(['inside']);
  });

  it('fails cleanly when the folder does not exist', () => {
    expect(() => writeFileAtomic(join(dir, 'no', 'such', 'file'), 'x')).toThrow(/ENOENT/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it.skipIf(process.getuid?.() === 0)('leaves the old file intact when the folder is not writable', () => {
    const p = join(dir, 'ro.txt');
    writeFileSync(p, 'original');
    chmodSync(dir, 0o500);
    try {
      expect(() => writeFileAtomic(p, 'new')).toThrow(/EACCES|EPERM/);
    } finally {
      chmodSync(dir, 0o700);
    }
    expect(readFileSync(p, 'utf8')).toBe('original');
    expect(readdirSync(dir)).toEqual(['ro.txt']);
  });
});

describe('replaceDirectory', () => {
  const folder = (name: string, files: Record<string, string>): string => {
    const p = join(dir, name);
    mkdirSync(p);
    for (const [file, text] of Object.entries(files)) writeFileSync(join(p, file), text);
    return p;
  };

  it('moves the new folder into place whether the target is absent, empty or full, leaving nothing aside', () => {
    const target = join(dir, 'out');
    replaceDirectory(folder('.new1', { a: '1' }), target);
    expect(readdirSync(target)).toEqual(['a']);
    replaceDirectory(folder('.new2', { b: '2' }), target, 'tag');
    expect(readdirSync(target)).toEqual(['b']);
    rmSync(join(target, 'b'));
    replaceDirectory(folder('.new3', { c: '3' }), target);
    expect(readdirSync(target)).toEqual(['c']);
    expect(readdirSync(dir)).toEqual(['out']);
  });

  it('puts the old folder back when the new one cannot be moved in', () => {
    const target = folder('out', { old: 'x' });
    expect(() => replaceDirectory(join(dir, 'missing'), target, 'tag')).toThrow(/ENOENT/);
    expect(readdirSync(dir)).toEqual(['out']);
    expect(readFileSync(join(target, 'old'), 'utf8')).toBe('x');
  });
});

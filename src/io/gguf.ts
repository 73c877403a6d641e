// The GGUF file format of llama.cpp / ggml, version 3, from ggml's gguf.h and docs/gguf.md:
//   "GGUF", u32 version, u64 tensor count, u64 metadata count,
//   metadata: string key, u32 value type, value (an array: u32 item type, u64 count, items),
//   tensor infos: string name, u32 n_dims, u64 ne[n_dims] (innermost first), u32 ggml type, u64 offset,
//   zero padding to `general.alignment`, then the data blob; every offset is a multiple of the alignment.
// Strings are a u64 byte length and UTF-8 bytes without a terminator; everything is little-endian.
// The writer asks for each tensor's bytes only when it reaches it, so a large model streams to disk
// one tensor at a time instead of being held in memory twice.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { writeFileAtomic } from './atomic.js';

export const GGUF_VERSION = 3;
/** ggml's GGUF_DEFAULT_ALIGNMENT, written explicitly as `general.alignment`. */
export const GGUF_ALIGNMENT = 32;
const MAGIC = 'GGUF';

export type GgufScalarType = 'uint8' | 'int8' | 'uint16' | 'int16' | 'uint32' | 'int32' | 'float32' | 'bool' | 'string' | 'uint64' | 'int64' | 'float64';
export type GgufScalar = number | bigint | boolean | string;
/** A typed metadata value: llama.cpp checks types strictly (e.g. counts must be uint32). */
export type GgufValue = { type: GgufScalarType; value: GgufScalar } | { type: 'array'; itemType: GgufScalarType; value: readonly GgufScalar[] };

const TYPE_IDS: Readonly<Record<GgufScalarType | 'array', number>> = {
  uint8: 0, int8: 1, uint16: 2, int16: 3, uint32: 4, int32: 5, float32: 6, bool: 7, string: 8, array: 9, uint64: 10, int64: 11, float64: 12,
};
const TYPE_NAMES = Object.fromEntries(Object.entries(TYPE_IDS).map(([k, v]) => [v, k])) as Record<number, GgufScalarType | 'array'>;

/** Tensor element types the writer produces (ggml_type 0 and 1). */
export type GgufTensorType = 'F32' | 'F16';
const GGML_TYPES: Readonly<Record<GgufTensorType, { id: number; bytes: number }>> = { F32: { id: 0, bytes: 4 }, F16: { id: 1, bytes: 2 } };

export interface GgufTensorToWrite {
  name: string;
  type: GgufTensorType;
  /** ggml order, innermost first: a Hugging Face [out, in] weight is [in, out]. */
  dims: number[];
  /** The tensor's little-endian bytes, asked for only when the writer reaches it. */
  data: () => Uint8Array;
}

export interface GgufTensorInfo {
  name: string;
  dims: number[];
  /** ggml_type id (0 F32, 1 F16, others quantised). */
  type: number;
  /** Byte offset within the data blob. */
  offset: number;
}

export interface GgufFile {
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** Where the data blob starts in the file. */
  dataOffset: number;
}

export class GgufError extends Error {
  override name = 'GgufError';
}

const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;

/** A growable little-endian byte buffer for the header. */
class ByteWriter {
  private buf = Buffer.alloc(1 << 16);
  length = 0;

  private room(n: number): Buffer {
    if (this.length + n > this.buf.length) {
      const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
      this.buf.copy(next, 0, 0, this.length);
      this.buf = next;
    }
    return this.buf;
  }
  u32(v: number): void {
    this.room(4).writeUInt32LE(v, this.length);
    this.length += 4;
  }
  u64(v: number | bigint): void {
    this.room(8).writeBigUInt64LE(BigInt(v), this.length);
    this.length += 8;
  }
  bytes(b: Uint8Array): void {
    this.room(b.length).set(b, this.length);
    this.length += b.length;
  }
  string(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.bytes(b);
  }
  scalar(key: string, type: GgufScalarType, v: GgufScalar): void {
    const bad = (): never => {
      throw new GgufError(`metadata ${JSON.stringify(key)}: ${JSON.stringify(typeof v === 'bigint' ? String(v) : v)} is not a valid ${type}`);
    };
    if (type === 'string') return typeof v === 'string' ? this.string(v) : bad();
    if (type === 'bool') return typeof v === 'boolean' ? this.bytes(Uint8Array.of(v ? 1 : 0)) : bad();
    const b = Buffer.alloc(8);
    try {
      switch (type) {
        case 'float32': return this.bytes(b.subarray(0, b.writeFloatLE(num(v), 0)));
        case 'float64': return this.bytes(b.subarray(0, b.writeDoubleLE(num(v), 0)));
        case 'uint64': return this.bytes(b.subarray(0, b.writeBigUInt64LE(BigInt(int(v)), 0)));
        case 'int64': return this.bytes(b.subarray(0, b.writeBigInt64LE(BigInt(int(v)), 0)));
        case 'uint8': return this.bytes(b.subarray(0, b.writeUInt8(int(v) as number, 0)));
        case 'int8': return this.bytes(b.subarray(0, b.writeInt8(int(v) as number, 0)));
        case 'uint16': return this.bytes(b.subarray(0, b.writeUInt16LE(int(v) as number, 0)));
        case 'int16': return this.bytes(b.subarray(0, b.writeInt16LE(int(v) as number, 0)));
        case 'uint32': return this.bytes(b.subarray(0, b.writeUInt32LE(int(v) as number, 0)));
        case 'int32': return this.bytes(b.subarray(0, b.writeInt32LE(int(v) as number, 0)));
      }
    } catch {
      // Buffer's own range checks (and int/num below) reject out-of-range and mistyped values.
    }
    return bad();
  }
  value(key: string, v: GgufValue): void {
    if (!(v.type in TYPE_IDS)) throw new GgufError(`metadata ${JSON.stringify(key)}: unknown type ${JSON.stringify(v.type)}`);
    this.u32(TYPE_IDS[v.type]);
    if (v.type !== 'array') return this.scalar(key, v.type, v.value);
    if (!(v.itemType in TYPE_IDS) || (v.itemType as string) === 'array') throw new GgufError(`metadata ${JSON.stringify(key)}: arrays of ${JSON.stringify(v.itemType)} are not supported`);
    this.u32(TYPE_IDS[v.itemType]);
    this.u64(v.value.length);
    for (const item of v.value) this.scalar(key, v.itemType, item);
  }
  done(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

function num(v: GgufScalar): number {
  if (typeof v !== 'number') throw new TypeError();
  return v;
}

function int(v: GgufScalar): number | bigint {
  if (typeof v === 'bigint' || (typeof v === 'number' && Number.isSafeInteger(v))) return v;
  throw new TypeError();
}

/**
 * Writes a GGUF v3 file atomically (io/atomic.ts), each tensor's bytes produced only when written. `general.alignment` is added (32) unless given.
 */
export function writeGguf(path: string, metadata: Record<string, GgufValue>, tensors: readonly GgufTensorToWrite[]): void {
  const meta: Record<string, GgufValue> = { ...metadata };
  meta['general.alignment'] ??= { type: 'uint32', value: GGUF_ALIGNMENT };
  const align = meta['general.alignment'];
  if (align.type !== 'uint32' || typeof align.value !== 'number' || align.value <= 0 || align.value % 8 !== 0) {
    throw new GgufError('general.alignment must be a uint32 multiple of 8');
  }
  const alignment = align.value;
  const h = new ByteWriter();
  h.bytes(Buffer.from(MAGIC, 'latin1'));
  h.u32(GGUF_VERSION);
  h.u64(tensors.length);
  h.u64(Object.keys(meta).length);
  for (const [key, v] of Object.entries(meta)) {
    h.string(key);
    h.value(key, v);
  }
  const sizes: number[] = [];
  let offset = 0;
  const seen = new Set<string>();
  for (const t of tensors) {
    if (seen.has(t.name)) throw new GgufError(`tensor ${JSON.stringify(t.name)} appears twice`);
    seen.add(t.name);
    const kind = GGML_TYPES[t.type];
    if (!kind) throw new GgufError(`tensor ${JSON.stringify(t.name)}: type ${JSON.stringify(t.type)} is not writable (F32, F16)`);
    if (!t.dims.length || t.dims.some((d) => !Number.isSafeInteger(d) || d <= 0)) throw new GgufError(`tensor ${JSON.stringify(t.name)}: bad dims [${t.dims}]`);
    h.string(t.name);
    h.u32(t.dims.length);
    for (const d of t.dims) h.u64(d);
    h.u32(kind.id);
    h.u64(offset);
    sizes.push(t.dims.reduce((a, b) => a * b, kind.bytes));
    offset = alignUp(offset + sizes[sizes.length - 1]!, alignment);
  }
  const header = h.done();
  const zeros = new Uint8Array(alignment);
  writeFileAtomic(path, chunks());
  function* chunks(): Generator<Uint8Array> {
    yield header;
    yield zeros.subarray(0, alignUp(header.length, alignment) - header.length);
    for (const [i, t] of tensors.entries()) {
      const bytes = t.data();
      if (bytes.byteLength !== sizes[i]) throw new GgufError(`tensor ${JSON.stringify(t.name)}: data has ${bytes.byteLength} bytes, dims [${t.dims}] of ${t.type} need ${sizes[i]}`);
      yield bytes;
      yield zeros.subarray(0, alignUp(bytes.byteLength, alignment) - bytes.byteLength);
    }
  }
}

/** Thrown inside the parser when the bytes read so far end too early; the caller reads more. */
class NeedMore extends Error {}

class ByteReader {
  pos = 0;
  constructor(
    private readonly buf: Buffer,
    private readonly complete: boolean,
    private readonly file: string,
  ) {}
  private take(n: number): number {
    if (this.pos + n > this.buf.length) {
      if (this.complete) throw new GgufError(`${this.file}: truncated (needed ${n} bytes at offset ${this.pos})`);
      throw new NeedMore();
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }
  u32(): number {
    return this.buf.readUInt32LE(this.take(4));
  }
  /** A u64 count or size, which must fit a double exactly. */
  size(what: string): number {
    const v = this.buf.readBigUInt64LE(this.take(8));
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new GgufError(`${this.file}: ${what} ${v} is implausibly large`);
    return Number(v);
  }
  string(): string {
    const n = this.size('string length');
    const at = this.take(n);
    return this.buf.toString('utf8', at, at + n);
  }
  scalar(type: GgufScalarType | 'array'): GgufScalar {
    const b = this.buf;
    switch (type) {
      case 'uint8': return b.readUInt8(this.take(1));
      case 'int8': return b.readInt8(this.take(1));
      case 'uint16': return b.readUInt16LE(this.take(2));
      case 'int16': return b.readInt16LE(this.take(2));
      case 'uint32': return b.readUInt32LE(this.take(4));
      case 'int32': return b.readInt32LE(this.take(4));
      case 'float32': return b.readFloatLE(this.take(4));
      case 'float64': return b.readDoubleLE(this.take(8));
      case 'uint64': return b.readBigUInt64LE(this.take(8));
      case 'int64': return b.readBigInt64LE(this.take(8));
      case 'bool': return b.readUInt8(this.take(1)) !== 0;
      case 'string': return this.string();
      default: throw new GgufError(`${this.file}: nested arrays are not supported`);
    }
  }
  type(): GgufScalarType | 'array' {
    const id = this.u32();
    const t = TYPE_NAMES[id];
    if (t === undefined) throw new GgufError(`${this.file}: unknown metadata value type ${id} at offset ${this.pos - 4}`);
    return t;
  }
}

function parse(file: string, buf: Buffer, complete: boolean, fileSize: number): GgufFile {
  const r = new ByteReader(buf, complete, file);
  if (buf.length >= 4 && buf.toString('latin1', 0, 4) !== MAGIC) throw new GgufError(`${file}: not a GGUF file (no "GGUF" magic)`);
  r.pos = 4;
  const version = r.u32();
  if (version !== 2 && version !== 3) throw new GgufError(`${file}: GGUF version ${version} is not supported (2 or 3)`);
  const nTensors = r.size('tensor count');
  const nKv = r.size('metadata count');
  // Every entry takes at least 8 bytes, so larger counts are corruption rather than something to allocate for.
  if (nTensors > fileSize / 8 || nKv > fileSize / 8) throw new GgufError(`${file}: counts (${nTensors} tensors, ${nKv} metadata) exceed what the file can hold`);
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const key = r.string();
    const type = r.type();
    if (type !== 'array') {
      metadata.set(key, { type, value: r.scalar(type) });
      continue;
    }
    const itemType = r.type();
    const n = r.size(`${key} length`);
    if (n > fileSize) throw new GgufError(`${file}: ${key} claims ${n} items`);
    const value: GgufScalar[] = new Array(n);
    if (itemType === 'array') throw new GgufError(`${file}: ${key}: nested arrays are not supported`);
    for (let j = 0; j < n; j++) value[j] = r.scalar(itemType);
    metadata.set(key, { type: 'array', itemType, value });
  }
  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = r.string();
    const nDims = r.u32();
    if (nDims > 8) throw new GgufError(`${file}: tensor ${JSON.stringify(name)} has ${nDims} dims`);
    const dims = Array.from({ length: nDims }, () => r.size('dim'));
    tensors.push({ name, dims, type: r.u32(), offset: r.size('offset') });
  }
  const a = metadata.get('general.alignment');
  const alignment = a && a.type === 'uint32' ? (a.value as number) : GGUF_ALIGNMENT;
  return { version, metadata, tensors, alignment, dataOffset: alignUp(r.pos, alignment) };
}

/** Reads a GGUF file's header: metadata and tensor infos (not the tensor data). */
export function readGguf(path: string): GgufFile {
  const fd = openSync(path, 'r');
  try {
    const fileSize = fstatSync(fd).size;
    // Headers are mostly the vocabulary (a few MB at most): read a prefix and grow it until it parses.
    for (let n = Math.min(fileSize, 1 << 20); ; n = Math.min(fileSize, n * 4)) {
      const buf = Buffer.alloc(n);
      readSync(fd, buf, 0, n, 0);
      try {
        return parse(path, buf, n === fileSize, fileSize);
      } catch (err) {
        if (!(err instanceof NeedMore)) throw err;
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** The bytes of one F32/F16 tensor of a file read by {@link readGguf}. */
export function readGgufTensor(path: string, gguf: GgufFile, name: string): Uint8Array {
  const t = gguf.tensors.find((x) => x.name === name);
  if (!t) throw new GgufError(`${path}: no tensor ${JSON.stringify(name)}`);
  const kind = Object.values(GGML_TYPES).find((k) => k.id === t.type);
  if (!kind) throw new GgufError(`${path}: tensor ${JSON.stringify(name)} has ggml type ${t.type}, not F32 or F16`);
  const out = new Uint8Array(t.dims.reduce((a, b) => a * b, kind.bytes));
  const fd = openSync(path, 'r');
  try {
    if (readSync(fd, out, 0, out.length, gguf.dataOffset + t.offset) !== out.length) throw new GgufError(`${path}: tensor ${JSON.stringify(name)} is truncated`);
  } finally {
    closeSync(fd);
  }
  return out;
}

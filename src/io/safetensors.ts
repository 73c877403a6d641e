// Reading and writing the safetensors weight format, implemented from the format spec:
//   8 bytes  little-endian u64 N (header length)
//   N bytes  UTF-8 JSON: {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}
//   rest     the data region; offsets are relative to its start and the tensors tile it exactly.
// Files come from the network, so the header is validated completely before anything is
// allocated from it: a corrupt or hostile file must fail with a SafetensorsError naming the
// problem, never with an out-of-memory error or a garbage tensor.
import { constants as bufferConstants } from 'node:buffer';
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from './atomic.js';

/** Element types this module understands (a subset of the spec's; others are rejected clearly). */
export type DType = 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I8' | 'U8' | 'BOOL' | 'F64';

/** Bytes per element of each {@link DType}. */
export const DTYPE_SIZES: Readonly<Record<DType, number>> = Object.freeze({
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I8: 1,
  U8: 1,
  BOOL: 1,
});

const FLOAT_DTYPES: ReadonlySet<DType> = new Set<DType>(['F64', 'F32', 'F16', 'BF16']);

/** What the header says about one tensor. */
export interface TensorEntry {
  dtype: DType;
  shape: number[];
}

/** Any malformed file, unknown tensor name or invalid write request. */
export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
  /** The file (or checkpoint folder) concerned. */
  readonly file: string;
  /** The tensor concerned, when the problem is about one tensor. */
  readonly tensor?: string;

  constructor(file: string, message: string, options?: { tensor?: string; cause?: unknown }) {
    const where = options?.tensor !== undefined ? `${file}: tensor ${JSON.stringify(options.tensor)}: ` : `${file}: `;
    super(where + message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.file = file;
    if (options?.tensor !== undefined) this.tensor = options.tensor;
  }
}

/**
 * A set of named tensors, from one safetensors file or from a sharded checkpoint. Every getter
 * returns a fresh array that the caller owns.
 */
export interface WeightSource {
  /** The `__metadata__` strings (for a sharded checkpoint: the shards' merged with the index's). */
  readonly metadata: Readonly<Record<string, string>>;
  /** All tensor names, sorted, so the same weights list identically however they are sharded. */
  names(): string[];
  has(name: string): boolean;
  info(name: string): TensorEntry;
  /** Float tensors (F32, F16, BF16, F64) as float32. */
  getFloat32(name: string): Float32Array;
  /** The tensor's bytes exactly as stored (little-endian). */
  getRaw(name: string): Uint8Array;
  /** Integer tensors (I32, I64 within int32 range, I8, U8, BOOL) as int32. */
  getInt32(name: string): Int32Array;
  /** Integer tensors (I64, I32, I8, U8, BOOL) as int64. */
  getBigInt64(name: string): BigInt64Array;
}

// --- scalar conversions ---------------------------------------------------------------------------

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) {
    // Keep NaN a NaN (and quiet) even when its payload lives only in the bits f16 drops.
    return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  }
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 31) return sign | 0x7c00; // >= 65536: beyond anything that could round down to 65504
  if (e >= 1) {
    let h = (e << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    // Round to nearest even; a carry out of the mantissa correctly bumps the exponent, and from
    // the largest finite value it lands exactly on infinity (0x7c00).
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h += 1;
    return sign | h;
  }
  if (e < -10) return sign; // below half the smallest subnormal (2^-25): rounds to zero
  // Subnormal result: the value in units of 2^-24 is (1.mant) >> shift, rounded to nearest even.
  const m = mant | 0x800000;
  const shift = 14 - e;
  let h = m >>> shift;
  const rest = m & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (rest > half || (rest === half && (h & 1) === 1)) h += 1; // may carry into the smallest normal
  return sign | h;
}

function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // Subnormal f16 is a normal f32: shift the leading 1 up to the implicit-bit position.
  let e = 113;
  while ((mant & 0x400) === 0) {
    mant <<= 1;
    e -= 1;
  }
  return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
}

function f32BitsToBF16Bits(x: number): number {
  if ((x & 0x7fffffff) >>> 0 > 0x7f800000) {
    // Truncating could clear every payload bit and turn a NaN into infinity; set the quiet bit.
    return ((x >>> 16) | 0x40) & 0xffff;
  }
  const lsb = (x >>> 16) & 1;
  return Math.floor((x + 0x7fff + lsb) / 0x10000) & 0xffff;
}

/** IEEE binary16 bits (an integer 0..0xffff) nearest to `value` rounded to float32; ties to even. */
export function float32ToFloat16Bits(value: number): number {
  scratchF32[0] = value;
  return f32BitsToF16Bits(scratchU32[0]!);
}

/** The float value of IEEE binary16 bits (exact: every half is representable in float32). */
export function float16BitsToFloat32(bits: number): number {
  scratchU32[0] = f16BitsToF32Bits(bits & 0xffff);
  return scratchF32[0]!;
}

/** bfloat16 bits (the top half of a float32) nearest to `value` as float32; ties to even, NaN kept. */
export function float32ToBFloat16Bits(value: number): number {
  scratchF32[0] = value;
  return f32BitsToBF16Bits(scratchU32[0]!);
}

/** The float value of bfloat16 bits. */
export function bfloat16BitsToFloat32(bits: number): number {
  scratchU32[0] = (bits & 0xffff) << 16;
  return scratchF32[0]!;
}

// --- bulk conversions -----------------------------------------------------------------------------

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Converts between file (little-endian) and host byte order; a no-op on little-endian hosts. */
function swapToHostInPlace(bytes: Uint8Array, width: number): void {
  if (LITTLE_ENDIAN_HOST || width === 1) return;
  for (let i = 0; i < bytes.length; i += width) {
    for (let a = i, b = i + width - 1; a < b; a++, b--) {
      const t = bytes[a]!;
      bytes[a] = bytes[b]!;
      bytes[b] = t;
    }
  }
}

let f16Table: Float32Array | undefined;

/** All 65536 halves decoded once: a lookup is much faster than decoding each element. */
function f16ToF32Table(): Float32Array {
  if (f16Table === undefined) {
    const bits = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) bits[h] = f16BitsToF32Bits(h);
    f16Table = new Float32Array(bits.buffer);
  }
  return f16Table;
}

// --- header validation ----------------------------------------------------------------------------

/** The spec's own cap; anything larger is treated as corruption rather than allocated. */
export const MAX_HEADER_BYTES = 100_000_000;

interface Located extends TensorEntry {
  begin: number;
  end: number;
}

interface ParsedHeader {
  entries: Map<string, Located>;
  metadata: Record<string, string>;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  let s: string | undefined;
  try {
    s = JSON.stringify(v);
  } catch {
    s = undefined;
  }
  s ??= String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

const KNOWN_DTYPES = Object.keys(DTYPE_SIZES) as DType[];

function isDType(v: unknown): v is DType {
  return typeof v === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZES, v);
}

function validateEntry(file: string, name: string, raw: unknown, dataSize: number): Located {
  const fail = (msg: string): never => {
    throw new SafetensorsError(file, msg, { tensor: name });
  };
  if (!isPlainObject(raw)) return fail(`header entry must be an object with dtype, shape and data_offsets, got ${show(raw)}`);
  const { dtype, shape, data_offsets: offsets } = raw;
  if (dtype === undefined) fail('dtype is missing');
  if (!isDType(dtype)) {
    return fail(`dtype ${show(dtype)} is not supported (supported: ${KNOWN_DTYPES.join(', ')})`);
  }
  if (!Array.isArray(shape)) return fail(`shape must be an array of non-negative integers, got ${show(shape)}`);
  shape.forEach((d: unknown, i) => {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      fail(`shape ${show(shape)}: dimension ${i} is ${show(d)}, not a non-negative integer`);
    }
  });
  if (!Array.isArray(offsets) || offsets.length !== 2) {
    return fail(`data_offsets must be [begin, end], got ${show(offsets)}`);
  }
  const [begin, end] = offsets as unknown[];
  for (const [label, v] of [['begin', begin], ['end', end]] as const) {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      fail(`data_offsets ${show(offsets)}: ${label} ${show(v)} is not a non-negative integer`);
    }
  }
  const b = begin as number;
  const e = end as number;
  if (b > e) fail(`data_offsets [${b}, ${e}] has begin > end`);
  if (e > dataSize) {
    fail(`data_offsets [${b}, ${e}] reach past the end of the data region, which is only ${dataSize} bytes (truncated file?)`);
  }
  // BigInt: a hostile shape could overflow doubles and make a wrong size look right.
  const numel = (shape as number[]).reduce((acc, d) => acc * BigInt(d), 1n);
  const need = numel * BigInt(DTYPE_SIZES[dtype]);
  if (need !== BigInt(e - b)) {
    fail(`data_offsets [${b}, ${e}] is ${e - b} bytes but dtype ${dtype} with shape [${shape.join(', ')}] needs ${need}`);
  }
  return { dtype, shape: [...(shape as number[])], begin: b, end: e };
}

/** Validates a decoded header against a data region of `dataSize` bytes. */
function parseHeader(file: string, headerBytes: Uint8Array, dataSize: number): ParsedHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch (cause) {
    throw new SafetensorsError(file, `header (${headerBytes.length} bytes) is not valid UTF-8`, { cause });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    throw new SafetensorsError(file, `header (${headerBytes.length} bytes) is not valid JSON: ${detail}`, { cause });
  }
  if (!isPlainObject(json)) {
    const kind = Array.isArray(json) ? 'an array' : json === null ? 'null' : `a ${typeof json}`;
    throw new SafetensorsError(file, `header must be a JSON object mapping tensor names to entries, but it is ${kind}`);
  }

  const metadata: Record<string, string> = {};
  const rawMeta = json['__metadata__'];
  if (rawMeta !== undefined) {
    if (!isPlainObject(rawMeta)) {
      throw new SafetensorsError(file, `__metadata__ must be an object of strings, got ${show(rawMeta)}`);
    }
    for (const [k, v] of Object.entries(rawMeta)) {
      if (typeof v !== 'string') {
        throw new SafetensorsError(file, `__metadata__ value for ${JSON.stringify(k)} must be a string, got ${show(v)}`);
      }
      Object.defineProperty(metadata, k, { value: v, enumerable: true, writable: true, configurable: true });
    }
  }

  const entries = new Map<string, Located>();
  for (const [name, raw] of Object.entries(json)) {
    if (name === '__metadata__') continue;
    entries.set(name, validateEntry(file, name, raw, dataSize));
  }

  // The tensors must tile [0, dataSize) exactly: overlaps would alias weights and holes or
  // trailing bytes mean the header and the data disagree about what the file contains.
  const sorted = [...entries].sort(([, a], [, b]) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let prev: [string, Located] | undefined;
  for (const [name, t] of sorted) {
    if (t.begin < covered && prev !== undefined) {
      throw new SafetensorsError(
        file,
        `data_offsets [${t.begin}, ${t.end}] overlap tensor ${JSON.stringify(prev[0])} at [${prev[1].begin}, ${prev[1].end}]`,
        { tensor: name },
      );
    }
    if (t.begin > covered) {
      const after = prev === undefined ? 'the start of the data region' : `tensor ${JSON.stringify(prev[0])} (ends at ${covered})`;
      throw new SafetensorsError(
        file,
        `data_offsets [${t.begin}, ${t.end}] leave a hole: bytes [${covered}, ${t.begin}) between ${after} and this tensor belong to no tensor`,
        { tensor: name },
      );
    }
    covered = t.end;
    prev = [name, t];
  }
  if (covered !== dataSize) {
    throw new SafetensorsError(
      file,
      `data region is ${dataSize} bytes but the tensors cover only [0, ${covered}): ${dataSize - covered} trailing bytes belong to no tensor`,
    );
  }
  return { entries, metadata };
}

/** Reads the 8-byte length prefix and checks it before anything of that size is allocated. */
function checkHeaderLength(file: string, prefix: Uint8Array, fileSize: number): number {
  if (fileSize < 8) {
    throw new SafetensorsError(
      file,
      `file is ${fileSize} bytes, too short to be safetensors (it must start with an 8-byte header length)`,
    );
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(
      file,
      `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit (corrupt file, or not safetensors)`,
    );
  }
  if (n > BigInt(fileSize - 8)) {
    throw new SafetensorsError(
      file,
      `header length ${n} is larger than the ${fileSize - 8} bytes that follow it (truncated file, or not safetensors)`,
    );
  }
  return Number(n);
}

// --- reading --------------------------------------------------------------------------------------

/** Where a file's tensor bytes come from: the disk (lazily) or a buffer already in memory. */
interface ByteSource {
  /** Exactly `length` bytes at absolute `offset`, in a fresh buffer the caller owns. */
  read(offset: number, length: number): Uint8Array;
}

function readExactly(fd: number, file: string, buf: Uint8Array, position: number): void {
  let got = 0;
  while (got < buf.length) {
    const n = readSync(fd, buf, got, buf.length - got, position + got);
    if (n === 0) {
      throw new SafetensorsError(file, `file ended after ${position + got} bytes while reading ${buf.length} bytes at ${position} (was it truncated while open?)`);
    }
    got += n;
  }
}

/** A valid but gigantic tensor should fail with a SafetensorsError, not a RangeError. */
function checkAllocatable(file: string, name: string, bytes: number): void {
  if (bytes > bufferConstants.MAX_LENGTH) {
    throw new SafetensorsError(file, `is ${bytes} bytes, more than one array can hold on this platform (${bufferConstants.MAX_LENGTH})`, { tensor: name });
  }
}

function fsError(file: string, what: string, cause: unknown): SafetensorsError {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new SafetensorsError(file, `cannot ${what}: ${detail}`, { cause });
}

/** One safetensors file whose header has been fully validated; tensor data is read on demand. */
export class SafetensorsFile implements WeightSource {
  /** The file name used in error messages (the path it was opened with). */
  readonly path: string;
  readonly metadata: Readonly<Record<string, string>>;
  private readonly entries: Map<string, Located>;
  private readonly dataStart: number;
  private readonly source: ByteSource;
  private sortedNames: string[] | undefined;

  /** Use {@link readSafetensors} or {@link parseSafetensors}. */
  private constructor(path: string, header: ParsedHeader, dataStart: number, source: ByteSource) {
    this.path = path;
    this.metadata = Object.freeze(header.metadata);
    this.entries = header.entries;
    this.dataStart = dataStart;
    this.source = source;
  }

  /** @internal Opens and validates `path`; see {@link readSafetensors}. */
  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (cause) {
      throw fsError(path, 'open file', cause);
    }
    let header: ParsedHeader;
    let headerLen: number;
    try {
      let size: number;
      try {
        const st = fstatSync(fd);
        if (!st.isFile()) throw new Error('not a regular file');
        size = st.size;
      } catch (cause) {
        throw fsError(path, 'read file', cause);
      }
      const prefix = new Uint8Array(8);
      if (size >= 8) readExactly(fd, path, prefix, 0);
      headerLen = checkHeaderLength(path, prefix, size);
      const headerBytes = new Uint8Array(headerLen);
      readExactly(fd, path, headerBytes, 8);
      header = parseHeader(path, headerBytes, size - 8 - headerLen);
    } finally {
      closeSync(fd);
    }
    // A descriptor per read rather than one held open: nothing to close, nothing leaked, and
    // thousands of lazily read checkpoints never exhaust the process's file descriptors.
    const source: ByteSource = {
      read(offset, length) {
        const buf = new Uint8Array(length);
        if (length === 0) return buf;
        let rfd: number;
        try {
          rfd = openSync(path, 'r');
        } catch (cause) {
          throw fsError(path, 'reopen file', cause);
        }
        try {
          readExactly(rfd, path, buf, offset);
        } finally {
          closeSync(rfd);
        }
        return buf;
      },
    };
    return new SafetensorsFile(path, header, 8 + headerLen, source);
  }

  /** @internal Validates an in-memory file; see {@link parseSafetensors}. */
  static fromBytes(bytes: Uint8Array, label: string): SafetensorsFile {
    const headerLen = checkHeaderLength(label, bytes.subarray(0, 8), bytes.length);
    const header = parseHeader(label, bytes.subarray(8, 8 + headerLen), bytes.length - 8 - headerLen);
    const source: ByteSource = { read: (offset, length) => bytes.slice(offset, offset + length) };
    return new SafetensorsFile(label, header, 8 + headerLen, source);
  }

  names(): string[] {
    this.sortedNames ??= [...this.entries.keys()].sort();
    return [...this.sortedNames];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  info(name: string): TensorEntry {
    const t = this.entry(name);
    return { dtype: t.dtype, shape: [...t.shape] };
  }

  /** @internal Byte range of a tensor relative to the data region (for tooling and tests). */
  dataOffsets(name: string): [number, number] {
    const t = this.entry(name);
    return [t.begin, t.end];
  }

  getRaw(name: string): Uint8Array {
    const t = this.entry(name);
    checkAllocatable(this.path, name, t.end - t.begin);
    return this.source.read(this.dataStart + t.begin, t.end - t.begin);
  }

  getFloat32(name: string): Float32Array {
    const t = this.entry(name);
    if (!FLOAT_DTYPES.has(t.dtype)) {
      throw new SafetensorsError(this.path, `dtype ${t.dtype} is not a float type; use getInt32 or getBigInt64`, { tensor: name });
    }
    const raw = this.getRaw(name);
    const n = raw.length / DTYPE_SIZES[t.dtype];
    switch (t.dtype) {
      case 'F32':
        swapToHostInPlace(raw, 4);
        return new Float32Array(raw.buffer, raw.byteOffset, n);
      case 'F64': {
        swapToHostInPlace(raw, 8);
        return Float32Array.from(new Float64Array(raw.buffer, raw.byteOffset, n));
      }
      case 'F16': {
        swapToHostInPlace(raw, 2);
        const halves = new Uint16Array(raw.buffer, raw.byteOffset, n);
        const table = f16ToF32Table();
        const out = new Float32Array(n);
        for (let i = 0; i < n; i++) out[i] = table[halves[i]!]!;
        return out;
      }
      default: {
        // BF16: each value is the top half of a float32, so widen by shifting into place.
        swapToHostInPlace(raw, 2);
        const halves = new Uint16Array(raw.buffer, raw.byteOffset, n);
        const bits = new Uint32Array(n);
        for (let i = 0; i < n; i++) bits[i] = halves[i]! << 16;
        return new Float32Array(bits.buffer);
      }
    }
  }

  getInt32(name: string): Int32Array {
    const t = this.entry(name);
    const raw = this.getRaw(name);
    switch (t.dtype) {
      case 'I32':
        swapToHostInPlace(raw, 4);
        return new Int32Array(raw.buffer, raw.byteOffset, raw.length / 4);
      case 'I64': {
        swapToHostInPlace(raw, 8);
        const wide = new BigInt64Array(raw.buffer, raw.byteOffset, raw.length / 8);
        const out = new Int32Array(wide.length);
        for (let i = 0; i < wide.length; i++) {
          const v = wide[i]!;
          if (v < -2147483648n || v > 2147483647n) {
            throw new SafetensorsError(this.path, `element ${i} is ${v}, outside the int32 range; use getBigInt64`, { tensor: name });
          }
          out[i] = Number(v);
        }
        return out;
      }
      case 'I8':
        return Int32Array.from(new Int8Array(raw.buffer, raw.byteOffset, raw.length));
      case 'U8':
      case 'BOOL':
        return Int32Array.from(raw);
      default:
        throw new SafetensorsError(this.path, `dtype ${t.dtype} is not an integer type; use getFloat32`, { tensor: name });
    }
  }

  getBigInt64(name: string): BigInt64Array {
    const t = this.entry(name);
    if (t.dtype === 'I64') {
      const raw = this.getRaw(name);
      swapToHostInPlace(raw, 8);
      return new BigInt64Array(raw.buffer, raw.byteOffset, raw.length / 8);
    }
    if (FLOAT_DTYPES.has(t.dtype)) {
      throw new SafetensorsError(this.path, `dtype ${t.dtype} is not an integer type; use getFloat32`, { tensor: name });
    }
    const narrow = this.getInt32(name);
    const out = new BigInt64Array(narrow.length);
    for (let i = 0; i < narrow.length; i++) out[i] = BigInt(narrow[i]!);
    return out;
  }

  private entry(name: string): Located {
    const t = this.entries.get(name);
    if (t === undefined) throw unknownTensor(this.path, name, this.names());
    return t;
  }
}

/** Lists the available names most likely meant: those sharing the longest suffix come first. */
function unknownTensor(file: string, name: string, available: string[]): SafetensorsError {
  if (available.length === 0) return new SafetensorsError(file, `no tensor named ${JSON.stringify(name)}: the file holds no tensors`);
  const commonSuffix = (a: string): number => {
    let k = 0;
    while (k < a.length && k < name.length && a[a.length - 1 - k] === name[name.length - 1 - k]) k++;
    return k;
  };
  const ranked = available
    .map((n) => [n, commonSuffix(n)] as const)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .slice(0, 5)
    .map(([n]) => JSON.stringify(n));
  const more = available.length > ranked.length ? `, ... (${available.length} in all)` : '';
  return new SafetensorsError(file, `no tensor named ${JSON.stringify(name)}; available: ${ranked.join(', ')}${more}`);
}

/**
 * Opens a safetensors file. Only the length prefix and the header are read here, and the header is
 * validated in full (dtypes, shapes, offsets, exact tiling of the data region, file size); tensor
 * data is read from disk when a getter asks for it.
 *
 * @throws SafetensorsError naming the file, the tensor and the field for anything malformed.
 */
export function readSafetensors(path: string): SafetensorsFile {
  return SafetensorsFile.open(path);
}

/** Validates safetensors bytes already in memory; `label` names them in error messages. */
export function parseSafetensors(bytes: Uint8Array, label = '<memory>'): SafetensorsFile {
  return SafetensorsFile.fromBytes(bytes, label);
}

// --- sharded checkpoints --------------------------------------------------------------------------

/** The single-file name Hugging Face checkpoints use. */
export const SINGLE_FILE_NAME = 'model.safetensors';
/** The index a sharded Hugging Face checkpoint uses instead. */
export const INDEX_FILE_NAME = 'model.safetensors.index.json';

/** A checkpoint split over several safetensors files by a `model.safetensors.index.json`. */
export class ShardedCheckpoint implements WeightSource {
  readonly indexPath: string;
  readonly metadata: Readonly<Record<string, string>>;
  /** The index's own `metadata` as written (e.g. `total_size` is a number there). */
  readonly indexMetadata: Readonly<Record<string, unknown>>;
  private readonly shardOf: Map<string, SafetensorsFile>;
  private readonly sortedNames: string[];

  /** Use {@link openCheckpoint}. */
  private constructor(indexPath: string, metadata: Record<string, string>, indexMetadata: Record<string, unknown>, shardOf: Map<string, SafetensorsFile>) {
    this.indexPath = indexPath;
    this.metadata = Object.freeze(metadata);
    this.indexMetadata = Object.freeze(indexMetadata);
    this.shardOf = shardOf;
    this.sortedNames = [...shardOf.keys()].sort();
  }

  /** @internal Reads and validates an index and every shard it names; see {@link openCheckpoint}. */
  static open(dir: string, indexPath: string): ShardedCheckpoint {
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(indexPath, 'utf8'));
    } catch (cause) {
      const detail = cause instanceof Error ? cause.message : String(cause);
      throw new SafetensorsError(indexPath, `cannot read the shard index: ${detail}`, { cause });
    }
    if (!isPlainObject(json)) throw new SafetensorsError(indexPath, `shard index must be a JSON object, got ${show(json)}`);
    const weightMap = json['weight_map'];
    if (!isPlainObject(weightMap)) {
      throw new SafetensorsError(indexPath, `"weight_map" must be an object mapping tensor names to shard file names, got ${show(weightMap)}`);
    }
    const rawIndexMeta = json['metadata'] ?? {};
    if (!isPlainObject(rawIndexMeta)) throw new SafetensorsError(indexPath, `"metadata" must be an object, got ${show(rawIndexMeta)}`);

    const shards = new Map<string, SafetensorsFile>();
    const shardOf = new Map<string, SafetensorsFile>();
    for (const [name, shardName] of Object.entries(weightMap)) {
      if (typeof shardName !== 'string' || shardName === '' || /[/\\]/.test(shardName) || shardName === '.' || shardName === '..') {
        // Only plain file names: an index must not be able to point reads outside its folder.
        throw new SafetensorsError(indexPath, `weight_map entry for tensor ${JSON.stringify(name)} must be a shard file name in ${dir}, got ${show(shardName)}`);
      }
      let shard = shards.get(shardName);
      if (shard === undefined) {
        const shardPath = join(dir, shardName);
        if (!existsSync(shardPath)) {
          throw new SafetensorsError(indexPath, `shard ${JSON.stringify(shardName)} (holding tensor ${JSON.stringify(name)}) does not exist in ${dir}`);
        }
        shard = readSafetensors(shardPath);
        shards.set(shardName, shard);
      }
      if (!shard.has(name)) {
        throw new SafetensorsError(indexPath, `weight_map puts tensor ${JSON.stringify(name)} in shard ${JSON.stringify(shardName)}, but that shard has no such tensor`);
      }
      shardOf.set(name, shard);
    }

    const metadata: Record<string, string> = {};
    const put = (k: string, v: string): void => {
      Object.defineProperty(metadata, k, { value: v, enumerable: true, writable: true, configurable: true });
    };
    for (const shard of [...shards.keys()].sort().map((k) => shards.get(k)!)) {
      for (const [k, v] of Object.entries(shard.metadata)) if (!Object.prototype.hasOwnProperty.call(metadata, k)) put(k, v);
    }
    for (const [k, v] of Object.entries(rawIndexMeta)) put(k, typeof v === 'string' ? v : JSON.stringify(v));
    return new ShardedCheckpoint(indexPath, metadata, { ...rawIndexMeta }, shardOf);
  }

  names(): string[] {
    return [...this.sortedNames];
  }

  has(name: string): boolean {
    return this.shardOf.has(name);
  }

  info(name: string): TensorEntry {
    return this.shard(name).info(name);
  }

  getFloat32(name: string): Float32Array {
    return this.shard(name).getFloat32(name);
  }

  getRaw(name: string): Uint8Array {
    return this.shard(name).getRaw(name);
  }

  getInt32(name: string): Int32Array {
    return this.shard(name).getInt32(name);
  }

  getBigInt64(name: string): BigInt64Array {
    return this.shard(name).getBigInt64(name);
  }

  /** Which shard file holds `name`. */
  shardPath(name: string): string {
    return this.shard(name).path;
  }

  private shard(name: string): SafetensorsFile {
    const s = this.shardOf.get(name);
    if (s === undefined) throw unknownTensor(this.indexPath, name, this.sortedNames);
    return s;
  }
}

/**
 * Opens the weights of a Hugging Face style checkpoint folder: `model.safetensors` when present,
 * otherwise the shards listed by `model.safetensors.index.json`. Every shard is opened and every
 * mapped tensor checked to exist in its shard up front, so a broken download fails here rather
 * than halfway through loading a model.
 */
export function openCheckpoint(dir: string): WeightSource {
  const single = join(dir, SINGLE_FILE_NAME);
  if (existsSync(single)) return readSafetensors(single);
  const index = join(dir, INDEX_FILE_NAME);
  if (existsSync(index)) return ShardedCheckpoint.open(dir, index);
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    isDir = false;
  }
  throw new SafetensorsError(
    dir,
    isDir
      ? `no weights found: looked for ${SINGLE_FILE_NAME} and ${INDEX_FILE_NAME}`
      : `not a folder (looking for ${SINGLE_FILE_NAME} or ${INDEX_FILE_NAME} in it)`,
  );
}

// --- writing --------------------------------------------------------------------------------------

/** Dtypes {@link writeSafetensors} can produce. */
export type WritableDType = 'F32' | 'F16' | 'BF16' | 'I32' | 'I64';

/** One tensor to write. Float dtypes take a Float32Array (converted as needed); I32 an Int32Array; I64 a BigInt64Array or Int32Array. */
export interface TensorToWrite {
  dtype: WritableDType;
  shape: number[];
  data: Float32Array | Int32Array | BigInt64Array;
}

function littleEndianView(arr: Float32Array | Int32Array | BigInt64Array | Uint16Array): Uint8Array {
  const bytes = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
  if (LITTLE_ENDIAN_HOST) return bytes;
  const copy = bytes.slice();
  swapToHostInPlace(copy, arr.BYTES_PER_ELEMENT);
  return copy;
}

function encodeTensor(file: string, name: string, t: TensorToWrite): Uint8Array {
  const fail = (msg: string): never => {
    throw new SafetensorsError(file, msg, { tensor: name });
  };
  if (!isPlainObject(t)) return fail(`must be {dtype, shape, data}, got ${show(t)}`);
  const { dtype, shape, data } = t;
  if (!['F32', 'F16', 'BF16', 'I32', 'I64'].includes(dtype)) fail(`cannot write dtype ${show(dtype)} (writable: F32, F16, BF16, I32, I64)`);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    fail(`shape must be an array of non-negative integers, got ${show(shape)}`);
  }
  const numel = shape.reduce((a, d) => a * d, 1);
  const float = dtype === 'F32' || dtype === 'F16' || dtype === 'BF16';
  if (float && !(data instanceof Float32Array)) fail(`dtype ${dtype} is written from a Float32Array, got ${describeData(data)}`);
  if (dtype === 'I32' && !(data instanceof Int32Array)) fail(`dtype I32 is written from an Int32Array, got ${describeData(data)}`);
  if (dtype === 'I64' && !(data instanceof BigInt64Array || data instanceof Int32Array)) {
    fail(`dtype I64 is written from a BigInt64Array or Int32Array, got ${describeData(data)}`);
  }
  if (data.length !== numel) fail(`shape ${show(shape)} has ${numel} elements but data has ${data.length}`);

  if (dtype === 'F16' || dtype === 'BF16') {
    const src = new Uint32Array(data.buffer, data.byteOffset, data.length);
    const out = new Uint16Array(data.length);
    const conv = dtype === 'F16' ? f32BitsToF16Bits : f32BitsToBF16Bits;
    for (let i = 0; i < src.length; i++) out[i] = conv(src[i]!);
    return littleEndianView(out);
  }
  if (dtype === 'I64' && data instanceof Int32Array) return littleEndianView(BigInt64Array.from(data, (v) => BigInt(v)));
  return littleEndianView(data);
}

function describeData(data: unknown): string {
  if (data === null || data === undefined) return String(data);
  return typeof data === 'object' ? ((data as object).constructor?.name ?? 'object') : typeof data;
}

function encodeChunks(file: string, tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array[] {
  const header: Record<string, unknown> = {};
  const define = (k: string, v: unknown): void => {
    // defineProperty: a tensor called "__proto__" must become a key, not a prototype change.
    Object.defineProperty(header, k, { value: v, enumerable: true, writable: true, configurable: true });
  };
  if (metadata !== undefined) {
    if (!isPlainObject(metadata)) throw new SafetensorsError(file, `metadata must be an object of strings, got ${show(metadata)}`);
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new SafetensorsError(file, `metadata value for ${JSON.stringify(k)} must be a string, got ${show(v)}`);
    }
    define('__metadata__', { ...metadata });
  }
  const names = Object.keys(tensors).sort();
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    if (name === '__metadata__') throw new SafetensorsError(file, 'a tensor cannot be named "__metadata__" (the key is reserved for metadata)');
    const t = tensors[name]!;
    const bytes = encodeTensor(file, name, t);
    define(name, { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes.length] });
    offset += bytes.length;
    blobs.push(bytes);
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  // Spaces to a multiple of 8 keep the data region 8-byte aligned for readers that mmap it.
  const pad = (8 - (json.length % 8)) % 8;
  if (pad > 0) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(json.length), true);
  return [prefix, json, ...blobs];
}

/** The bytes of a safetensors file holding `tensors` (see {@link writeSafetensors}). */
export function encodeSafetensors(tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array {
  return Buffer.concat(encodeChunks('<memory>', tensors, metadata));
}

/**
 * Writes `tensors` as a safetensors file, atomically (an existing file is replaced only once the
 * new one is complete). Tensors are laid out sorted by name so the same input always gives the
 * same bytes; Float32Array data is rounded to F16/BF16 (nearest even) when that dtype is asked for.
 *
 * @throws SafetensorsError when a shape and its data disagree or a dtype/data pairing is invalid.
 */
export function writeSafetensors(path: string, tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): void {
  writeFileAtomic(path, encodeChunks(path, tensors, metadata));
}

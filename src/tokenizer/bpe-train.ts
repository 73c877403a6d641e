// Byte-level BPE training (GPT-2 style), written out as a standard Hugging Face `tokenizer.json`
// that `@huggingface/tokenizers` (and the Rust/Python `tokenizers`) load as is.
//
// Algorithm: pre-tokenise with the GPT-2 split regex, count distinct pre-tokens ("words"), map
// their UTF-8 bytes to the 256 byte tokens, then repeatedly merge the most frequent adjacent pair.
// Pair counts live in a map, an index lists the words that contain each pair, and a lazy max-heap
// orders the pairs (count desc, then the pair's strings in lexicographic order); after a merge only
// the words containing the merged pair are rewritten and only their pair counts change.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';

/** Special tokens with fixed ids 0..4; the 256 byte tokens follow, then the merges. */
export const DEFAULT_SPECIAL_TOKENS = ['[PAD]', '[BOS]', '[EOS]', '[MASK]', '[UNK]'] as const;
export const DEFAULT_VOCAB_SIZE = 8192;
export const DEFAULT_MODEL_MAX_LENGTH = 1024;

/**
 * The ByteLevel pre-tokenizer split regex (GPT-2's), exactly as `@huggingface/tokenizers` compiles
 * it, so that training sees the same pre-tokens as the loader produces at run time.
 */
export const GPT2_SPLIT_REGEX = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** GPT-2's reversible byte → printable unicode character map. */
export const BYTE_TO_UNICODE: readonly string[] = (() => {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const map = new Array<string>(256);
  bs.forEach((b, i) => (map[b] = String.fromCharCode(cs[i])));
  return map;
})();

const UNICODE_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_UNICODE.map((c, b) => [c, b]));

const utf8 = new TextEncoder();

/** Split text into GPT-2 pre-tokens (raw text, not yet byte-mapped). */
export function pretokenize(text: string): string[] {
  return text.match(GPT2_SPLIT_REGEX) ?? [];
}

/** The byte-level (printable unicode) form of a piece of text. */
export function toByteLevel(text: string): string {
  let s = '';
  for (const b of utf8.encode(text)) s += BYTE_TO_UNICODE[b];
  return s;
}

/** Inverse of toByteLevel for a sequence of byte-level tokens. */
export function fromByteLevel(tokens: readonly string[]): string {
  const bytes: number[] = [];
  for (const t of tokens) {
    for (const c of t) {
      const b = UNICODE_TO_BYTE.get(c);
      if (b === undefined) throw new Error(`not a byte-level token: ${JSON.stringify(t)}`);
      bytes.push(b);
    }
  }
  return new TextDecoder().decode(Uint8Array.from(bytes));
}

export interface BpeTrainProgress {
  phase: 'count' | 'merge';
  done: number;
  total: number;
}

export interface BpeTrainOptions {
  /** Target vocabulary size including specials and the 256 bytes (default 8192). */
  vocabSize?: number;
  /** Special tokens, given ids 0.. in order (default [PAD] [BOS] [EOS] [MASK] [UNK]). */
  specialTokens?: readonly string[];
  /** Stop early when the best pair occurs fewer times than this (default 2). */
  minFrequency?: number;
  onProgress?: (p: BpeTrainProgress) => void;
  /** Keep each training word's final segmentation in the result (for tests). */
  keepWordSegmentations?: boolean;
}

export interface BpeModel {
  /** Token strings by id: specials, the 256 byte tokens (in byte order), then merge results. */
  vocab: string[];
  /** Merges in rank order, as byte-level token string pairs. */
  merges: Array<[string, string]>;
  specialTokens: string[];
  stats: {
    /** Pre-tokens counted (with repetition) and distinct. */
    words: number;
    uniqueWords: number;
    /** UTF-8 bytes of training text. */
    bytes: number;
    /** Frequency of the last merge performed. */
    lastMergeCount: number;
    seconds: number;
  };
  /** Byte-level word → its token strings after training (only with keepWordSegmentations). */
  wordSegmentations?: Map<string, string[]>;
}

export function validateVocabSize(vocabSize: number, nSpecial: number = DEFAULT_SPECIAL_TOKENS.length): void {
  const min = nSpecial + 256;
  if (!Number.isInteger(vocabSize) || vocabSize < min) {
    throw new RangeError(`vocab size must be an integer >= ${min} (${nSpecial} special tokens + 256 bytes), got ${vocabSize}`);
  }
  if (vocabSize > 1 << 20) throw new RangeError(`vocab size must be <= ${1 << 20}, got ${vocabSize}`);
}

interface HeapEntry {
  count: number;
  key: number;
}

/**
 * Train a byte-level BPE on `texts` (each text is pre-tokenised on its own, like one call to the
 * tokenizer). Deterministic: ties between equally frequent pairs go to the lexicographically
 * smallest (left, right) pair of token strings.
 */
export function trainByteLevelBpe(texts: Iterable<string>, options: BpeTrainOptions = {}): BpeModel {
  const t0 = performance.now();
  const specialTokens = [...(options.specialTokens ?? DEFAULT_SPECIAL_TOKENS)];
  const vocabSize = options.vocabSize ?? DEFAULT_VOCAB_SIZE;
  const minFrequency = Math.max(1, options.minFrequency ?? 2);
  validateVocabSize(vocabSize, specialTokens.length);
  if (new Set(specialTokens).size !== specialTokens.length) throw new Error('duplicate special tokens');
  const onProgress = options.onProgress;

  // 1. Count pre-tokens.
  const counts = new Map<string, number>();
  let nWords = 0;
  let nBytes = 0;
  let nTexts = 0;
  for (const text of texts) {
    nBytes += utf8.encode(text).length;
    for (const m of text.matchAll(GPT2_SPLIT_REGEX)) {
      const w = m[0];
      counts.set(w, (counts.get(w) ?? 0) + 1);
      nWords++;
    }
    onProgress?.({ phase: 'count', done: ++nTexts, total: 0 });
  }

  // 2. Words as arrays of symbol ids (byte b has id nSpecial + b), sorted for determinism.
  const nSpecial = specialTokens.length;
  const tokens: string[] = [...specialTokens, ...BYTE_TO_UNICODE];
  const tokenId = new Map<string, number>();
  tokens.forEach((t, i) => {
    if (!tokenId.has(t)) tokenId.set(t, i);
  });
  const wordTexts = [...counts.keys()].sort();
  const words: Int32Array[] = new Array(wordTexts.length);
  const freqs = new Float64Array(wordTexts.length);
  for (let wi = 0; wi < wordTexts.length; wi++) {
    const bytes = utf8.encode(wordTexts[wi]);
    const sym = new Int32Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) sym[i] = nSpecial + bytes[i];
    words[wi] = sym;
    freqs[wi] = counts.get(wordTexts[wi]) ?? 0;
  }
  counts.clear();

  // 3. Pair counts and the pair → words index. A pair (a, b) is the number a * K + b.
  const K = vocabSize;
  const pairCounts = new Map<number, number>();
  const where = new Map<number, number[]>();
  for (let wi = 0; wi < words.length; wi++) {
    const w = words[wi];
    const f = freqs[wi];
    for (let i = 0; i + 1 < w.length; i++) {
      const key = w[i] * K + w[i + 1];
      pairCounts.set(key, (pairCounts.get(key) ?? 0) + f);
      let list = where.get(key);
      if (!list) where.set(key, (list = []));
      if (list[list.length - 1] !== wi) list.push(wi);
    }
  }

  // 4. Lazy max-heap over pairs.
  const heap: HeapEntry[] = [];
  const better = (x: HeapEntry, y: HeapEntry): boolean => {
    if (x.count !== y.count) return x.count > y.count;
    const xa = tokens[Math.floor(x.key / K)];
    const ya = tokens[Math.floor(y.key / K)];
    if (xa !== ya) return xa < ya;
    return tokens[x.key % K] < tokens[y.key % K];
  };
  const push = (e: HeapEntry): void => {
    heap.push(e);
    let i = heap.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!better(heap[i], heap[p])) break;
      [heap[i], heap[p]] = [heap[p], heap[i]];
      i = p;
    }
  };
  const pop = (): HeapEntry | undefined => {
    const top = heap[0];
    const last = heap.pop();
    if (heap.length > 0 && last) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && better(heap[l], heap[m])) m = l;
        if (r < heap.length && better(heap[r], heap[m])) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m], heap[i]];
        i = m;
      }
    }
    return top;
  };
  for (const [key, count] of pairCounts) push({ count, key });

  // 5. Merge.
  const merges: Array<[number, number]> = [];
  const stamp = new Int32Array(words.length).fill(-1);
  const initialSize = tokens.length;
  const total = vocabSize - initialSize;
  let lastMergeCount = 0;
  const addPair = (key: number, delta: number): void => {
    const c = (pairCounts.get(key) ?? 0) + delta;
    if (c === 0) pairCounts.delete(key);
    else pairCounts.set(key, c);
  };
  while (tokens.length < vocabSize) {
    let best: HeapEntry | undefined;
    while (heap.length > 0) {
      const e = pop() as HeapEntry;
      const cur = pairCounts.get(e.key) ?? 0;
      if (cur === e.count) {
        best = e;
        break;
      }
      if (cur > 0) push({ count: cur, key: e.key });
    }
    if (!best || best.count < minFrequency) break;
    const a = Math.floor(best.key / K);
    const b = best.key % K;
    const merged = tokens[a] + tokens[b];
    let newId = tokenId.get(merged);
    if (newId !== undefined && newId < nSpecial) {
      throw new Error(`merge ${JSON.stringify(merged)} would produce a special token`);
    }
    if (newId === undefined) {
      newId = tokens.length;
      tokens.push(merged);
      tokenId.set(merged, newId);
    }
    merges.push([a, b]);
    lastMergeCount = best.count;
    const mergeIndex = merges.length - 1;
    const touched = new Set<number>();
    const list = where.get(best.key) ?? [];
    where.delete(best.key);
    for (const wi of list) {
      if (stamp[wi] === mergeIndex) continue;
      stamp[wi] = mergeIndex;
      const w = words[wi];
      const f = freqs[wi];
      let found = false;
      for (let i = 0; i + 1 < w.length; i++) {
        if (w[i] === a && w[i + 1] === b) {
          found = true;
          break;
        }
      }
      if (!found) continue;
      for (let i = 0; i + 1 < w.length; i++) addPair(w[i] * K + w[i + 1], -f);
      const out: number[] = [];
      for (let i = 0; i < w.length; ) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) {
          out.push(newId);
          i += 2;
        } else {
          out.push(w[i]);
          i += 1;
        }
      }
      const nw = Int32Array.from(out);
      words[wi] = nw;
      for (let i = 0; i + 1 < nw.length; i++) {
        const key = nw[i] * K + nw[i + 1];
        addPair(key, f);
        if (nw[i] === newId || nw[i + 1] === newId) {
          touched.add(key);
          let l = where.get(key);
          if (!l) where.set(key, (l = []));
          if (l[l.length - 1] !== wi) l.push(wi);
        }
      }
    }
    // Pairs not containing the new token only lost occurrences; their heap entries are fixed
    // lazily when popped. Pairs with the new token are new: push them once, with final counts.
    for (const key of touched) {
      const c = pairCounts.get(key);
      if (c) push({ count: c, key });
    }
    onProgress?.({ phase: 'merge', done: tokens.length - initialSize, total });
  }

  let wordSegmentations: Map<string, string[]> | undefined;
  if (options.keepWordSegmentations) {
    wordSegmentations = new Map();
    for (let wi = 0; wi < words.length; wi++) {
      wordSegmentations.set(toByteLevel(wordTexts[wi]), Array.from(words[wi], (s) => tokens[s]));
    }
  }

  return {
    vocab: tokens,
    merges: merges.map(([x, y]) => [tokens[x], tokens[y]]),
    specialTokens,
    stats: {
      words: nWords,
      uniqueWords: wordTexts.length,
      bytes: nBytes,
      lastMergeCount,
      seconds: (performance.now() - t0) / 1000,
    },
    wordSegmentations,
  };
}

/**
 * Apply a model's merges to one byte-level word the way the HF BPE model does (lowest rank first,
 * leftmost on ties). For tests and diagnostics; the run-time path uses the library.
 */
export function applyMerges(model: Pick<BpeModel, 'merges'>, byteLevelWord: string): string[] {
  const ranks = new Map<string, number>();
  model.merges.forEach(([x, y], i) => ranks.set(`${x} ${y}`, i));
  const parts = Array.from(byteLevelWord);
  for (;;) {
    let bestRank = Infinity;
    let bestAt = -1;
    for (let i = 0; i + 1 < parts.length; i++) {
      const r = ranks.get(`${parts[i]} ${parts[i + 1]}`);
      if (r !== undefined && r < bestRank) {
        bestRank = r;
        bestAt = i;
      }
    }
    if (bestAt < 0) return parts;
    parts.splice(bestAt, 2, parts[bestAt] + parts[bestAt + 1]);
  }
}

// ---------------------------------------------------------------------------------------------
// Hugging Face files

interface AddedTokenJson {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

function addedTokens(model: BpeModel): AddedTokenJson[] {
  return model.specialTokens.map((content, id) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
}

/**
 * The `tokenizer.json` text (HF tokenizers format "1.0"): ByteLevel pre-tokenizer and decoder, no
 * normalizer and no post-processor (models add [BOS] themselves), BPE model with merges written as
 * "left right" strings (byte-level tokens never contain a space). Vocab entries are in id order.
 */
export function tokenizerJsonText(model: BpeModel): string {
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const head = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens(model),
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: null,
    decoder: byteLevel,
  };
  const modelHead = {
    type: 'BPE',
    dropout: null,
    unk_token: null,
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: false,
    byte_fallback: false,
    ignore_merges: false,
  };
  const headText = JSON.stringify(head, null, 2).replace(/\n}$/, '');
  const modelHeadText = JSON.stringify(modelHead, null, 2).replace(/\n}$/, '').replace(/\n/g, '\n  ');
  const vocab = model.vocab.map((t, i) => `      ${JSON.stringify(t)}: ${i}`).join(',\n');
  const merges = model.merges.map(([x, y]) => `      ${JSON.stringify(`${x} ${y}`)}`).join(',\n');
  return (
    `${headText},\n  "model": ${modelHeadText},\n` +
    `    "vocab": {\n${vocab}\n    },\n` +
    `    "merges": [\n${merges}\n    ]\n  }\n}\n`
  );
}

export interface TokenizerConfigOptions {
  /** Longest sequence the models accept (default 1024). */
  modelMaxLength?: number;
}

const SPECIAL_ROLES = ['pad_token', 'bos_token', 'eos_token', 'mask_token', 'unk_token'] as const;

function specialRoles(model: BpeModel): Record<(typeof SPECIAL_ROLES)[number], string> {
  if (model.specialTokens.length < SPECIAL_ROLES.length) {
    throw new Error(`expected at least ${SPECIAL_ROLES.length} special tokens (pad, bos, eos, mask, unk)`);
  }
  const out = {} as Record<(typeof SPECIAL_ROLES)[number], string>;
  SPECIAL_ROLES.forEach((role, i) => (out[role] = model.specialTokens[i]));
  return out;
}

/** `tokenizer_config.json` as transformers writes it for a PreTrainedTokenizerFast. */
export function tokenizerConfig(model: BpeModel, options: TokenizerConfigOptions = {}): Record<string, unknown> {
  const roles = specialRoles(model);
  const decoder: Record<string, Omit<AddedTokenJson, 'id'>> = {};
  for (const { id, ...rest } of addedTokens(model)) {
    decoder[String(id)] = rest;
  }
  return {
    add_bos_token: false,
    add_eos_token: false,
    add_prefix_space: false,
    added_tokens_decoder: decoder,
    bos_token: roles.bos_token,
    clean_up_tokenization_spaces: false,
    eos_token: roles.eos_token,
    extra_special_tokens: {},
    mask_token: roles.mask_token,
    model_max_length: options.modelMaxLength ?? DEFAULT_MODEL_MAX_LENGTH,
    pad_token: roles.pad_token,
    tokenizer_class: 'PreTrainedTokenizerFast',
    unk_token: roles.unk_token,
  };
}

/** `special_tokens_map.json`. */
export function specialTokensMap(model: BpeModel): Record<string, string> {
  const r = specialRoles(model);
  return { bos_token: r.bos_token, eos_token: r.eos_token, mask_token: r.mask_token, pad_token: r.pad_token, unk_token: r.unk_token };
}

export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'] as const;

/** Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into `dir` (atomically each). */
export function saveTokenizer(model: BpeModel, dir: string, options: TokenizerConfigOptions = {}): string[] {
  mkdirSync(dir, { recursive: true });
  const files: Array<[string, string]> = [
    ['tokenizer.json', tokenizerJsonText(model)],
    ['tokenizer_config.json', `${JSON.stringify(tokenizerConfig(model, options), null, 2)}\n`],
    ['special_tokens_map.json', `${JSON.stringify(specialTokensMap(model), null, 2)}\n`],
  ];
  return files.map(([name, text]) => {
    const path = join(dir, name);
    writeFileAtomic(path, text);
    return path;
  });
}

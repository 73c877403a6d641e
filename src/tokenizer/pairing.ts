// Can an MLM and an AR model share MARIA's decoder vocabulary? The decoder predicts the AR's ids
// (its rows are initialised from both output matrices), so every AR id needs the MLM id of the same
// token, and both models must see the same positions: the two tokenizers must cut every text into
// the same token strings. Three outcomes:
// - identical: token strings agree id-for-id on the AR's range (ModernBERT + OLMo-1, Ettin twins);
//   the MLM may have extra tokens after that range (ModernBERT's [CLS], [MASK], …);
// - id-map: same strings and segmentation, different ids (RoBERTa + GPT-2): ids go through `arToMlm`;
// - incompatible: different pre-tokenisation, too few shared tokens, or different merges.
import { describeScheme, type TextTokenizer } from './tokenizer.js';

export type PairingKind = 'identical' | 'id-map' | 'incompatible';

/** One example of a token that does not line up. */
export interface TokenMismatch {
  /** 'missing': the MLM has no such token; 'different-id': it has it under another id; 'different-token': same id, other string. */
  kind: 'missing' | 'different-id' | 'different-token';
  arId: number;
  arToken: string;
  mlmId: number | null;
  mlmToken: string | null;
}

/** The first sample text the two tokenizers split differently. */
export interface SegmentationDiff {
  text: string;
  mlm: string[];
  ar: string[];
  /** Index of the first differing token. */
  at: number;
}

export interface Pairing {
  kind: PairingKind;
  /** Per decoder (AR) id in [0, arVocabSize): the MLM id of the same token, or −1 (no such token, or a padding row). */
  arToMlm: Int32Array;
  /** Fraction of the AR tokenizer's tokens (ids below arVocabSize) found in the MLM vocabulary (below mlmVocabSize). */
  coverage: number;
  /** A few examples of tokens that do not line up (for 'id-map': tokens whose ids differ). */
  mismatches: TokenMismatch[];
  /** Why this kind: one or more sentences. */
  reason: string;
  /** The MLM's and AR's embedding rows (config vocab_size) and their tokenizers' sizes (max id + 1). */
  mlmVocabSize: number;
  arVocabSize: number;
  mlmTokenizerSize: number;
  arTokenizerSize: number;
  /** Set when a sample text is split differently. */
  segmentation: SegmentationDiff | null;
}

export interface PairingOptions {
  /** Rows of the MLM's embedding/output matrix (config vocab_size); may exceed the tokenizer (padding rows). */
  mlmVocabSize: number;
  /** Rows of the AR's embedding/output matrix: the size of MARIA's decoder vocabulary. */
  arVocabSize: number;
  /** Texts both tokenizers must split identically (default: a built-in mixed sample). */
  sampleTexts?: string[];
  /** Lowest coverage accepted for an id map (default 0.99). */
  minCoverage?: number;
  /** How many mismatch examples to keep (default 8). */
  maxExamples?: number;
}

/** Default texts for the segmentation check: words, casing, digits, punctuation, runs of spaces, non-ASCII. */
export const DEFAULT_SAMPLE_TEXTS: readonly string[] = [
  'The quick brown fox jumps over the lazy dog.',
  "It's 3:45pm on 2024-01-15; they've paid $1,299.99 (incl. 20% VAT) for 12 items!",
  'Hello,   world!\nNew line\ttab and  double  spaces... "quoted" [bracketed] {braced} <angled>',
  'MARIA fills masked tokens: ModernBERT + OLMo, RoBERTa + GPT-2, e-mail@example.com, https://example.org/a?b=c',
  'Naïve café déjà vu — Zürich, São Paulo, 東京, Москва 🙂',
  'def f(x):\n    return x ** 2  # squares\n',
];

/** Decides how MARIA's decoder vocabulary (the AR's ids) maps onto the MLM's ids. */
export function pairTokenizers(mlm: TextTokenizer, ar: TextTokenizer, options: PairingOptions): Pairing {
  const { mlmVocabSize, arVocabSize } = options;
  for (const [name, v] of [
    ['mlmVocabSize', mlmVocabSize],
    ['arVocabSize', arVocabSize],
  ] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new RangeError(`pairTokenizers: ${name} must be a positive integer, got ${v}`);
  }
  const minCoverage = options.minCoverage ?? 0.99;
  const maxExamples = options.maxExamples ?? 8;
  const notes: string[] = [];

  // AR ids that carry a token (padding rows of the embedding have none).
  const arRange = Math.min(arVocabSize, ar.vocabSize);
  if (ar.vocabSize > arVocabSize) {
    notes.push(`the AR tokenizer has ${ar.vocabSize} ids but the model only ${arVocabSize} embedding rows; tokens above are ignored`);
  }
  const arToMlm = new Int32Array(arVocabSize).fill(-1);
  let arTokens = 0;
  let found = 0;
  let sameIds = true;
  const missing: TokenMismatch[] = [];
  const moved: TokenMismatch[] = [];
  const differing: TokenMismatch[] = [];
  for (let i = 0; i < arRange; i++) {
    const tok = ar.idToToken(i);
    if (tok === null) continue;
    arTokens++;
    const atSameId = i < mlmVocabSize ? mlm.idToToken(i) : null;
    if (atSameId !== tok) {
      sameIds = false;
      differing.push({ kind: 'different-token', arId: i, arToken: tok, mlmId: i < mlmVocabSize ? i : null, mlmToken: atSameId });
    }
    const mlmId = mlm.tokenToId(tok);
    if (mlmId === null || mlmId >= mlmVocabSize) {
      missing.push({ kind: 'missing', arId: i, arToken: tok, mlmId: null, mlmToken: null });
      continue;
    }
    found++;
    // Prefer the identity when the MLM holds the same string at the same id too (duplicate strings).
    arToMlm[i] = atSameId === tok ? i : mlmId;
    if (arToMlm[i] !== i) moved.push({ kind: 'different-id', arId: i, arToken: tok, mlmId, mlmToken: tok });
  }
  const coverage = arTokens === 0 ? 0 : found / arTokens;
  const pct = (x: number): string => `${(100 * x).toFixed(x > 0.999 && x < 1 ? 2 : 1)}%`;

  // Segmentation: both must split the same text into the same strings (same merges, normalisation).
  let segmentation: SegmentationDiff | null = null;
  for (const text of options.sampleTexts ?? DEFAULT_SAMPLE_TEXTS) {
    const a = mlm.encode(text).tokens;
    const b = ar.encode(text).tokens;
    let at = 0;
    while (at < a.length && at < b.length && a[at] === b[at]) at++;
    if (at < a.length || at < b.length) {
      segmentation = { text, mlm: a, ar: b, at };
      break;
    }
  }

  const problems: string[] = [];
  if (mlm.scheme !== ar.scheme) {
    problems.push(`different pre-tokenisation schemes: the MLM uses ${describeScheme(mlm.scheme)}, the AR ${describeScheme(ar.scheme)}`);
  }
  if (!sameIds && coverage < minCoverage) {
    problems.push(`only ${pct(coverage)} of the AR's ${arTokens} tokens are in the MLM vocabulary (an id map needs at least ${pct(minCoverage)})`);
  }
  if (segmentation) {
    problems.push(`they split the same text differently (different merges or normalisation): ${describeSegmentation(segmentation)}`);
  }
  if (!mlm.specialTokens.mask) problems.push('the MLM tokenizer has no mask token');

  const spread = (list: TokenMismatch[]): TokenMismatch[] => {
    if (list.length <= maxExamples) return list;
    // Evenly spaced examples: the first ids are often bytes or specials and say little.
    return Array.from({ length: maxExamples }, (_, k) => list[Math.floor((k * list.length) / maxExamples)]);
  };
  const examples = (list: TokenMismatch[]): string =>
    spread(list)
      .slice(0, 4)
      .map((m) => {
        const tok = JSON.stringify(m.arToken);
        if (m.kind === 'missing') return `AR ${tok} (id ${m.arId}) is not in the MLM`;
        if (m.kind === 'different-id') return `${tok} is id ${m.arId} in the AR, ${m.mlmId} in the MLM`;
        return `id ${m.arId} is ${tok} in the AR but ${m.mlmToken === null ? 'nothing' : JSON.stringify(m.mlmToken)} in the MLM`;
      })
      .join('; ');

  const sizes = `the MLM has ${mlm.vocabSize} tokens, the AR ${ar.vocabSize}`;
  if (problems.length) {
    const mismatches = spread(missing.length ? missing : differing);
    let reason = `incompatible: ${problems.join('; ')}.`;
    if (!problems.some((p) => p.startsWith('only '))) reason += ` Coverage ${pct(coverage)}.`;
    if (mismatches.length) reason += ` Examples: ${examples(missing.length ? missing : differing)}.`;
    if (notes.length) reason += ` Note: ${notes.join('; ')}.`;
    return { kind: 'incompatible', arToMlm, coverage, mismatches, reason, mlmVocabSize, arVocabSize, mlmTokenizerSize: mlm.vocabSize, arTokenizerSize: ar.vocabSize, segmentation };
  }

  if (sameIds) {
    // Identical ids: the decoder uses them directly; padding rows map to themselves where both models have them.
    for (let i = 0; i < arVocabSize; i++) arToMlm[i] = i < mlmVocabSize ? i : -1;
    const extra = mlm.vocabSize > arRange ? ` (the MLM has ${mlm.vocabSize - arRange} more after them)` : '';
    let reason = `identical: token strings agree id-for-id on the AR's ${arTokens} tokens${extra}; ${sizes}; embedding rows ${mlmVocabSize} (MLM) and ${arVocabSize} (AR).`;
    if (notes.length) reason += ` Note: ${notes.join('; ')}.`;
    return { kind: 'identical', arToMlm, coverage, mismatches: [], reason, mlmVocabSize, arVocabSize, mlmTokenizerSize: mlm.vocabSize, arTokenizerSize: ar.vocabSize, segmentation: null };
  }

  let reason =
    `id-map: same token strings and segmentation but different ids; ${found} of the AR's ${arTokens} tokens (${pct(coverage)}) are in the MLM vocabulary; ${sizes}.` +
    (missing.length ? ` ${missing.length} AR tokens have no MLM id (the decoder uses the AR's row alone for them), e.g. ${examples(missing)}.` : '') +
    (moved.length ? ` E.g. ${examples(moved.slice(0, 4))}.` : '');
  if (notes.length) reason += ` Note: ${notes.join('; ')}.`;
  const mismatches = [...spread(missing).slice(0, Math.ceil(maxExamples / 2)), ...moved.slice(0, maxExamples)].slice(0, maxExamples);
  return { kind: 'id-map', arToMlm, coverage, mismatches, reason, mlmVocabSize, arVocabSize, mlmTokenizerSize: mlm.vocabSize, arTokenizerSize: ar.vocabSize, segmentation: null };
}

function describeSegmentation(d: SegmentationDiff): string {
  const window = (tokens: string[]): string => {
    const from = Math.max(0, d.at - 2);
    const part = tokens.slice(from, d.at + 4).map((t) => JSON.stringify(t));
    return `[${from > 0 ? '…, ' : ''}${part.join(', ')}${d.at + 4 < tokens.length ? ', …' : ''}]`;
  };
  const text = d.text.length > 60 ? `${d.text.slice(0, 57)}...` : d.text;
  return `${JSON.stringify(text)} → MLM ${window(d.mlm)} vs AR ${window(d.ar)}`;
}

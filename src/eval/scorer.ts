// The scorer of generated text: a separate causal LM under which sampled infills and unconditional
// samples get their generative perplexity (see the header of src/eval/infill-eval.ts). A scorer
// with another tokenizer reads the decoded text instead of the ids, so any causal LM can serve.
import { plainArModel } from '../maria/baselines.js';
import type { Maria } from '../maria/maria.js';
import { logSoftmaxRow } from '../maria/sampling.js';
import { CausalLM } from '../models/causal-lm.js';
import { TextTokenizer } from '../tokenizer/tokenizer.js';

export interface Scorer {
  /** Shown in reports: 'scorer (DIR)' or 'bundle AR'. */
  name: string;
  model: CausalLM;
  bos: number;
  /** Whether the scorer reads the decoder's ids as they are (same tokenizer.json model). */
  sameTokenizer: boolean;
  tokenizer: TextTokenizer;
  /** Whether `model` belongs to the bundle (released with it). */
  borrowed: boolean;
}

/** Loads a causal LM folder as the scorer; compares its tokenizer with the decoder's. */
export async function loadScorer(dir: string, m: Maria, threads?: number): Promise<Scorer> {
  const model = await CausalLM.load(dir, threads ? { threads } : {});
  const tokenizer = TextTokenizer.load(dir);
  const same = JSON.stringify(tokenizer.json.model) === JSON.stringify(m.tokenizer.json.model) && tokenizer.vocabSize === m.tokenizer.vocabSize;
  const bos = tokenizer.specialTokens.bos?.id ?? m.manifest.arBosId;
  return { name: `scorer (${dir})`, model, bos, sameTokenizer: same, tokenizer, borrowed: false };
}

/** The bundle's own AR as a scorer (unconditional generation without models/scorer). */
export async function bundleArScorer(m: Maria): Promise<Scorer> {
  return { name: 'bundle AR', model: await plainArModel(m), bos: m.manifest.arBosId, sameTokenizer: true, tokenizer: m.tokenizer, borrowed: true };
}

export interface ScoredRow {
  /** −log p_scorer of every token of the row (null when the scorer retokenizes). */
  perToken: Float64Array | null;
  total: number;
  tokens: number;
}

/** −log p_scorer(y_i | [BOS] y_<i) for rows of decoder ids (rows of one length run as one batch). */
export async function scoreRows(scorer: Scorer, m: Maria, rows: readonly (readonly number[])[]): Promise<ScoredRow[]> {
  const limit = scorer.model.config.maxPositions - 1;
  const V = scorer.model.config.vocabSize;
  const lp = new Float64Array(V);
  const score = async (batch: number[][]): Promise<ScoredRow[]> => {
    const out = await scorer.model.step(scorer.model.newCache(batch.length), batch.map((r) => [scorer.bos, ...r.slice(0, -1)]));
    return batch.map((r, b) => {
      const perToken = new Float64Array(r.length);
      let total = 0;
      for (let i = 0; i < r.length; i++) {
        const off = (b * out.T + i) * V;
        perToken[i] = -logSoftmaxRow(out.logits.subarray(off, off + V), lp)[r[i]];
        total += perToken[i];
      }
      return { perToken, total, tokens: r.length };
    });
  };
  if (scorer.sameTokenizer) {
    const result: ScoredRow[] = [];
    const equal = rows.every((r) => r.length === rows[0].length) && rows[0].length <= limit;
    if (equal) return score(rows.map((r) => [...r]));
    for (const r of rows) result.push(...(await score([r.slice(0, limit)])));
    return result;
  }
  const result: ScoredRow[] = [];
  for (const r of rows) {
    const ids = scorer.tokenizer.encode(m.tokenizer.decode([...r])).ids.slice(0, limit);
    const [s] = await score([ids]);
    result.push({ perToken: null, total: s.total, tokens: s.tokens });
  }
  return result;
}

// The JSON built from the library's results, one builder for every front end: `maria infill
// --json` and `maria score --json` (src/cli), the HTTP API (src/server) and the in-browser runner
// (src/web), so a script can switch between the CLI and the server.
import type { MethodScore } from './baselines.js';
import type { FilledToken, InfillEvent, InfillResult } from './core.js';
import type { MaskedSequence } from './masks.js';
import type { TextTokenizer } from '../tokenizer/tokenizer.js';

export interface FilledTokenJson {
  position: number;
  token: string;
  id: number;
  logprob: number;
  alternatives: Array<{ token: string; id: number; logprob: number }>;
}

export interface InfillJson {
  samples: Array<{ text: string; filled: FilledTokenJson[] }>;
  /** The result's timing (the CLI adds loadMs). */
  timing: InfillResult['timing'] & { loadMs?: number };
}

export interface ScoreJson {
  nll: number;
  tokens: number;
  method: string;
}

/** One filled token as JSON (as `maria infill --json`: alternatives always present, maybe empty). */
export function filledTokenJson(t: FilledToken): FilledTokenJson {
  return { position: t.position, token: t.token, id: t.id, logprob: t.logprob, alternatives: t.alternatives.map((a) => ({ token: a.token, id: a.id, logprob: a.logprob })) };
}

/** `maria infill --json --stream`: one line per chosen token. */
export function tokenLineJson(ev: InfillEvent): { sample: number; position: number; token: string; id: number; logprob: number } {
  return { sample: ev.sample, position: ev.position, token: ev.token, id: ev.id, logprob: ev.logprob };
}

/** A streamed token (SSE `token` event, and the in-browser runner's): the chosen token and its alternatives with their decoded text. */
export function tokenEventJson(tokenizer: TextTokenizer, ev: InfillEvent): FilledTokenJson & { sample: number; text: string; alternatives: Array<{ token: string; id: number; logprob: number; text: string }> } {
  const alternatives = ev.alternatives.map((a) => ({ token: a.token, id: a.id, logprob: a.logprob, text: tokenizer.decode([a.id]) }));
  return { sample: ev.sample, ...filledTokenJson(ev), alternatives, text: tokenizer.decode([ev.id]) };
}

/** The input as segments for display (SSE `start` event): literal runs of text and masked positions. */
export function infillSegments(tokenizer: TextTokenizer, seq: MaskedSequence): Array<{ text: string } | { position: number }> {
  const out: Array<{ text: string } | { position: number }> = [];
  let run: number[] = [];
  const flush = (): void => {
    if (run.length) out.push({ text: tokenizer.decode(run) });
    run = [];
  };
  seq.ids.forEach((id, i) => {
    if (seq.masked[i]) {
      flush();
      out.push({ position: i });
    } else run.push(id);
  });
  flush();
  return out;
}

/** `maria infill --json`: every sample's text and filled tokens, and the timing (plus `timing`'s extra fields). */
export function infillJson(r: InfillResult, timing: { loadMs?: number } = {}): InfillJson {
  return {
    samples: r.samples.map((s) => ({ text: s.text, filled: s.filled.map(filledTokenJson) })),
    timing: { ...r.timing, ...timing },
  };
}

/** `maria score --json`: mean NLL per scored token (natural log), their count, the method. */
export function scoreJson(s: Pick<MethodScore, 'nll' | 'tokens' | 'method'>): ScoreJson {
  return { nll: s.nll, tokens: s.tokens, method: s.method };
}

/**
 * The display text of each token: piece i is what token i adds to the decoded text, so the pieces
 * join to the decoded text. A token that ends inside a multi-byte character adds nothing; the token
 * completing the character carries it. Each piece decodes a short window of preceding tokens with
 * and without the token, so the cost is linear in the length of the text.
 */
export function tokenPieces(tokenizer: TextTokenizer, ids: readonly number[], window = 8): string[] {
  const pieces: string[] = [];
  for (let i = 0; i < ids.length; i++) {
    const from = Math.max(0, i - window);
    const before = tokenizer.decode(ids.slice(from, i));
    const after = tokenizer.decode(ids.slice(from, i + 1));
    if (after.endsWith('\uFFFD') && i + 1 < ids.length) {
      pieces.push('');
      continue;
    }
    // Common prefix: a character left incomplete by earlier tokens (U+FFFD in `before`) is completed here.
    let k = 0;
    while (k < before.length && k < after.length && before[k] === after[k]) k++;
    pieces.push(after.slice(k));
  }
  return pieces;
}

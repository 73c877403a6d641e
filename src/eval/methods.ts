// The methods the harness compares (MARIA, its PoE init and the baselines of src/maria/baselines.ts),
// by name, and the mask every one of them sees.
import type { Maria } from '../maria/maria.js';
import { InputError, randomMask, spanMask, type MaskedSequence } from '../maria/masks.js';

export type BaseMethod = 'maria' | 'mlm-l2r' | 'mlm-oneshot' | 'ar' | 'mdlm';
export type LikelihoodKind = 'exact' | 'elbo' | 'independent';

export interface MethodSpec {
  /** Canonical name: maria, maria-poe, mlm-l2r, mlm-oneshot, ar, mdlm-M (T = |M|), mdlm-64, … */
  name: string;
  base: BaseMethod;
  /** Which MARIA head runs it (only 'maria' uses the head). */
  head: 'trained' | 'product-of-experts';
  /** mdlm: denoising steps, 'M' = the number of masked tokens. */
  steps: number | 'M' | null;
  likelihood: LikelihoodKind;
  /** For tables and plots. */
  label: string;
}

export const DEFAULT_METHODS = ['maria', 'maria-poe', 'mlm-l2r', 'mlm-oneshot', 'ar', 'mdlm-M', 'mdlm-64', 'mdlm-16', 'mdlm-4'];

/** Parses a method name (case-insensitive; `mdlm` alone means mdlm-M). Throws InputError on an unknown one. */
export function parseMethod(name: string): MethodSpec {
  const n = name.trim().toLowerCase();
  const simple: Record<string, Omit<MethodSpec, 'name'>> = {
    maria: { base: 'maria', head: 'trained', steps: null, likelihood: 'exact', label: 'MARIA' },
    'maria-poe': { base: 'maria', head: 'product-of-experts', steps: null, likelihood: 'exact', label: 'MARIA (PoE init)' },
    'mlm-l2r': { base: 'mlm-l2r', head: 'trained', steps: null, likelihood: 'exact', label: 'MLM left-to-right' },
    'mlm-oneshot': { base: 'mlm-oneshot', head: 'trained', steps: null, likelihood: 'independent', label: 'MLM one-shot' },
    ar: { base: 'ar', head: 'trained', steps: null, likelihood: 'exact', label: 'AR only (left context)' },
  };
  if (simple[n]) return { name: n, ...simple[n] };
  const m = /^mdlm(?:-(m|\d+))?$/.exec(n);
  if (m) {
    const steps = m[1] === undefined || m[1] === 'm' ? 'M' : Number(m[1]);
    if (steps !== 'M' && !(Number.isSafeInteger(steps) && steps >= 1)) throw new InputError(`method "${name}": the step count must be a positive integer`);
    return { name: `mdlm-${steps}`, base: 'mdlm', head: 'trained', steps, likelihood: 'elbo', label: `MDLM T=${steps === 'M' ? '|M|' : steps}` };
  }
  throw new InputError(`unknown method "${name}" (choose from maria, maria-poe, mlm-l2r, mlm-oneshot, ar, mdlm-M, mdlm-<T>)`);
}

export type MaskKind = 'random' | 'span';

/**
 * The harness's mask: i.i.d. at `rate` (randomMask) or contiguous spans of mean length 4 up to
 * round(rate·n) tokens (spanMask). Depends only on (ids, rate, kind, seed): identical across methods.
 */
export function evalMask(ids: readonly number[], rate: number, kind: MaskKind, seed: number): boolean[] {
  return kind === 'span' ? spanMask([...ids], rate, seed) : randomMask([...ids], rate, seed);
}

/** Ids with the masked positions blanked: no method can read the truth it has to fill. */
export function blanked(ids: readonly number[], masked: readonly boolean[]): MaskedSequence {
  return { ids: ids.map((id, i) => (masked[i] ? 0 : id)), masked: [...masked] };
}

/** The two MARIA instances a method may run on: the trained head and, when asked for, the PoE init. */
export interface MethodModels {
  maria: Maria;
  poe: Maria | null;
}

export function instanceFor(ctx: MethodModels, spec: MethodSpec): Maria {
  return spec.head === 'product-of-experts' ? ctx.poe! : ctx.maria;
}

export function stepsFor(spec: MethodSpec, masked: number): number | undefined {
  return spec.base === 'mdlm' ? (spec.steps === 'M' ? masked : (spec.steps as number)) : undefined;
}

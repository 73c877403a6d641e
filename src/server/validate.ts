// Request bodies, checked by hand so every mistake gets a message a user can act on: unknown
// fields are listed (400), wrong types name the field and the type expected (400), values out of
// range name the range (422). Nothing is coerced: "0.5" is not a number.
import { METHODS } from '../maria/baselines.js';

/** An error the API returns as `{"error": {"code", "message"}}` with `status`. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

type Kind = 'string' | 'number' | 'integer' | 'boolean' | 'mask';

interface Field {
  kind: Kind;
  required?: boolean;
  /** Checks the range; returns a message when out of range. */
  check?: (v: never) => string | null;
}

const KIND_NAMES: Record<Kind, string> = {
  string: 'a string',
  number: 'a number',
  integer: 'an integer',
  boolean: 'true or false',
  mask: 'an array of token positions (integers), "all" or "each"',
};

function hasKind(v: unknown, kind: Kind): boolean {
  switch (kind) {
    case 'string':
      return typeof v === 'string';
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    case 'integer':
      return typeof v === 'number' && Number.isSafeInteger(v);
    case 'boolean':
      return typeof v === 'boolean';
    case 'mask':
      return v === 'all' || v === 'each' || (Array.isArray(v) && v.every((p) => typeof p === 'number' && Number.isSafeInteger(p)));
  }
}

const typeName = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : typeof v);

/** Checks a body against `fields`: an object, no unknown fields, required ones present, types, ranges. */
function checkBody(body: unknown, fields: Record<string, Field>): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ApiError(400, 'wrong_type', `the body must be a JSON object, got ${typeName(body)}`);
  }
  const obj = body as Record<string, unknown>;
  const known = Object.keys(fields);
  const unknown = Object.keys(obj).filter((k) => !Object.hasOwn(fields, k));
  if (unknown.length > 0) {
    throw new ApiError(400, 'unknown_field', `unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')} (this endpoint takes ${known.join(', ')})`);
  }
  const missing = known.filter((k) => fields[k].required && obj[k] === undefined);
  if (missing.length > 0) throw new ApiError(400, 'missing_field', `missing required field${missing.length > 1 ? 's' : ''} ${missing.map((k) => JSON.stringify(k)).join(', ')}`);
  const wrong = known.filter((k) => obj[k] !== undefined && !hasKind(obj[k], fields[k].kind));
  if (wrong.length > 0) {
    throw new ApiError(400, 'wrong_type', wrong.map((k) => `"${k}" must be ${KIND_NAMES[fields[k].kind]}, got ${typeName(obj[k])} ${JSON.stringify(obj[k])?.slice(0, 40) ?? ''}`.trim()).join('; '));
  }
  for (const k of known) {
    if (obj[k] === undefined || !fields[k].check) continue;
    const problem = fields[k].check!(obj[k] as never);
    if (problem) throw new ApiError(422, 'invalid_value', `"${k}" ${problem}`);
  }
  return obj;
}

const methodCheck = (m: string): string | null => ((METHODS as readonly string[]).includes(m) ? null : `must be one of ${METHODS.join(', ')}, got ${JSON.stringify(m)}`);
const seedCheck = (s: number): string | null => (s >= 0 && s <= 0xffffffff ? null : `must be between 0 and ${0xffffffff}, got ${s}`);

export const MAX_ALTERNATIVES = 20;

export interface InfillRequest {
  text: string;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed?: number;
  samples: number;
  alternatives: number;
  method: string;
}

/** POST /v1/infill. `samples` beyond `maxSamples` is 422 too_many_samples. */
export function parseInfillRequest(body: unknown, maxSamples: number): InfillRequest {
  const o = checkBody(body, {
    text: { kind: 'string', required: true },
    temperature: { kind: 'number', check: (t: number) => (t >= 0 && t <= 100 ? null : `must be between 0 (greedy) and 100, got ${t}`) },
    top_k: { kind: 'integer', check: (k: number) => (k >= 0 ? null : `must be ≥ 0 (0 keeps every token), got ${k}`) },
    top_p: { kind: 'number', check: (p: number) => (p > 0 && p <= 1 ? null : `must be in (0, 1], got ${p}`) },
    seed: { kind: 'integer', check: seedCheck },
    samples: { kind: 'integer', check: (n: number) => (n >= 1 ? null : `must be at least 1, got ${n}`) },
    alternatives: { kind: 'integer', check: (n: number) => (n >= 0 && n <= MAX_ALTERNATIVES ? null : `must be between 0 and ${MAX_ALTERNATIVES}, got ${n}`) },
    method: { kind: 'string', check: methodCheck },
  });
  const samples = (o.samples as number | undefined) ?? 1;
  if (samples > maxSamples) throw new ApiError(422, 'too_many_samples', `"samples" is ${samples}; this server allows at most ${maxSamples} per request`);
  return {
    text: o.text as string,
    temperature: o.temperature as number | undefined,
    topK: o.top_k as number | undefined,
    topP: o.top_p as number | undefined,
    seed: o.seed as number | undefined,
    samples,
    alternatives: (o.alternatives as number | undefined) ?? 5,
    method: (o.method as string | undefined) ?? 'maria',
  };
}

export interface ScoreRequest {
  text: string;
  /** Positions, every token jointly ('all'), every token alone ('each'), or a random mask (undefined). */
  mask?: number[] | 'all' | 'each';
  maskRate: number;
  /** The random mask as contiguous spans (`maria score --spans`). */
  spans: boolean;
  seed: number;
  method: string;
}

export const DEFAULT_MASK_RATE = 0.15;

/** POST /v1/score. */
export function parseScoreRequest(body: unknown): ScoreRequest {
  const o = checkBody(body, {
    text: { kind: 'string', required: true },
    mask_rate: { kind: 'number', check: (r: number) => (r > 0 && r <= 1 ? null : `must be in (0, 1], got ${r}`) },
    seed: { kind: 'integer', check: seedCheck },
    spans: { kind: 'boolean' },
    mask: { kind: 'mask', check: (m: number[] | string) => (Array.isArray(m) && m.length === 0 ? 'is empty: give at least one position' : null) },
    method: { kind: 'string', check: methodCheck },
  });
  if (o.mask !== undefined) {
    const with_ = ['mask_rate', 'seed', 'spans'].filter((k) => o[k] !== undefined);
    if (with_.length) throw new ApiError(400, 'conflicting_fields', `"mask" chooses the tokens to score; ${with_.map((k) => `"${k}"`).join(' and ')} go with a random mask, not with "mask"`);
  }
  return {
    text: o.text as string,
    mask: o.mask as ScoreRequest['mask'],
    maskRate: (o.mask_rate as number | undefined) ?? DEFAULT_MASK_RATE,
    seed: (o.seed as number | undefined) ?? 0,
    spans: (o.spans as boolean | undefined) ?? false,
    method: (o.method as string | undefined) ?? 'maria',
  };
}

/** POST /v1/tokenize. */
export function parseTokenizeRequest(body: unknown): { text: string } {
  const o = checkBody(body, { text: { kind: 'string', required: true } });
  return { text: o.text as string };
}

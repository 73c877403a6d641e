// `maria serve`'s API over real HTTP on loopback, against the tiny random-weight bundle
// (test/helpers/tiny-pair.ts): the shapes a client depends on, streaming, and every error path.
import { EventEmitter } from 'node:events';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Maria } from '../src/maria/maria.js';
import { spanMask } from '../src/maria/masks.js';
import { buildServer, shutdownOnSignals, type ServerOptions } from '../src/server/app.js';
import { infillJson } from '../src/maria/shapes.js';
import { buildTinyPair, removeTinyPair, type TinyPair } from './helpers/tiny-pair.js';

let pair: TinyPair;
let maria: Maria;
const servers: FastifyInstance[] = [];
let base: string;

/** A server on a free loopback port; closed in afterAll. */
async function start(options: ServerOptions = {}): Promise<{ app: FastifyInstance; base: string }> {
  const app = buildServer(maria, options);
  servers.push(app);
  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, base: address };
}

beforeAll(async () => {
  pair = buildTinyPair('maria-server-');
  maria = await Maria.load(pair.bundleDir, { threads: 1 });
  base = (await start({ maxSamples: 8, bodyLimit: 4096 })).base;
});

afterAll(async () => {
  for (const app of servers) await app.close().catch(() => {});
  await maria?.release();
  removeTinyPair(pair);
});

interface Reply {
  status: number;
  headers: Headers;
  body: unknown;
  text: string;
}

async function request(url: string, init: RequestInit = {}): Promise<Reply> {
  const res = await fetch(url, init);
  const text = await res.text();
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  return { status: res.status, headers: res.headers, body, text };
}

const post = (url: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> =>
  request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });

/** Asserts the API's error shape and returns the error. */
function expectError(r: Reply, status: number, code: string): { code: string; message: string } {
  expect(r.status, r.text).toBe(status);
  expect(r.headers.get('content-type')).toMatch(/^application\/json/);
  const err = (r.body as { error: { code: string; message: string } }).error;
  expect(err.code).toBe(code);
  expect(typeof err.message).toBe('string');
  expect(err.message.length).toBeGreaterThan(5);
  return err;
}

interface SseEvent {
  event: string;
  data: Record<string, unknown>;
}

function parseSse(text: string): SseEvent[] {
  return text
    .split('\n\n')
    .filter((block) => block.trim())
    .map((block) => {
      const lines = block.split('\n');
      const event = lines.find((l) => l.startsWith('event: '))!.slice(7);
      const data = lines
        .filter((l) => l.startsWith('data: '))
        .map((l) => l.slice(6))
        .join('\n');
      return { event, data: JSON.parse(data) as Record<string, unknown> };
    });
}

const TEXT = 'The old man walked [MASK] to the [MASK:2] and looked at the sea.';
/** A request slow enough on the tiny model (~1 s) to hold the only slot. */
const SLOW = { text: `Call me [MASK:110] now.`, samples: 32, alternatives: 20 };

describe('information', () => {
  it('GET /v1/health', async () => {
    const r = await request(`${base}/v1/health`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ status: 'ok', running: 0, queued: 0 });
    expect((r.body as { rss_bytes: number }).rss_bytes).toBeGreaterThan(1e6);
  });

  it('GET /v1/model describes both models, the head and the context', async () => {
    const r = await request(`${base}/v1/model`);
    expect(r.status).toBe(200);
    const m = r.body as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(m.context).toBe(maria.maxTokens);
    expect(m.vocab_size).toBe(8192);
    expect(m.models.mlm).toMatchObject({ family: 'modernbert', layers: 2, hidden_size: 32, vocab_size: 8192 });
    expect(m.models.ar).toMatchObject({ family: 'llama', layers: 2, hidden_size: 32, vocab_size: 8192 });
    expect(m.models.ar.parameters).toBeGreaterThan(8192 * 32);
    expect(m.head.init).toBe('product-of-experts');
    expect(m.limits).toMatchObject({ max_samples: 8, body_limit_bytes: 4096, concurrency: 1, queue: 16 });
  });

  it('POST /v1/tokenize', async () => {
    const r = await post(`${base}/v1/tokenize`, { text: 'The old man' });
    expect(r.status).toBe(200);
    const b = r.body as { ids: number[]; tokens: string[]; pieces: string[] };
    expect(b.ids).toEqual(maria.tokenizer.encode('The old man').ids);
    expect(b.tokens.length).toBe(b.ids.length);
    expect(b.pieces.join('')).toBe('The old man');
    // Pieces join to the text even where tokens split multi-byte characters.
    const text = 'naïve café — 東京 😀 ok';
    const u = (await post(`${base}/v1/tokenize`, { text })).body as { ids: number[]; pieces: string[] };
    expect(u.pieces.join('')).toBe(maria.tokenizer.decode(u.ids));
    expect(u.pieces.join('')).toBe(text);
  });

  it('serves the page and its files, and nothing outside web/', async () => {
    const page = await request(`${base}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(page.text).toContain('/static/app.js');
    const js = await request(`${base}/static/app.js`);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toMatch(/^text\/javascript/);
    const css = await request(`${base}/static/style.css`);
    expect(css.headers.get('content-type')).toMatch(/^text\/css/);
    for (const path of ['/static/..%2Fpackage.json', '/static/%2e%2e%2fpackage.json', '/static/../package.json', '/static/.hidden', '/static/nope.js', '/static/..%5Cpackage.json']) {
      const r = await request(`${base}${path}`);
      expect(r.status, path).toBe(404);
      expect(r.text).not.toContain('maria-infill');
    }
  });
});

describe('POST /v1/infill', () => {
  const masked = () => maria.parse(TEXT).masked.flatMap((m, i) => (m ? [i] : []));
  const req = { text: TEXT, samples: 3, seed: 7, temperature: 0.9, top_k: 50 };

  it('returns the JSON of `maria infill --json`', async () => {
    const r = await post(`${base}/v1/infill`, req);
    expect(r.status, r.text).toBe(200);
    const b = r.body as ReturnType<typeof infillJson>;
    expect(Object.keys(b).sort()).toEqual(['samples', 'timing']);
    expect(b.samples).toHaveLength(3);
    for (const s of b.samples) {
      expect(Object.keys(s).sort()).toEqual(['filled', 'text']);
      expect(s.filled.map((t) => t.position)).toEqual(masked());
      for (const t of s.filled) {
        expect(Object.keys(t).sort()).toEqual(['alternatives', 'id', 'logprob', 'position', 'token']);
        expect(t.logprob).toBeLessThanOrEqual(0);
        expect(t.alternatives).toHaveLength(5);
      }
    }
    expect(b.timing.filledTokens).toBe(9);
    // The same as the library for the same seed.
    const direct = infillJson(await maria.infill(TEXT, { samples: 3, seed: 7, temperature: 0.9, topK: 50 }));
    expect(b.samples).toEqual(direct.samples);
  });

  it('streams one token event per filled token, then a done event equal to the JSON result', async () => {
    const r = await post(`${base}/v1/infill`, req, { accept: 'text/event-stream' });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = parseSse(r.text);
    expect(events[0].event).toBe('start');
    expect(events[0].data).toMatchObject({ samples: 3, masked: 3 });
    const tokens = events.filter((e) => e.event === 'token');
    expect(tokens).toHaveLength(3 * 3);
    const last = events[events.length - 1];
    expect(last.event).toBe('done');
    const plain = (await post(`${base}/v1/infill`, req)).body as ReturnType<typeof infillJson>;
    const done = last.data as unknown as ReturnType<typeof infillJson>;
    expect(done.samples).toEqual(plain.samples);
    // Each token event is the filled token of its sample, in order, with its display text.
    for (let b = 0; b < 3; b++) {
      const mine = tokens.filter((t) => t.data.sample === b).map(({ data }) => ({ position: data.position, token: data.token, id: data.id, logprob: data.logprob }));
      expect(mine).toEqual(done.samples[b].filled.map((t) => ({ position: t.position, token: t.token, id: t.id, logprob: t.logprob })));
    }
    expect(typeof tokens[0].data.text).toBe('string');
    // The start event's segments rebuild the text around the blanks.
    const segs = events[0].data.segments as Array<{ text?: string; position?: number }>;
    expect(segs.filter((s) => s.position !== undefined).map((s) => s.position)).toEqual(masked());
  });

  it('runs a baseline method too', async () => {
    const r = await post(`${base}/v1/infill`, { text: TEXT, method: 'mlm-oneshot' });
    expect(r.status, r.text).toBe(200);
    expect((r.body as ReturnType<typeof infillJson>).samples[0].filled).toHaveLength(3);
  });
});

describe('POST /v1/score', () => {
  const text = 'The old man walked down to the harbour and looked at the sea.';
  const ids = () => maria.tokenizer.encode(text).ids;

  it('returns the JSON of `maria score --json` with per-token log-probabilities', async () => {
    const r = await post(`${base}/v1/score`, { text, mask: [1, 3, 5] });
    expect(r.status, r.text).toBe(200);
    const b = r.body as { nll: number; tokens: number; method: string; kind: string; token_logprobs: Array<{ position: number; logprob: number }>; pieces: string[] };
    expect(b).toMatchObject({ tokens: 3, method: 'maria', kind: 'exact', mask: 'positions' });
    const direct = await maria.score(ids(), ids().map((_, i) => [1, 3, 5].includes(i)));
    expect(b.nll).toBeCloseTo(direct.nll, 10);
    expect(b.token_logprobs).toEqual(direct.tokens);
    expect(b.pieces.join('')).toBe(text);
  });

  it('scores every token: "each" alone given the rest, "all" jointly', async () => {
    const n = ids().length;
    const each = (await post(`${base}/v1/score`, { text, mask: 'each' })).body as { tokens: number; kind: string; token_logprobs: Array<{ position: number; logprob: number }> };
    expect(each.tokens).toBe(n);
    expect(each.kind).toBe('pseudo');
    expect(each.token_logprobs.map((t) => t.position)).toEqual([...Array(n).keys()]);
    const third = await maria.score(ids(), ids().map((_, i) => i === 2));
    expect(each.token_logprobs[2].logprob).toBeCloseTo(third.tokens[0].logprob, 10);
    const all = (await post(`${base}/v1/score`, { text, mask: 'all' })).body as { tokens: number; kind: string; token_logprobs: unknown[] };
    expect(all.tokens).toBe(n);
    expect(all.token_logprobs).toHaveLength(n);
  });

  it('defaults to a seeded random mask and scores with baselines', async () => {
    const a = (await post(`${base}/v1/score`, { text, seed: 3 })).body as { tokens: number; nll: number; mask: string };
    const b = (await post(`${base}/v1/score`, { text, seed: 3 })).body as { tokens: number; nll: number };
    expect(a.mask).toBe('random');
    expect(a).toMatchObject(b);
    const spans = (await post(`${base}/v1/score`, { text, mask_rate: 0.3, seed: 1, spans: true })).body as { mask: string; tokens: number };
    expect(spans.mask).toBe('spans');
    expect(spans.tokens).toBe(spanMask(ids(), 0.3, 1).filter(Boolean).length);
    const ar = await post(`${base}/v1/score`, { text, mask_rate: 0.5, method: 'ar' });
    expect(ar.status, ar.text).toBe(200);
    expect(ar.body).toMatchObject({ method: 'ar', kind: 'exact' });
    const each = await post(`${base}/v1/score`, { text: 'a short one', mask: 'each', method: 'mlm-l2r' });
    expect(each.status, each.text).toBe(200);
  });
});

describe('errors', () => {
  it('413 for a body over the limit', async () => {
    expectError(await post(`${base}/v1/infill`, { text: `[MASK] ${'word '.repeat(2000)}` }), 413, 'body_too_large');
  });

  it('400 for malformed or empty JSON, 415 for another content type', async () => {
    expectError(await post(`${base}/v1/infill`, '{"text": "a [MASK]"'), 400, 'malformed_json');
    expectError(await post(`${base}/v1/infill`, ''), 400, 'malformed_json');
    expectError(await post(`${base}/v1/infill`, 'text=a', { 'content-type': 'application/x-www-form-urlencoded' }), 415, 'unsupported_media_type');
  });

  it('400 listing unknown fields', async () => {
    const e = expectError(await post(`${base}/v1/infill`, { text: 'a [MASK]', temprature: 1, topk: 3 }), 400, 'unknown_field');
    expect(e.message).toContain('"temprature"');
    expect(e.message).toContain('"topk"');
    expectError(await post(`${base}/v1/score`, { text: 'a b', rate: 0.5 }), 400, 'unknown_field');
  });

  it('400 for wrong types, naming the field', async () => {
    expect(expectError(await post(`${base}/v1/infill`, { text: 'a [MASK]', temperature: '0.5' }), 400, 'wrong_type').message).toContain('"temperature"');
    expectError(await post(`${base}/v1/infill`, { text: 42 }), 400, 'wrong_type');
    expectError(await post(`${base}/v1/infill`, { text: 'a [MASK]', samples: 1.5 }), 400, 'wrong_type');
    expectError(await post(`${base}/v1/infill`, ['a [MASK]']), 400, 'wrong_type');
    expectError(await post(`${base}/v1/infill`, 'null'), 400, 'wrong_type');
    expectError(await post(`${base}/v1/score`, { text: 'a b', mask: [1, 'x'] }), 400, 'wrong_type');
    expectError(await post(`${base}/v1/infill`, {}), 400, 'missing_field');
  });

  it('422 for no mask, text beyond the context, too many samples, values out of range', async () => {
    expectError(await post(`${base}/v1/infill`, { text: 'no blanks here' }), 422, 'no_mask');
    expectError(await post(`${base}/v1/infill`, { text: `[MASK] ${'and '.repeat(maria.maxTokens)}` }), 422, 'too_long');
    expectError(await post(`${base}/v1/infill`, { text: '[MASK:5000]' }), 422, 'invalid_mask');
    expect(expectError(await post(`${base}/v1/infill`, { text: 'a [MASK]', samples: 9 }), 422, 'too_many_samples').message).toContain('8');
    expectError(await post(`${base}/v1/infill`, { text: 'a [MASK]', top_p: 2 }), 422, 'invalid_value');
    expectError(await post(`${base}/v1/infill`, { text: 'a [MASK]', temperature: -1 }), 422, 'invalid_value');
    expectError(await post(`${base}/v1/infill`, { text: 'a [MASK]', method: 'magic' }), 422, 'invalid_value');
    expectError(await post(`${base}/v1/score`, { text: 'a b', mask: [99] }), 422, 'invalid_mask');
    expectError(await post(`${base}/v1/score`, { text: 'a [MASK] b' }), 422, 'invalid_input');
    expectError(await post(`${base}/v1/score`, { text: '' }), 422, 'empty_text');
    expectError(await post(`${base}/v1/score`, { text: 'and '.repeat(maria.maxTokens + 1) }), 422, 'too_long');
    expectError(await post(`${base}/v1/score`, { text: 'a b', mask: [0], mask_rate: 0.5 }), 400, 'conflicting_fields');
    expectError(await post(`${base}/v1/score`, { text: 'a b', mask: 'all', seed: 1 }), 400, 'conflicting_fields');
    expectError(await post(`${base}/v1/score`, { text: 'a b', spans: 'yes' }), 400, 'wrong_type');
  });

  it('404 in the same shape for unknown routes', async () => {
    expectError(await request(`${base}/v1/nothing`), 404, 'not_found');
    expectError(await request(`${base}/v1/infill`), 404, 'not_found');
  });

  it('never crashes on hostile input', async () => {
    const bodies = [
      '{"__proto__": {"x": 1}, "text": "a [MASK]"}',
      '{"constructor": {"prototype": {}}, "text": "a [MASK]"}',
      '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]',
      '{"text": "\\ud800 [MASK] \\u0000"}',
      '{"text": "[MASK:0]"}',
      '{"text": "[MASK:99999999999999999999]"}',
      '{"text": "a [MASK]", "seed": 1e308}',
      '{"text": "a [MASK]", "samples": -1}',
      '{"text": "a [MASK]", "top_k": 1e20}',
      '{"text": "[MASK]", "alternatives": 1000}',
      '"just a string"',
      '12',
      'true',
      '\u0000\u0001\u0002',
    ];
    for (const body of bodies) {
      for (const path of ['/v1/infill', '/v1/score', '/v1/tokenize']) {
        const r = await post(`${base}${path}`, body);
        expect(r.status, `${path} ${body} → ${r.text}`).toBeLessThan(500);
        if (r.status >= 400) expect((r.body as { error: { code: string } }).error.code).toBeTruthy();
      }
    }
    expect((await request(`${base}/v1/health`)).status).toBe(200);
  });
});

describe('queue, timeout, shutdown', () => {
  it('503 with Retry-After once the running slot and the queue are full; the others succeed', async () => {
    const { base: b } = await start({ concurrency: 1, queue: 1, maxSamples: 64 });
    const replies = await Promise.all(Array.from({ length: 5 }, () => post(`${b}/v1/infill`, SLOW)));
    const statuses = replies.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(2);
    expect(statuses.filter((s) => s === 503).length).toBeGreaterThanOrEqual(1);
    expect(statuses.every((s) => s === 200 || s === 503)).toBe(true);
    for (const r of replies.filter((x) => x.status === 503)) {
      expectError(r, 503, 'overloaded');
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    }
    const health = (await request(`${b}/v1/health`)).body as { running: number; queued: number };
    expect(health).toMatchObject({ running: 0, queued: 0 });
  });

  it('504 when a request outlives the timeout (JSON, and an error event when streaming)', async () => {
    const { base: b } = await start({ timeoutMs: 200, maxSamples: 64 });
    expectError(await post(`${b}/v1/infill`, SLOW), 504, 'timeout');
    // Baselines too (they get the time left as maxTimeMs).
    expectError(await post(`${b}/v1/infill`, { ...SLOW, method: 'mlm-l2r' }), 504, 'timeout');
    const sse = await post(`${b}/v1/infill`, SLOW, { accept: 'text/event-stream' });
    expect(sse.status).toBe(200);
    const events = parseSse(sse.text);
    const last = events[events.length - 1];
    expect(last.event).toBe('error');
    expect(last.data).toMatchObject({ error: { code: 'timeout' }, status: 504 });
    expect(events.some((e) => e.event === 'done')).toBe(false);
    // The server is still healthy and serves quick requests.
    expect((await post(`${b}/v1/infill`, { text: 'a [MASK]' })).status).toBe(200);
  });

  it('frees the slot when a streaming client goes away', async () => {
    const { base: b } = await start({ maxSamples: 64 });
    const ac = new AbortController();
    const res = await fetch(`${b}/v1/infill`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream' }, body: JSON.stringify(SLOW), signal: ac.signal });
    const reader = res.body!.getReader();
    await reader.read(); // the start event
    ac.abort();
    let health = { running: 1 };
    for (let i = 0; i < 100 && health.running !== 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      health = (await request(`${b}/v1/health`)).body as { running: number };
    }
    expect(health.running).toBe(0);
  });

  it('shuts down gracefully on SIGTERM: the in-flight request finishes, then no new connections', async () => {
    const { app, base: b } = await start({ maxSamples: 64 });
    const emitter = new EventEmitter();
    const exits: number[] = [];
    const logs: string[] = [];
    let released = false;
    shutdownOnSignals(app, { emitter, exit: (code) => exits.push(code), log: (l) => logs.push(l), onClosed: async () => void (released = true) });
    const inflight = post(`${b}/v1/infill`, SLOW);
    for (let i = 0; i < 100; i++) {
      const h = (await request(`${b}/v1/health`, { headers: { connection: 'close' } })).body as { running: number };
      if (h.running === 1) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    emitter.emit('SIGTERM', 'SIGTERM');
    const r = await inflight;
    expect(r.status, r.text).toBe(200);
    expect((r.body as ReturnType<typeof infillJson>).samples).toHaveLength(32);
    for (let i = 0; i < 200 && exits.length === 0; i++) await new Promise((res) => setTimeout(res, 10));
    expect(exits).toEqual([0]);
    expect(released).toBe(true);
    expect(logs.join('\n')).toContain('SIGTERM');
    await expect(fetch(`${b}/v1/health`)).rejects.toThrow();
  });
});

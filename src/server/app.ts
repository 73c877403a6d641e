// The HTTP API and the web page of `maria serve`, as a Fastify instance that tests can drive without
// a fixed port. Every error is `{"error": {"code", "message"}}` with a 4xx/5xx status; model work goes
// through a bounded queue (Gate) and a per-request deadline.
//
//   GET  /                 the page (web/index.html); GET /static/<file> its scripts and styles;
//                          GET /static/dist/<file> the in-browser runner (npm run build:web)
//   GET  /models/<file>    the in-browser mode's model files (web-manifest.json, mlm.onnx,
//                          ar-step.onnx, tokenizer files): the loaded bundle exported for
//                          onnxruntime-web on the first such request (src/web/export.ts) into
//                          <webModelsDir>/<content key>/, reused across restarts
//   GET  /v1/health        liveness, queue state, memory
//   GET  /v1/model         what is loaded: both models, the head, the context, the server's limits
//   POST /v1/tokenize      {text} → {ids, tokens, pieces}
//   POST /v1/infill        {text, temperature?, top_k?, top_p?, seed?, samples?, alternatives?, method?}
//                          → `maria infill --json`; with Accept: text/event-stream, SSE events
//                          `start`, one `token` per filled token, then `done` (or `error`)
//   POST /v1/score         {text, mask? (positions | "all" | "each") or mask_rate? (default 0.15),
//                          seed?, spans?, method?} → `maria score --json` plus kind, mask,
//                          token_logprobs (maria, or any method with "each") and pieces.
//                          "all": every token masked at once (exact log p of the whole text, left to
//                          right); "each": every token masked alone, given all the others (one
//                          pass per token; kind "pseudo", a pseudo-log-likelihood).
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import { createReadStream, existsSync, readdirSync, statSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { METHODS, infillWithMethod, scoreWithMethod } from '../maria/baselines.js';
import { InfillTimeout, type InfillEvent, type InfillResult, type Maria } from '../maria/maria.js';
import { InputError, parseMaskedText, positionsMask, randomMask, spanMask, splitMaskMarkers, type MaskedSequence } from '../maria/masks.js';
import { infillJson, infillSegments, scoreJson, tokenEventJson, tokenPieces } from '../maria/shapes.js';
import { countParameters } from '../models/weights.js';
import { SERVER_DEFAULTS } from './defaults.js';
import { Gate, Overloaded, QueueAborted, QueueTimeout } from './gate.js';
import { ensureWebExport } from '../web/export.js';
import { WEB_MANIFEST_FILE, type WebManifest } from '../web/manifest.js';
import { ApiError, parseInfillRequest, parseScoreRequest, parseTokenizeRequest, type InfillRequest } from './validate.js';

export interface ServerOptions {
  /** Requests running model work at once (default 1). */
  concurrency?: number;
  /** Requests waiting for a slot; beyond that 503 + Retry-After (default 16). */
  queue?: number;
  /** Per-request deadline from arrival, queueing included (default 30000 ms); past it 504. */
  timeoutMs?: number;
  /** Most samples per infill request (default 16). */
  maxSamples?: number;
  /** Largest request body in bytes (default 64 KiB); beyond it 413. */
  bodyLimit?: number;
  /** Folder of the web page (default: the package's web/); its dist/ holds the in-browser runner. */
  webDir?: string;
  /**
   * Where the in-browser mode's model files are exported, on the first request for one (default
   * data/cache/web under the working directory); false turns the in-browser mode off.
   */
  webModelsDir?: string | false;
  /** Fastify's logger option (default off). */
  logger?: FastifyServerOptions['logger'];
}

export { SERVER_DEFAULTS };

/** The package's web/ folder (from src/server or dist/server alike). */
export const WEB_DIR = fileURLToPath(new URL('../../web/', import.meta.url));

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
};

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  // The page talks to this server only: no third-party scripts, styles, fonts or connections.
  // 'wasm-unsafe-eval' lets the in-browser mode compile onnxruntime-web's WebAssembly (no JS eval).
  'content-security-policy': "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

/** The files under `dir` the server may send: plain names, known types, no folders, no dotfiles. */
function staticFiles(dir: string): Map<string, { path: string; type: string }> {
  const files = new Map<string, { path: string; type: string }>();
  if (!existsSync(dir)) return files;
  for (const name of readdirSync(dir)) {
    const type = CONTENT_TYPES[extname(name).toLowerCase()];
    const path = join(dir, name);
    if (type && /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name) && statSync(path).isFile()) files.set(name, { path, type });
  }
  return files;
}

function errorBody(code: string, message: string): { error: { code: string; message: string } } {
  return { error: { code, message } };
}

/** Maps any error to an ApiError (status, code, message). */
function toApiError(err: unknown, o: { bodyLimit: number; timeoutMs: number }): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof Overloaded) return new ApiError(503, 'overloaded', err.message, { 'retry-after': String(err.retryAfterS) });
  if (err instanceof QueueAborted) return new ApiError(499, 'client_closed_request', err.message);
  if (err instanceof QueueTimeout || err instanceof InfillTimeout) return new ApiError(504, 'timeout', `the request took longer than the server's limit of ${o.timeoutMs} ms (${err.message})`);
  const fe = err as Partial<FastifyError>;
  switch (fe.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ApiError(413, 'body_too_large', `the request body is larger than this server's limit of ${o.bodyLimit} bytes`);
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new ApiError(400, 'malformed_json', 'the body is not valid JSON');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ApiError(400, 'malformed_json', 'the body is empty; send a JSON object');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ApiError(415, 'unsupported_media_type', 'send the body as JSON with "Content-Type: application/json"');
  }
  if (err instanceof InputError) return new ApiError(422, 'invalid_input', err.message);
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) return new ApiError(fe.statusCode, 'bad_request', fe.message ?? 'bad request');
  return new ApiError(500, 'internal', `internal error: ${err instanceof Error ? err.message : String(err)}`);
}

function sendError(reply: FastifyReply, e: ApiError): FastifyReply {
  return reply.code(e.status).headers(e.headers).type('application/json; charset=utf-8').send(errorBody(e.code, e.message));
}

/** Aborts when the client closes the connection before the response is complete. */
function clientGone(reply: FastifyReply): AbortSignal {
  const ac = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) ac.abort();
  });
  return ac.signal;
}

const wantsEventStream = (request: FastifyRequest): boolean => (request.headers.accept ?? '').includes('text/event-stream');

/** A Fastify instance serving `maria`; call `.listen()` to serve, `.close()` to drain and stop. */
export function buildServer(maria: Maria, options: ServerOptions = {}): FastifyInstance {
  const o = {
    concurrency: options.concurrency ?? SERVER_DEFAULTS.concurrency,
    queue: options.queue ?? SERVER_DEFAULTS.queue,
    timeoutMs: options.timeoutMs ?? SERVER_DEFAULTS.timeoutMs,
    maxSamples: options.maxSamples ?? SERVER_DEFAULTS.maxSamples,
    bodyLimit: options.bodyLimit ?? SERVER_DEFAULTS.bodyLimit,
  };
  for (const [k, v] of Object.entries(o)) {
    if (!Number.isSafeInteger(v) || v < (k === 'queue' ? 0 : 1)) throw new RangeError(`${k} must be a ${k === 'queue' ? 'non-negative' : 'positive'} integer, got ${v}`);
  }
  const gate = new Gate(o.concurrency, o.queue);
  const webDir = options.webDir ?? WEB_DIR;
  const files = staticFiles(webDir);
  const distFiles = staticFiles(join(webDir, 'dist'));
  const webModelsDir = options.webModelsDir === false ? null : resolve(options.webModelsDir ?? 'data/cache/web');
  const inBrowser = !webModelsDir
    ? { available: false, reason: 'the in-browser mode is turned off on this server' }
    : !distFiles.has('maria-web.js')
      ? { available: false, reason: 'the in-browser runner is not built (run `npm run build:web`)' }
      : { available: true, reason: null };
  const tokenizer = maria.tokenizer;
  const started = Date.now();
  let closing = false;

  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: o.bodyLimit,
    // Closing answers with our own JSON 503 (below) rather than Fastify's.
    return503OnClosing: false,
  }) as unknown as FastifyInstance;

  app.addHook('onRequest', async (request, reply) => {
    reply.headers(SECURITY_HEADERS);
    if (closing && request.url !== '/v1/health') {
      reply.header('connection', 'close');
      return sendError(reply, new ApiError(503, 'shutting_down', 'the server is shutting down', { 'retry-after': '5' }));
    }
  });
  app.addHook('preClose', async () => {
    closing = true;
  });
  // While draining, every response closes its connection, so that server.close() can finish once
  // the in-flight requests are answered (an idle keep-alive connection would hold it open).
  const dropIdleWhenClosing = (): void => {
    if (closing) setImmediate(() => app.server.closeIdleConnections());
  };
  app.addHook('onSend', async (_request, reply, payload) => {
    if (closing) reply.header('connection', 'close');
    return payload;
  });
  app.addHook('onResponse', async () => dropIdleWhenClosing());
  app.setErrorHandler((err, request, reply) => {
    const e = toApiError(err, o);
    if (e.status >= 500 && e.status !== 503 && e.status !== 504) request.log.error(err);
    return sendError(reply, e);
  });
  app.setNotFoundHandler((request, reply) => sendError(reply, new ApiError(404, 'not_found', `no route for ${request.method} ${request.url.split('?')[0]}`)));

  // --- the page --------------------------------------------------------------------------------
  const sendFile = (reply: FastifyReply, name: string, from = files): FastifyReply => {
    const f = from.get(name);
    if (!f) return sendError(reply, new ApiError(404, 'not_found', `no file ${JSON.stringify(name)}`));
    return reply.type(f.type).header('cache-control', 'no-cache').header('content-length', statSync(f.path).size).send(createReadStream(f.path));
  };
  app.get('/', async (_request, reply) => sendFile(reply, 'index.html'));
  app.get('/static/:name', async (request, reply) => sendFile(reply, (request.params as { name: string }).name));
  app.get('/static/dist/:name', async (request, reply) => sendFile(reply, (request.params as { name: string }).name, distFiles));

  // --- the in-browser mode's model files ---------------------------------------------------------
  // Exported on the first request (compiling and writing ~2 × 4 bytes per parameter takes a few
  // seconds for the default bundle, once per bundle and maria version: the cache folder is keyed
  // by content), so a server nobody uses in the browser never pays for it.
  let webExport: Promise<{ dir: string; manifest: WebManifest }> | null = null;
  const webModels = (): Promise<{ dir: string; manifest: WebManifest }> => {
    webExport ??= (async () => {
      const t0 = performance.now();
      const r = ensureWebExport(maria, webModelsDir!);
      app.log.info(`in-browser mode: ${r.exported ? 'exported' : 'reusing'} the web models in ${r.dir} (${(performance.now() - t0).toFixed(0)} ms)`);
      return r;
    })().catch((err: unknown) => {
      webExport = null;
      throw err;
    });
    return webExport;
  };
  app.get('/models/:name', async (request, reply) => {
    const name = (request.params as { name: string }).name;
    if (!webModelsDir) return sendError(reply, new ApiError(404, 'not_found', inBrowser.reason!));
    const { dir, manifest } = await webModels();
    if (name !== WEB_MANIFEST_FILE && !Object.hasOwn(manifest.files, name)) return sendError(reply, new ApiError(404, 'not_found', `no model file ${JSON.stringify(name)}`));
    const etag = `"${manifest.id}-${name}"`;
    reply.header('cache-control', 'no-cache').header('etag', etag);
    if (request.headers['if-none-match'] === etag) return reply.code(304).send();
    const path = join(dir, name);
    return reply
      .type(CONTENT_TYPES[extname(name)] ?? 'application/octet-stream')
      .header('content-length', statSync(path).size)
      .send(createReadStream(path));
  });

  // --- information -----------------------------------------------------------------------------
  app.get('/v1/health', async () => {
    const mem = process.memoryUsage();
    return {
      status: closing ? 'shutting_down' : 'ok',
      uptime_s: (Date.now() - started) / 1000,
      running: gate.active,
      queued: gate.queued,
      completed: gate.completed,
      rss_bytes: mem.rss,
      heap_used_bytes: mem.heapUsed,
    };
  });

  const describe = (m: Maria['mlm'] | Maria['ar']) => ({
    family: m.family.modelTypes[0],
    layers: m.config.numLayers,
    hidden_size: m.config.hiddenSize,
    vocab_size: m.config.vocabSize,
    max_positions: m.config.maxPositions,
    parameters: countParameters(m.params),
  });
  const model = {
    bundle: basename(maria.dir),
    context: maria.maxTokens,
    vocab_size: maria.head.vocabSize,
    alignment: maria.manifest.alignment,
    models: { mlm: describe(maria.mlm), ar: describe(maria.ar) },
    head: {
      init: maria.manifest.head.init,
      parameters: maria.head.vocabSize * (maria.head.mlmHidden + maria.head.arHidden) + maria.head.vocabSize,
      training: maria.manifest.training ?? null,
    },
    methods: METHODS,
    in_browser: inBrowser,
    limits: { max_samples: o.maxSamples, body_limit_bytes: o.bodyLimit, timeout_ms: o.timeoutMs, concurrency: o.concurrency, queue: o.queue },
  };
  app.get('/v1/model', async () => model);

  app.post('/v1/tokenize', async (request) => {
    const { text } = parseTokenizeRequest(request.body);
    const { ids, tokens } = tokenizer.encode(text);
    return { ids, tokens, pieces: tokenPieces(tokenizer, ids) };
  });

  // --- model work ------------------------------------------------------------------------------
  /** Waits for a slot; runs `work` with the time left; always releases the slot. */
  async function withSlot<T>(arrival: number, signal: AbortSignal, work: (deadline: number) => Promise<T>): Promise<T> {
    const deadline = arrival + o.timeoutMs;
    const release = await gate.acquire(deadline, signal);
    try {
      if (performance.now() >= deadline) throw new QueueTimeout('the deadline passed while waiting in the queue');
      return await work(deadline);
    } finally {
      release();
    }
  }

  /** Tokenizes infill text, with 422s for no mask, a bad marker, or text beyond the context. */
  function prepareInfill(text: string): MaskedSequence {
    let seq: MaskedSequence;
    try {
      seq = parseMaskedText(text, (s) => tokenizer.encode(s).ids);
    } catch (err) {
      if (err instanceof InputError && /no mask/.test(err.message)) throw new ApiError(422, 'no_mask', err.message);
      if (err instanceof InputError) throw new ApiError(422, 'invalid_mask', err.message);
      throw new ApiError(422, 'invalid_input', (err as Error).message);
    }
    if (seq.ids.length > maria.maxTokens) {
      throw new ApiError(422, 'too_long', `the text is ${seq.ids.length} tokens long (masks included); this model takes at most ${maria.maxTokens}`);
    }
    return maria.parse(seq);
  }

  /** Runs an infill, calling `onToken` for each token as it is chosen; stops early if `signal` aborts. */
  async function runInfill(req: InfillRequest, seq: MaskedSequence, deadline: number, signal: AbortSignal, onToken: (ev: InfillEvent) => void): Promise<InfillResult | null> {
    const remaining = deadline - performance.now();
    if (remaining <= 0) throw new InfillTimeout('the deadline passed before infilling started');
    const opts = { temperature: req.temperature, topK: req.topK, topP: req.topP, seed: req.seed, samples: req.samples, alternatives: req.alternatives, maxTimeMs: Math.max(1, remaining) };
    if (req.method !== 'maria') {
      // Baselines fill in their own order and are not streamed: their tokens are sent at the end.
      const r = await infillWithMethod(maria, seq, req.method, opts);
      r.samples.forEach((s, b) => s.filled.forEach((t) => onToken({ ...t, sample: b })));
      return r;
    }
    const gen = maria.infillStream(seq, opts);
    for (;;) {
      if (signal.aborted) {
        await gen.return(undefined as never);
        return null;
      }
      const step = await gen.next();
      if (step.done) return step.value;
      onToken(step.value);
    }
  }

  app.post('/v1/infill', async (request, reply) => {
    const arrival = performance.now();
    const req = parseInfillRequest(request.body, o.maxSamples);
    const seq = prepareInfill(req.text);
    const signal = clientGone(reply);
    if (!wantsEventStream(request)) {
      const result = await withSlot(arrival, signal, (deadline) => runInfill(req, seq, deadline, signal, () => {}));
      if (!result) throw new ApiError(499, 'client_closed_request', 'the client closed the connection');
      return infillJson(result);
    }
    // Streaming: errors before the first byte are ordinary JSON errors; after it, an `error` event.
    const release = await gate.acquire(arrival + o.timeoutMs, signal);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: closing ? 'close' : 'keep-alive',
      'x-accel-buffering': 'no',
    });
    const send = (event: string, data: unknown): void => {
      if (!res.writableEnded && !res.destroyed) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    try {
      send('start', { samples: req.samples, masked: seq.masked.filter(Boolean).length, segments: infillSegments(tokenizer, seq) });
      const result = await runInfill(req, seq, arrival + o.timeoutMs, signal, (ev) => send('token', tokenEventJson(tokenizer, ev)));
      if (result) send('done', infillJson(result));
    } catch (err) {
      const e = toApiError(err, o);
      if (e.status >= 500 && e.status !== 504) request.log.error(err);
      send('error', { ...errorBody(e.code, e.message), status: e.status });
    } finally {
      release();
      res.end(dropIdleWhenClosing);
    }
    return reply;
  });

  app.post('/v1/score', async (request, reply) => {
    const arrival = performance.now();
    const req = parseScoreRequest(request.body);
    if (splitMaskMarkers(req.text).some((p) => 'mask' in p)) {
      throw new ApiError(422, 'invalid_input', 'the text to score must be the full text, without [MASK] markers; choose what to score with "mask" or "mask_rate"');
    }
    const { ids } = tokenizer.encode(req.text);
    if (ids.length === 0) throw new ApiError(422, 'empty_text', 'the text has no tokens to score');
    if (ids.length > maria.maxTokens) throw new ApiError(422, 'too_long', `the text is ${ids.length} tokens long; this model takes at most ${maria.maxTokens}`);
    let masked: boolean[] | null = null;
    try {
      if (Array.isArray(req.mask)) masked = positionsMask(ids.length, req.mask);
      else if (req.mask === 'all') masked = ids.map(() => true);
      else if (req.mask === undefined) masked = req.spans ? spanMask(ids, req.maskRate, req.seed) : randomMask(ids, req.maskRate, req.seed);
    } catch (err) {
      throw new ApiError(422, 'invalid_mask', (err as Error).message);
    }
    const signal = clientGone(reply);
    const result = await withSlot(arrival, signal, async (deadline) => {
      const scored: Array<{ position: number; token: string; id: number; logprob: number }> = [];
      if (masked === null) {
        // "each": every token scored alone given all the others (pseudo-log-likelihood).
        for (let i = 0; i < ids.length; i++) {
          if (signal.aborted) return null;
          if (performance.now() > deadline) throw new InfillTimeout(`scored ${i} of ${ids.length} tokens`);
          const one = ids.map((_, j) => j === i);
          const logprob =
            req.method === 'maria'
              ? (await maria.score(ids, one)).tokens[0].logprob
              : -(await scoreWithMethod(maria, ids, one, req.method, { seed: req.seed, maxTimeMs: Math.max(1, deadline - performance.now()) })).nll;
          scored.push({ position: i, token: tokenizer.idToToken(ids[i]) ?? '', id: ids[i], logprob });
        }
        const nll = -scored.reduce((a, t) => a + t.logprob, 0) / scored.length;
        return { ...scoreJson({ nll, tokens: scored.length, method: req.method }), kind: 'pseudo', mask: 'each', token_logprobs: scored };
      }
      const mask = Array.isArray(req.mask) ? 'positions' : (req.mask ?? (req.spans ? 'spans' : 'random'));
      if (req.method === 'maria') {
        const r = await maria.score(ids, masked);
        return { ...scoreJson({ nll: r.nll, tokens: r.tokens.length, method: 'maria' }), kind: 'exact', mask, token_logprobs: r.tokens };
      }
      const s = await scoreWithMethod(maria, ids, masked, req.method, { seed: req.seed, maxTimeMs: Math.max(1, deadline - performance.now()) });
      return { ...scoreJson(s), kind: s.kind, mask, positions: masked.flatMap((m, i) => (m ? [i] : [])) };
    });
    if (!result) throw new ApiError(499, 'client_closed_request', 'the client closed the connection');
    return { ...result, pieces: tokenPieces(tokenizer, ids) };
  });

  return app;
}

/**
 * Stops `app` gracefully on the first of `signals`: no new connections, in-flight and queued
 * requests finish, then `exit(0)`. A second signal, or `graceMs` passing, exits at once with 1.
 * Returns a function that removes the handlers.
 */
export function shutdownOnSignals(
  app: FastifyInstance,
  options: {
    signals?: string[];
    /** Where the signals come from (default: process). */
    emitter?: NodeJS.EventEmitter;
    exit?: (code: number) => void;
    graceMs?: number;
    log?: (line: string) => void;
    /** Runs after the server has closed, before exit (release the models). */
    onClosed?: () => Promise<void>;
  } = {},
): () => void {
  const signals = options.signals ?? ['SIGINT', 'SIGTERM'];
  const emitter = options.emitter ?? process;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  let stopping = false;
  const handler = (signal: string): void => {
    if (stopping) {
      log(`maria serve: ${signal} again, exiting now`);
      exit(1);
      return;
    }
    stopping = true;
    log(`maria serve: ${signal}: finishing in-flight requests, then exiting (send it again to exit now)`);
    const timer = setTimeout(() => {
      log(`maria serve: requests still running after ${options.graceMs} ms, exiting`);
      exit(1);
    }, options.graceMs ?? 60_000);
    timer.unref?.();
    app
      .close()
      .then(() => options.onClosed?.())
      .then(
        () => {
          clearTimeout(timer);
          log('maria serve: stopped');
          exit(0);
        },
        (err: unknown) => {
          clearTimeout(timer);
          log(`maria serve: error while stopping: ${(err as Error).message}`);
          exit(1);
        },
      );
  };
  const listeners = signals.map((s) => [s, () => handler(s)] as const);
  for (const [s, l] of listeners) emitter.on(s, l);
  return () => {
    for (const [s, l] of listeners) emitter.off(s, l);
  };
}

// `npm run bench -- serve`: a load run of `maria serve` on loopback. The server runs in this process
// (its model work is what is measured; the clients only wait on sockets). Phase 1: N concurrent
// clients send a fixed number of infill requests, all within the queue limit: requests/s, p50/p99
// latency, failures by status (expected: none), RSS at start/middle/end. Phase 2: more clients than
// slots + queue, back to back: the only failures should be 503 (with Retry-After).
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Maria } from '../maria/maria.js';
import { buildServer } from '../server/app.js';

const DEFAULT_BUNDLE = fileURLToPath(new URL('../../models/default', import.meta.url));
const DEFAULT_TEXT = 'The old man walked down to the [MASK] and looked out at the [MASK:2] for a long time.';

interface Options {
  bundle: string;
  clients: number;
  requests: number;
  concurrency: number;
  queue: number;
  overload: number | null;
  overloadRequests: number | null;
  samples: number;
  temperature: number;
  text: string;
  threads: number | null;
  stream: boolean;
}

const HELP = `usage: npm run bench -- serve [options]
  --bundle=DIR             MARIA bundle (default models/default)
  --clients=N              concurrent clients in phase 1 (default 4)
  --requests=N             requests in phase 1 (default 40)
  --concurrency=N          server slots (default 1)
  --queue=N                server queue length (default 16)
  --overload=N             clients in phase 2, above the queue limit (default concurrency + queue + 8; 0 skips)
  --overload-requests=N    requests in phase 2 (default 4 × its clients)
  --samples=N              samples per request (default 1)
  --temperature=X          sampling temperature (default 0.8)
  --text=TEXT              the text to infill (default: one sentence with 3 blank tokens)
  --threads=N              ORT threads (default: all cores, or MARIA_THREADS)
  --stream                 request server-sent events instead of JSON`;

function parseArgs(args: string[]): Options | null {
  const o: Options = {
    bundle: DEFAULT_BUNDLE,
    clients: 4,
    requests: 40,
    concurrency: 1,
    queue: 16,
    overload: null,
    overloadRequests: null,
    samples: 1,
    temperature: 0.8,
    text: DEFAULT_TEXT,
    threads: null,
    stream: false,
  };
  for (const a of args) {
    const eq = a.indexOf('=');
    const k = eq < 0 ? a : a.slice(0, eq);
    const v = eq < 0 ? undefined : a.slice(eq + 1);
    const int = (min: number): number => {
      const n = Number(v);
      if (v === undefined || !Number.isInteger(n) || n < min) throw new Error(`${k} needs an integer ≥ ${min}, got ${JSON.stringify(v)}\n${HELP}`);
      return n;
    };
    if (k === '--help' || k === '-h') return null;
    else if (k === '--bundle') o.bundle = resolve(v ?? '');
    else if (k === '--clients') o.clients = int(1);
    else if (k === '--requests') o.requests = int(1);
    else if (k === '--concurrency') o.concurrency = int(1);
    else if (k === '--queue') o.queue = int(0);
    else if (k === '--overload') o.overload = int(0);
    else if (k === '--overload-requests') o.overloadRequests = int(1);
    else if (k === '--samples') o.samples = int(1);
    else if (k === '--threads') o.threads = int(1);
    else if (k === '--text') o.text = v ?? '';
    else if (k === '--stream') o.stream = true;
    else if (k === '--temperature') {
      o.temperature = Number(v);
      if (!(o.temperature >= 0)) throw new Error(`--temperature needs a number ≥ 0, got ${JSON.stringify(v)}`);
    } else throw new Error(`unknown option ${a}\n${HELP}`);
  }
  return o;
}

interface Outcome {
  status: number;
  ms: number;
}

/** A full GC before each memory reading, so that growth means retained memory, not garbage not yet collected. */
function fullGc(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return exposed;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

const percentile = (sorted: number[], p: number): number => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : NaN);
const mb = (bytes: number): string => (bytes / 2 ** 20).toFixed(1);

/** `clients` loops sharing `total` requests; `onHalf` runs once half have completed. */
async function phase(url: string, o: Options, clients: number, total: number, onHalf: () => void): Promise<{ outcomes: Outcome[]; seconds: number; retryAfter: Set<string> }> {
  const outcomes: Outcome[] = [];
  const retryAfter = new Set<string>();
  let next = 0;
  let halfDone = false;
  const t0 = performance.now();
  const client = async (): Promise<void> => {
    while (next < total) {
      const seed = next++;
      const t = performance.now();
      let status = 0;
      try {
        const res = await fetch(`${url}/v1/infill`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: o.stream ? 'text/event-stream' : 'application/json' },
          body: JSON.stringify({ text: o.text, samples: o.samples, temperature: o.temperature, seed }),
        });
        const body = await res.text();
        status = res.status;
        // A stream that ends in an error event is a failure too.
        if (o.stream && status === 200 && !body.includes('event: done')) status = -1;
        if (status === 503) retryAfter.add(res.headers.get('retry-after') ?? '(none)');
      } catch {
        status = 0;
      }
      outcomes.push({ status, ms: performance.now() - t });
      if (!halfDone && outcomes.length >= total / 2) {
        halfDone = true;
        onHalf();
      }
    }
  };
  await Promise.all(Array.from({ length: clients }, client));
  return { outcomes, seconds: (performance.now() - t0) / 1000, retryAfter };
}

function report(name: string, r: Awaited<ReturnType<typeof phase>>): { failures: Map<number, number> } {
  const ok = r.outcomes.filter((x) => x.status === 200);
  const lat = ok.map((x) => x.ms).sort((a, b) => a - b);
  const failures = new Map<number, number>();
  for (const x of r.outcomes) if (x.status !== 200) failures.set(x.status, (failures.get(x.status) ?? 0) + 1);
  const fail = failures.size ? [...failures].map(([s, n]) => `${n} × ${s === 0 ? 'connection error' : s === -1 ? 'stream error event' : s}`).join(', ') : 'none';
  console.log(`${name}: ${r.outcomes.length} requests in ${r.seconds.toFixed(2)} s`);
  console.log(`  ok:          ${ok.length} (${(ok.length / r.seconds).toFixed(2)} successful requests/s, ${(r.outcomes.length / r.seconds).toFixed(2)} requests/s in all)`);
  console.log(`  latency ok:  p50 ${percentile(lat, 50).toFixed(1)} ms, p99 ${percentile(lat, 99).toFixed(1)} ms, max ${(lat[lat.length - 1] ?? NaN).toFixed(1)} ms`);
  console.log(`  failures:    ${fail}`);
  return { failures };
}

export async function benchServe(args: string[]): Promise<void> {
  const o = parseArgs(args);
  if (!o) {
    console.log(HELP);
    return;
  }
  if (!existsSync(o.bundle)) throw new Error(`${o.bundle}: no such bundle folder (pass --bundle=DIR)`);
  const maria = await Maria.load(o.bundle, o.threads ? { threads: o.threads } : {});
  const app = buildServer(maria, { concurrency: o.concurrency, queue: o.queue, maxSamples: Math.max(16, o.samples), timeoutMs: 600_000 });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const gc = fullGc();
  const memory = (): { rss: number; heap: number } => {
    gc();
    const m = process.memoryUsage();
    return { rss: m.rss, heap: m.heapUsed };
  };
  try {
    const masked = maria.parse(o.text).masked.filter(Boolean).length;
    const { mlm, ar } = maria;
    console.log(
      `serve bench: ${url}, bundle ${o.bundle} (MLM ${mlm.family.modelTypes[0]} ${mlm.config.numLayers}×${mlm.config.hiddenSize}, ` +
        `AR ${ar.family.modelTypes[0]} ${ar.config.numLayers}×${ar.config.hiddenSize}), concurrency ${o.concurrency}, queue ${o.queue}, ` +
        `${masked} masked token(s) × ${o.samples} sample(s) per request, ${o.stream ? 'SSE' : 'JSON'}`,
    );
    // Warm-up: the first request allocates ORT's arenas; memory is measured from here.
    await phase(url, o, 1, 2, () => {});
    const mem = { start: memory(), middle: { rss: 0, heap: 0 }, end: { rss: 0, heap: 0 } };
    const p1 = await phase(url, o, o.clients, o.requests, () => (mem.middle = memory()));
    mem.end = memory();
    const within = o.clients <= o.concurrency + o.queue;
    const r1 = report(`\nphase 1 (${o.clients} clients, ${within ? 'within' : 'ABOVE'} the limit of ${o.concurrency} running + ${o.queue} queued)`, p1);
    const delta = (a: number, b: number): string => `${b - a >= 0 ? '+' : ''}${mb(b - a)}`;
    console.log(
      `  memory:      RSS start ${mb(mem.start.rss)} MB, middle ${mb(mem.middle.rss)} MB, end ${mb(mem.end.rss)} MB (${delta(mem.start.rss, mem.end.rss)} MB); ` +
        `JS heap ${mb(mem.start.heap)} → ${mb(mem.middle.heap)} → ${mb(mem.end.heap)} MB (after a full GC each)`,
    );
    if (within) console.log(`  ${r1.failures.size === 0 ? 'PASS' : 'FAIL'}: ${r1.failures.size === 0 ? 'no failed requests below the queue limit' : 'requests failed below the queue limit'}`);

    const overload = o.overload ?? o.concurrency + o.queue + 8;
    if (overload > 0) {
      const total = o.overloadRequests ?? 4 * overload;
      const before = memory().rss;
      const p2 = await phase(url, o, overload, total, () => {});
      const after = memory().rss;
      const r2 = report(`\nphase 2 (${overload} clients back to back, above the limit of ${o.concurrency} running + ${o.queue} queued)`, p2);
      console.log(`  Retry-After: ${[...p2.retryAfter].join(', ') || '(no 503s)'} s`);
      console.log(`  memory:      RSS ${mb(before)} MB → ${mb(after)} MB (after a full GC each)`);
      const only503 = [...r2.failures.keys()].every((s) => s === 503);
      console.log(`  ${only503 ? 'PASS' : 'FAIL'}: ${only503 ? 'the only failures are 503s' : 'failures other than 503'}${r2.failures.has(503) ? '' : ' (no 503s: raise --overload)'}`);
    }
    const h = (await (await fetch(`${url}/v1/health`)).json()) as { running: number; queued: number; completed: number };
    console.log(`\nserver after the run: ${h.running} running, ${h.queued} queued, ${h.completed} completed`);
  } finally {
    await app.close();
    await maria.release();
  }
}

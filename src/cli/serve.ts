// `maria serve`: the HTTP API and the web page (src/server/app.ts) over one loaded bundle, with a
// bounded queue, per-request timeouts and a graceful stop on SIGINT/SIGTERM.
import { Command, InvalidArgumentError } from 'commander';
import type { Maria } from '../maria/maria.js';
import { SERVER_DEFAULTS } from '../server/defaults.js';
import { action, CliError, fail } from './util.js';

const int = (name: string, min: number, max = Number.MAX_SAFE_INTEGER) => (value: string): number => {
  const n = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new InvalidArgumentError(`${name} must be an integer between ${min} and ${max}, got "${value}"`);
  }
  return n;
};

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function register(program: Command): void {
  program
    .command('serve')
    .description('serve infilling and scoring over HTTP (JSON API, server-sent events) with a web page at /')
    .option('--bundle <dir>', 'MARIA bundle folder (default: the bundled models/default)')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port (0 picks a free one)', int('--port', 0, 65535), 8080)
    .option('--concurrency <n>', 'requests running model work at once', int('--concurrency', 1, 64), SERVER_DEFAULTS.concurrency)
    .option('--queue <n>', 'requests waiting for a slot; more get 503 + Retry-After', int('--queue', 0, 100_000), SERVER_DEFAULTS.queue)
    .option('--timeout-ms <ms>', 'per-request deadline, queueing included; past it 504', int('--timeout-ms', 1), SERVER_DEFAULTS.timeoutMs)
    .option('--max-samples <n>', 'most samples per infill request', int('--max-samples', 1, 4096), SERVER_DEFAULTS.maxSamples)
    .option('--body-limit <bytes>', 'largest request body; larger get 413', int('--body-limit', 64), SERVER_DEFAULTS.bodyLimit)
    .option('--web-cache <dir>', "where the page's in-browser mode gets its model files, exported from the bundle on first use", 'data/cache/web')
    .option('--no-in-browser', "turn the page's in-browser mode off (no model files served)")
    .option('--threads <n>', 'ORT threads (default: all cores, or MARIA_THREADS)', int('--threads', 1, 1024))
    .option('--log-level <level>', `request log level on stdout (JSON lines): ${LOG_LEVELS.join(', ')}`, 'info')
    .action(
      action(async (opts) => {
        if (!LOG_LEVELS.includes(opts.logLevel)) fail(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got "${opts.logLevel}"`);
        // Loaded here, not at startup, so other commands do not pay for Fastify.
        const [{ loadBundle }, { buildServer, shutdownOnSignals }] = await Promise.all([import('./infill.js'), import('../server/app.js')]);
        let maria: Maria;
        try {
          // Without --bundle: models/default of this package (as `maria infill`).
          maria = await loadBundle(opts.bundle, opts.threads);
        } catch (err) {
          if (err instanceof CliError) throw err;
          fail(`cannot load the bundle: ${(err as Error).message}`);
        }
        const bundle = maria.dir;
        const app = buildServer(maria, {
          concurrency: opts.concurrency,
          queue: opts.queue,
          timeoutMs: opts.timeoutMs,
          maxSamples: opts.maxSamples,
          bodyLimit: opts.bodyLimit,
          webModelsDir: opts.inBrowser === false ? false : opts.webCache,
          logger: opts.logLevel === 'silent' ? false : { level: opts.logLevel },
        });
        shutdownOnSignals(app, { graceMs: opts.timeoutMs + 10_000, onClosed: () => maria.release() });
        let address: string;
        try {
          address = await app.listen({ host: opts.host, port: opts.port });
        } catch (err) {
          fail(`cannot listen on ${opts.host}:${opts.port}: ${(err as Error).message}`);
        }
        process.stderr.write(
          `maria serve: listening on ${address} (bundle ${bundle}, context ${maria.maxTokens} tokens, ` +
            `concurrency ${opts.concurrency}, queue ${opts.queue}, timeout ${opts.timeoutMs} ms)\n`,
        );
      }),
    );
}

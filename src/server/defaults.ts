// The server's default limits, apart from app.ts so the CLI can show them without loading Fastify.
export const SERVER_DEFAULTS = {
  concurrency: 1,
  queue: 16,
  timeoutMs: 30_000,
  maxSamples: 16,
  bodyLimit: 64 * 1024,
};

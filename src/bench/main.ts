#!/usr/bin/env node
// `npm run bench -- <name> [args]`: runs one benchmark. Each bench lives in src/bench/<name>.ts
// and exports `async (args: string[]) => void`; register it with one line in BENCHES below.
// Benches are imported lazily so that one bench's dependencies never slow down another's start.

import { exitWithLauncher, relaunchWithHugePages } from '../cli/hugepages.js';

type Bench = (args: string[]) => Promise<void>;

const BENCHES: Record<string, { about: string; load: () => Promise<Bench> }> = {
  engine: { about: 'matmul GFLOP/s vs bare ONNX, training-step throughput, KV-cache decode steps', load: async () => (await import('./engine.js')).benchEngine },
  infill: { about: 'MARIA infilled tokens/s (batch 1 and 8) vs the MDLM sampler and MLM left-to-right', load: async () => (await import('./infill.js')).benchInfill },
  models: { about: 'prefill/decode/encode tokens/s of ~20M Llama and ModernBERT; decode step at context 64 vs 1024', load: async () => (await import('./models.js')).benchModels },
  peers: { about: 'maria vs llama.cpp (AR prefill/decode), transformers.js (MLM encode) and the MDLM sampler (infill), same weights, ratios', load: async () => (await import('./peers.js')).benchPeers },
  serve: { about: 'load run of `maria serve` on loopback: requests/s, p50/p99 latency, failures by status, RSS; then above the queue limit (only 503s)', load: async () => (await import('./serve.js')).benchServe },
};

function usage(): string {
  const width = Math.max(...Object.keys(BENCHES).map((k) => k.length));
  const lines = Object.entries(BENCHES).map(([name, b]) => `  ${name.padEnd(width)}  ${b.about}`);
  return ['usage: npm run bench -- <bench> [options]', '', 'benches:', ...lines, '', '`npm run bench -- <bench> --help` describes its options.'].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return name ? 0 : 2;
  }
  const bench = BENCHES[name];
  if (!bench) {
    console.error(`unknown bench "${name}"\n\n${usage()}`);
    return 2;
  }
  await (await bench.load())(rest);
  return 0;
}

// The same huge-page relaunch as the `maria` executable, so benches measure what users run.
exitWithLauncher();
const relaunched = relaunchWithHugePages();
process.exitCode = relaunched ? await relaunched : await main(process.argv.slice(2));

// `npm run bench -- models`: prefill and decode throughput of real model families (random weights):
// a ~20M-parameter Llama and ModernBERT at contexts 128 and 1024, plus the decode-step time of the
// default-size Llama at context 64 vs 1024 (the KV cache is preallocated and never copied, so the
// step time should grow only with attention's own work).
import { HfConfig } from '../models/config.js';
import { CausalLM } from '../models/causal-lm.js';
import { MaskedLM } from '../models/masked-lm.js';
import { familyFor } from '../models/registry.js';
import type { CausalFamily, MaskedFamily } from '../models/family.js';
import { countParameters, initParams } from '../models/weights.js';
import { defaultArConfig } from '../train/presets.js';
import { median } from './util.js';

const LLAMA_20M = {
  model_type: 'llama',
  vocab_size: 8192,
  hidden_size: 512,
  intermediate_size: 1376,
  num_hidden_layers: 6,
  num_attention_heads: 8,
  num_key_value_heads: 8,
  max_position_embeddings: 2048,
  rms_norm_eps: 1e-5,
  tie_word_embeddings: true,
};
const MODERNBERT_20M = {
  model_type: 'modernbert',
  vocab_size: 8192,
  hidden_size: 512,
  intermediate_size: 1024,
  num_hidden_layers: 6,
  num_attention_heads: 8,
  max_position_embeddings: 2048,
  global_attn_every_n_layers: 3,
  local_attention: 128,
  tie_word_embeddings: true,
};

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function causal(raw: Record<string, unknown>, threads: number) {
  const hf = new HfConfig(raw, 'bench');
  const family = familyFor(hf) as CausalFamily;
  const config = family.parseConfig(hf);
  const specs = family.params(config);
  return { lm: await CausalLM.fromParams(family, config, initParams(specs, 1), { threads }), params: countParameters(specs) };
}

/** ms per decode step at `context` tokens of history (median over `reps` consecutive steps). */
async function decodeMs(lm: CausalLM, context: number, reps: number): Promise<number> {
  const cache = lm.newCache(1); // grows by doubling, as in real use
  const prompt = Array.from({ length: context }, (_, i) => 5 + ((i * 7) % 8000));
  await lm.step(cache, [prompt]);
  for (let i = 0; i < 3; i++) await lm.step(cache, [[7]]);
  const times: number[] = [];
  for (let i = 0; i < reps; i++) times.push(await timed(() => lm.step(cache, [[11 + i]])));
  return median(times);
}

async function prefillTokensPerSecond(lm: CausalLM, context: number, reps: number): Promise<number> {
  const prompt = Array.from({ length: context }, (_, i) => 5 + ((i * 13) % 8000));
  await lm.step(lm.newCache(1), [prompt]);
  const times: number[] = [];
  for (let i = 0; i < reps; i++) times.push(await timed(() => lm.step(lm.newCache(1), [prompt])));
  return context / (median(times) / 1000);
}

export async function benchModels(args: string[]): Promise<void> {
  const threadsArg = args.find((a) => a.startsWith('--threads='));
  const threads = threadsArg ? Number(threadsArg.split('=')[1]) : 1;
  const reps = Number(args.find((a) => a.startsWith('--reps='))?.split('=')[1] ?? 16);
  console.log(`models bench: random weights, batch 1, ${threads} thread(s), medians of ${reps} runs`);
  const results: Record<string, unknown> = { threads };

  const llama = await causal(LLAMA_20M, threads);
  const rows: string[] = [];
  for (const ctx of [128, 1024]) {
    const prefill = await prefillTokensPerSecond(llama.lm, ctx, Math.max(3, reps >> 2));
    const decode = 1000 / (await decodeMs(llama.lm, ctx, reps));
    results[`llama20m_prefill_${ctx}`] = prefill;
    results[`llama20m_decode_${ctx}`] = decode;
    rows.push(`| Llama ${(llama.params / 1e6).toFixed(1)}M | ${ctx} | prefill ${prefill.toFixed(0)} tok/s | decode ${decode.toFixed(1)} tok/s |`);
  }
  await llama.lm.release();

  const hf = new HfConfig(MODERNBERT_20M, 'bench');
  const mf = familyFor(hf) as MaskedFamily;
  const mc = mf.parseConfig(hf);
  const mspecs = mf.params(mc);
  const bert = await MaskedLM.fromParams(mf, mc, initParams(mspecs, 2), { threads });
  for (const ctx of [128, 1024]) {
    const ids = Array.from({ length: ctx }, (_, i) => 5 + ((i * 17) % 8000));
    await bert.forward([ids]);
    const times: number[] = [];
    for (let i = 0; i < Math.max(3, reps >> 2); i++) times.push(await timed(() => bert.forward([ids])));
    const tps = ctx / (median(times) / 1000);
    results[`modernbert20m_encode_${ctx}`] = tps;
    rows.push(`| ModernBERT ${(countParameters(mspecs) / 1e6).toFixed(1)}M | ${ctx} | encode ${tps.toFixed(0)} tok/s | |`);
  }
  await bert.release();
  console.log('\n| model | context | prefill / encode | decode |\n| --- | --- | --- | --- |\n' + rows.join('\n'));

  const small = await causal({ ...defaultArConfig(8192), max_position_embeddings: 2048 }, threads);
  const at64 = await decodeMs(small.lm, 64, reps * 2);
  const at1024 = await decodeMs(small.lm, 1024, reps * 2);
  await small.lm.release();
  results.default_ar_decode_ms_64 = at64;
  results.default_ar_decode_ms_1024 = at1024;
  console.log(`\ndecode step of the default-size Llama (${(small.params / 1e6).toFixed(1)}M): ${at64.toFixed(2)} ms at context 64, ${at1024.toFixed(2)} ms at context 1024 (×${(at1024 / at64).toFixed(2)})`);
  console.log(JSON.stringify({ bench: 'models', ...results }));
}

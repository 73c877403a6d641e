// Runs training steps: one ORT session holds forward, backward, clipping and the AdamW update;
// the parameters and moments stay ORT tensors between steps (each step's outputs are the next
// step's inputs). A second session computes the forward outputs only (validation loss, logits)
// from the same parameters.
import ort from 'onnxruntime-node';
import { Graph, Tensor } from './graph.js';
import { compile } from './onnx.js';
import { adamw, constantLr, TRAIN_NAMES, type AdamWOptions, type LrSchedule, type TrainGraph } from './optim.js';
import { Session, type OrtTensor, type SessionOptions } from './runtime.js';

export interface TrainStepOptions extends AdamWOptions {
  /** Parameters to train; default all of the graph's parameters. */
  params?: Tensor[];
  /** Learning rate per 1-based step, used when step() is given no rate. Default constant 1e-3. */
  schedule?: LrSchedule;
  /**
   * Outputs of the evaluation session (default just the loss). Add e.g. logits here; they are
   * read with {@link TrainStep.evaluate}.
   */
  evalOutputs?: Record<string, Tensor>;
  /** Build no evaluation session. */
  noEval?: boolean;
  /** ORT session settings for both sessions. */
  session?: SessionOptions;
}

/** Everything needed to continue training bit-identically (besides data order and RNG). */
export interface TrainState {
  /** Completed steps (the next step is step + 1). */
  step: number;
  params: Map<string, Float32Array>;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
}

export interface StepResult {
  loss: number;
  gradNorm: number;
  /** The learning rate used. */
  lr: number;
}

const floatTensor = (data: Float32Array, dims: readonly number[]): OrtTensor => new ort.Tensor('float32', data, dims);
const scalar = (x: number): OrtTensor => new ort.Tensor('float32', new Float32Array([x]), []);

/** A compiled training step with its parameters and optimiser state. */
export class TrainStep {
  /** Completed steps. */
  steps = 0;
  private params = new Map<string, OrtTensor>();
  private m = new Map<string, OrtTensor>();
  private v = new Map<string, OrtTensor>();
  private readonly names: string[];
  private readonly shapes = new Map<string, number[]>();
  private readonly fetchNames: string[];
  /** Parameters of the graph that are not trained: fed unchanged to every run. */
  private readonly frozen = new Map<string, OrtTensor>();

  private constructor(
    private readonly train: Session,
    private readonly evalSession: Session | null,
    readonly graph: TrainGraph,
    private readonly schedule: LrSchedule,
    allParams: Tensor[],
  ) {
    this.names = graph.params.map((p) => p.leaf!.name);
    for (const p of graph.params) {
      const shape = p.shape as number[];
      if (!shape.every((d) => typeof d === 'number')) throw new Error(`TrainStep: parameter ${p} must have a fixed shape`);
      this.shapes.set(p.leaf!.name, shape);
      const data = p.leaf!.data!.data as Float32Array;
      this.params.set(p.leaf!.name, floatTensor(Float32Array.from(data), shape));
      const size = data.length;
      this.m.set(p.leaf!.name, floatTensor(new Float32Array(size), shape));
      this.v.set(p.leaf!.name, floatTensor(new Float32Array(size), shape));
    }
    this.fetchNames = train.outputNames;
    for (const p of allParams) {
      if (!this.shapes.has(p.leaf!.name)) this.frozen.set(p.leaf!.name, floatTensor(p.leaf!.data!.data as Float32Array, p.shape as number[]));
    }
  }

  /**
   * Compiles the evaluation model (forward only), then extends `graph` with the backward pass and
   * AdamW and compiles the training step. Parameters start from the graph's parameter data.
   */
  static async create(graph: Graph, loss: Tensor, options: TrainStepOptions = {}): Promise<TrainStep> {
    // The evaluation model must be compiled before adamw() declares the optimiser's inputs.
    const evalModel = options.noEval ? null : compile(graph, { outputs: options.evalOutputs ?? { loss }, paramsAsInputs: true, name: 'eval' });
    const tg = adamw(graph, loss, options.params ?? graph.params(), options);
    const trainModel = compile(graph, { outputs: tg.outputs, paramsAsInputs: true, name: 'train_step' });
    const train = await Session.create(trainModel, options.session);
    const evalSession = evalModel ? await Session.create(evalModel, options.session) : null;
    return new TrainStep(train, evalSession, tg, options.schedule ?? constantLr(1e-3), graph.params());
  }

  /** Parameter names in graph order. */
  paramNames(): string[] {
    return [...this.names];
  }

  /** Parameter shapes by name. */
  paramShapes(): Map<string, number[]> {
    return new Map([...this.shapes].map(([k, s]) => [k, [...s]]));
  }

  /** Runs one step on `feeds` (the model's data inputs) with `lr` or the schedule's rate. */
  async step(feeds: Record<string, OrtTensor>, lr?: number): Promise<StepResult> {
    const t = this.steps + 1;
    const rate = lr ?? this.schedule(t);
    const all: Record<string, OrtTensor> = { ...feeds, [TRAIN_NAMES.lr]: scalar(rate), [TRAIN_NAMES.step]: scalar(t) };
    for (const name of this.train.inputNames) {
      if (!(name in all) && this.frozen.has(name)) all[name] = this.frozen.get(name)!;
    }
    for (const name of this.names) {
      all[name] = this.params.get(name)!;
      all[TRAIN_NAMES.m(name)] = this.m.get(name)!;
      all[TRAIN_NAMES.v(name)] = this.v.get(name)!;
    }
    const out = await this.train.run(all, this.fetchNames);
    for (const name of this.names) {
      this.params.set(name, out[TRAIN_NAMES.newParam(name)]);
      this.m.set(name, out[TRAIN_NAMES.newM(name)]);
      this.v.set(name, out[TRAIN_NAMES.newV(name)]);
    }
    this.steps = t;
    const loss = (out[TRAIN_NAMES.loss].data as Float32Array)[0];
    const gradNorm = (out[TRAIN_NAMES.gradNorm].data as Float32Array)[0];
    return { loss, gradNorm, lr: rate };
  }

  /** Runs the evaluation model with the current parameters; returns its outputs (default all). */
  async evaluate(feeds: Record<string, OrtTensor>, fetch?: string[]): Promise<Record<string, OrtTensor>> {
    if (!this.evalSession) throw new Error('TrainStep: created with noEval, so there is no evaluation session');
    const all: Record<string, OrtTensor> = { ...feeds };
    for (const name of this.evalSession.inputNames) {
      if (name in all) continue;
      const t = this.params.get(name) ?? this.frozen.get(name);
      if (t) all[name] = t;
    }
    return this.evalSession.run(all, fetch);
  }

  /** The evaluation loss (output "loss" of the evaluation model). */
  async evalLoss(feeds: Record<string, OrtTensor>): Promise<number> {
    const out = await this.evaluate(feeds, ['loss']);
    return (out.loss.data as Float32Array)[0];
  }

  /** Copies of the current parameters. */
  getParams(): Map<string, Float32Array> {
    return copyAll(this.params, this.names);
  }

  /** The current parameters as ORT tensors (shared, do not modify). */
  paramTensors(): Map<string, OrtTensor> {
    return new Map(this.names.map((n) => [n, this.params.get(n)!]));
  }

  /** Replaces parameters (all or some); the optimiser state is kept. */
  setParams(params: Map<string, Float32Array> | Record<string, Float32Array>): void {
    const entries = params instanceof Map ? [...params] : Object.entries(params);
    for (const [name, data] of entries) this.params.set(name, this.checked(name, data));
  }

  /** A copy of everything a resumed run needs. */
  state(): TrainState {
    return { step: this.steps, params: this.getParams(), m: copyAll(this.m, this.names), v: copyAll(this.v, this.names) };
  }

  /** Restores a {@link state} (every parameter and both moments must be present). */
  loadState(state: TrainState): void {
    for (const name of this.names) {
      for (const [what, map] of [['parameter', state.params], ['first moment', state.m], ['second moment', state.v]] as const) {
        if (!map.has(name)) throw new Error(`TrainStep.loadState: the state lacks the ${what} of "${name}"`);
      }
    }
    for (const name of this.names) {
      this.params.set(name, this.checked(name, state.params.get(name)!));
      this.m.set(name, this.checked(name, state.m.get(name)!));
      this.v.set(name, this.checked(name, state.v.get(name)!));
    }
    this.steps = state.step;
  }

  async release(): Promise<void> {
    await this.train.release();
    await this.evalSession?.release();
  }

  private checked(name: string, data: Float32Array): OrtTensor {
    const shape = this.shapes.get(name);
    if (!shape) throw new Error(`TrainStep: no trained parameter named "${name}"`);
    const size = shape.reduce((a, b) => a * b, 1);
    if (data.length !== size) throw new Error(`TrainStep: "${name}" has shape [${shape.join(', ')}] (${size} values), got ${data.length}`);
    return floatTensor(Float32Array.from(data), shape);
  }
}

function copyAll(map: Map<string, OrtTensor>, names: string[]): Map<string, Float32Array> {
  return new Map(names.map((n) => [n, Float32Array.from(map.get(n)!.data as Float32Array)]));
}

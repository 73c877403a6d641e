// The symbolic graph that every model is written in. A program builds Tensors by calling the ops
// in ops.ts; nothing is computed here. onnx.ts turns the graph into an ONNX model, autodiff.ts
// extends it with gradients. Shapes are tracked symbolically so that batch and sequence axes stay
// dynamic: a dimension is a number or a symbol name ("B", "T", "P+T").

/** A dimension: a fixed size, or the name of a size known only at run time. */
export type Dim = number | string;
/** Element types the engine works with. */
export type DType = 'float32' | 'int64' | 'bool';

/** How an op turns into ONNX nodes. `emit` receives value names and returns nothing: it appends nodes. */
export interface Emitter {
  /** Appends an ONNX node. `outputs` may be omitted to get fresh names back. */
  node(opType: string, inputs: string[], outputs: string[], attrs?: Record<string, AttrValue>, domain?: string): void;
  /** A fresh value name. */
  fresh(hint?: string): string;
  /** An int64 initializer holding `values` (shape [values.length], or scalar when `scalar`). */
  int64(values: number[], scalar?: boolean): string;
  /** A float32 scalar initializer. */
  float(value: number): string;
  /** An int64 [rank] tensor holding the run-time value of `dims` (symbols resolved through Shape). */
  shapeOf(dims: Dim[]): string;
  /** An int64 [1] tensor holding the run-time size of `dim`. */
  dimValue(dim: Dim): string;
  /** Whether `dim` is a number or a symbol some model input carries (so dimValue/shapeOf work). */
  canResolve(dim: Dim): boolean;
  /** The ONNX name of a graph tensor (for ops that reference another tensor's shape). */
  nameOf(t: Tensor): string;
}

/** Values ONNX node attributes may take. */
export type AttrValue = number | string | number[] | { float: number } | { floats: number[] } | { tensor: ConstantData };

/** Data of a constant or parameter. */
export interface ConstantData {
  dtype: DType;
  shape: number[];
  data: Float32Array | BigInt64Array | Uint8Array;
}

/** One primitive operation: its shape rule, its lowering to ONNX and its vector-Jacobian product. */
export interface OpDef<A = Record<string, unknown>> {
  name: string;
  /** Output shapes and dtypes from input shapes. Throws on mismatch with a message naming the op. */
  infer(inputs: Tensor[], attrs: A): Array<{ shape: Dim[]; dtype: DType }>;
  /** Appends the ONNX nodes computing `outputs` from `inputs`. */
  emit(e: Emitter, inputs: string[], outputs: string[], attrs: A, node: Node<A>): void;
  /**
   * Gradients of the inputs given the gradients of the outputs (null where an output got none).
   * Returns null for an input that gets no gradient. Absent for non-differentiable ops.
   */
  vjp?(grads: Array<Tensor | null>, node: Node<A>): Array<Tensor | null>;
}

/** An applied op. */
export interface Node<A = Record<string, unknown>> {
  op: OpDef<A>;
  inputs: Tensor[];
  attrs: A;
  outputs: Tensor[];
}

/** What kind of leaf a tensor without a producing node is. */
export type LeafKind = 'input' | 'param' | 'constant';

/** A symbolic value in a Graph. */
export class Tensor {
  constructor(
    readonly graph: Graph,
    readonly id: number,
    readonly shape: Dim[],
    readonly dtype: DType,
    /** The node that computes this tensor, or null for a leaf. */
    readonly node: Node | null,
    /** For leaves: input, parameter or constant; its name for inputs and parameters. */
    readonly leaf: { kind: LeafKind; name: string; data?: ConstantData } | null,
  ) {}

  get rank(): number {
    return this.shape.length;
  }

  /** The size of axis `axis` (negative counts from the end). */
  dim(axis: number): Dim {
    const a = axis < 0 ? this.rank + axis : axis;
    if (a < 0 || a >= this.rank) throw new Error(`axis ${axis} out of range for a tensor of rank ${this.rank}`);
    return this.shape[a];
  }

  toString(): string {
    const what = this.leaf ? `${this.leaf.kind} "${this.leaf.name}"` : `${this.node!.op.name} output`;
    return `${what} [${this.shape.join(', ')}] ${this.dtype}`;
  }
}

/**
 * A computation under construction. Tensors are created in topological order, which the compiler
 * and the autodiff rely on.
 */
export class Graph {
  readonly tensors: Tensor[] = [];
  readonly nodes: Node[] = [];
  private readonly leafNames = new Map<string, Tensor>();
  private readonly scalarCache = new Map<string, Tensor>();

  /** A run-time input such as token ids. Symbolic dims name dynamic axes. */
  input(name: string, shape: Dim[], dtype: DType = 'float32'): Tensor {
    return this.leafTensor('input', name, shape, dtype);
  }

  /**
   * A trainable or loaded weight. Compiled as an initializer for inference, or as an input when
   * the graph is a training step that updates it.
   */
  param(name: string, data: Float32Array, shape: number[]): Tensor {
    const size = shape.reduce((a, b) => a * b, 1);
    if (data.length !== size) {
      throw new Error(`parameter "${name}": shape [${shape.join(', ')}] needs ${size} values, got ${data.length}`);
    }
    return this.leafTensor('param', name, shape, 'float32', { dtype: 'float32', shape, data });
  }

  /** A constant tensor embedded in the model. */
  constant(data: Float32Array | BigInt64Array | Uint8Array, shape: number[], dtype?: DType): Tensor {
    const dt: DType = dtype ?? (data instanceof Float32Array ? 'float32' : data instanceof BigInt64Array ? 'int64' : 'bool');
    return this.leafTensor('constant', `const${this.tensors.length}`, shape, dt, { dtype: dt, shape, data });
  }

  /** A float32 scalar constant (shared between uses). */
  scalar(value: number): Tensor {
    const key = `f${Object.is(value, -0) ? '-0' : value}`;
    let t = this.scalarCache.get(key);
    if (!t) {
      t = this.constant(new Float32Array([value]), []);
      this.scalarCache.set(key, t);
    }
    return t;
  }

  /** An int64 constant vector. */
  int64(values: number[]): Tensor {
    return this.constant(BigInt64Array.from(values.map((v) => BigInt(v))), [values.length], 'int64');
  }

  /** Parameters in creation order. */
  params(): Tensor[] {
    return this.tensors.filter((t) => t.leaf?.kind === 'param');
  }

  /** Inputs in creation order. */
  inputs(): Tensor[] {
    return this.tensors.filter((t) => t.leaf?.kind === 'input');
  }

  /** Applies `op` to `inputs`: records a node and returns its output tensors. */
  apply<A>(op: OpDef<A>, inputs: Tensor[], attrs: A): Tensor[] {
    for (const t of inputs) {
      if (t.graph !== this) throw new Error(`${op.name}: input ${t} belongs to another graph`);
    }
    const specs = op.infer(inputs, attrs);
    const node: Node<A> = { op, inputs, attrs, outputs: [] };
    for (const s of specs) {
      const t = new Tensor(this, this.tensors.length, s.shape, s.dtype, node as Node, null);
      this.tensors.push(t);
      node.outputs.push(t);
    }
    this.nodes.push(node as Node);
    return node.outputs;
  }

  private leafTensor(kind: LeafKind, name: string, shape: Dim[], dtype: DType, data?: ConstantData): Tensor {
    if (kind !== 'constant') {
      if (this.leafNames.has(name)) throw new Error(`graph already has an input or parameter named "${name}"`);
    }
    const t = new Tensor(this, this.tensors.length, [...shape], dtype, null, { kind, name, data });
    if (kind !== 'constant') this.leafNames.set(name, t);
    this.tensors.push(t);
    return t;
  }
}

/** Product of dims when all are numbers, else null. */
export function numel(shape: Dim[]): number | null {
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number') return null;
    n *= d;
  }
  return n;
}

/** Formats a shape for error messages. */
export function fmtShape(shape: Dim[]): string {
  return `[${shape.join(', ')}]`;
}

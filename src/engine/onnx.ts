// Compiles a Graph to an in-memory ONNX model (protobuf bytes) that ONNX Runtime runs.
import onnxProto from 'onnx-proto';
import { type AttrValue, type ConstantData, type Dim, type DType, Graph, type Node, Tensor } from './graph.js';
import { ONNX_DTYPE } from './ops.js';

const { onnx } = onnxProto;

/** The ONNX opset the ops are written against (LayerNormalization needs 17). */
export const OPSET = 17;

export interface CompileOptions {
  /** Named outputs of the model. */
  outputs: Record<string, Tensor>;
  /**
   * Parameters fed as inputs on every run instead of embedded as initializers: a training step
   * passes its updated weights back in. Initializers are faster for inference.
   */
  paramsAsInputs?: boolean;
  /** Model name recorded in the ONNX file. */
  name?: string;
}

/** An ONNX model and the names of what it consumes and produces. */
export interface CompiledModel {
  bytes: Uint8Array;
  inputNames: string[];
  outputNames: string[];
}

type Attr = InstanceType<typeof onnx.AttributeProto>;

function tensorProto(name: string, c: ConstantData): InstanceType<typeof onnx.TensorProto> {
  const bytes = new Uint8Array(c.data.buffer, c.data.byteOffset, c.data.byteLength);
  return onnx.TensorProto.create({ name, dims: c.shape, dataType: ONNX_DTYPE[c.dtype], rawData: bytes });
}

function attribute(name: string, v: AttrValue): Attr {
  const A = onnx.AttributeProto.AttributeType;
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`attribute ${name}: integer expected (use {float: ${v}} for floats)`);
    return onnx.AttributeProto.create({ name, type: A.INT, i: v });
  }
  if (typeof v === 'string') return onnx.AttributeProto.create({ name, type: A.STRING, s: new TextEncoder().encode(v) });
  if (Array.isArray(v)) return onnx.AttributeProto.create({ name, type: A.INTS, ints: v });
  if ('float' in v) return onnx.AttributeProto.create({ name, type: A.FLOAT, f: v.float });
  if ('floats' in v) return onnx.AttributeProto.create({ name, type: A.FLOATS, floats: v.floats });
  return onnx.AttributeProto.create({ name, type: A.TENSOR, t: tensorProto('', v.tensor) });
}

function valueInfo(name: string, shape: Dim[], dtype: DType): InstanceType<typeof onnx.ValueInfoProto> {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType: ONNX_DTYPE[dtype],
        shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  });
}

/** The tensors `outputs` depend on, in topological (creation) order. */
function reachable(outputs: Tensor[]): Tensor[] {
  const seen = new Set<Tensor>();
  const stack = [...outputs];
  while (stack.length) {
    const t = stack.pop()!;
    if (seen.has(t)) continue;
    seen.add(t);
    if (t.node) stack.push(...t.node.inputs);
  }
  return [...seen].sort((a, b) => a.id - b.id);
}

/** Lowers `graph` to ONNX. Every declared graph input becomes a model input, used or not. */
export function compile(graph: Graph, options: CompileOptions): CompiledModel {
  const outputEntries = Object.entries(options.outputs);
  const needed = reachable(outputEntries.map(([, t]) => t));
  const paramsAsInputs = options.paramsAsInputs ?? false;

  const nodes: InstanceType<typeof onnx.NodeProto>[] = [];
  const initializers: InstanceType<typeof onnx.TensorProto>[] = [];
  const inputs: InstanceType<typeof onnx.ValueInfoProto>[] = [];
  const names = new Map<Tensor, string>();
  const symbolSources = new Map<string, { name: string; axis: number }>();
  const dimCache = new Map<string, string>();
  const shapeCache = new Map<string, string>();
  const int64Cache = new Map<string, string>();
  let counter = 0;

  const noteSymbols = (t: Tensor, name: string): void =>
    t.shape.forEach((d, axis) => {
      if (typeof d === 'string' && !symbolSources.has(d)) symbolSources.set(d, { name, axis });
    });

  const e = {
    node(opType: string, ins: string[], outs: string[], attrs: Record<string, AttrValue> = {}, domain = ''): void {
      nodes.push(
        onnx.NodeProto.create({
          opType,
          domain,
          input: ins,
          output: outs,
          name: `n${nodes.length}_${opType}`,
          attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
        }),
      );
    },
    fresh(hint = 'v'): string {
      return `_${hint}${counter++}`;
    },
    int64(values: number[], scalar = false): string {
      const key = `${scalar ? 's' : 'v'}${values.join(',')}`;
      let name = int64Cache.get(key);
      if (!name) {
        name = `_i64_${int64Cache.size}`;
        const data = BigInt64Array.from(values.map((v) => BigInt(v)));
        initializers.push(tensorProto(name, { dtype: 'int64', shape: scalar ? [] : [values.length], data }));
        int64Cache.set(key, name);
      }
      return name;
    },
    float(value: number): string {
      const name = e.fresh('f');
      initializers.push(tensorProto(name, { dtype: 'float32', shape: [], data: new Float32Array([value]) }));
      return name;
    },
    dimValue(dim: Dim): string {
      if (typeof dim === 'number') return e.int64([dim]);
      let name = dimCache.get(dim);
      if (name) return name;
      const src = symbolSources.get(dim);
      if (!src) throw new Error(`cannot resolve dimension "${dim}": no computed tensor carries it`);
      const shape = e.fresh('shape');
      name = e.fresh(`dim_${dim.replace(/[^A-Za-z0-9]/g, '_')}`);
      e.node('Shape', [src.name], [shape], { start: src.axis, end: src.axis + 1 });
      // Identity keeps the name stable for the cache even if Shape is later deduplicated by ORT.
      e.node('Identity', [shape], [name]);
      dimCache.set(dim, name);
      return name;
    },
    canResolve(dim: Dim): boolean {
      return typeof dim === 'number' || symbolSources.has(dim);
    },
    shapeOf(dims: Dim[]): string {
      if (dims.every((d) => typeof d === 'number')) return e.int64(dims as number[]);
      // Memoised: the same symbolic shape recurs in every layer (split sizes, reshapes).
      const key = JSON.stringify(dims);
      let out = shapeCache.get(key);
      if (out) return out;
      out = e.fresh('shape');
      e.node('Concat', dims.map((d) => e.dimValue(d)), [out], { axis: 0 });
      shapeCache.set(key, out);
      return out;
    },
    nameOf(t: Tensor): string {
      const n = names.get(t);
      if (!n) throw new Error(`tensor ${t} has not been computed yet`);
      return n;
    },
  };

  // Every declared input is a model input so its symbolic dims can always be resolved.
  for (const t of graph.inputs()) {
    names.set(t, t.leaf!.name);
    inputs.push(valueInfo(t.leaf!.name, t.shape, t.dtype));
    noteSymbols(t, t.leaf!.name);
  }
  // A computed output is produced under its output name directly: an Identity into the output
  // would copy it on every run (the whole updated state of a training step).
  const outputNameOf = new Map<Tensor, string>();
  for (const [name, t] of outputEntries) if (!t.leaf && !outputNameOf.has(t)) outputNameOf.set(t, name);
  const emitted = new Set<Node>();
  for (const t of needed) {
    if (t.leaf) {
      if (t.leaf.kind === 'input') continue;
      const name = t.leaf.kind === 'param' ? t.leaf.name : `_c${t.id}`;
      names.set(t, name);
      if (t.leaf.kind === 'param' && paramsAsInputs) inputs.push(valueInfo(name, t.shape, t.dtype));
      else initializers.push(tensorProto(name, t.leaf.data!));
      continue;
    }
    const node = t.node!;
    if (emitted.has(node)) continue;
    emitted.add(node);
    const outs = node.outputs.map((o) => outputNameOf.get(o) ?? `t${o.id}`);
    node.outputs.forEach((o, i) => names.set(o, outs[i]));
    node.op.emit(e, node.inputs.map((i) => e.nameOf(i)), outs, node.attrs, node);
    node.outputs.forEach((o, i) => noteSymbols(o, outs[i]));
  }

  const outputs = outputEntries.map(([name, t]) => {
    if (e.nameOf(t) !== name) e.node('Identity', [e.nameOf(t)], [name]);
    return valueInfo(name, t.shape, t.dtype);
  });

  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: 'maria',
    opsetImport: [
      { domain: '', version: OPSET },
      { domain: 'com.microsoft', version: 1 },
    ],
    graph: onnx.GraphProto.create({ name: options.name ?? 'maria', node: nodes, initializer: initializers, input: inputs, output: outputs }),
  });
  return {
    bytes: onnx.ModelProto.encode(model).finish(),
    inputNames: inputs.map((i) => i.name),
    outputNames: outputEntries.map(([n]) => n),
  };
}

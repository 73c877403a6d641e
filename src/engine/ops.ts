// The primitive ops. Each op is defined once, llm.c style: its shape rule, its lowering to ONNX
// (emit) and its backward rule (vjp) side by side. Everything else — norms, attention, rotary
// embeddings, losses — is composed from these in nn.ts, so its gradient comes for free.
import { Graph, Tensor, type Dim, type DType, type Node, type OpDef, fmtShape } from './graph.js';

// ---------------------------------------------------------------------------------------------
// Shape helpers

function graphOf(...ts: Tensor[]): Graph {
  return ts[0].graph;
}

function normAxis(axis: number, rank: number, op: string): number {
  const a = axis < 0 ? rank + axis : axis;
  if (a < 0 || a >= rank) throw new Error(`${op}: axis ${axis} out of range for rank ${rank}`);
  return a;
}

/** Numpy broadcasting of symbolic shapes. */
export function broadcastShapes(op: string, a: Dim[], b: Dim[]): Dim[] {
  const rank = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    const da = i < rank - a.length ? 1 : a[i - (rank - a.length)];
    const db = i < rank - b.length ? 1 : b[i - (rank - b.length)];
    if (da === db || db === 1) out.push(da);
    else if (da === 1) out.push(db);
    else throw new Error(`${op}: shapes ${fmtShape(a)} and ${fmtShape(b)} do not broadcast (axis ${i}: ${da} vs ${db})`);
  }
  return out;
}

function sameFloat(op: string, ...ts: Tensor[]): void {
  for (const t of ts) if (t.dtype !== 'float32') throw new Error(`${op}: expects float32, got ${t}`);
}

// ---------------------------------------------------------------------------------------------
// Elementwise unary ops

type NoAttrs = Record<string, never>;

function unary(name: string, onnx: string, vjp?: (g: Tensor, x: Tensor, y: Tensor) => Tensor): OpDef<NoAttrs> {
  return {
    name,
    infer: ([x]) => {
      sameFloat(name, x);
      return [{ shape: x.shape, dtype: x.dtype }];
    },
    emit: (e, [x], [y]) => e.node(onnx, [x], [y]),
    vjp: vjp ? ([g], n) => [g ? vjp(g, n.inputs[0], n.outputs[0]) : null] : undefined,
  };
}

const NEG: OpDef<NoAttrs> = unary('neg', 'Neg', (g) => neg(g));
const EXP: OpDef<NoAttrs> = unary('exp', 'Exp', (g, _x, y) => mul(g, y));
const LOG: OpDef<NoAttrs> = unary('log', 'Log', (g, x) => div(g, x));
const SQRT: OpDef<NoAttrs> = unary('sqrt', 'Sqrt', (g, _x, y) => div(mul(g, graphOf(g).scalar(0.5)), y));
const RECIPROCAL: OpDef<NoAttrs> = unary('reciprocal', 'Reciprocal', (g, _x, y) => neg(mul(g, mul(y, y))));
const TANH: OpDef<NoAttrs> = unary('tanh', 'Tanh', (g, _x, y) => mul(g, sub(graphOf(g).scalar(1), mul(y, y))));
const ERF: OpDef<NoAttrs> = unary('erf', 'Erf', (g, x) =>
  mul(g, mul(graphOf(g).scalar(2 / Math.sqrt(Math.PI)), exp(neg(mul(x, x))))),
);
const SIGMOID: OpDef<NoAttrs> = unary('sigmoid', 'Sigmoid', (g, _x, y) => mul(g, mul(y, sub(graphOf(g).scalar(1), y))));
const COS: OpDef<NoAttrs> = unary('cos', 'Cos', (g, x) => neg(mul(g, sin(x))));
const SIN: OpDef<NoAttrs> = unary('sin', 'Sin', (g, x) => mul(g, cos(x)));
const RELU: OpDef<NoAttrs> = unary('relu', 'Relu', (g, x) => where(greater(x, graphOf(g).scalar(0)), g, graphOf(g).scalar(0)));

export const neg = (x: Tensor): Tensor => x.graph.apply(NEG, [x], {})[0];
export const exp = (x: Tensor): Tensor => x.graph.apply(EXP, [x], {})[0];
export const log = (x: Tensor): Tensor => x.graph.apply(LOG, [x], {})[0];
export const sqrt = (x: Tensor): Tensor => x.graph.apply(SQRT, [x], {})[0];
export const reciprocal = (x: Tensor): Tensor => x.graph.apply(RECIPROCAL, [x], {})[0];
export const tanh = (x: Tensor): Tensor => x.graph.apply(TANH, [x], {})[0];
export const erf = (x: Tensor): Tensor => x.graph.apply(ERF, [x], {})[0];
export const sigmoid = (x: Tensor): Tensor => x.graph.apply(SIGMOID, [x], {})[0];
export const relu = (x: Tensor): Tensor => x.graph.apply(RELU, [x], {})[0];
export const cos = (x: Tensor): Tensor => x.graph.apply(COS, [x], {})[0];
export const sin = (x: Tensor): Tensor => x.graph.apply(SIN, [x], {})[0];

const POW: OpDef<{ exponent: number }> = {
  name: 'pow',
  infer: ([x]) => (sameFloat('pow', x), [{ shape: x.shape, dtype: x.dtype }]),
  emit: (e, [x], [y], { exponent }) => e.node('Pow', [x, e.float(exponent)], [y]),
  vjp: ([g], n) => {
    const c = n.attrs.exponent;
    const x = n.inputs[0];
    return [g ? mul(g, mul(x.graph.scalar(c), c === 2 ? x : pow(x, c - 1))) : null];
  },
};
/** x ** exponent for a constant exponent. */
export const pow = (x: Tensor, exponent: number): Tensor => x.graph.apply(POW, [x], { exponent })[0];

const CLIP: OpDef<{ min: number; max: number }> = {
  name: 'clip',
  infer: ([x]) => (sameFloat('clip', x), [{ shape: x.shape, dtype: x.dtype }]),
  emit: (e, [x], [y], { min, max }) => e.node('Clip', [x, e.float(min), e.float(max)], [y]),
  vjp: ([g], n) => {
    if (!g) return [null];
    const x = n.inputs[0];
    const inside = and(greater(x, x.graph.scalar(n.attrs.min)), less(x, x.graph.scalar(n.attrs.max)));
    return [where(inside, g, x.graph.scalar(0))];
  },
};
/** Clamps to [min, max]; the gradient is zero outside. */
export const clip = (x: Tensor, min: number, max: number): Tensor => x.graph.apply(CLIP, [x], { min, max })[0];

const CAST: OpDef<{ to: DType }> = {
  name: 'cast',
  infer: ([x], { to }) => [{ shape: x.shape, dtype: to }],
  emit: (e, [x], [y], { to }) => e.node('Cast', [x], [y], { to: ONNX_DTYPE[to] }),
  vjp: ([g], n) => [g && n.inputs[0].dtype === 'float32' && n.attrs.to === 'float32' ? g : null],
};
/** Converts the element type (only float32 → float32 passes gradients). */
export const cast = (x: Tensor, to: DType): Tensor => (x.dtype === to ? x : x.graph.apply(CAST, [x], { to })[0]);

/** ONNX TensorProto.DataType codes. */
export const ONNX_DTYPE: Record<DType, number> = { float32: 1, int64: 7, bool: 9 };

// ---------------------------------------------------------------------------------------------
// Elementwise binary ops (numpy broadcasting)

function binary(name: string, onnx: string, vjp?: (g: Tensor, a: Tensor, b: Tensor, y: Tensor) => [Tensor | null, Tensor | null]): OpDef<NoAttrs> {
  const isCompare = !vjp;
  return {
    name,
    infer: ([a, b]) => {
      if (a.dtype !== b.dtype) throw new Error(`${name}: element types differ (${a} vs ${b})`);
      return [{ shape: broadcastShapes(name, a.shape, b.shape), dtype: isCompare ? 'bool' : a.dtype }];
    },
    emit: (e, [a, b], [y]) => e.node(onnx, [a, b], [y]),
    vjp: vjp
      ? ([g], n) => {
          if (!g) return [null, null];
          const [a, b] = n.inputs;
          const [ga, gb] = vjp(g, a, b, n.outputs[0]);
          return [ga && sumTo(ga, a), gb && sumTo(gb, b)];
        }
      : undefined,
  };
}

const ADD = binary('add', 'Add', (g) => [g, g]);
const SUB = binary('sub', 'Sub', (g) => [g, neg(g)]);
const MUL = binary('mul', 'Mul', (g, a, b) => [mul(g, b), mul(g, a)]);
const DIV = binary('div', 'Div', (g, _a, b, y) => [div(g, b), neg(div(mul(g, y), b))]);
const LESS = binary('less', 'Less');
const GREATER = binary('greater', 'Greater');
const EQUAL = binary('equal', 'Equal');
const AND = binary('and', 'And');
const OR = binary('or', 'Or');

export const add = (a: Tensor, b: Tensor): Tensor => foldScatterAdd(a, b) ?? foldScatterAdd(b, a) ?? a.graph.apply(ADD, [a, b], {})[0];
export const sub = (a: Tensor, b: Tensor): Tensor => a.graph.apply(SUB, [a, b], {})[0];
export const mul = (a: Tensor, b: Tensor): Tensor => a.graph.apply(MUL, [a, b], {})[0];
export const div = (a: Tensor, b: Tensor): Tensor => a.graph.apply(DIV, [a, b], {})[0];
export const less = (a: Tensor, b: Tensor): Tensor => a.graph.apply(LESS, [a, b], {})[0];
export const greater = (a: Tensor, b: Tensor): Tensor => a.graph.apply(GREATER, [a, b], {})[0];
export const equal = (a: Tensor, b: Tensor): Tensor => a.graph.apply(EQUAL, [a, b], {})[0];
export const and = (a: Tensor, b: Tensor): Tensor => a.graph.apply(AND, [a, b], {})[0];
export const or = (a: Tensor, b: Tensor): Tensor => a.graph.apply(OR, [a, b], {})[0];

const NOT: OpDef<NoAttrs> = {
  name: 'not',
  infer: ([x]) => [{ shape: x.shape, dtype: 'bool' }],
  emit: (e, [x], [y]) => e.node('Not', [x], [y]),
};
export const not = (x: Tensor): Tensor => x.graph.apply(NOT, [x], {})[0];

const WHERE: OpDef<NoAttrs> = {
  name: 'where',
  infer: ([c, a, b]) => {
    if (c.dtype !== 'bool') throw new Error(`where: condition must be bool, got ${c}`);
    if (a.dtype !== b.dtype) throw new Error(`where: branches differ in type (${a} vs ${b})`);
    return [{ shape: broadcastShapes('where', c.shape, broadcastShapes('where', a.shape, b.shape)), dtype: a.dtype }];
  },
  emit: (e, [c, a, b], [y]) => e.node('Where', [c, a, b], [y]),
  vjp: ([g], n) => {
    if (!g) return [null, null, null];
    const [c, a, b] = n.inputs;
    const zero = g.graph.scalar(0);
    return [null, sumTo(where(c, g, zero), a), sumTo(where(c, zero, g), b)];
  },
};
/** Elementwise choice: cond ? a : b. */
export const where = (cond: Tensor, a: Tensor, b: Tensor): Tensor => cond.graph.apply(WHERE, [cond, a, b], {})[0];

// ---------------------------------------------------------------------------------------------
// Reductions

interface ReduceAttrs {
  axes: number[];
  keepdims: boolean;
}

function reducedShape(x: Tensor, axes: number[], keepdims: boolean): Dim[] {
  const set = new Set(axes);
  return keepdims ? x.shape.map((d, i) => (set.has(i) ? 1 : d)) : x.shape.filter((_, i) => !set.has(i));
}

function normAxes(x: Tensor, axes: number[], op: string): number[] {
  return [...new Set(axes.map((a) => normAxis(a, x.rank, op)))].sort((a, b) => a - b);
}

/** Reinserts reduced axes as size 1 so a reduced gradient broadcasts back over the input. */
function keepReduced(g: Tensor, n: Node<ReduceAttrs>): Tensor {
  if (n.attrs.keepdims) return g;
  return reshape(g, reducedShape(n.inputs[0], n.attrs.axes, true));
}

const SUM: OpDef<ReduceAttrs> = {
  name: 'sum',
  infer: ([x], { axes, keepdims }) => [{ shape: reducedShape(x, axes, keepdims), dtype: x.dtype }],
  emit: (e, [x], [y], { axes, keepdims }) => e.node('ReduceSum', [x, e.int64(axes)], [y], { keepdims: keepdims ? 1 : 0 }),
  vjp: ([g], n) => [g ? expandLike(keepReduced(g, n), n.inputs[0]) : null],
};
const MEAN: OpDef<ReduceAttrs> = {
  name: 'mean',
  infer: ([x], { axes, keepdims }) => [{ shape: reducedShape(x, axes, keepdims), dtype: x.dtype }],
  emit: (e, [x], [y], { axes, keepdims }) => e.node('ReduceMean', [x], [y], { axes, keepdims: keepdims ? 1 : 0 }),
  vjp: ([g], n) => [g ? div(expandLike(keepReduced(g, n), n.inputs[0]), countOf(n.inputs[0], n.attrs.axes)) : null],
};
const MAX: OpDef<ReduceAttrs> = {
  name: 'max',
  infer: ([x], { axes, keepdims }) => [{ shape: reducedShape(x, axes, keepdims), dtype: x.dtype }],
  emit: (e, [x], [y], { axes, keepdims }) => e.node('ReduceMax', [x], [y], { axes, keepdims: keepdims ? 1 : 0 }),
  vjp: ([g], n) => {
    if (!g) return [null];
    const x = n.inputs[0];
    const y = keepReduced(n.outputs[0], n);
    // Ties share the gradient in full; exact ties are measure-zero for real activations.
    return [where(equal(x, y), expandLike(keepReduced(g, n), x), x.graph.scalar(0))];
  },
};

export const sum = (x: Tensor, axes: number[], keepdims = false): Tensor =>
  x.graph.apply(SUM, [x], { axes: normAxes(x, axes, 'sum'), keepdims })[0];
export const mean = (x: Tensor, axes: number[], keepdims = false): Tensor =>
  x.graph.apply(MEAN, [x], { axes: normAxes(x, axes, 'mean'), keepdims })[0];
export const max = (x: Tensor, axes: number[], keepdims = false): Tensor =>
  x.graph.apply(MAX, [x], { axes: normAxes(x, axes, 'max'), keepdims })[0];

const COUNT: OpDef<{ axes: number[] }> = {
  name: 'count',
  infer: () => [{ shape: [], dtype: 'float32' }],
  emit: (e, [x], [y], { axes }) => {
    const shape = e.fresh('shape');
    const dims = e.fresh('dims');
    const prod = e.fresh('prod');
    e.node('Shape', [x], [shape]);
    e.node('Gather', [shape, e.int64(axes)], [dims], { axis: 0 });
    e.node('ReduceProd', [dims], [prod], { keepdims: 0 });
    e.node('Cast', [prod], [y], { to: ONNX_DTYPE.float32 });
  },
};
/** The number of elements along `axes` of x, as a float scalar computed at run time. */
export const countOf = (x: Tensor, axes: number[]): Tensor => x.graph.apply(COUNT, [x], { axes: normAxes(x, axes, 'count') })[0];

// ---------------------------------------------------------------------------------------------
// Shape ops

/** Infers the output of a reshape that may contain one -1, giving it a readable symbol. */
function reshapeShape(x: Tensor, dims: Dim[]): Dim[] {
  const holes = dims.filter((d) => d === -1).length;
  if (holes > 1) throw new Error(`reshape: at most one -1 allowed, got ${fmtShape(dims)}`);
  if (holes === 0) return dims;
  const rest = [...x.shape];
  for (const d of dims) {
    if (d === -1) continue;
    const i = rest.indexOf(d);
    if (i >= 0) rest.splice(i, 1);
    else if (typeof d === 'number' && rest.every((r) => typeof r === 'number')) {
      const n = rest.reduce<number>((a, b) => a * (b as number), 1);
      if (n % d !== 0) throw new Error(`reshape: cannot reshape ${fmtShape(x.shape)} to ${fmtShape(dims)}`);
      rest.length = 0;
      rest.push(n / d);
    } else return dims.map((q) => (q === -1 ? `r${x.graph.tensors.length}` : q));
  }
  const nums = rest.filter((r) => typeof r === 'number') as number[];
  const syms = rest.filter((r) => typeof r === 'string') as string[];
  const n = nums.reduce((a, b) => a * b, 1);
  const inferred: Dim = syms.length === 0 ? n : [...(n === 1 ? [] : [String(n)]), ...syms].join('*');
  return dims.map((d) => (d === -1 ? inferred : d));
}

const RESHAPE: OpDef<{ dims: Dim[] }> = {
  name: 'reshape',
  infer: ([x], { dims }) => [{ shape: reshapeShape(x, dims), dtype: x.dtype }],
  emit: (e, [x], [y], { dims }) => {
    // A -1 stays -1 so ONNX infers it; symbols are read from the tensors that carry them.
    const parts = dims.map((d) => (d === -1 ? -1 : d));
    e.node('Reshape', [x, e.shapeOf(parts)], [y]);
  },
  vjp: ([g], n) => [g ? reshapeLike(g, n.inputs[0]) : null],
};
/** Reshape to `dims` (numbers, symbols, at most one -1). */
export const reshape = (x: Tensor, dims: Dim[]): Tensor => x.graph.apply(RESHAPE, [x], { dims })[0];

const RESHAPE_LIKE: OpDef<NoAttrs> = {
  name: 'reshapeLike',
  infer: ([x, ref]) => [{ shape: ref.shape, dtype: x.dtype }],
  emit: (e, [x, ref], [y]) => {
    const s = e.fresh('shape');
    e.node('Shape', [ref], [s]);
    e.node('Reshape', [x, s], [y]);
  },
  vjp: ([g], n) => [g ? reshapeLike(g, n.inputs[0]) : null, null],
};
/** Reshape x to the run-time shape of ref. */
export const reshapeLike = (x: Tensor, ref: Tensor): Tensor => x.graph.apply(RESHAPE_LIKE, [x, ref], {})[0];

const TRANSPOSE: OpDef<{ perm: number[] }> = {
  name: 'transpose',
  infer: ([x], { perm }) => {
    if (perm.length !== x.rank || [...perm].sort().some((p, i) => p !== i)) {
      throw new Error(`transpose: perm [${perm}] is not a permutation of rank ${x.rank}`);
    }
    return [{ shape: perm.map((p) => x.shape[p]), dtype: x.dtype }];
  },
  emit: (e, [x], [y], { perm }) => e.node('Transpose', [x], [y], { perm }),
  vjp: ([g], n) => {
    if (!g) return [null];
    const inv: number[] = [];
    n.attrs.perm.forEach((p, i) => (inv[p] = i));
    // Measured: computing a linear weight's gradient as (xᵀ·g)ᵀ beats gᵀ·x for wide outputs
    // ([1024,256]ᵀ·[1024,8192]: 160 vs 145 GFLOP/s with the transpose), so no operand swap here.
    return [transpose(g, inv)];
  },
};
export const transpose = (x: Tensor, perm: number[]): Tensor => x.graph.apply(TRANSPOSE, [x], { perm })[0];
/** Swaps the last two axes (undoing such a swap instead of stacking a second one). */
export const transposeLast = (x: Tensor): Tensor => {
  const perm = x.shape.map((_, i) => i);
  [perm[x.rank - 2], perm[x.rank - 1]] = [perm[x.rank - 1], perm[x.rank - 2]];
  const src = x.node;
  if (src && src.op === TRANSPOSE && (src.attrs as { perm: number[] }).perm.every((p, i) => p === perm[i])) return src.inputs[0];
  return transpose(x, perm);
};

interface SliceAttrs {
  axis: number;
  start: number;
  end: number | null;
}
function sliceDim(d: Dim, start: number, end: number | null): Dim {
  if (typeof d === 'number') {
    const s = Math.max(0, Math.min(d, start < 0 ? d + start : start));
    const t = end === null ? d : Math.max(0, Math.min(d, end < 0 ? d + end : end));
    return Math.max(0, t - s);
  }
  if (start >= 0 && end !== null && end >= 0) return end - start;
  if (start < 0 && end === null) return -start;
  return start === 0 && end === null ? d : `${d}[${start}:${end ?? ''}]`;
}
const SLICE: OpDef<SliceAttrs> = {
  name: 'slice',
  infer: ([x], { axis, start, end }) => {
    const shape = [...x.shape];
    shape[axis] = sliceDim(shape[axis], start, end);
    return [{ shape, dtype: x.dtype }];
  },
  emit: (e, [x], [y], { axis, start, end }) =>
    e.node('Slice', [x, e.int64([start]), e.int64([end ?? Number.MAX_SAFE_INTEGER]), e.int64([axis])], [y]),
  vjp: ([g], n) => [g ? g.graph.apply(SLICE_GRAD, [g, n.inputs[0]], { ...n.attrs, rank: n.inputs[0].rank })[0] : null],
};
/** Zero-pads the gradient of a slice back to the sliced tensor's shape. */
const SLICE_GRAD: OpDef<SliceAttrs & { rank: number }> = {
  name: 'sliceGrad',
  infer: ([g, x]) => [{ shape: x.shape, dtype: g.dtype }],
  emit: (e, [g, x], [y], { axis, start, end, rank }) => {
    // pads = [begin_0..begin_{r-1}, end_0..end_{r-1}]: only `axis` is padded, by sizes known at run time.
    const shapeX = e.fresh('shape');
    const dimX = e.fresh('dim');
    e.node('Shape', [x], [shapeX]);
    e.node('Gather', [shapeX, e.int64([axis])], [dimX], { axis: 0 });
    const clampIndex = (v: number): string => {
      const out = e.fresh('idx');
      if (v >= 0) e.node('Min', [e.int64([v]), dimX], [out]);
      else {
        const t = e.fresh('idx');
        e.node('Add', [dimX, e.int64([v])], [t]);
        e.node('Max', [t, e.int64([0])], [out]);
      }
      return out;
    };
    const before = clampIndex(start);
    const after = e.fresh('after');
    e.node('Sub', [dimX, end === null ? dimX : clampIndex(end)], [after]);
    const zeros = (n: number): string[] => (n > 0 ? [e.int64(new Array(n).fill(0))] : []);
    const pads = e.fresh('pads');
    e.node('Concat', [...zeros(axis), before, ...zeros(rank - 1), after, ...zeros(rank - axis - 1)], [pads], { axis: 0 });
    e.node('Pad', [g, pads], [y]);
  },
};
/** x[..., start:end, ...] along `axis` (end null = to the end; negatives count from the end). */
export const slice = (x: Tensor, axis: number, start: number, end: number | null = null): Tensor =>
  x.graph.apply(SLICE, [x], { axis: normAxis(axis, x.rank, 'slice'), start, end })[0];

const CONCAT: OpDef<{ axis: number }> = {
  name: 'concat',
  infer: (xs, { axis }) => {
    const first = xs[0];
    const shape = [...first.shape];
    const parts = xs.map((x) => x.shape[axis]);
    for (const x of xs) {
      if (x.rank !== first.rank || x.dtype !== first.dtype || x.shape.some((d, i) => i !== axis && d !== first.shape[i])) {
        throw new Error(`concat: ${x} does not match ${first} outside axis ${axis}`);
      }
    }
    shape[axis] = parts.every((p) => typeof p === 'number') ? (parts as number[]).reduce((a, b) => a + b, 0) : parts.join('+');
    return [{ shape, dtype: first.dtype }];
  },
  emit: (e, xs, [y], { axis }) => e.node('Concat', xs, [y], { axis }),
  vjp: ([g], n) => (g ? g.graph.apply(SPLIT_LIKE, [g, ...n.inputs], { axis: n.attrs.axis }) : n.inputs.map(() => null)),
};
/** Splits a gradient along `axis` into pieces sized like the given tensors. */
const SPLIT_LIKE: OpDef<{ axis: number }> = {
  name: 'splitLike',
  infer: ([g, ...refs]) => refs.map((r) => ({ shape: r.shape, dtype: g.dtype })),
  emit: (e, [g, ...refs], outs, { axis }, n) => {
    // Sizes known by symbol (the KV cache's P, the new tokens' T) come from one shared computation
    // per graph; only sizes without a symbol are read off each reference tensor.
    const dims = n.inputs.slice(1).map((r) => r.shape[axis]);
    if (dims.every((d) => e.canResolve(d))) {
      e.node('Split', [g, e.shapeOf(dims)], outs, { axis });
      return;
    }
    const sizes = refs.map((r) => {
      const s = e.fresh('shape');
      const d = e.fresh('dim');
      e.node('Shape', [r], [s]);
      e.node('Gather', [s, e.int64([axis])], [d], { axis: 0 });
      return d;
    });
    const split = e.fresh('split');
    e.node('Concat', sizes, [split], { axis: 0 });
    e.node('Split', [g, split], outs, { axis });
  },
  vjp: (grads, n) => {
    if (grads.every((g) => g === null)) return n.inputs.map(() => null);
    const pieces = n.outputs.map((o, i) => grads[i] ?? expandLike(o.graph.scalar(0), o));
    return [concat(pieces, n.attrs.axis), ...n.inputs.slice(1).map(() => null)];
  },
};
/** Splits x along `axis` into pieces sized (at run time) like `refs` along that axis. */
export const splitLike = (x: Tensor, refs: Tensor[], axis: number): Tensor[] =>
  x.graph.apply(SPLIT_LIKE, [x, ...refs], { axis: normAxis(axis, x.rank, 'splitLike') });
const SPLIT: OpDef<{ axis: number; sizes: number[] }> = {
  name: 'split',
  infer: ([x], { axis, sizes }) => {
    const d = x.shape[axis];
    if (typeof d === 'number' && d !== sizes.reduce((a, b) => a + b, 0)) throw new Error(`split: sizes [${sizes}] do not add up to axis ${axis} of ${x}`);
    return sizes.map((n) => ({ shape: x.shape.map((s, i) => (i === axis ? n : s)), dtype: x.dtype }));
  },
  emit: (e, [x], outs, { axis, sizes }) => e.node('Split', [x, e.int64(sizes)], outs, { axis }),
  vjp: (grads, n) => {
    if (grads.every((g) => g === null)) return [null];
    return [concat(n.outputs.map((o, i) => grads[i] ?? expandLike(o.graph.scalar(0), o)), n.attrs.axis)];
  },
};
/** Splits x along `axis` into pieces of the given fixed sizes. */
export const split = (x: Tensor, sizes: number[], axis: number): Tensor[] =>
  x.graph.apply(SPLIT, [x], { axis: normAxis(axis, x.rank, 'split'), sizes });
export const concat = (xs: Tensor[], axis: number): Tensor => {
  if (xs.length === 1) return xs[0];
  return xs[0].graph.apply(CONCAT, xs, { axis: normAxis(axis, xs[0].rank, 'concat') })[0];
};

const EXPAND: OpDef<{ dims: Dim[] }> = {
  name: 'expand',
  infer: ([x], { dims }) => [{ shape: broadcastShapes('expand', x.shape, dims), dtype: x.dtype }],
  emit: (e, [x], [y], { dims }) => e.node('Expand', [x, e.shapeOf(dims)], [y]),
  vjp: ([g], n) => [g ? sumTo(g, n.inputs[0]) : null],
};
/** Broadcasts x to `dims`. */
export const expand = (x: Tensor, dims: Dim[]): Tensor => x.graph.apply(EXPAND, [x], { dims })[0];

const EXPAND_LIKE: OpDef<NoAttrs> = {
  name: 'expandLike',
  infer: ([x, ref]) => [{ shape: broadcastShapes('expandLike', x.shape, ref.shape), dtype: x.dtype }],
  emit: (e, [x, ref], [y]) => {
    const s = e.fresh('shape');
    e.node('Shape', [ref], [s]);
    e.node('Expand', [x, s], [y]);
  },
  vjp: ([g], n) => [g ? sumTo(g, n.inputs[0]) : null, null],
};
/** Broadcasts x to the run-time shape of ref. */
export const expandLike = (x: Tensor, ref: Tensor): Tensor => x.graph.apply(EXPAND_LIKE, [x, ref], {})[0];

const SUM_TO: OpDef<{ axes: number[] }> = {
  name: 'sumTo',
  infer: ([, ref]) => [{ shape: ref.shape, dtype: ref.dtype }],
  emit: (e, [g, ref], [y], { axes }) => {
    const summed = e.fresh('summed');
    e.node('ReduceSum', [g, e.int64(axes)], [summed], { keepdims: 1 });
    const s = e.fresh('shape');
    e.node('Shape', [ref], [s]);
    e.node('Reshape', [summed, s], [y]);
  },
};
/** Sums a broadcast result back to the shape of `ref` (the un-broadcast step of every vjp). */
export function sumTo(g: Tensor, ref: Tensor): Tensor {
  const lead = g.rank - ref.rank;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < lead) axes.push(i);
    else if (ref.shape[i - lead] === 1 && g.shape[i] !== 1) axes.push(i);
  }
  if (axes.length === 0) return g;
  return g.graph.apply(SUM_TO, [g, ref], { axes })[0];
}

// ---------------------------------------------------------------------------------------------
// Indexing

const GATHER: OpDef<NoAttrs> = {
  name: 'gather',
  infer: ([table, ids]) => {
    if (ids.dtype !== 'int64') throw new Error(`gather: indices must be int64, got ${ids}`);
    return [{ shape: [...ids.shape, ...table.shape.slice(1)], dtype: table.dtype }];
  },
  emit: (e, [table, ids], [y]) => e.node('Gather', [table, ids], [y], { axis: 0 }),
  vjp: ([g], n) => [g ? g.graph.apply(SCATTER_ADD_ROWS, [g, n.inputs[1], n.inputs[0]], {})[0] : null, null],
};
/** Rows of `table` picked by `ids` (an embedding lookup). */
export const gather = (table: Tensor, ids: Tensor): Tensor => table.graph.apply(GATHER, [table, ids], {})[0];

/** Adds each row of g into the rows of a zero table shaped like `table` at `ids` (gather's vjp). */
const SCATTER_ADD_ROWS: OpDef<NoAttrs> = {
  name: 'scatterAddRows',
  infer: ([g, , table]) => [{ shape: table.shape, dtype: g.dtype }],
  emit: (e, [g, ids, table], [y]) => {
    const s = e.fresh('shape');
    const zeros = e.fresh('zeros');
    const idx = e.fresh('idx');
    e.node('Shape', [table], [s]);
    e.node('ConstantOfShape', [s], [zeros], { value: { tensor: { dtype: 'float32', shape: [1], data: new Float32Array([0]) } } });
    e.node('Unsqueeze', [ids, e.int64([-1])], [idx]);
    e.node('ScatterND', [zeros, idx, g], [y], { reduction: 'add' });
  },
};

/** base + scatterAddRows(g, ids): the rows added straight into `base` (gather's vjp, accumulated). */
const SCATTER_ADD_ROWS_INTO: OpDef<NoAttrs> = {
  name: 'scatterAddRowsInto',
  infer: ([base]) => [{ shape: base.shape, dtype: base.dtype }],
  emit: (e, [base, ids, g], [y]) => {
    const idx = e.fresh('idx');
    e.node('Unsqueeze', [ids, e.int64([-1])], [idx]);
    e.node('ScatterND', [base, idx, g], [y], { reduction: 'add' });
  },
  vjp: ([gy], n) => (gy ? [gy, null, gather(gy, n.inputs[1])] : [null, null, null]),
};

/**
 * Adding an embedding gradient (rows scattered into zeros) to another gradient of the same table
 * (a tied output projection's) scatters the rows into that gradient instead: no zero table and
 * no extra pass (and no MatMul + Add that ORT would turn into a Gemm with an explicit transpose).
 */
function foldScatterAdd(base: Tensor, s: Tensor): Tensor | null {
  const n = s.node;
  if (!n || n.op !== SCATTER_ADD_ROWS || base.dtype !== s.dtype) return null;
  if (base.rank !== s.rank || base.shape.some((d, i) => d !== s.shape[i])) return null;
  const [g, ids] = n.inputs;
  return base.graph.apply(SCATTER_ADD_ROWS_INTO, [base, ids, g], {})[0];
}

const PICK: OpDef<NoAttrs> = {
  name: 'pick',
  infer: ([x, idx]) => {
    if (idx.dtype !== 'int64') throw new Error(`pick: indices must be int64, got ${idx}`);
    return [{ shape: [...x.shape.slice(0, -1)], dtype: x.dtype }];
  },
  emit: (e, [x, idx], [y]) => {
    const idx1 = e.fresh('idx');
    const picked = e.fresh('picked');
    e.node('Unsqueeze', [idx, e.int64([-1])], [idx1]);
    e.node('GatherElements', [x, idx1], [picked], { axis: -1 });
    e.node('Squeeze', [picked, e.int64([-1])], [y]);
  },
  vjp: ([g], n) => [g ? g.graph.apply(PICK_GRAD, [g, n.inputs[1], n.inputs[0]], {})[0] : null, null],
};
/** Scatters each row's gradient back to the one picked column (pick's vjp). */
const PICK_GRAD: OpDef<NoAttrs> = {
  name: 'pickGrad',
  infer: ([g, , x]) => [{ shape: x.shape, dtype: g.dtype }],
  emit: (e, [g, idx, x], [y]) => {
    const s = e.fresh('shape');
    const zeros = e.fresh('zeros');
    const idx1 = e.fresh('idx');
    const g1 = e.fresh('g');
    e.node('Shape', [x], [s]);
    e.node('ConstantOfShape', [s], [zeros], { value: { tensor: { dtype: 'float32', shape: [1], data: new Float32Array([0]) } } });
    e.node('Unsqueeze', [idx, e.int64([-1])], [idx1]);
    e.node('Unsqueeze', [g, e.int64([-1])], [g1]);
    e.node('ScatterElements', [zeros, idx1, g1], [y], { axis: -1 });
  },
};
/** x[..., idx[...]]: one element of the last axis per row (e.g. the log-probability of a target). */
export const pick = (x: Tensor, idx: Tensor): Tensor => x.graph.apply(PICK, [x, idx], {})[0];

/** base with g added at one column per row: base + pickGrad(g, idx). */
const PICK_GRAD_INTO: OpDef<NoAttrs> = {
  name: 'pickGradInto',
  infer: ([base]) => [{ shape: base.shape, dtype: base.dtype }],
  emit: (e, [base, idx, g], [y]) => {
    const idx1 = e.fresh('idx');
    const g1 = e.fresh('g');
    e.node('Unsqueeze', [idx, e.int64([-1])], [idx1]);
    e.node('Unsqueeze', [g, e.int64([-1])], [g1]);
    e.node('ScatterElements', [base, idx1, g1], [y], { axis: -1, reduction: 'add' });
  },
  vjp: ([gy], n) => (gy ? [gy, null, pick(gy, n.inputs[1])] : [null, null, null]),
};

const LOG_SOFTMAX_PICK: OpDef<NoAttrs> = {
  name: 'logSoftmaxPick',
  infer: ([x, idx]) => {
    sameFloat('logSoftmaxPick', x);
    if (idx.dtype !== 'int64') throw new Error(`logSoftmaxPick: indices must be int64, got ${idx}`);
    return [
      { shape: x.shape.slice(0, -1), dtype: x.dtype },
      { shape: x.shape, dtype: x.dtype },
    ];
  },
  emit: (e, [x, idx], [y, logp]) => {
    const idx1 = e.fresh('idx');
    const picked = e.fresh('picked');
    e.node('LogSoftmax', [x], [logp], { axis: -1 });
    e.node('Unsqueeze', [idx, e.int64([-1])], [idx1]);
    e.node('GatherElements', [logp, idx1], [picked], { axis: -1 });
    e.node('Squeeze', [picked, e.int64([-1])], [y]);
  },
  // d/dx = G - softmax(x)·Σ_row G, with G the picked gradient scattered to its column (plus any
  // gradient of the log-probabilities): three passes over [..., V] instead of six.
  vjp: ([gp, gl], n) => {
    if (!gp && !gl) return [null, null];
    const idx = n.inputs[1];
    const logp = n.outputs[1];
    let rowSum = gp;
    if (gl) rowSum = rowSum ? add(rowSum, sum(gl, [-1])) : sum(gl, [-1]);
    let gx = mul(exp(logp), reshape(neg(rowSum!), [...rowSum!.shape, 1]));
    if (gl) gx = add(gl, gx);
    if (gp) gx = gx.graph.apply(PICK_GRAD_INTO, [gx, idx, gp], {})[0];
    return [gx, null];
  },
};
/** logSoftmax(x) picked at idx along the last axis, with a fused backward (cross-entropy's core). */
export const logSoftmaxPick = (x: Tensor, idx: Tensor): Tensor => x.graph.apply(LOG_SOFTMAX_PICK, [x, idx], {})[0];

const ONE_HOT: OpDef<{ depth: number }> = {
  name: 'oneHot',
  infer: ([ids], { depth }) => [{ shape: [...ids.shape, depth], dtype: 'float32' }],
  emit: (e, [ids], [y], { depth }) => {
    const values = e.fresh('values');
    e.node('Constant', [], [values], { value: { tensor: { dtype: 'float32', shape: [2], data: new Float32Array([0, 1]) } } });
    e.node('OneHot', [ids, e.int64([depth], true), values], [y], { axis: -1 });
  },
};
/** One-hot float vectors of length `depth`; out-of-range ids (e.g. -1 for "ignore") give all zeros. */
export const oneHot = (ids: Tensor, depth: number): Tensor => ids.graph.apply(ONE_HOT, [ids], { depth })[0];

// ---------------------------------------------------------------------------------------------
// Linear algebra and normalisations

const MATMUL: OpDef<NoAttrs> = {
  name: 'matmul',
  infer: ([a, b]) => {
    sameFloat('matmul', a, b);
    if (a.rank < 2 || b.rank < 2) throw new Error(`matmul: operands must have rank ≥ 2 (${a}, ${b})`);
    if (a.dim(-1) !== b.dim(-2)) throw new Error(`matmul: inner dimensions differ (${a} @ ${b})`);
    const batch = broadcastShapes('matmul', a.shape.slice(0, -2), b.shape.slice(0, -2));
    return [{ shape: [...batch, a.dim(-2), b.dim(-1)], dtype: 'float32' }];
  },
  emit: (e, [a, b], [y]) => e.node('MatMul', [a, b], [y]),
  vjp: ([g], n) => {
    if (!g) return [null, null];
    const [a, b] = n.inputs;
    const ga = sumTo(matmul(g, transposeLast(b)), a);
    let gb: Tensor;
    if (b.rank === 2 && a.rank > 2) {
      // A weight applied to a batch: fold the batch into rows, one [K,N] product instead of a
      // batched product followed by a reduction.
      const a2 = reshape(a, [-1, a.dim(-1)]);
      const g2 = reshape(g, [-1, g.dim(-1)]);
      gb = matmul(transposeLast(a2), g2);
    } else gb = sumTo(matmul(transposeLast(a), g), b);
    return [ga, gb];
  },
};
/** Batched matrix product with numpy broadcasting over leading axes. */
export const matmul = (a: Tensor, b: Tensor): Tensor => a.graph.apply(MATMUL, [a, b], {})[0];

const SOFTMAX: OpDef<NoAttrs> = {
  name: 'softmax',
  infer: ([x]) => (sameFloat('softmax', x), [{ shape: x.shape, dtype: x.dtype }]),
  emit: (e, [x], [y]) => e.node('Softmax', [x], [y], { axis: -1 }),
  vjp: ([g], n) => {
    if (!g) return [null];
    const y = n.outputs[0];
    return [mul(y, sub(g, sum(mul(g, y), [-1], true)))];
  },
};
/** Softmax over the last axis. */
export const softmax = (x: Tensor): Tensor => x.graph.apply(SOFTMAX, [x], {})[0];

const LOG_SOFTMAX: OpDef<NoAttrs> = {
  name: 'logSoftmax',
  infer: ([x]) => (sameFloat('logSoftmax', x), [{ shape: x.shape, dtype: x.dtype }]),
  emit: (e, [x], [y]) => e.node('LogSoftmax', [x], [y], { axis: -1 }),
  vjp: ([g], n) => {
    if (!g) return [null];
    return [sub(g, mul(exp(n.outputs[0]), sum(g, [-1], true)))];
  },
};
/** Log-softmax over the last axis. */
export const logSoftmax = (x: Tensor): Tensor => x.graph.apply(LOG_SOFTMAX, [x], {})[0];

const LAYER_NORM: OpDef<{ eps: number }> = {
  name: 'layerNorm',
  infer: ([x, w, b]) => {
    sameFloat('layerNorm', x, w, b);
    const d = x.dim(-1);
    if (w.rank !== 1 || w.shape[0] !== d || b.rank !== 1 || b.shape[0] !== d) {
      throw new Error(`layerNorm: weight ${w} and bias ${b} must be [${d}] for input ${x}`);
    }
    return [{ shape: x.shape, dtype: x.dtype }];
  },
  // ORT's fused LayerNormalization kernel: one pass instead of the ~8 elementwise ops it replaces.
  emit: (e, [x, w, b], [y], { eps }) => e.node('LayerNormalization', [x, w, b], [y], { axis: -1, epsilon: { float: eps } }),
  vjp: ([g], n) => {
    if (!g) return [null, null, null];
    const [x, w, b] = n.inputs;
    const gr = x.graph;
    const mu = mean(x, [-1], true);
    const xc = sub(x, mu);
    const rstd = reciprocal(sqrt(add(mean(mul(xc, xc), [-1], true), gr.scalar(n.attrs.eps))));
    const xhat = mul(xc, rstd);
    const gxhat = mul(g, w);
    const gx = mul(rstd, sub(sub(gxhat, mean(gxhat, [-1], true)), mul(xhat, mean(mul(gxhat, xhat), [-1], true))));
    return [gx, sumTo(mul(g, xhat), w), sumTo(g, b)];
  },
};
/** Layer normalisation over the last axis with weight and bias (pass ones/zeros for none). */
export const layerNorm = (x: Tensor, weight: Tensor, bias: Tensor, eps: number): Tensor =>
  x.graph.apply(LAYER_NORM, [x, weight, bias], { eps })[0];

const ADD_RMS_NORM: OpDef<{ eps: number }> = {
  name: 'addRmsNorm',
  infer: ([x, skip, w]) => {
    sameFloat('addRmsNorm', x, skip, w);
    const d = x.dim(-1);
    if (x.rank !== 3 || skip.rank !== 3 || x.shape.some((s, i) => s !== skip.shape[i]) || w.rank !== 1 || w.shape[0] !== d) {
      throw new Error(`addRmsNorm: x ${x} and skip ${skip} must be one [B, T, D] shape and weight ${w} [D]`);
    }
    return [
      { shape: x.shape, dtype: x.dtype },
      { shape: x.shape, dtype: x.dtype },
    ];
  },
  // ORT's SkipSimplifiedLayerNormalization: the residual add and the norm after it in one node
  // that also returns the sum. ORT fuses that pattern itself only when nothing else reads the
  // sum, and in a pre-norm block the residual stream always reads it.
  emit: (e, [x, skip, w], [y, s], { eps }) => e.node('SkipSimplifiedLayerNormalization', [x, skip, w], [y, '', '', s], { epsilon: { float: eps } }, 'com.microsoft'),
  vjp: ([gy, gs], n) => {
    const w = n.inputs[2];
    if (!gy && !gs) return [null, null, null];
    let gsum = gs;
    let gw: Tensor | null = null;
    if (gy) {
      const s = n.outputs[1];
      const rstd = reciprocal(sqrt(add(mean(mul(s, s), [-1], true), s.graph.scalar(n.attrs.eps))));
      const xhat = mul(s, rstd);
      const gxhat = mul(gy, w);
      const g = mul(rstd, sub(gxhat, mul(xhat, mean(mul(gxhat, xhat), [-1], true))));
      gsum = gsum ? add(gsum, g) : g;
      gw = sumTo(mul(gy, xhat), w);
    }
    return [gsum, gsum, gw];
  },
};
/**
 * The residual step of a pre-norm block: s = x + skip and rmsNorm(s)·weight over the last axis,
 * in one kernel. Returns [normed, s].
 */
export const addRmsNorm = (x: Tensor, skip: Tensor, weight: Tensor, eps: number): [Tensor, Tensor] => {
  const [y, s] = x.graph.apply(ADD_RMS_NORM, [x, skip, weight], { eps });
  return [y, s];
};

const ROTARY: OpDef<NoAttrs> = {
  name: 'rotary',
  infer: ([x, rows, cos, sin]) => {
    sameFloat('rotary', x, cos, sin);
    if (rows.dtype !== 'int64' || rows.rank !== 2) throw new Error(`rotary: rows must be [B, T] int64, got ${rows}`);
    if (cos.rank !== 2 || sin.rank !== 2 || cos.shape.some((d, i) => d !== sin.shape[i])) throw new Error(`rotary: cos ${cos} and sin ${sin} must be one [N, d/2] shape`);
    const half = cos.dim(1);
    const width = x.rank === 4 ? x.dim(3) : x.rank === 3 ? x.dim(2) : null;
    if (typeof half !== 'number' || typeof width !== 'number' || width % (2 * half) !== 0 || (x.rank === 4 && width !== 2 * half)) {
      throw new Error(`rotary: x must be [B, T, H·d] or [B, H, T, d] with d = 2·${half}, got ${x}`);
    }
    return [{ shape: x.shape, dtype: x.dtype }];
  },
  // ORT's fused kernel, one node instead of the eight of the rotate-half pattern (two Slices, Neg,
  // Concat, two Muls, Add and a Transpose that ORT's layout pass adds), which are 84 of a 6-layer
  // decode step's 306 nodes. It only takes fixed 2-d caches, so a scale goes into the caches.
  emit: (e, [x, rows, cos, sin], [y], _attrs, n) => {
    const [xt, , cosT] = n.inputs;
    const heads = xt.rank === 3 ? (xt.dim(2) as number) / (2 * (cosT.dim(1) as number)) : 0;
    e.node('RotaryEmbedding', [x, rows, cos, sin], [y], { interleaved: 0, num_heads: heads }, 'com.microsoft');
  },
  // A rotation's transpose is the rotation by the opposite angle: the same op with -sin. The
  // caches get no gradient (they come from positions).
  vjp: ([g], n) => {
    const [, rows, cos, sin] = n.inputs;
    return [g ? rotary(g, rows, cos, neg(sin)) : null, null, null, null];
  },
};
/**
 * Rotary embedding, rotate-half convention: x [B, T, H·d] or [B, H, T, d]; token (b, t) is
 * rotated by the angles in row rows[b, t] of cos/sin [N, d/2] (y₁ = x₁·cos − x₂·sin,
 * y₂ = x₂·cos + x₁·sin over the halves x₁, x₂ of each head).
 */
export const rotary = (x: Tensor, rows: Tensor, cos: Tensor, sin: Tensor): Tensor => x.graph.apply(ROTARY, [x, rows, cos, sin], {})[0];

// ---------------------------------------------------------------------------------------------
// Index generation (no gradients)

const RANGE: OpDef<{ dim: Dim }> = {
  name: 'arange',
  infer: (_, { dim }) => [{ shape: [dim], dtype: 'int64' }],
  emit: (e, _inputs, [y], { dim }) => {
    const limit = e.fresh('limit');
    e.node('Squeeze', [e.dimValue(dim), e.int64([0])], [limit]);
    e.node('Range', [e.int64([0], true), limit, e.int64([1], true)], [y]);
  },
};
/** [0, 1, …, dim-1] as int64. */
export const arange = (graph: Graph, dim: Dim): Tensor => graph.apply(RANGE, [], { dim })[0];

// Reverse-mode automatic differentiation over the graph: walks the nodes backwards from the loss and
// calls each op's vjp, which builds the backward computation out of the same primitive ops. The
// result is one graph holding forward and backward, compiled and run like any other.
import { Tensor } from './graph.js';
import { add, expandLike } from './ops.js';

/**
 * Gradients of `output` with respect to each tensor in `wrt`. `output` must be a scalar unless
 * `seed` (the gradient flowing into `output`, same shape) is given. A tensor `output` does not
 * depend on gets a zero gradient.
 */
export function grad(output: Tensor, wrt: Tensor[], seed?: Tensor): Tensor[] {
  const graph = output.graph;
  if (!seed && output.rank !== 0) {
    throw new Error(`grad: output must be a scalar (got ${output}); pass a seed gradient for non-scalar outputs`);
  }
  if (output.dtype !== 'float32') throw new Error(`grad: output must be float32, got ${output}`);

  // Forward sweep: which tensors depend on any of `wrt`.
  const active = new Set<Tensor>(wrt);
  const nodes = graph.nodes.slice(0, output.node ? graph.nodes.indexOf(output.node) + 1 : 0);
  for (const n of nodes) {
    if (n.inputs.some((i) => active.has(i))) for (const o of n.outputs) active.add(o);
  }

  const grads = new Map<Tensor, Tensor>();
  grads.set(output, seed ?? graph.scalar(1));
  const accumulate = (t: Tensor, g: Tensor): void => {
    const prev = grads.get(t);
    grads.set(t, prev ? add(prev, g) : g);
  };

  for (let k = nodes.length - 1; k >= 0; k--) {
    const n = nodes[k];
    const outGrads = n.outputs.map((o) => grads.get(o) ?? null);
    if (outGrads.every((g) => g === null)) continue;
    const wanted = n.inputs.map((i) => active.has(i) && i.dtype === 'float32');
    if (!wanted.some(Boolean)) continue;
    if (!n.op.vjp) throw new Error(`grad: op "${n.op.name}" has no gradient but lies between the output and a differentiated input`);
    const inGrads = n.op.vjp(outGrads, n);
    n.inputs.forEach((input, i) => {
      const g = inGrads[i];
      if (wanted[i] && g) accumulate(input, g);
    });
  }
  return wrt.map((w) => grads.get(w) ?? expandLike(graph.scalar(0), w));
}

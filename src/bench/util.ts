// Helpers the `npm run bench -- <name>` benchmarks share.

/** The value of a `--name=value` argument in `args`, or `fallback` when it is not given. */
export function arg(args: readonly string[], name: string, fallback: string): string {
  return args.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback;
}

/**
 * The middle value of `xs` (the upper middle one for an even count, not the mean of the two, so a
 * reported figure is always one that was measured).
 */
export function median(xs: readonly number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}

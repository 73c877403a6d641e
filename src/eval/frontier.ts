// Sample quality at matched diversity. Gen-ppl under a scorer falls as sampling gets sharper, and
// diversity falls with it, so one temperature cannot show whose samples are better: a method wins
// only if its gen-ppl is lower at the same diversity. This puts several `maria eval` runs that
// differ only in --temperature side by side: per mask rate, gen-ppl against distinct-2 (one line
// per method, one point per temperature), and every baseline point against MARIA's gen-ppl
// interpolated to the same distinct-2 (`maria frontier DIR...`).
import { InputError } from '../maria/masks.js';
import type { EvalResults } from './infill-eval.js';
import type { MaskKind } from './methods.js';
import { fmt, fmtPpl, sampleTemperature, svgChart, table } from './report.js';

export interface FrontierPoint {
  method: string;
  label: string;
  maskKind: MaskKind;
  rate: number;
  temperature: number;
  genPpl: number;
  distinct2: number;
  /** The model's mean surprisal of its own samples (the entropy column; see infill-eval.ts). */
  surprisal: number;
}

/** A baseline's point against MARIA's gen-ppl at the same distinct-2. */
export interface MatchedPoint {
  point: FrontierPoint;
  /** MARIA's gen-ppl interpolated to point.distinct2 (log-linear between its two neighbours); null outside MARIA's range. */
  mariaGenPpl: number | null;
}

/**
 * Gen-ppl ratios within this band of 1 are called ties. The sampling metrics carry no error bars,
 * so this is a chosen band, not a measured one; for scale, MARIA's gen-ppl at half masked was 587.6
 * over 500 Brown passages × 2 samples and 593.5 over 100 × 4.
 */
const TIE_BAND = 0.05;

/** The runs must be one sweep: the same configuration and data, distinct temperatures, a scorer. */
function checkSweep(runs: readonly EvalResults[], sources: readonly string[]): void {
  if (runs.length < 2) throw new InputError('a frontier needs at least two eval runs (the same command at different --temperature)');
  const key = (r: EvalResults): string => JSON.stringify({ ...r.config, temperature: undefined, data: r.meta.data.source, passagesSeen: r.meta.data.passages });
  runs.forEach((r, i) => {
    if (!r.config.scorer) throw new InputError(`${sources[i]}: this run has no scorer, so no gen-ppl (run maria eval with --scorer)`);
    if (key(r) !== key(runs[0])) throw new InputError(`${sources[i]} and ${sources[0]} are not one sweep: their runs differ in more than --temperature (methods, rates, passages, samples, models or seed)`);
  });
  const temps = runs.map(sampleTemperature);
  if (new Set(temps).size !== temps.length) throw new InputError(`two runs have the same temperature (${temps.join(', ')}): a sweep needs one run per temperature`);
}

export function frontierPoints(runs: readonly EvalResults[]): FrontierPoint[] {
  const points: FrontierPoint[] = [];
  for (const r of runs) {
    for (const q of r.quality) {
      if (q.genPpl === null || q.distinct2 === null) continue;
      points.push({ method: q.method, label: q.label, maskKind: q.maskKind, rate: q.rate, temperature: sampleTemperature(r), genPpl: q.genPpl, distinct2: q.distinct2, surprisal: q.entropy });
    }
  }
  return points.sort((a, b) => a.temperature - b.temperature);
}

/** Log-linear interpolation of MARIA's gen-ppl in distinct-2 between the two points that bracket it. */
export function matchedToMaria(points: readonly FrontierPoint[]): MatchedPoint[] {
  const out: MatchedPoint[] = [];
  for (const p of points) {
    if (p.method === 'maria') continue;
    const maria = points.filter((x) => x.method === 'maria' && x.maskKind === p.maskKind && x.rate === p.rate).sort((a, b) => a.distinct2 - b.distinct2);
    let mariaGenPpl: number | null = null;
    for (let i = 0; i + 1 < maria.length; i++) {
      const [a, b] = [maria[i], maria[i + 1]];
      if (p.distinct2 < a.distinct2 || p.distinct2 > b.distinct2) continue;
      const w = b.distinct2 === a.distinct2 ? 0 : (p.distinct2 - a.distinct2) / (b.distinct2 - a.distinct2);
      mariaGenPpl = Math.exp((1 - w) * Math.log(a.genPpl) + w * Math.log(b.genPpl));
      break;
    }
    out.push({ point: p, mariaGenPpl });
  }
  return out;
}

/** frontier.md and one SVG per mask kind and rate. */
export function renderFrontier(runs: readonly EvalResults[], sources: readonly string[]): Map<string, string> {
  checkSweep(runs, sources);
  const points = frontierPoints(runs);
  const matched = matchedToMaria(points);
  const files = new Map<string, string>();
  const L: string[] = ['# Sample quality at matched diversity', ''];
  L.push(`Runs (one per sampling temperature): ${sources.map((s, i) => `\`${s}\` (T = ${sampleTemperature(runs[i])})`).join(', ')}.`);
  L.push(`Command of the first: \`${runs[0].meta.command ?? 'library'}\`.`);
  L.push('');
  L.push(`Gen-ppl (lower = more fluent under the scorer) falls as sampling gets sharper, and so does diversity; a method has the better samples only where its gen-ppl is lower at the same distinct-2. "MARIA at the same distinct-2" interpolates MARIA's gen-ppl log-linearly between its two runs that bracket the baseline's distinct-2 (— outside MARIA's measured range). Surprisal is the model's mean −log p of its own samples (at T = 1 the entropy of its sampling distributions). Sampling metrics carry no error bars: ratios within ±${TIE_BAND * 100} % are called on par (a chosen band, not a measured one).`);
  L.push('');
  const cells = [...new Set(points.map((p) => `${p.maskKind}|${p.rate}`))];
  for (const cell of cells) {
    const [kind, rateText] = cell.split('|');
    const rate = Number(rateText);
    const here = points.filter((p) => p.maskKind === kind && p.rate === rate);
    const title = `${kind === 'span' ? 'span' : 'i.i.d.'} masks, rate ${rate}`;
    L.push(`## ${title[0].toUpperCase()}${title.slice(1)}`, '');
    const rows = here
      .slice()
      .sort((a, b) => a.label.localeCompare(b.label) || a.temperature - b.temperature)
      .map((p) => {
        const m = matched.find((x) => x.point === p);
        const ratio = m?.mariaGenPpl ? `${fmtPpl(m.mariaGenPpl)} (${fmt(p.genPpl / m.mariaGenPpl, 2)}×)` : p.method === 'maria' ? '' : '—';
        return [p.label, String(p.temperature), fmtPpl(p.genPpl), fmt(p.distinct2), fmt(p.surprisal, 2), ratio];
      });
    L.push(table(['method', 'T', 'gen-ppl', 'distinct-2', 'surprisal', 'MARIA at the same distinct-2 (baseline / MARIA)'], rows), '');
    const inRange = matched.filter((m) => m.point.maskKind === kind && m.point.rate === rate && m.mariaGenPpl !== null);
    if (inRange.length) {
      const ratio = (m: MatchedPoint): number => m.point.genPpl / m.mariaGenPpl!;
      const name = (m: MatchedPoint): string => `${m.point.label} at T = ${m.point.temperature} (${fmt(ratio(m), 2)}×)`;
      const better = inRange.filter((m) => ratio(m) > 1 + TIE_BAND);
      const worse = inRange.filter((m) => ratio(m) < 1 - TIE_BAND);
      const tied = inRange.filter((m) => !better.includes(m) && !worse.includes(m));
      const parts: string[] = [];
      if (better.length) parts.push(`lower than ${better.map(name).join(', ')}`);
      if (worse.length) parts.push(`**higher** than ${worse.map(name).join(', ')}`);
      if (tied.length) parts.push(`on par (within ±${TIE_BAND * 100} %) with ${tied.map(name).join(', ')}`);
      L.push(`At matched distinct-2, MARIA's gen-ppl is ${parts.join('; ')}.`, '');
    } else L.push("No baseline point falls inside MARIA's measured distinct-2 range: widen the temperature sweep.", '');
    const file = `frontier-${kind}-${rate}.svg`;
    const methods = [...new Set(here.map((p) => p.method))];
    files.set(
      file,
      svgChart({
        title: `Gen-ppl vs distinct-2, ${title}`,
        xLabel: 'distinct-2 of sampled infills (more diverse →)',
        yLabel: 'gen-ppl under the scorer',
        logY: true,
        pointLabels: true,
        series: methods.map((method) => {
          const ps = here.filter((p) => p.method === method).sort((a, b) => a.distinct2 - b.distinct2);
          return { name: ps[0].label, points: ps.map((p) => ({ x: p.distinct2, y: p.genPpl, label: `T=${p.temperature}` })) };
        }),
      }),
    );
    L.push(`![${file.replace(/\.svg$/, '')}](${file})`, '');
  }
  files.set('frontier.md', L.join('\n'));
  return files;
}

// The evaluation report: results.json, report.md (setup, metric definitions, tables, findings
// generated from the numbers) and SVG plots drawn here (no plotting library):
//   nll-vs-rate.svg               NLL of the true masked tokens vs mask rate, one line per method
//   nll-vs-rate-spans.svg         the same with span masks (when measured)
//   quality-vs-throughput.svg     NLL at rate 0.5 vs infilled tokens/s (log x), one point per method
//   genppl-vs-throughput.svg      generative perplexity at rate 0.5 vs tokens/s (with a scorer)
//   time-vs-length.svg            wall time per passage vs length (log y)
// Every file is written into a staging folder next to --out, which then replaces --out in two
// renames; so a crash while writing leaves --out as it was (no half-written report).
import { cpSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { asideDirectoryPrefix, replaceDirectory, uniqueTag, writeFileAtomic } from '../io/atomic.js';
import type { EvalResults, MaskKind, QualityRow, ThroughputRow } from './infill-eval.js';

// ---------------------------------------------------------------------------------------------
// Formatting

export function fmt(x: number | null | undefined, digits = 3): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—';
  return x.toFixed(digits);
}

/** The sampled infills' temperature (results written before it could be set used 1). */
export function sampleTemperature(r: EvalResults): number {
  return r.config.temperature ?? 1;
}

export function fmtPpl(x: number | null | undefined): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return '—';
  return x >= 1000 ? x.toExponential(2) : x.toFixed(x >= 100 ? 1 : 2);
}

function pct(x: number | null | undefined): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '—' : `${(100 * x).toFixed(1)}%`;
}

function times(x: number | null | undefined): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '—' : `${x.toFixed(2)}×`;
}

function code(s: string): string {
  return '`' + s.replace(/`/g, "'") + '`';
}

export function table(header: string[], rows: string[][]): string {
  const line = (cells: string[]): string => `| ${cells.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`;
  return [line(header), `|${header.map(() => '---').join('|')}|`, ...rows.map(line)].join('\n');
}

function nllText(q: QualityRow | undefined): string {
  if (!q) return '—';
  return `${fmt(q.nll)}${q.nllSe !== null ? ` ± ${fmt(q.nllSe)}` : ''}`;
}

const KIND_TEXT = { exact: 'exact', elbo: 'ELBO (bound)', independent: 'independent' } as const;

// ---------------------------------------------------------------------------------------------
// SVG charts

export interface ChartSeries {
  name: string;
  points: Array<{ x: number; y: number; label?: string }>;
  /** Stroke dash pattern (e.g. '6 4'), for bounds and non-likelihoods. */
  dash?: string;
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: ChartSeries[];
  logX?: boolean;
  logY?: boolean;
  /** Join the points of a series (default true). */
  lines?: boolean;
  /** Write each point's label next to it. */
  pointLabels?: boolean;
  width?: number;
  height?: number;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf', '#393b79', '#637939'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function niceStep(span: number, target: number): number {
  const raw = span / Math.max(1, target);
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
}

function tickLabel(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(0);
  return String(Number(v.toPrecision(4)));
}

interface Axis {
  map: (v: number) => number;
  ticks: number[];
}

function axis(values: number[], log: boolean, from: number, to: number): Axis {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (log) {
    lo = Math.log10(lo);
    hi = Math.log10(hi);
  }
  if (!(hi > lo)) {
    const pad = log ? 0.5 : Math.abs(lo) * 0.1 || 1;
    lo -= pad;
    hi += pad;
  }
  const pad = (hi - lo) * 0.06;
  lo -= pad;
  hi += pad;
  const map = (v: number): number => from + ((to - from) * ((log ? Math.log10(v) : v) - lo)) / (hi - lo);
  const ticks: number[] = [];
  if (log) {
    for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) {
      for (const m of hi - lo < 1.5 ? [1, 2, 5] : [1]) {
        const v = m * 10 ** e;
        if (Math.log10(v) >= lo && Math.log10(v) <= hi) ticks.push(v);
      }
    }
    if (ticks.length < 3) {
      // Less than a decade: round values spaced linearly, placed on the log scale.
      ticks.length = 0;
      const a = 10 ** lo;
      const b = 10 ** hi;
      const step = niceStep(b - a, 5);
      for (let v = Math.ceil(a / step) * step; v <= b; v += step) if (v > 0) ticks.push(Number(v.toPrecision(12)));
    }
  } else {
    const step = niceStep(hi - lo, 6);
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) ticks.push(Number(v.toPrecision(12)));
  }
  return { map, ticks };
}

/** A line or scatter chart as a standalone SVG document. */
export function svgChart(o: ChartOptions): string {
  const W = o.width ?? 780;
  const H = o.height ?? 460;
  const left = 72;
  const right = W - 210;
  const top = 44;
  const bottom = H - 58;
  const series = o.series.map((s) => ({ ...s, points: s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y) && (!o.logX || p.x > 0) && (!o.logY || p.y > 0)) }));
  const all = series.flatMap((s) => s.points);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${(left + right) / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${esc(o.title)}</text>`);
  if (all.length === 0) {
    out.push(`<text x="${(left + right) / 2}" y="${(top + bottom) / 2}" text-anchor="middle" fill="#666">no data</text>`);
    out.push('</svg>');
    return out.join('\n') + '\n';
  }
  const ax = axis(all.map((p) => p.x), !!o.logX, left, right);
  const ay = axis(all.map((p) => p.y), !!o.logY, bottom, top);
  // Grid and ticks.
  for (const t of ax.ticks) {
    const x = ax.map(t).toFixed(1);
    out.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${bottom}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${x}" y="${bottom + 16}" text-anchor="middle" fill="#333">${esc(tickLabel(t))}</text>`);
  }
  for (const t of ay.ticks) {
    const y = ay.map(t).toFixed(1);
    out.push(`<line x1="${left}" y1="${y}" x2="${right}" y2="${y}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle" fill="#333">${esc(tickLabel(t))}</text>`);
  }
  out.push(`<rect x="${left}" y="${top}" width="${right - left}" height="${bottom - top}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${(left + right) / 2}" y="${H - 18}" text-anchor="middle">${esc(o.xLabel + (o.logX ? ' (log scale)' : ''))}</text>`);
  out.push(`<text transform="translate(18 ${(top + bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel + (o.logY ? ' (log scale)' : ''))}</text>`);
  // Data.
  // Point labels: to the right of the point (to the left near the right edge), moved down or up
  // until they clear the labels already placed.
  const placed: Array<{ x0: number; x1: number; y0: number; y1: number }> = [];
  const placeLabel = (px: number, py: number, text: string): { x: number; y: number; anchor: string } => {
    const w = text.length * 5.6;
    const leftSide = px + 6 + w > right;
    const x0 = leftSide ? px - 6 - w : px + 6;
    for (const dy of [-6, 14, -18, 26, -30, 38, -42, 50, -54, 62]) {
      const box = { x0, x1: x0 + w, y0: py + dy - 10, y1: py + dy + 2 };
      if (!placed.some((b) => b.x0 < box.x1 && box.x0 < b.x1 && b.y0 < box.y1 && box.y0 < b.y1)) {
        placed.push(box);
        return { x: leftSide ? px - 6 : px + 6, y: py + dy, anchor: leftSide ? 'end' : 'start' };
      }
    }
    return { x: leftSide ? px - 6 : px + 6, y: py - 6, anchor: leftSide ? 'end' : 'start' };
  };
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    const pts = s.points.map((p) => ({ ...p, px: ax.map(p.x), py: ay.map(p.y) }));
    if (o.lines !== false && pts.length > 1) {
      const d = [...pts].sort((a, b) => a.x - b.x).map((p) => `${p.px.toFixed(1)},${p.py.toFixed(1)}`).join(' ');
      out.push(`<polyline points="${d}" fill="none" stroke="${color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
    }
    for (const p of pts) {
      out.push(`<circle cx="${p.px.toFixed(1)}" cy="${p.py.toFixed(1)}" r="4" fill="${color}"><title>${esc(`${s.name}: ${tickLabel(p.x)}, ${tickLabel(p.y)}`)}</title></circle>`);
      if (o.pointLabels && p.label) {
        const at = placeLabel(p.px, p.py, p.label);
        out.push(`<text x="${at.x.toFixed(1)}" y="${at.y.toFixed(1)}" text-anchor="${at.anchor}" font-size="10" fill="${color}">${esc(p.label)}</text>`);
      }
    }
  });
  // Legend.
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    const y = top + 8 + i * 20;
    out.push(`<line x1="${right + 14}" y1="${y}" x2="${right + 40}" y2="${y}" stroke="${color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
    out.push(`<circle cx="${right + 27}" cy="${y}" r="3.5" fill="${color}"/>`);
    out.push(`<text x="${right + 46}" y="${y}" dominant-baseline="middle">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// Lookups

function rowsOf(r: EvalResults, kind: 'random' | 'span' = 'random'): QualityRow[] {
  return r.quality.filter((q) => q.maskKind === kind);
}

function qrow(r: EvalResults, method: string, rate: number, kind: 'random' | 'span' = 'random'): QualityRow | undefined {
  return r.quality.find((q) => q.method === method && q.rate === rate && q.maskKind === kind);
}

/** The measured rate closest to 0.5. */
function midRate(r: EvalResults): number {
  return [...r.config.maskRates].sort((a, b) => Math.abs(a - 0.5) - Math.abs(b - 0.5))[0];
}

/** The throughput length used for the quality-vs-throughput plot: the one closest to the passages'. */
function tradeoffLength(r: EvalResults): number | null {
  if (!r.throughput || r.throughput.rows.length === 0) return null;
  const lengths = [...new Set(r.throughput.rows.map((t) => t.length))];
  return lengths.sort((a, b) => Math.abs(a - r.config.passageLength) - Math.abs(b - r.config.passageLength))[0];
}

function dashFor(likelihood: string): string | undefined {
  return likelihood === 'elbo' ? '7 4' : likelihood === 'independent' ? '2 3' : undefined;
}

// ---------------------------------------------------------------------------------------------
// Plots

export function renderPlots(r: EvalResults): Map<string, string> {
  const plots = new Map<string, string>();
  const kinds: Array<'random' | 'span'> = r.config.maskKinds;
  for (const kind of kinds) {
    const series = r.config.methods
      .map((m) => {
        const rows = rowsOf(r, kind).filter((q) => q.method === m);
        if (rows.length === 0) return null;
        const suffix = rows[0].likelihood === 'elbo' ? ' (ELBO)' : rows[0].likelihood === 'independent' ? ' (indep.)' : '';
        return { name: rows[0].label + suffix, dash: dashFor(rows[0].likelihood), points: rows.map((q) => ({ x: q.rate, y: q.nll })) };
      })
      .filter((s): s is NonNullable<typeof s> => s !== null);
    plots.set(
      kind === 'random' ? 'nll-vs-rate.svg' : 'nll-vs-rate-spans.svg',
      svgChart({
        title: `NLL of the true masked tokens vs mask rate (${kind === 'random' ? 'i.i.d. masks' : 'span masks'})`,
        xLabel: 'mask rate',
        yLabel: 'NLL per masked token (nats)',
        series,
      }),
    );
  }
  const L = tradeoffLength(r);
  if (r.throughput && L !== null) {
    const rate = midRate(r);
    for (const [file, metric, yLabel] of [
      ['quality-vs-throughput.svg', 'nll', 'NLL per masked token (nats)'],
      ['genppl-vs-throughput.svg', 'genPpl', 'generative perplexity (scorer)'],
    ] as const) {
      const series = r.config.methods
        .map((m) => {
          const q = qrow(r, m, rate);
          const t = r.throughput!.rows.find((x) => x.method === m && x.length === L);
          const y = q ? q[metric] : null;
          if (!q || !t || y === null) return null;
          return { name: q.label, points: [{ x: t.tokensPerSecond, y, label: q.label }] };
        })
        .filter((s): s is NonNullable<typeof s> => s !== null);
      if (metric === 'genPpl' && series.length === 0) continue;
      plots.set(
        file,
        svgChart({
          title: `${metric === 'nll' ? 'NLL' : 'Gen. perplexity'} at mask rate ${rate} vs throughput (length ${L})`,
          xLabel: 'infilled tokens per second',
          yLabel,
          series,
          logX: true,
          logY: metric === 'genPpl',
          lines: false,
          pointLabels: true,
        }),
      );
    }
    const series = r.config.methods
      .map((m) => {
        const rows = r.throughput!.rows.filter((t) => t.method === m);
        if (rows.length === 0) return null;
        return { name: rows[0].label, points: rows.map((t) => ({ x: t.length, y: t.msPerPassage })) };
      })
      .filter((s): s is NonNullable<typeof s> => s !== null);
    plots.set(
      'time-vs-length.svg',
      svgChart({ title: `Wall time per passage vs length (mask rate ${r.throughput.rate}, one ${r.throughput.temperature === 0 ? 'greedy infill' : 'sample'})`, xLabel: 'passage length (tokens)', yLabel: 'ms per passage', series, logY: true }),
    );
  }
  return plots;
}

// ---------------------------------------------------------------------------------------------
// Findings

/** The findings that hold per mask kind: NLL comparisons, accuracy, gen-ppl, sharpness. */
function maskKindFindings(r: EvalResults, kind: MaskKind): string[] {
  const out: string[] = [];
  const rates = r.config.maskRates;
  const has = (m: string): boolean => r.config.methods.includes(m);
  const mdlms = r.config.methods.filter((m) => m.startsWith('mdlm-'));
  const trained = r.config.headInit !== 'product-of-experts';

  // Paired comparisons: MARIA − other on the same passages and masks, called a difference only
  // beyond two paired standard errors.
  const verdicts = (other: string): { wins: string[]; losses: string[]; ties: string[] } => {
    const v = { wins: [] as string[], losses: [] as string[], ties: [] as string[] };
    for (const rate of rates) {
      const c = r.comparisons.find((x) => x.method === other && x.rate === rate && x.maskKind === kind);
      if (!c) continue;
      const text = `${rate} (${c.diff < 0 ? '' : '+'}${c.diff.toFixed(3)}${c.se !== null ? ` ± ${(2 * c.se).toFixed(3)}` : ''})`;
      if (c.se !== null && Math.abs(c.diff) <= 2 * c.se) v.ties.push(text);
      else (c.diff < 0 ? v.wins : v.losses).push(text);
    }
    return v;
  };
  const compare = (other: string, what: string, note = ''): void => {
    if (!has(other)) return;
    const v = verdicts(other);
    if (v.wins.length + v.losses.length + v.ties.length === 0) return;
    const parts: string[] = [];
    if (v.wins.length) parts.push(`lower at ${v.wins.join(', ')}`);
    if (v.losses.length) parts.push(`**higher** at ${v.losses.join(', ')}`);
    if (v.ties.length) parts.push(`not distinguishable (|Δ| ≤ 2 SE) at ${v.ties.join(', ')}`);
    out.push(`MARIA's exact NLL against ${what} (Δ = MARIA − it, nats per masked token ± 2 paired SE): ${parts.join('; ')}.${note}`);
  };
  compare('mlm-l2r', "MLM left-to-right's (exact, same MLM: the like-for-like comparison)");
  for (const m of mdlms) {
    const label = qrow(r, m, rates[0], kind)?.label ?? m;
    compare(m, `the ${label} ELBO`);
  }
  // Said once, with the first mask kind.
  const first = kind === r.config.maskKinds[0];
  if (mdlms.length && first) out.push("The MDLM numbers are upper bounds on the MDLM samplers' NLL: a MARIA win against a bound does not prove a lower true NLL, while a MARIA loss against a bound is a real loss.");
  compare('ar', "the AR's (left context only)");
  if (has('maria-poe') && trained) compare('maria-poe', 'its own product-of-experts initialisation (negative = training helped)');
  if (has('mlm-oneshot') && first) out.push('MLM one-shot scores every masked token on its own (a product of marginals, not a joint likelihood); its NLL is shown for reference and is not comparable with the exact numbers or the bounds.');

  // Accuracy and sample quality.
  const acc: string[] = [];
  for (const rate of rates) {
    const rows = rowsOf(r, kind).filter((q) => q.rate === rate);
    if (rows.length === 0) continue;
    const best = rows.reduce((x, y) => (y.accuracy > x.accuracy ? y : x));
    const m = rows.find((q) => q.method === 'maria');
    const rank = m ? [...rows].sort((a, b) => b.accuracy - a.accuracy).findIndex((q) => q.method === 'maria') + 1 : 0;
    acc.push(`${rate}: best ${best.label} ${pct(best.accuracy)}${m ? `, MARIA ${pct(m.accuracy)} (rank ${rank}/${rows.length})` : ''}`);
  }
  if (acc.length) out.push(`Greedy token accuracy — ${acc.join('; ')}.`);
  if (r.reference) {
    const gp: string[] = [];
    for (const rate of rates) {
      const rows = rowsOf(r, kind).filter((q) => q.rate === rate && q.genPpl !== null);
      const m = rows.find((q) => q.method === 'maria');
      if (!m || rows.length === 0) continue;
      const best = rows.reduce((x, y) => (y.genPpl! < x.genPpl! ? y : x));
      gp.push(`${rate}: MARIA ${fmtPpl(m.genPpl)}, best ${best.label} ${fmtPpl(best.genPpl)}`);
    }
    if (gp.length) out.push(`Generative perplexity of sampled infills (lower is more fluent under the scorer; the true passages score ${fmtPpl(r.reference.genPpl)}) — ${gp.join('; ')}. A gen-ppl far below the true text's usually means low diversity (check distinct-2 and entropy), not better infills.`);
  }

  // Diversity: a sharper sampling distribution buys fluency (gen-ppl) with diversity, so say where
  // MARIA stands on the entropy of what it samples from, and why.
  const sharpest: number[] = [];
  const ent: string[] = [];
  for (const rate of rates) {
    const rows = rowsOf(r, kind).filter((q) => q.rate === rate && Number.isFinite(q.entropy));
    const m = rows.find((q) => q.method === 'maria');
    const others = rows.filter((q) => q.method !== 'maria' && q.method !== 'maria-poe' && q.method !== 'ar');
    if (!m || others.length === 0) continue;
    const lo = Math.min(...others.map((q) => q.entropy));
    const hi = Math.max(...others.map((q) => q.entropy));
    const range = fmt(lo, 2) === fmt(hi, 2) ? fmt(lo, 2) : `${fmt(lo, 2)}–${fmt(hi, 2)}`;
    ent.push(`${rate}: MARIA ${fmt(m.entropy, 2)} (distinct-2 ${fmt(m.distinct2)}), ${others.length > 1 ? 'the MLM-based baselines' : others[0].label} ${range}`);
    if (m.entropy < lo) sharpest.push(rate);
  }
  if (ent.length) {
    out.push(
      `${sampleTemperature(r) === 1 ? 'Entropy of the sampling distributions (nats per filled token, temperature 1)' : `The models' mean surprisal of their own samples (nats per filled token, temperature ${sampleTemperature(r)})`} — ${ent.join('; ')}.` +
        (sharpest.length
          ? ` At mask rate${sharpest.length > 1 ? 's' : ''} ${sharpest.length > 1 ? `${sharpest.slice(0, -1).join(', ')} and ${sharpest.at(-1)}` : sharpest[0]} MARIA samples from sharper distributions than every MLM-based baseline: its decoder adds the MLM's and the AR's evidence (at initialisation exactly a product of experts), so it is more confident than either model alone. Sharper sampling makes infills more likely under a scorer and less diverse at once, so compare gen-ppl at matched diversity (runs at several --temperature, put side by side by \`maria frontier\`) before calling MARIA's samples better.`
          : ''),
    );
  }

  // Why MARIA loses, where it does.
  if (has('mlm-l2r')) {
    const high = rates.filter((rate) => {
      const c = r.comparisons.find((x) => x.method === 'mlm-l2r' && x.rate === rate && x.maskKind === kind);
      return c && c.diff > 2 * (c.se ?? 0);
    });
    if (high.length) {
      out.push(
        `Where MARIA loses to MLM left-to-right (rates ${high.join(', ')}), we think the cause is that MARIA's MLM features come from ONE pass over the masked text: the tokens MARIA has already filled reach it only through the AR's left-to-right state, whereas MLM-L2R re-encodes the whole passage bidirectionally after every revealed token (|M| passes instead of one). The gap should grow with the mask rate, when most of what the single MLM pass sees is [MASK]` +
          (trained ? '; a larger head or a richer fusion than a linear layer over frozen features would be the next thing to try.' : '; an untrained PoE head makes it worse, since it weighs both experts equally everywhere.'),
      );
    }
  }
  return out;
}

function findings(r: EvalResults): string[] {
  const out: string[] = [];
  const has = (m: string): boolean => r.config.methods.includes(m);
  const trained = r.config.headInit !== 'product-of-experts';
  if (!has('maria')) return ['MARIA was not among the evaluated methods; no comparison is drawn.'];
  if (!trained) out.push("**The bundle's head is the untrained product-of-experts head**: every MARIA number below is MARIA at initialisation; the paper's claims concern the trained head.");

  // Per mask kind: i.i.d. masks first (the headline), then spans when measured.
  for (const kind of r.config.maskKinds) {
    const prefix = kind === 'span' ? '**Span masks**: ' : '';
    out.push(...maskKindFindings(r, kind).map((f) => prefix + f));
  }

  // Throughput.
  if (r.throughput && r.throughput.rows.length) {
    const Lmax = Math.max(...r.throughput.rows.map((t) => t.length));
    const at = r.throughput.rows.filter((t) => t.length === Lmax);
    const maria = at.find((t) => t.method === 'maria');
    const poe = at.find((t) => t.method === 'maria-poe');
    // maria and maria-poe run the same computation (only the head's weights differ): their timing
    // difference is the noise floor of this measurement.
    const noise = poe?.mariaSpeedup ? Math.abs(Math.log(poe.mariaSpeedup)) : 0;
    const band = Math.max(0.1, noise);
    if (maria) {
      const others = at.filter((t) => t.method !== 'maria' && t.method !== 'maria-poe' && t.mariaSpeedup !== null);
      const slower = others.filter((t) => Math.log(t.mariaSpeedup!) > band);
      const faster = others.filter((t) => Math.log(t.mariaSpeedup!) < -band);
      const tied = others.filter((t) => !slower.includes(t) && !faster.includes(t));
      const list = (xs: ThroughputRow[]): string => xs.map((t) => `${t.label} ${times(t.mariaSpeedup)}`).join(', ');
      const parts = [slower.length ? `MARIA is faster than ${list(slower)}` : 'MARIA is faster than none of the other methods'];
      if (faster.length) parts.push(`**slower** than ${list(faster)}`);
      if (tied.length) parts.push(`on par (within the noise band of ±${((Math.exp(band) - 1) * 100).toFixed(0)}%) with ${list(tied)}`);
      out.push(`Throughput at length ${Lmax}, mask rate ${r.throughput.rate} (MARIA ${fmt(maria.tokensPerSecond, 1)} infilled tokens/s; speed-up of MARIA = time of the method / time of MARIA): ${parts.join('; ')}.`);
      if (poe) out.push(`Timing noise: MARIA and MARIA at PoE init run exactly the same computation, yet their times differ by ${times(poe.mariaSpeedup)} here; ratios closer to 1 than that are not differences.`);
      const why: string[] = [];
      for (const t of faster) {
        if (t.method === 'ar') why.push('AR only runs the same number of cached AR steps as MARIA but skips the MLM pass and the larger head, so it bounds MARIA\'s speed from above');
        else if (t.method === 'mlm-oneshot') why.push('MLM one-shot fills every mask from one bidirectional pass, where MARIA makes one AR call per masked token');
        else if (t.method.startsWith('mdlm-')) why.push(`${t.label} makes fewer denoiser passes than MARIA makes AR calls (|M| = ${Math.round(t.filledTokens / t.passages)} per passage here); with models this small a call's fixed overhead, not its arithmetic, dominates`);
        else why.push(`${t.label} is faster here`);
      }
      if (why.length) out.push(`Why MARIA is slower where it is: ${why.join('; ')}. Fewer passes buy speed at a price in NLL and accuracy (see the quality-vs-throughput plot).`);
    }
  }

  if (r.unconditional && r.unconditional.rows.length) {
    const u = r.unconditional;
    const by = (m: string): typeof u.rows[number] | undefined => u.rows.find((x) => x.method === m);
    const a = by('maria-anneal');
    const onePass = by('maria');
    const ar = by('ar');
    const bestMdlm = u.rows.filter((x) => x.method.startsWith('mdlm-')).sort((x, y) => x.genPpl - y.genPpl)[0];
    if (a) {
      out.push(
        `Unconditional generation (length ${u.length}, gen-ppl under ${u.scorer}): MARIA + annealing ${fmtPpl(a.genPpl)} (distinct-2 ${fmt(a.distinct2)})` +
          (onePass ? `, MARIA in one pass ${fmtPpl(onePass.genPpl)} (distinct-2 ${fmt(onePass.distinct2)})` : '') +
          (ar ? `, AR sampling ${fmtPpl(ar.genPpl)} (distinct-2 ${fmt(ar.distinct2)})` : '') +
          (bestMdlm ? `, the best MDLM sampler (${bestMdlm.method}) ${fmtPpl(bestMdlm.genPpl)} (distinct-2 ${fmt(bestMdlm.distinct2)})` : '') +
          (u.scorerIsEnergy ? ". These are scored by the bundle's AR, which is also the annealing energy: maria-anneal optimised the very metric, so its advantage is overstated." : '.'),
      );
      if (onePass && ar && onePass.genPpl > ar.genPpl) {
        out.push(
          `In one pass from all-mask, MARIA samples worse than the AR alone (gen-ppl ${fmtPpl(onePass.genPpl)} against ${fmtPpl(ar.genPpl)}): its single MLM pass sees only [MASK] and contributes a position prior, not content, and the head, trained on partly masked text, still weighs that prior in. Annealing re-masks part of a complete sample, so the MLM then sees real context; that is why MARIA needs it for unconditional generation.`,
        );
      }
      if (a.distinct2 !== null && u.reference?.distinct2 != null && a.distinct2 < u.reference.distinct2 - 0.1) {
        out.push(`Annealing pays for its gen-ppl in diversity: its distinct-2 (${fmt(a.distinct2)}) is well below that of real passages (${fmt(u.reference.distinct2)}); the Metropolis steps on an AR energy favour the repetitive text that an AR scores well.`);
      }
    }
  }
  out.push(`These numbers come from ${r.config.passages} passages of ${r.config.passageLength} tokens. The MDLM bound is a Monte-Carlo estimate (${r.config.elboDraws} draws per passage; its noise is inside its standard error), and so are the sampling-based metrics (gen-ppl, distinct-2, entropy), which carry no error bar here: read small differences in them as ties.`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// report.md

export function renderMarkdown(r: EvalResults): string {
  const L: string[] = [];
  const m = r.meta;
  L.push('# MARIA infilling evaluation');
  L.push('');
  if (!r.complete) L.push('> **Incomplete run**: stopped before every unit was done; the tables hold what was measured.\n');
  L.push(`Generated ${m.date} by ${m.command ? code(m.command) : 'the library (no command line)'}.`);
  L.push('');
  // Headline.
  const mdlmM = r.config.methods.find((x) => x === 'mdlm-M');
  const headRates = r.config.maskRates.filter((rate) => qrow(r, 'maria', rate));
  if (headRates.length) {
    L.push('## Headline');
    L.push('');
    const kinds = r.config.maskKinds;
    const cols = kinds.length > 1 ? ['masks', 'mask rate', 'MARIA NLL (exact)'] : ['mask rate', 'MARIA NLL (exact)'];
    if (mdlmM) cols.push('MDLM T=|M| (ELBO)');
    const mdlmBest = r.config.methods.filter((x) => x.startsWith('mdlm-'));
    if (mdlmBest.length > 1) cols.push('lowest MDLM bound (any T)');
    if (r.config.methods.includes('mlm-l2r')) cols.push('MLM left-to-right NLL (exact)');
    if (r.config.methods.includes('ar')) cols.push('AR only NLL (exact)');
    const rows = kinds.flatMap((kind) =>
      headRates
        .filter((rate) => qrow(r, 'maria', rate, kind))
        .map((rate) => {
          const row = kinds.length > 1 ? [kind === 'span' ? 'spans' : 'i.i.d.', String(rate)] : [String(rate)];
          row.push(nllText(qrow(r, 'maria', rate, kind)));
          if (mdlmM) row.push(nllText(qrow(r, 'mdlm-M', rate, kind)));
          if (mdlmBest.length > 1) {
            const b = mdlmBest.map((x) => qrow(r, x, rate, kind)).filter((q): q is QualityRow => !!q).sort((a, b) => a.nll - b.nll)[0];
            row.push(b ? `${nllText(b)} (${b.label})` : '—');
          }
          if (r.config.methods.includes('mlm-l2r')) row.push(nllText(qrow(r, 'mlm-l2r', rate, kind)));
          if (r.config.methods.includes('ar')) row.push(nllText(qrow(r, 'ar', rate, kind)));
          return row;
        }),
    );
    L.push(table(cols, rows));
    L.push('');
    L.push(`NLL in nats per masked token, ${kinds.length > 1 ? 'i.i.d. and span masks' : 'i.i.d. masks'}, lower is better; ± one standard error over passages (for MDLM it includes the Monte-Carlo noise of the bound). Paired differences with their errors are in the Findings.`);
    if (r.throughput) {
      const Lmax = Math.max(...r.throughput.rows.map((t) => t.length));
      const sp = (x: string): string => times(r.throughput!.rows.find((t) => t.method === x && t.length === Lmax)?.mariaSpeedup);
      const parts = ['mdlm-M', 'mdlm-16', 'mlm-l2r'].filter((x) => r.config.methods.includes(x)).map((x) => `${x} ${sp(x)}`);
      if (parts.length) L.push(`MARIA's speed-up (time of the method / time of MARIA) at length ${Lmax}, mask rate ${r.throughput.rate}: ${parts.join(', ')}.`);
    }
    L.push('');
  }
  // Setup.
  L.push('## Setup');
  L.push('');
  L.push(`- **Command**: ${m.command ? code(m.command) : '(library call)'}`);
  L.push(`- **Bundle**: ${code(r.config.bundleDir)}, head ${code(r.config.headInit)}; MLM ${code(m.models.mlm)} (${(m.models.mlmParameters / 1e6).toFixed(2)} M parameters), AR ${code(m.models.ar)} (${(m.models.arParameters / 1e6).toFixed(2)} M parameters).`);
  L.push(`- **Scorer** (generative perplexity): ${r.config.scorer ? code(r.config.scorer) : 'none (gen-ppl of infills not measured)'}.`);
  const genres = Object.entries(m.data.genres).sort((a, b) => b[1] - a[1]).map(([g, n]) => `${g} ${n}`).join(', ');
  L.push(`- **Data**: ${m.data.passages} passages of ${m.data.length} tokens from ${m.data.docs} documents of ${code(m.data.source)} (${genres}). ${m.data.description}`);
  L.push(`- **Masks**: ${r.config.maskKinds.map((k) => (k === 'random' ? 'i.i.d. (randomMask: each token with probability r, at least one)' : 'spans (spanMask: geometric spans of mean length 4 up to round(r·n) tokens)')).join('; ')} at rates ${r.config.maskRates.join(', ')}; a mask depends only on (passage tokens, rate, seed), so every method sees the same masks.`);
  L.push(`- **Seeds**: run seed ${r.config.seed}; every sampler and Monte-Carlo seed is derived from (seed, method, mask kind, rate, passage index), so the same command gives the same quality numbers. ${r.config.samples} sampled infills per passage (temperature ${sampleTemperature(r)}, no top-k/top-p); MDLM bound with ${r.config.elboDraws} Monte-Carlo draws per passage.`);
  L.push(`- **Machine**: ${m.machine.cpu}, ${m.machine.cores} cores, ${m.machine.threads} ORT thread(s); ${m.machine.os}; Node ${m.machine.node}; onnxruntime-node ${m.machine.onnxruntime}; load average at the end ${m.machine.loadAverage.map((x) => x.toFixed(2)).join(' / ')}.`);
  L.push(`- **Date**: started ${m.startedAt}, finished ${m.date}${m.resumed ? ' (resumed from a checkpoint)' : ''}; this process ran ${fmt(m.wallSeconds, 0)} s.`);
  L.push('');
  // Metric definitions.
  L.push('## Metrics');
  L.push('');
  L.push('- **NLL** (nats per masked token) of the true tokens at the masked positions, Σ over passages / Σ masked tokens; **ppl** = exp(NLL). *exact*: log p(x_M | x_¬M) by the chain rule (MARIA, MARIA at PoE init, MLM left-to-right with one MLM pass per masked token; AR only conditions on the left context). *ELBO*: MDLM with T steps, the discrete-time bound L_T = Σ_k (1/T)(1/t_k) E[Σ_{masked i} −log p_MLM(x_i | z_{t_k})], t_k = k/T, linear schedule — an upper bound on the NLL of the T-step sampler, looser for small T (L_T → the continuous-time bound as T grows). *independent*: MLM one-shot, every masked token scored on its own from one pass (a product of marginals, not a likelihood of x_M).');
  L.push('- **SE**: standard error of the NLL over passages (ratio estimator Σ NLL / Σ masked tokens, delta method). Differences between methods are judged by paired standard errors (same passages and masks): only |Δ| > 2 SE is called a win or a loss.');
  L.push('- **accuracy**: greedy infill (temperature 0) vs the truth, matching tokens / masked tokens.');
  L.push(`- **gen-ppl**: samples at temperature ${sampleTemperature(r)} are scored by the separate scorer LM: exp of the mean −log p_scorer(y_i | [BOS] y_<i) over *every* token of the filled passage (given tokens too, so a fill that clashes with its right context is penalised), pooled over samples and passages. results.json also has \`genPplFilled\`, the same mean over the filled positions only. The reference row is the scorer on the true passages.`);
  L.push('- **distinct-2**: per passage, the token bigrams of the sampled fills that touch a filled position, pooled over the samples: distinct / total (about 1/N when all N samples are identical), averaged over passages.');
  L.push(
    sampleTemperature(r) === 1
      ? '- **entropy** (nats): mean −log p(y_i) of the sampled tokens under the distribution p each was drawn from: an unbiased estimate of the mean per-position entropy of the sampling distributions.'
      : `- **entropy** (nats): mean −log p(y_i) of the sampled tokens under the model's distribution p (before temperature); the samples were drawn at temperature ${sampleTemperature(r)}, so this is the model's mean surprisal of its own samples (lower = sharper), not the entropy of the tempered distribution.`,
  );
  if (r.throughput) {
    const tc = r.config.throughput!;
    L.push(`- **throughput**: infilled tokens per second of wall time for one ${r.throughput.temperature === 0 ? 'greedy infill' : `sample (temperature ${r.throughput.temperature})`} per passage (mask rate ${r.throughput.rate}, ${tc.passages} passage(s) per length), every method on the same passages and masks, interleaved passage by passage and method by method in the same process${tc.warmup ? ' after one untimed warm-up call per method and length' : ''}; **speed-up of MARIA** = time of the method / time of MARIA (above 1: MARIA is faster).`);
  }
  L.push('');
  // Quality tables.
  for (const kind of r.config.maskKinds) {
    for (const rate of r.config.maskRates) {
      const rows = rowsOf(r, kind).filter((q) => q.rate === rate);
      if (rows.length === 0) continue;
      L.push(`## Mask rate ${rate}${kind === 'span' ? ' — span masks' : ''}`);
      L.push('');
      L.push(`${rows[0].passages} passages, ${rows[0].maskedTokens} masked tokens.`);
      L.push('');
      const body = rows.map((q) => [q.label, nllText(q), fmtPpl(q.ppl), KIND_TEXT[q.likelihood], pct(q.accuracy), fmtPpl(q.genPpl), fmt(q.distinct2), fmt(q.entropy), fmt(q.secondsPerPassage, 2)]);
      if (r.reference) body.push(['*true passages*', '', '', '', '', fmtPpl(r.reference.genPpl), '', '', '']);
      L.push(table(['method', 'NLL ± SE', 'ppl', 'likelihood', 'accuracy', 'gen-ppl', 'distinct-2', 'entropy', 's/passage'], body));
      L.push('');
    }
  }
  // Throughput.
  if (r.throughput) {
    L.push(`## Throughput (mask rate ${r.throughput.rate})`);
    L.push('');
    for (const len of [...new Set(r.throughput.rows.map((t) => t.length))]) {
      const rows = r.throughput.rows.filter((t) => t.length === len);
      const req = rows[0].requestedLength;
      L.push(`### Length ${len}${req !== len ? ` (asked for ${req})` : ''}`);
      L.push('');
      L.push(table(['method', 'passages', 'infilled tokens', 'tokens/s', 'ms/passage (mean)', 'ms/passage (median)', 'speed-up of MARIA'], rows.map((t) => [t.label, String(t.passages), String(t.filledTokens), fmt(t.tokensPerSecond, 1), fmt(t.msPerPassage, 1), fmt(t.msPerPassageMedian, 1), times(t.mariaSpeedup)])));
      L.push('');
    }
  }
  // Unconditional.
  if (r.unconditional) {
    const u = r.unconditional;
    L.push(`## Unconditional generation (length ${u.length})`);
    L.push('');
    L.push(`Samples from an all-mask sequence; gen-ppl under ${u.scorer}${u.scorerIsEnergy ? " — **the bundle's AR is also the annealing energy, so maria-anneal is scored by the function it minimised (biased in its favour)**" : ''}; distinct-n over all samples pooled. Annealing: ${u.annealSteps} re-masking rounds (src/maria/anneal.ts schedules, energy −log p of the bundle's AR).`);
    L.push('');
    const body = u.rows.map((x) => [x.label, String(x.samples), fmtPpl(x.genPpl), fmt(x.distinct2), fmt(x.distinct3), fmt(x.secondsPerSample, 2)]);
    if (u.reference) body.push([`*real passages (${u.reference.samples})*`, String(u.reference.samples), fmtPpl(u.reference.genPpl), fmt(u.reference.distinct2), fmt(u.reference.distinct3), '']);
    L.push(table(['method', 'samples', 'gen-ppl', 'distinct-2', 'distinct-3', 's/sample'], body));
    L.push('');
  }
  // Findings.
  L.push('## Findings');
  L.push('');
  L.push('Generated from the numbers above.');
  L.push('');
  for (const f of findings(r)) L.push(`- ${f}`);
  L.push('');
  // Plots.
  const plots = renderPlots(r);
  if (plots.size) {
    L.push('## Plots');
    L.push('');
    for (const name of plots.keys()) L.push(`![${name.replace(/\.svg$/, '')}](${name})`, '');
  }
  if (r.notes.length) {
    L.push('## Notes');
    L.push('');
    for (const n of r.notes) L.push(`- ${n}`);
    L.push('');
  }
  return L.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Writing

/** Every file of the report: name → content. */
export function renderReport(r: EvalResults): Map<string, string> {
  const files = new Map<string, string>();
  files.set('results.json', JSON.stringify(r, null, 2) + '\n');
  files.set('report.md', renderMarkdown(r));
  for (const [name, svg] of renderPlots(r)) files.set(name, svg);
  return files;
}

export interface WriteReportOptions {
  /** Called after each file is staged (tests use it to simulate a crash mid-write). */
  onFile?: (name: string) => void;
}

function stagingPrefix(out: string): string {
  return `.${basename(out)}.staging-`;
}

/** The folders beside `out` whose names start with `prefix`. */
function siblings(out: string, prefix: string): string[] {
  const parent = dirname(out);
  if (!existsSync(parent)) return [];
  return readdirSync(parent).filter((e) => e.startsWith(prefix)).map((e) => join(parent, e));
}

/**
 * Puts back an --out folder that a crash left renamed aside (between the two renames of
 * writeReport's replaceDirectory) and removes stale staging folders. Call before reading a
 * checkpoint in --out.
 */
export function recoverOut(outDir: string): void {
  const out = resolve(outDir);
  const old = siblings(out, asideDirectoryPrefix(out)).sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (!existsSync(out) && old.length) renameSync(old.shift()!, out);
  for (const d of [...old, ...siblings(out, stagingPrefix(out))]) rmSync(d, { recursive: true, force: true });
}

/**
 * Writes the report into `outDir`: all files go to a staging folder beside it (other files already
 * in `outDir`, such as the checkpoint, are copied in), then the staging folder replaces `outDir`.
 * On any error the staging folder is removed and `outDir` is left as it was. Returns the file names.
 */
export function writeReport(r: EvalResults, outDir: string, options: WriteReportOptions = {}): string[] {
  const out = resolve(outDir);
  const parent = dirname(out);
  mkdirSync(parent, { recursive: true });
  const tag = uniqueTag();
  const staging = join(parent, `${stagingPrefix(out)}${tag}`);
  const files = renderReport(r);
  mkdirSync(staging);
  try {
    for (const [name, content] of files) {
      writeFileAtomic(join(staging, name), content);
      options.onFile?.(name);
    }
    if (existsSync(out)) for (const e of readdirSync(out)) if (!files.has(e)) cpSync(join(out, e), join(staging, e), { recursive: true });
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    throw err;
  }
  replaceDirectory(staging, out, tag);
  return [...files.keys()];
}

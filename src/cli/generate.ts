// `maria generate`: unconditional or constrained generation. Without --anneal, one MARIA sample of
// the masked positions; with --anneal, simulated annealing (src/maria/anneal.ts documents the
// schedules): repeated re-masking and re-infilling with a Metropolis test on the AR's NLL.
//   maria generate [--length N | --text "constraint with [MASK:n]"] [--anneal] [--steps K]
//                  [--rate-start R] [--rate-end R] [--temperature-start T] [--temperature-end T]
//                  [--accept-temperature T0] [--seed S] [--bundle DIR] [--json] [--threads N]
import type { Command } from 'commander';
import { anneal, arEnergy } from '../maria/anneal.js';
import { releaseBaselines } from '../maria/baselines.js';
import type { MaskedSequence } from '../maria/masks.js';
import { loadBundle } from './infill.js';
import { action, CliError, parseInteger, parseNumber, usageErrorsExit2 } from './util.js';

interface GenerateOptions {
  length?: string;
  text?: string;
  anneal?: boolean;
  steps?: string;
  rateStart?: string;
  rateEnd?: string;
  temperatureStart?: string;
  temperatureEnd?: string;
  acceptTemperature?: string;
  seed?: string;
  bundle?: string;
  threads?: string;
  json?: boolean;
}

export function register(program: Command): void {
  usageErrorsExit2(
    program
      .command('generate')
      .description('generate text with MARIA: all positions masked (--length) or a constraint text with [MASK] markers; --anneal refines it by simulated annealing')
      .option('--length <n>', 'number of tokens to generate (unconditional)')
      .option('--text <text>', 'a constraint: text whose [MASK] / [MASK:n] positions are generated, the rest kept')
      .option('--anneal', 'refine by simulated annealing')
      .option('--steps <k>', 'annealing rounds', '20')
      .option('--rate-start <r>', 'first re-mask rate', '0.5')
      .option('--rate-end <r>', 'last re-mask rate', '0.05')
      .option('--temperature-start <t>', 'first infill temperature', '1.0')
      .option('--temperature-end <t>', 'last infill temperature', '0.3')
      .option('--accept-temperature <t>', 'T0 of the Metropolis test (nats)', '2')
      .option('--seed <s>', 'random seed', '0')
      .option('--bundle <dir>', 'MARIA bundle (default: models/default)')
      .option('--threads <n>', 'ORT threads (default: all cores)')
      .option('--json', 'print JSON')
      .action(
        action(async (o: GenerateOptions) => {
          if ((o.length === undefined) === (o.text === undefined)) throw new CliError('give exactly one of --length N (unconditional) or --text "… [MASK:n] …" (constrained)');
          const seed = parseInteger('--seed', o.seed ?? '0');
          const maria = await loadBundle(o.bundle, o.threads ? parseInteger('--threads', o.threads, { min: 1 }) : undefined);
          let input: string | MaskedSequence;
          if (o.length !== undefined) {
            const n = parseInteger('--length', o.length, { min: 1, max: maria.maxTokens });
            input = { ids: new Array(n).fill(0), masked: new Array(n).fill(true) };
          } else input = o.text!;
          if (!o.anneal) {
            const r = await maria.infill(input, { temperature: parseNumber('--temperature-start', o.temperatureStart ?? '1'), seed });
            const sample = r.samples[0];
            const energy = await arEnergy(maria, sample.ids);
            if (o.json) process.stdout.write(JSON.stringify({ text: sample.text, ids: sample.ids, energy, energyPerToken: energy / sample.ids.length }) + '\n');
            else process.stdout.write(`${sample.text}\n(−log p_AR = ${energy.toFixed(1)}, ${(energy / sample.ids.length).toFixed(3)} per token)\n`);
          } else {
            const result = await anneal(maria, input, {
              steps: parseInteger('--steps', o.steps ?? '20', { min: 0 }),
              rateStart: parseNumber('--rate-start', o.rateStart ?? '0.5'),
              rateEnd: parseNumber('--rate-end', o.rateEnd ?? '0.05'),
              temperatureStart: parseNumber('--temperature-start', o.temperatureStart ?? '1'),
              temperatureEnd: parseNumber('--temperature-end', o.temperatureEnd ?? '0.3'),
              acceptTemperature: parseNumber('--accept-temperature', o.acceptTemperature ?? '2'),
              seed,
              onStep: o.json ? undefined : (s) => process.stderr.write(`round ${s.step}: rate ${s.rate.toFixed(3)} τ ${s.temperature.toFixed(2)} proposal ${s.proposedEnergy.toFixed(1)} ${s.accepted ? 'accepted' : 'rejected'} → energy ${s.energy.toFixed(1)}\n`),
            });
            if (o.json) process.stdout.write(JSON.stringify(result) + '\n');
            else process.stdout.write(`${result.text}\n(−log p_AR ${result.initialEnergy.toFixed(1)} → ${result.energy.toFixed(1)}, ${result.energyPerToken.toFixed(3)} per token; ${(result.acceptanceRate * 100).toFixed(0)}% of proposals accepted)\n`);
          }
          await releaseBaselines(maria);
          await maria.release();
        }),
      ),
  );
}

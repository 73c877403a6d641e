// The package entry (what `import ... from 'maria-infill'` gives a user, from the built dist/)
// loads a bundle and infills with it.
import { afterAll, describe, expect, it } from 'vitest';
import { buildTinyPair, removeTinyPair } from './helpers/tiny-pair.js';

const pair = buildTinyPair('maria-api-');
afterAll(() => removeTinyPair(pair));

describe('package entry', () => {
  it('exposes Maria and the layers below it by package name', async () => {
    const api = await import('maria-infill');
    for (const name of ['Maria', 'CausalLM', 'MaskedLM', 'TextTokenizer', 'pairTokenizers', 'Graph', 'grad', 'compile', 'trainHead', 'pretrain', 'readSafetensors']) {
      expect(api, name).toHaveProperty(name);
    }
    // The front ends and the baselines' lifecycle are public too.
    for (const name of ['releaseBaselines', 'mdlmElbo', 'buildServer', 'shutdownOnSignals', 'evaluate', 'evaluateUnconditional', 'exportWeb']) {
      expect(typeof (api as Record<string, unknown>)[name], name).toBe('function');
    }
    const maria = await api.Maria.load(pair.bundleDir, { threads: 1 });
    const r = await maria.infill('Call me [MASK]. Some years ago', { seed: 1 });
    expect(r.samples[0].filled).toHaveLength(1);
    expect(r.samples[0].text.startsWith('Call me')).toBe(true);
    await maria.release();
  });
});

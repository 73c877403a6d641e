// The web page of `maria serve` end to end in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) against the tiny random-weight bundle: blank a word, fill, see the token appear
// highlighted with its alternatives; score a text and see every token coloured.
// MARIA_SCREENSHOTS=1 also writes docs/screenshot-server.png.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Maria } from '../src/maria/maria.js';
import { buildServer } from '../src/server/app.js';
import { HAVE_CHROMIUM, launchChromium, warnIfNoChromium, watchedPage } from './helpers/chromium.js';
import { REPO_ROOT, buildTinyPair, removeTinyPair, type TinyPair } from './helpers/tiny-pair.js';

warnIfNoChromium('test/browser.test.ts');

const SENTENCE = 'The old man walked down to the harbour and looked at the sea.';

describe.skipIf(!HAVE_CHROMIUM)('the page in headless Chromium', () => {
  let pair: TinyPair;
  let maria: Maria;
  let app: FastifyInstance;
  let base: string;
  let browser: Browser;
  let page: Page;
  const problems: string[] = [];
  const foreign: string[] = [];

  beforeAll(async () => {
    pair = buildTinyPair('maria-browser-');
    maria = await Maria.load(pair.bundleDir, { threads: 1 });
    app = buildServer(maria);
    base = await app.listen({ host: '127.0.0.1', port: 0 });
    // launch() gives every run a fresh temporary profile (its own --user-data-dir).
    browser = await launchChromium();
    page = await watchedPage(browser, base, problems, foreign);
  });

  afterAll(async () => {
    await browser?.close();
    await app?.close();
    await maria?.release();
    removeTinyPair(pair);
  });

  it('loads the page and describes the model', async () => {
    await page.goto(base);
    await expect.poll(() => page.textContent('#model-info')).toContain(`context ${maria.maxTokens} tokens`);
    expect(await page.getAttribute('#samples', 'max')).toBe('16');
  });

  it('blanks a selected word, fills it, and shows the token highlighted with its probability and alternatives', async () => {
    await page.fill('#text', SENTENCE);
    const start = SENTENCE.indexOf('harbour');
    await page.evaluate(([s, e]) => {
      const t = document.getElementById('text') as HTMLTextAreaElement;
      t.focus();
      t.setSelectionRange(s, e);
    }, [start, start + 'harbour'.length]);
    await page.click('#blank');
    await expect.poll(() => page.inputValue('#text')).toMatch(/^The old man walked down to the \[MASK(:\d+)?\] and looked at the sea\.$/);
    const text = await page.inputValue('#text');
    const n = maria.parse(text).masked.filter(Boolean).length;
    expect(n).toBe(maria.tokenizer.encode(' harbour').ids.length);

    await page.fill('#samples', '2');
    await page.fill('#temperature', '0.7');
    await page.fill('#seed', '5');
    await page.click('#fill');
    await expect.poll(() => page.locator('#samples-out .tok.filled').count()).toBe(2 * n);
    await expect.poll(() => page.textContent('#status')).toContain('Filled');
    expect(await page.locator('#samples-out .sample').count()).toBe(2);
    expect(await page.locator('#samples-out .tok.pending').count()).toBe(0);
    expect(await page.getAttribute('#samples-out', 'aria-busy')).toBe('false');

    // Highlighted, with a probability, and the tokens the server chose.
    const first = page.locator('#samples-out .sample').first().locator('.tok.filled').first();
    const bg = await first.evaluate((node) => getComputedStyle(node).backgroundColor);
    expect(bg).not.toBe('rgba(0, 0, 0, 0)');
    expect(await first.locator('.p').textContent()).toMatch(/%$/);
    const direct = await maria.infill(text, { samples: 2, temperature: 0.7, seed: 5 });
    const shown = await page
      .locator('#samples-out .sample')
      .first()
      .locator('.sample-text')
      .evaluate((node) => {
        const copy = node.cloneNode(true) as HTMLElement;
        copy.querySelectorAll('.p').forEach((p) => p.remove());
        return copy.textContent;
      });
    expect(shown).toBe(direct.samples[0].text);

    // Keyboard focus shows the alternatives in the tooltip, linked as its description.
    await first.focus();
    await expect.poll(() => page.isVisible('#tip')).toBe(true);
    expect(await page.textContent('#tip')).toContain('top alternatives');
    expect(await page.locator('#tip tr').count()).toBe(5);
    expect(await first.getAttribute('aria-describedby')).toBe('tip');
    if (process.env.MARIA_SCREENSHOTS === '1') {
      // After an infill, with one token's alternatives open.
      mkdirSync(join(REPO_ROOT, 'docs'), { recursive: true });
      await page.screenshot({ path: join(REPO_ROOT, 'docs/screenshot-server.png'), fullPage: true });
    }
    await page.keyboard.press('Escape');
    await expect.poll(() => page.isVisible('#tip')).toBe(false);
  });

  it('scores a text with every token coloured by its log-probability', async () => {
    await page.fill('#text', SENTENCE);
    await page.click('#tab-score');
    expect(await page.isVisible('#panel-score')).toBe(true);
    expect(await page.isVisible('#panel-fill')).toBe(false);
    await page.click('#score');
    const n = maria.tokenizer.encode(SENTENCE).ids.length;
    await expect.poll(() => page.locator('#score-out .tok').count()).toBe(n);
    expect(await page.textContent('#score-out')).toBe(SENTENCE);
    const classes = await page.locator('#score-out .tok').evaluateAll((nodes) => nodes.map((x) => x.className));
    for (const c of classes) expect(c).toMatch(/\bb[0-4]\b/);
    const colours = await page.locator('#score-out .tok').evaluateAll((nodes) => nodes.map((x) => getComputedStyle(x).backgroundColor));
    for (const c of colours) expect(c).not.toBe('rgba(0, 0, 0, 0)');
    expect(await page.textContent('#score-summary')).toMatch(/NLL \d/);
    expect(await page.locator('.legend .swatch').count()).toBe(5);
    // One tab stop; arrows move between tokens.
    await page.locator('#score-out .tok').first().focus();
    await page.keyboard.press('ArrowRight');
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe(await page.locator('#score-out .tok').nth(1).textContent());
  });

  it('made no requests beyond this server and logged no errors', () => {
    expect(foreign).toEqual([]);
    expect(problems).toEqual([]);
  });
});

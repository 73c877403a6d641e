// Writes docs/screenshot-server.png and docs/screenshot-browser.png: the page of `maria serve` with the
// default bundle after an infill on the server and after one in the browser (onnxruntime-web).
// Run after `npm run build`: node scripts/screenshots.mjs   (needs /usr/bin/chromium)
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const root = new URL('..', import.meta.url).pathname;
const port = 18000 + Math.floor(Math.random() * 1000);
const server = spawn('node', [join(root, 'dist/cli/main.js'), 'serve', '--port', String(port), '--threads', '1'], { stdio: ['ignore', 'inherit', 'inherit'] });
const base = `http://127.0.0.1:${port}`;
for (let i = 0; ; i++) {
  try {
    if ((await fetch(`${base}/v1/health`)).ok) break;
  } catch {
    if (i > 100) {
      server.kill('SIGTERM');
      throw new Error('the server did not start');
    }
  }
  await new Promise((r) => setTimeout(r, 200));
}

// Playwright gives the browser a fresh temporary profile of its own.
let browser = null;
try {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  await page.goto(base);
  const text = 'The President [MASK:4] the Congress of the United States, and the people [MASK:3] peace.';
  const fill = async (file) => {
    await page.fill('#text', text);
    await page.fill('#samples', '3');
    await page.fill('#temperature', '0.8');
    await page.fill('#seed', '7');
    await page.click('#fill');
    await page.waitForFunction(() => document.querySelectorAll('#samples-out .tok.filled').length === 21 && !document.querySelector('#samples-out .tok.pending'), null, { timeout: 120_000 });
    await page.locator('#samples-out .tok.filled').first().focus();
    await page.screenshot({ path: join(root, 'docs', file), fullPage: true });
  };
  await fill('screenshot-server.png');
  await page.check('input[name="runs-on"][value="browser"]');
  await page.waitForFunction(() => /^Loaded/.test(document.getElementById('runs-on-info')?.textContent ?? ''), null, { timeout: 300_000 });
  await fill('screenshot-browser.png');
  console.log('wrote docs/screenshot-server.png and docs/screenshot-browser.png');
} finally {
  await browser?.close();
  server.kill('SIGTERM');
}

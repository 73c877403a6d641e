// Headless Chromium for the page's end-to-end tests (Debian's chromium, driven by playwright-core):
// one launch configuration, and a page that records errors and any request leaving the server.
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const HAVE_CHROMIUM = existsSync(CHROMIUM);
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

/** Warns once per test file that its browser tests are skipped. */
export function warnIfNoChromium(file: string): void {
  if (!HAVE_CHROMIUM) console.warn(`${file}: SKIPPED: ${CHROMIUM} is absent (install it with \`apt-get install -y chromium\`; .ci/run does)`);
}

/** Launches Chromium (a fresh temporary profile each time). */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: FLAGS, headless: true });
}

/**
 * A page whose errors and console errors go to `problems`, and whose requests to anywhere but
 * `base` go to `foreign` (data: URLs aside, and blob: URLs when `allowBlob`: the in-browser
 * runtime makes its wasm worker from one).
 */
export async function watchedPage(browser: Browser, base: string, problems: string[], foreign: string[], allowBlob = false): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
  });
  page.on('request', (req) => {
    const url = req.url();
    if (!url.startsWith(base) && !url.startsWith('data:') && !(allowBlob && url.startsWith('blob:'))) foreign.push(url);
  });
  return page;
}

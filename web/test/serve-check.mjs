// Opens a running `dermclass serve` page in headless Chromium, uploads one image through
// its file input, waits for the bars and the heat map, asks /predict about the same file
// from the page, saves a screenshot, and prints one JSON line. Used by
// tests/it/serve_browser.rs; run by hand as
//   node web/test/serve-check.mjs BASE_URL IMAGE_FILE [CHROMIUM] [SCREENSHOT]
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const [base, image, executable = '/usr/bin/chromium', screenshot] = process.argv.slice(2);

const browser = await chromium.launch({
  executablePath: executable,
  args: ['--headless=new', '--no-sandbox', '--disable-gpu'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  const consoleErrors = [];
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  await page.goto(base);
  const started = Date.now();
  await page.setInputFiles('#file', image);
  await page.waitForFunction(() => document.body.dataset.state, null, { timeout: 60000 });
  const state = await page.evaluate(() => document.body.dataset.state);
  await page.waitForFunction(() => {
    const img = document.getElementById('heatmap');
    return img.complete && img.naturalWidth > 0;
  }, null, { timeout: 10000 });
  const shownMs = Date.now() - started;
  const shown = await page.evaluate(() => ({
    top: document.getElementById('topclass')?.dataset.class,
    status: document.getElementById('status').textContent,
    bars: [...document.querySelectorAll('#bars .row')].map((r) => [r.dataset.class, r.textContent]),
    heatmap: [document.getElementById('heatmap').naturalWidth, document.getElementById('heatmap').naturalHeight],
  }));
  // The same bytes through /predict, from the page.
  const bytes = [...await readFile(image)];
  const predicted = await page.evaluate(async (data) => {
    const response = await fetch('/predict', { method: 'POST', body: new Uint8Array(data) });
    return response.json();
  }, bytes);
  if (screenshot) await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ state, shown_ms: shownMs, shown, predicted_top: predicted.top_class, console_errors: consoleErrors }));
} finally {
  await browser.close();
}

// Opens an exported dermclass site in headless Chromium, classifies one image through the
// page, and prints one JSON line: the probabilities the page shows, load and per-image
// times. Used by tests/it/export_web.rs; run by hand as
//   node web/test/browser-check.mjs SITE_DIR IMAGE_FILE [CHROMIUM] [REPEATS]
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize, resolve } from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const [site, image, executable = '/usr/bin/chromium', repeats = '5'] = process.argv.slice(2);
const types = {
  '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.json': 'application/json', '.wasm': 'application/wasm', '.onnx': 'application/octet-stream',
  '.png': 'image/png', '.jpg': 'image/jpeg',
};

// A static server over the site, plus the test image at /__image__.
const root = resolve(site);
const server = createServer(async (req, res) => {
  const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  const file = path === '/__image__' ? resolve(image) : normalize(join(root, path === '/' ? 'index.html' : path));
  if (path !== '/__image__' && !file.startsWith(root)) { res.writeHead(403); res.end(); return; }
  try {
    const body = await readFile(file);
    res.writeHead(200, { 'content-type': types[extname(file)] || 'application/octet-stream' });
    res.end(body);
  } catch {
    res.writeHead(404);
    res.end();
  }
});
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
const base = `http://127.0.0.1:${server.address().port}/`;

const browser = await chromium.launch({
  executablePath: executable,
  args: ['--headless=new', '--no-sandbox', '--disable-gpu'],
});
try {
  const page = await browser.newPage();
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));
  const consoleErrors = [];
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  const opened = Date.now();
  await page.goto(base);
  await page.waitForFunction(() => window.dermclass && window.dermclass.ready, null, { timeout: 120000 });
  const loadMs = Date.now() - opened;
  const before = requests.length;
  const times = [];
  let result;
  for (let i = 0; i < Number(repeats); i++) {
    result = await page.evaluate(() => window.dermclass.classifyUrl('/__image__'));
    times.push(result.ms);
  }
  // What the page shows: one table row per class, with its code and probability.
  const shown = await page.$$eval('#bars tr', (rows) => rows.map((r) => [r.dataset.code, Number(r.dataset.probability), r.cells[0].textContent]));
  const later = requests.slice(before).filter((u) => !u.endsWith('/__image__'));
  times.sort((a, b) => a - b);
  console.log(JSON.stringify({
    load_ms: loadMs,
    page_load_ms: await page.evaluate(() => window.dermclass.loadMs),
    median_ms: times[Math.floor(times.length / 2)],
    probabilities: result.probabilities,
    shown,
    requests_after_load: later,
    privacy_text: await page.textContent('#privacy'),
    console_errors: consoleErrors,
  }));
} finally {
  await browser.close();
  server.close();
}

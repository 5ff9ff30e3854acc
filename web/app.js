// dermclass in the browser: decode, resize, Shades-of-Gray, normalise as `dermclass predict`
// does, run the exported ONNX model with onnxruntime-web, show the 7 probabilities.
'use strict';

const state = { meta: null, session: null, loadMs: 0 };

function setStatus(text) {
  document.getElementById('status').textContent = text;
}

// Per-channel gains of Shades-of-Gray colour constancy (p-norm illuminant estimate mapped
// to grey, overall brightness kept): the same arithmetic as dermclass's loader.
function shadesOfGrayGains(rgba, p) {
  const table = new Float64Array(256);
  for (let v = 0; v < 256; v++) table[v] = Math.pow(v / 255, p);
  const sums = [0, 0, 0];
  const n = rgba.length / 4;
  for (let i = 0; i < rgba.length; i += 4) {
    sums[0] += table[rgba[i]];
    sums[1] += table[rgba[i + 1]];
    sums[2] += table[rgba[i + 2]];
  }
  const e = sums.map((s) => Math.pow(s / Math.max(n, 1), 1 / p));
  const norm = Math.sqrt((e[0] * e[0] + e[1] * e[1] + e[2] * e[2]) / 3);
  return e.map((v) => (v > 1e-12 ? norm / v : 1));
}

// The network input for an image: NCHW float32, batch of one.
function preprocess(image) {
  const m = state.meta;
  const canvas = document.getElementById('preview');
  canvas.width = m.input_width;
  canvas.height = m.input_height;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(image, 0, 0, m.input_width, m.input_height);
  const rgba = ctx.getImageData(0, 0, m.input_width, m.input_height).data;
  const gains = m.shades_of_gray ? shadesOfGrayGains(rgba, m.shades_of_gray) : [1, 1, 1];
  const plane = m.input_width * m.input_height;
  const x = new Float32Array(3 * plane);
  for (let i = 0; i < plane; i++) {
    for (let c = 0; c < 3; c++) {
      const v = Math.min(255, Math.max(0, rgba[4 * i + c] * gains[c]));
      x[c * plane + i] = v * m.pixel_scale[c] + m.pixel_offset[c];
    }
  }
  return new ort.Tensor('float32', x, [1, 3, m.input_height, m.input_width]);
}

function showBars(probabilities) {
  const m = state.meta;
  const order = probabilities.map((p, i) => i).sort((a, b) => probabilities[b] - probabilities[a]);
  const table = document.getElementById('bars');
  table.innerHTML = '';
  order.forEach((i, rank) => {
    const row = table.insertRow();
    row.className = rank === 0 ? 'top' : '';
    row.dataset.code = m.classes[i];
    row.dataset.probability = String(probabilities[i]);
    const name = row.insertCell();
    name.className = 'name';
    name.textContent = `${m.class_names[i]} (${m.classes[i]})`;
    const barCell = row.insertCell();
    const bar = document.createElement('div');
    bar.className = 'bar';
    bar.style.width = `${(100 * probabilities[i]).toFixed(1)}%`;
    barCell.appendChild(bar);
    const pct = row.insertCell();
    pct.className = 'pct';
    pct.textContent = `${(100 * probabilities[i]).toFixed(1)}%`;
  });
}

function showCard(m) {
  const card = document.getElementById('card');
  const lines = [
    `Model: ${m.arch}, input ${m.input_width}x${m.input_height}, ${m.classes.length} classes.`,
  ];
  if (m.validation_balanced_accuracy) {
    lines.push(`Validation balanced accuracy (mean sensitivity) ${m.validation_balanced_accuracy} on a lesion-grouped 30% split of HAM10000.`);
  }
  if (m.note) lines.push(m.note);
  card.textContent = lines.join(' ');
}

async function classify(image) {
  const started = performance.now();
  const input = preprocess(image);
  const outputs = await state.session.run({ image: input });
  const probabilities = Array.from(outputs.probabilities.data);
  const ms = performance.now() - started;
  showBars(probabilities);
  const top = probabilities.indexOf(Math.max(...probabilities));
  setStatus(`${state.meta.class_names[top]}: ${(100 * probabilities[top]).toFixed(1)}% (${ms.toFixed(0)} ms on this device)`);
  return { probabilities, ms };
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error('this file is not an image the browser can decode'));
    img.src = src;
  });
}

async function classifyFile(file) {
  const url = URL.createObjectURL(file);
  try {
    return await classify(await loadImage(url));
  } catch (err) {
    setStatus(`Cannot classify ${file.name}: ${err.message}`);
    throw err;
  } finally {
    URL.revokeObjectURL(url);
  }
}

async function start() {
  const started = performance.now();
  state.meta = await (await fetch('model.json')).json();
  ort.env.wasm.wasmPaths = new URL('node_modules/onnxruntime-web/dist/', location.href).href;
  ort.env.wasm.numThreads = 1; // threads need COOP/COEP headers a plain static server lacks
  state.session = await ort.InferenceSession.create('model.onnx', { executionProviders: ['wasm'] });
  state.loadMs = performance.now() - started;
  showCard(state.meta);
  setStatus(`Model loaded in ${state.loadMs.toFixed(0)} ms. Pick or drop an image.`);
  const input = document.getElementById('file');
  input.addEventListener('change', () => input.files[0] && classifyFile(input.files[0]));
  const drop = document.getElementById('drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    if (e.dataTransfer.files[0]) classifyFile(e.dataTransfer.files[0]);
  });
  // For tests and scripts: classify an image by URL.
  window.dermclass = {
    ready: true,
    loadMs: state.loadMs,
    classifyUrl: async (url) => classify(await loadImage(url)),
  };
}

start().catch((err) => setStatus(`The model could not be loaded: ${err.message}`));

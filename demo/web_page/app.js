// restr-d2 web demo page. All model work happens on the server (/api/predict); this script only
// sends the image and sentences, decodes the COCO RLE masks it gets back and draws them. The
// score slider and the task switch re-filter the segments already received: no new request.
"use strict";

const state = {
  info: null,
  picked: { referring: null, segmentation: null },   // {file} or {example}, plus {img}
  referring: null,       // last /api/predict response of the referring panel
  segmentation: null,    // last /api/predict response of the segmentation panel
  task: null,            // "panoptic" | "semantic" | "instance"
  threshold: 0,
  thresholdTouched: false,
  labelMap: null,        // Int32Array(H*W): index into visibleSegments, -1 = none
  visibleSegments: [],
  pinned: null,
  hovered: null,
  masks: new Map(),      // segment object -> decoded Uint8Array mask
};
window.demoState = state;  // read by the browser tests

const $ = (id) => document.getElementById(id);
// element ids of a panel start with "ref-" or "seg-"
const pid = (panel, name) => `${panel === "referring" ? "ref" : "seg"}-${name}`;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

// COCO compressed RLE (pycocotools' string form) -> Uint8Array in row-major (y * W + x) order.
function decodeRle(rle) {
  const [h, w] = rle.size;
  const s = rle.counts;
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = 1;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  const mask = new Uint8Array(h * w);
  let idx = 0, value = 0;
  for (const c of counts) {
    if (value) {
      for (let i = idx; i < idx + c; i++) {  // column-major run -> row-major pixels
        const x = Math.floor(i / h), y = i - x * h;
        mask[y * w + x] = 1;
      }
    }
    idx += c;
    value ^= 1;
  }
  return mask;
}
window.decodeRle = decodeRle;

function showError(panel, message) {
  const box = $(pid(panel, "error"));
  box.textContent = message;
  box.hidden = !message;
}

function setBusy(panel, busy, text) {
  $(pid(panel, "run")).disabled = busy;
  $(pid(panel, "status")).textContent = text || "";
}

// ---------------------------------------------------------------------------------------------
// page set-up

async function loadInfo() {
  const response = await fetch("/api/info");
  state.info = await response.json();
  renderModels();
  for (const panel of ["referring", "segmentation"]) {
    const available = panel in state.info.models;
    $(`tab-${panel}`).hidden = !available;
    renderExamples(panel);
  }
  const first = "referring" in state.info.models ? "referring" : "segmentation";
  selectTab(first);
  $("origin").textContent = window.location.origin;
  document.body.dataset.ready = "1";
}

function renderModels() {
  const box = $("models");
  box.textContent = "";
  for (const [kind, m] of Object.entries(state.info.models)) {
    const weights = m.random_init
      ? el("span", { class: "warn", text: "no trained weights: random initialisation, the predictions are noise (pass MODEL.WEIGHTS)" })
      : el("code", { text: m.weights });
    const extra = kind === "segmentation" && m.object_mask_threshold !== undefined
      ? ` · the model keeps queries scoring > ${m.object_mask_threshold}` : "";
    box.append(el("div", { class: "model", "data-kind": kind },
      el("b", { text: `${kind}: ` }), `${m.meta_architecture} `, el("code", { text: m.config_file }),
      ` on ${m.device}, dataset ${m.dataset}${extra}`, el("br"), "weights: ", weights));
  }
}

function renderExamples(panel) {
  const box = $(pid(panel, "examples"));
  box.textContent = "";
  for (const ex of state.info.examples) {
    const button = el("button", { class: "example", title: ex.title, "data-example": ex.id },
      el("img", { src: ex.url, alt: ex.title }));
    button.addEventListener("click", () => pickExample(panel, ex));
    box.append(button);
  }
}

function selectTab(panel) {
  for (const p of ["referring", "segmentation"]) {
    $(`panel-${p}`).hidden = p !== panel;
    $(`tab-${p}`).classList.toggle("active", p === panel);
  }
}

function markExample(panel, id) {
  const box = $(pid(panel, "examples"));
  for (const b of box.querySelectorAll(".example")) b.classList.toggle("selected", b.dataset.example === id);
}

function loadImage(url) {
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => resolve(null);  // the server says what is wrong with the file
    img.src = url;
  });
}

async function pickExample(panel, ex) {
  state.picked[panel] = { example: ex.id, img: await loadImage(ex.url) };
  markExample(panel, ex.id);
  if (panel === "referring") {
    showPreview(ex.url);
    if (!$("ref-sentences").value.trim() && ex.sentences.length) $("ref-sentences").value = ex.sentences.join("\n");
  } else {
    runSegmentation();
  }
}

async function pickFile(panel, file) {
  if (!file) return;
  const url = URL.createObjectURL(file);
  state.picked[panel] = { file, img: await loadImage(url) };
  markExample(panel, null);
  if (panel === "referring") showPreview(state.picked[panel].img ? url : null);
  else runSegmentation();
}

function showPreview(url) {
  const img = $("ref-preview");
  img.hidden = !url;
  if (url) img.src = url;
}

// ---------------------------------------------------------------------------------------------
// requests

async function predict(panel, fields) {
  const picked = state.picked[panel];
  const form = new FormData();
  if (!picked) throw new Error("Pick an example or upload an image first.");
  if (picked.file) form.append("image", picked.file);
  else form.append("example", picked.example);
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  let response;
  try {
    response = await fetch("/api/predict", { method: "POST", body: form });
  } catch (e) {
    throw new Error(`The server did not answer (${e.message}).`);
  }
  let body;
  try { body = await response.json(); } catch (e) { body = { error: `HTTP ${response.status}` }; }
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

async function runReferring() {
  const sentences = $("ref-sentences").value;
  showError("referring", "");
  setBusy("referring", true, "running the model…");
  document.body.dataset.referring = "running";
  try {
    const result = await predict("referring", { sentences, models: "referring" });
    state.referring = result;
    renderReferring(result);
    setBusy("referring", false, `${result.timing.seconds.toFixed(2)} s (waited ${result.timing.queued_seconds.toFixed(2)} s)`);
    document.body.dataset.referring = "done";
  } catch (e) {
    $("ref-results").textContent = "";
    showError("referring", e.message);
    setBusy("referring", false, "");
    document.body.dataset.referring = "error";
  }
}

async function runSegmentation() {
  showError("segmentation", "");
  setBusy("segmentation", true, "running the model…");
  document.body.dataset.segmentation = "running";
  try {
    const result = await predict("segmentation", { models: "segmentation" });
    state.segmentation = result;
    state.masks = new Map();
    state.pinned = null;
    renderSegmentation(result);
    setBusy("segmentation", false, `${result.timing.seconds.toFixed(2)} s (waited ${result.timing.queued_seconds.toFixed(2)} s)`);
    document.body.dataset.segmentation = "done";
  } catch (e) {
    $("seg-result").hidden = true;
    showError("segmentation", e.message);
    setBusy("segmentation", false, "");
    document.body.dataset.segmentation = "error";
  }
}

// ---------------------------------------------------------------------------------------------
// drawing

function baseImageData(img, w, h) {
  const canvas = document.createElement("canvas");
  canvas.width = w; canvas.height = h;
  const ctx = canvas.getContext("2d");
  if (img) ctx.drawImage(img, 0, 0, w, h);
  else { ctx.fillStyle = "#888"; ctx.fillRect(0, 0, w, h); }
  return ctx.getImageData(0, 0, w, h);
}

function blend(data, i, color, alpha) {
  data[4 * i] = data[4 * i] * (1 - alpha) + color[0] * alpha;
  data[4 * i + 1] = data[4 * i + 1] * (1 - alpha) + color[1] * alpha;
  data[4 * i + 2] = data[4 * i + 2] * (1 - alpha) + color[2] * alpha;
}

function renderReferring(result) {
  const box = $("ref-results");
  box.textContent = "";
  const { width: w, height: h } = result.image;
  const img = state.picked.referring && state.picked.referring.img;
  result.referring.forEach((r, k) => {
    const canvas = el("canvas", { "data-index": String(k) });
    canvas.width = w; canvas.height = h;
    const image = baseImageData(img, w, h);
    const mask = decodeRle(r.mask);
    r.decodedSum = mask.reduce((a, b) => a + b, 0);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = y * w + x;
        if (!mask[i]) continue;
        const edge = x === 0 || y === 0 || x === w - 1 || y === h - 1 || !mask[i - 1] || !mask[i + 1] || !mask[i - w] || !mask[i + w];
        blend(image.data, i, edge ? [0, 90, 20] : [0, 230, 80], edge ? 0.9 : 0.5);
      }
    }
    canvas.getContext("2d").putImageData(image, 0, 0);
    const tokens = el("div", { class: "tokens" });
    for (const t of r.tokens) {
      tokens.append(el("span", { class: t.unknown ? "token unk" : "token", title: t.unknown ? `not in the vocabulary: read as ${t.token}` : t.token, text: t.text }));
    }
    for (const t of r.truncated) tokens.append(el("span", { class: "token cut", title: "beyond the model's token limit: ignored", text: t }));
    const unknown = r.unknown_words.length
      ? el("div", { class: "unknown", text: `unknown to the model (<unk>): ${r.unknown_words.join(", ")}` })
      : el("div", { class: "muted", text: "every word is in the model's vocabulary" });
    box.append(el("div", { class: "card", "data-sentence": r.sentence },
      canvas,
      el("div", { class: "sentence", text: r.sentence }),
      el("div", { class: "muted", text: `score ${r.score.toFixed(3)} · ${r.area} pixels` }),
      tokens, unknown));
  });
}

function defaultThreshold(task) {
  if (state.info.confidence_threshold !== null && state.info.confidence_threshold !== undefined) return state.info.confidence_threshold;
  return task === "instance" ? 0.5 : 0;
}

function renderSegmentation(result) {
  $("seg-result").hidden = false;
  const tasks = Object.keys(result.segmentation);
  if (!tasks.includes(state.task)) state.task = tasks[0];
  const row = $("seg-tasks");
  row.textContent = "";
  for (const t of tasks) {
    const input = el("input", { type: "radio", name: "seg-task", value: t, id: `seg-task-${t}` });
    input.checked = t === state.task;
    input.addEventListener("change", () => {
      state.task = t; state.pinned = null;
      if (!state.thresholdTouched) setThreshold(defaultThreshold(t));
      drawSegmentation();
    });
    row.append(el("label", {}, input, ` ${t}`));
  }
  if (!state.thresholdTouched) setThreshold(defaultThreshold(state.task));
  const segments = result.segmentation[state.task].segments;
  const maxScore = Math.max(1, ...segments.map((s) => s.score || 0));
  $("seg-threshold").max = String(Math.ceil(maxScore * 100) / 100);
  drawSegmentation();
}

function setThreshold(value) {
  state.threshold = value;
  $("seg-threshold").value = String(value);
  $("seg-threshold-value").textContent = value.toFixed(2);
}

function maskOf(segment) {
  if (!state.masks.has(segment)) state.masks.set(segment, decodeRle(segment.mask));
  return state.masks.get(segment);
}

function drawSegmentation() {
  const result = state.segmentation;
  if (!result) return;
  const { width: w, height: h } = result.image;
  const all = result.segmentation[state.task].segments;
  // instances may overlap: the higher-scoring one is drawn (and hovered) on top
  const visible = all.filter((s) => (s.score === null ? 1 : s.score) >= state.threshold)
    .sort((a, b) => (a.score || 0) - (b.score || 0));
  state.visibleSegments = visible;
  const labels = new Int32Array(w * h).fill(-1);
  visible.forEach((s, k) => {
    const m = maskOf(s);
    for (let i = 0; i < m.length; i++) if (m[i]) labels[i] = k;
  });
  state.labelMap = labels;
  const canvas = $("seg-canvas");
  canvas.width = w; canvas.height = h;
  const image = baseImageData(state.picked.segmentation && state.picked.segmentation.img, w, h);
  const focus = state.pinned !== null ? state.pinned : state.hovered;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x, k = labels[i];
      if (k < 0) continue;
      const edge = (x > 0 && labels[i - 1] !== k) || (y > 0 && labels[i - w] !== k);
      const alpha = edge ? 0.95 : (focus === null ? 0.5 : (visible[k] === focus ? 0.7 : 0.2));
      blend(image.data, i, edge ? [255, 255, 255] : visible[k].color, alpha);
    }
  }
  canvas.getContext("2d").putImageData(image, 0, 0);
  $("seg-count").textContent = `${visible.length} of ${all.length} ${state.task} segments shown`;
  renderLegend(all, visible, focus);
  renderSelected(focus);
}

function renderLegend(all, visible, focus) {
  const body = $("seg-legend");
  body.textContent = "";
  const sorted = [...all].sort((a, b) => (b.score || 0) - (a.score || 0));
  for (const s of sorted) {
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = `rgb(${s.color.join(",")})`;
    const tr = el("tr", { class: (visible.includes(s) ? "" : "hidden-seg ") + (s === focus ? "active" : ""), "data-segment": String(s.id) },
      el("td", {}, swatch), el("td", { text: s.class }),
      el("td", { text: s.score === null ? "–" : s.score.toFixed(3) }), el("td", { text: String(s.area) }));
    tr.addEventListener("mouseenter", () => { if (visible.includes(s)) { state.hovered = s; drawSegmentation(); } });
    body.append(tr);
  }
}

function renderSelected(segment) {
  const box = $("seg-selected");
  if (!segment) { box.textContent = "hover or click a segment"; box.className = "selected muted"; return; }
  box.className = "selected";
  box.textContent = `${segment.class} · score ${segment.score === null ? "–" : segment.score.toFixed(3)} · ${segment.area} px` +
    (state.pinned === segment ? " (pinned; click again to release)" : "");
}

function segmentAt(event) {
  const canvas = $("seg-canvas");
  const rect = canvas.getBoundingClientRect();
  const x = Math.floor((event.clientX - rect.left) / rect.width * canvas.width);
  const y = Math.floor((event.clientY - rect.top) / rect.height * canvas.height);
  if (!state.labelMap || x < 0 || y < 0 || x >= canvas.width || y >= canvas.height) return null;
  const k = state.labelMap[y * canvas.width + x];
  return k < 0 ? null : state.visibleSegments[k];
}

function onHover(event) {
  const segment = segmentAt(event);
  const label = $("seg-hover");
  if (segment) {
    const rect = $("seg-canvas").getBoundingClientRect();
    label.hidden = false;
    label.textContent = `${segment.class} ${segment.score === null ? "" : segment.score.toFixed(2)}`;
    label.style.left = `${event.clientX - rect.left + 12}px`;
    label.style.top = `${event.clientY - rect.top + 12}px`;
  } else {
    label.hidden = true;
  }
  if (segment !== state.hovered) { state.hovered = segment; drawSegmentation(); }
}

function onClick(event) {
  const segment = segmentAt(event);
  state.pinned = segment && segment !== state.pinned ? segment : null;
  drawSegmentation();
}

// ---------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  for (const panel of ["referring", "segmentation"]) $(`tab-${panel}`).addEventListener("click", () => selectTab(panel));
  $("ref-file").addEventListener("change", (e) => pickFile("referring", e.target.files[0]));
  $("seg-file").addEventListener("change", (e) => pickFile("segmentation", e.target.files[0]));
  $("ref-run").addEventListener("click", runReferring);
  $("seg-run").addEventListener("click", runSegmentation);
  $("ref-sentences").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) runReferring(); });
  $("seg-threshold").addEventListener("input", (e) => {
    state.thresholdTouched = true;
    setThreshold(parseFloat(e.target.value));
    if (state.pinned && !state.visibleSegments.includes(state.pinned)) state.pinned = null;
    drawSegmentation();
  });
  const canvas = $("seg-canvas");
  canvas.addEventListener("mousemove", onHover);
  canvas.addEventListener("mouseleave", () => { $("seg-hover").hidden = true; state.hovered = null; drawSegmentation(); });
  canvas.addEventListener("click", onClick);
  loadInfo().catch((e) => { $("models").textContent = `Cannot reach the server: ${e.message}`; });
});

"""The review page's HTML, CSS and JavaScript (glipcli.review fills in the data): plain, offline, no library."""

TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>glip review</title>
<style>
:root { --bg: #f6f7f9; --fg: #1d2433; --muted: #667085; --line: #d9dde5; --accent: #2563eb; }
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
header { padding: 10px 16px; background: #fff; border-bottom: 1px solid var(--line);
  display: flex; gap: 16px; align-items: baseline; flex-wrap: wrap; }
header h1 { font-size: 16px; margin: 0; }
header .stats { color: var(--muted); }
main { display: grid; grid-template-columns: 290px 1fr; gap: 0; min-height: calc(100vh - 42px); }
aside { background: #fff; border-right: 1px solid var(--line); padding: 12px; overflow-y: auto; }
aside h2 { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 14px 0 6px; }
.cls { display: grid; grid-template-columns: 16px 12px 1fr auto; gap: 6px; align-items: center; padding: 2px 0; }
.cls .swatch { width: 12px; height: 12px; border-radius: 2px; }
.cls .n { color: var(--muted); font-variant-numeric: tabular-nums; }
.cls svg { grid-column: 3 / 5; }
.axis { display: flex; justify-content: space-between; width: 260px; color: var(--muted); font-size: 11px; }
.row { display: flex; gap: 8px; align-items: center; margin: 4px 0; }
.row input[type=number] { width: 64px; }
button, select, input { font: inherit; }
button { padding: 3px 8px; border: 1px solid var(--line); background: #fff; border-radius: 4px; cursor: pointer; }
button:disabled { opacity: .4; cursor: default; }
section.content { padding: 12px 16px; }
.status { display: flex; gap: 12px; align-items: center; margin-bottom: 10px; flex-wrap: wrap; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 10px; align-items: start; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; overflow: hidden; }
.thumb { position: relative; background: #e9ecf1; }
.thumb img { display: block; width: 100%; height: auto; }
.thumb svg { position: absolute; inset: 0; width: 100%; height: 100%; }
.thumb rect { fill: none; stroke-width: 2; vector-effect: non-scaling-stroke; }
.meta { padding: 4px 6px; display: flex; justify-content: space-between; gap: 6px; }
.meta a { color: var(--fg); text-decoration: none; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.meta a:hover { color: var(--accent); text-decoration: underline; }
.meta .low { color: var(--muted); font-variant-numeric: tabular-nums; white-space: nowrap; }
table { border-collapse: collapse; width: 100%; }
td, th { text-align: left; vertical-align: top; padding: 2px 6px 2px 0; border-bottom: 1px solid #eef0f4;
  word-break: break-word; }
th { color: var(--muted); font-weight: normal; white-space: nowrap; }
details { margin-top: 16px; background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; }
summary { cursor: pointer; font-weight: 600; }
.empty { color: var(--muted); padding: 24px; }
</style>
</head>
<body>
<header><h1 id="title">glip review</h1><span class="stats" id="totals"></span></header>
<main>
<aside>
  <h2>Score</h2>
  <div class="row">min <input id="min" type="number" min="0" max="1" step="0.05" value="0">
    max <input id="max" type="number" min="0" max="1" step="0.05" value="1"></div>
  <h2>Sort</h2>
  <select id="sort">
    <option value="low">lowest confidence first</option>
    <option value="high">highest confidence first</option>
    <option value="boxes">most boxes first</option>
    <option value="name">file name</option>
  </select>
  <h2>Classes <button id="all" type="button">all</button> <button id="none" type="button">none</button></h2>
  <div id="classes"></div>
  <h2>All scores</h2>
  <div id="histogram"></div>
</aside>
<section class="content">
  <div class="status">
    <span><b id="match-images">0</b> images, <b id="match-boxes">0</b> boxes match</span>
    <button id="prev" type="button">&#8592; prev</button>
    <span>page <b id="page">1</b> of <b id="pages">1</b></span>
    <button id="next" type="button">next &#8594;</button>
    <span class="stats">(<span id="page-boxes">0</span> boxes on this page)</span>
  </div>
  <div class="grid" id="grid"></div>
  <details id="skipped-box"><summary>Skipped files (<span id="skipped-count">0</span>)</summary>
    <table id="skipped"></table></details>
  <details id="settings-box" open><summary>Run settings</summary><table id="settings"></table></details>
</section>
</main>
<script id="data" type="application/json">/*DATA*/null</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const PAGE = 60, BINS = 10;
const $ = (id) => document.getElementById(id);
const NS = "http://www.w3.org/2000/svg";
const colour = (c) => `hsl(${(c * 137.508) % 360} 80% 45%)`;
const el = (tag, attrs = {}, text) => {
  const svgTag = tag === "svg" || tag === "rect" || tag === "title";
  const e = svgTag ? document.createElementNS(NS, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};
const fmt = (s) => (s === null ? "-" : s.toFixed(2));
const state = { classes: new Set(D.classes.map((_, i) => i)), min: 0, max: 1, sort: "low", page: 1 };

function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  if (p.has("classes")) {
    const wanted = p.get("classes").split(",").filter((s) => s !== "");
    state.classes = new Set(D.classes.map((c, i) => (wanted.includes(c) ? i : -1)).filter((i) => i >= 0));
  }
  for (const key of ["min", "max"]) {
    if (p.has(key) && !isNaN(parseFloat(p.get(key)))) state[key] = parseFloat(p.get(key));
  }
  if (p.has("sort")) state.sort = p.get("sort");
  if (p.has("page")) state.page = Math.max(1, parseInt(p.get("page"), 10) || 1);
}

function writeHash() {
  const p = new URLSearchParams();
  if (state.classes.size !== D.classes.length) p.set("classes", [...state.classes].map((i) => D.classes[i]).join(","));
  if (state.min > 0) p.set("min", state.min);
  if (state.max < 1) p.set("max", state.max);
  if (state.sort !== "low") p.set("sort", state.sort);
  if (state.page > 1) p.set("page", state.page);
  history.replaceState(null, "", p.toString() ? "#" + p.toString() : location.pathname + location.search);
}

function passes(box) {
  const s = box[1] === null ? 1 : box[1];
  return state.classes.has(box[0]) && s >= state.min && s <= state.max;
}

function matching() {
  const everyClass = state.classes.size === D.classes.length;
  const rows = [];
  D.images.forEach((image, index) => {
    const boxes = image[4].filter(passes);
    if (boxes.length || (everyClass && image[4].length === 0)) {
      const scores = boxes.map((b) => (b[1] === null ? 1 : b[1]));
      const [low, high] = scores.length ? [Math.min(...scores), Math.max(...scores)] : [null, null];
      rows.push({ index, boxes, low, high });
    }
  });
  const last = (v, dflt) => (v === null ? dflt : v);
  const name = (r) => D.images[r.index][0];
  const order = {
    low: (a, b) => last(a.low, 2) - last(b.low, 2) || name(a).localeCompare(name(b)),
    high: (a, b) => last(b.high, -1) - last(a.high, -1) || name(a).localeCompare(name(b)),
    boxes: (a, b) => b.boxes.length - a.boxes.length || name(a).localeCompare(name(b)),
    name: (a, b) => (name(a) < name(b) ? -1 : name(a) > name(b) ? 1 : 0),
  };
  rows.sort(order[state.sort] || order.low);
  return rows;
}

function card(row) {
  const [file, w, h, thumb] = D.images[row.index];
  const div = el("div", { class: "card", "data-file": file });
  const box = el("div", { class: "thumb", style: `aspect-ratio: ${w} / ${h}` });
  if (thumb) box.appendChild(el("img", { src: thumb, alt: file, width: w, height: h }));
  const svg = el("svg", { viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: "none" });
  for (const b of row.boxes) {
    const r = el("rect", { class: "box", "data-class": D.classes[b[0]], "data-score": b[1] === null ? "" : b[1],
      x: b[2], y: b[3], width: b[4], height: b[5], stroke: colour(b[0]) });
    r.appendChild(el("title", {}, `${D.classes[b[0]]} ${fmt(b[1])}`));
    svg.appendChild(r);
  }
  box.appendChild(svg);
  div.appendChild(box);
  const meta = el("div", { class: "meta" });
  meta.appendChild(el("a", { href: encodeURI(D.folder + "/" + file), title: file, target: "_blank" }, file));
  meta.appendChild(el("span", { class: "low", title: "lowest score, boxes" }, `${fmt(row.low)} · ${row.boxes.length}`));
  div.appendChild(meta);
  return div;
}

function histogram(scores, width, height, fill) {
  const counts = new Array(BINS).fill(0);
  for (const s of scores) counts[Math.min(BINS - 1, Math.floor(s * BINS))]++;
  const top = Math.max(1, ...counts);
  const svg = el("svg", { width, height, viewBox: `0 0 ${BINS * 10} ${height}`, preserveAspectRatio: "none" });
  counts.forEach((n, i) => {
    const tall = (n / top) * height;
    const bar = el("rect", { x: i * 10 + 1, y: height - tall, width: 8, height: tall, fill });
    bar.appendChild(el("title", {}, `${(i / BINS).toFixed(1)}-${((i + 1) / BINS).toFixed(1)}: ${n}`));
    svg.appendChild(bar);
  });
  return svg;
}

function sidebar() {
  const perClass = D.classes.map(() => []);
  for (const image of D.images) for (const b of image[4]) perClass[b[0]].push(b[1] === null ? 1 : b[1]);
  const list = $("classes");
  D.classes.forEach((name, i) => {
    const row = el("label", { class: "cls", "data-class": name });
    const check = el("input", { type: "checkbox", "data-index": i });
    check.checked = state.classes.has(i);
    check.addEventListener("change", () => {
      check.checked ? state.classes.add(i) : state.classes.delete(i);
      state.page = 1;
      render();
    });
    row.append(check, el("span", { class: "swatch", style: `background:${colour(i)}` }), el("span", {}, name),
      el("span", { class: "n", title: "boxes" }, String(perClass[i].length)));
    if (D.scored) row.appendChild(histogram(perClass[i], 200, 18, colour(i)));
    list.appendChild(row);
  });
  $("histogram").append(histogram(perClass.flat(), 260, 50, "#2563eb"), el("div", { class: "axis" }));
  for (const tick of ["0", "0.5", "1"]) $("histogram").lastChild.appendChild(el("span", {}, tick));
}

function tables() {
  const settings = $("settings");
  const add = (table, k, v) => {
    const tr = el("tr");
    tr.append(el("th", {}, k), el("td", {}, v));
    table.appendChild(tr);
  };
  const flat = (v) => (typeof v === "object" && v !== null ? JSON.stringify(v) : String(v));
  for (const [k, v] of Object.entries(D.info || {})) add(settings, k, flat(v));
  if (D.metrics) for (const [k, v] of Object.entries(D.metrics)) add(settings, "eval: " + k, flat(v));
  $("skipped-count").textContent = D.skipped.length;
  for (const s of D.skipped) add($("skipped"), s.file, s.reason);
  if (!D.skipped.length) $("skipped-box").style.display = "none";
}

function render() {
  const rows = matching();
  const pages = Math.max(1, Math.ceil(rows.length / PAGE));
  state.page = Math.min(state.page, pages);
  const shown = rows.slice((state.page - 1) * PAGE, state.page * PAGE);
  const grid = $("grid");
  grid.replaceChildren(...shown.map(card));
  if (!shown.length) grid.appendChild(el("div", { class: "empty" }, "No image matches these filters."));
  $("match-images").textContent = rows.length;
  $("match-boxes").textContent = rows.reduce((n, r) => n + r.boxes.length, 0);
  $("page-boxes").textContent = shown.reduce((n, r) => n + r.boxes.length, 0);
  $("page").textContent = state.page;
  $("pages").textContent = pages;
  $("prev").disabled = state.page <= 1;
  $("next").disabled = state.page >= pages;
  for (const c of document.querySelectorAll("#classes input")) c.checked = state.classes.has(+c.dataset.index);
  $("min").value = state.min; $("max").value = state.max; $("sort").value = state.sort;
  writeHash();
}

readHash();
document.title = "glip review: " + D.title;
$("title").textContent = "glip review: " + D.title;
const boxCount = D.images.reduce((n, i) => n + i[4].length, 0);
const info = D.info || {};
$("totals").textContent =
  `${D.images.length} images, ${boxCount} boxes, ${D.classes.length} classes, ${D.skipped.length} skipped` +
  (info.model ? ` · ${info.model}` : "") + (info.prompt ? ` · "${info.prompt}"` : "");
sidebar();
tables();
$("min").addEventListener("change", (e) => { state.min = parseFloat(e.target.value) || 0; state.page = 1; render(); });
$("max").addEventListener("change", (e) => {
  state.max = parseFloat(e.target.value);
  if (isNaN(state.max)) state.max = 1;
  state.page = 1;
  render();
});
$("sort").addEventListener("change", (e) => { state.sort = e.target.value; state.page = 1; render(); });
$("prev").addEventListener("click", () => { state.page--; render(); window.scrollTo(0, 0); });
$("next").addEventListener("click", () => { state.page++; render(); window.scrollTo(0, 0); });
$("all").addEventListener("click", () => {
  state.classes = new Set(D.classes.map((_, i) => i));
  state.page = 1;
  render();
});
$("none").addEventListener("click", () => { state.classes = new Set(); state.page = 1; render(); });
window.addEventListener("hashchange", () => { readHash(); render(); });
render();
document.body.dataset.renderMs = performance.now().toFixed(0);
</script>
</body>
</html>
"""

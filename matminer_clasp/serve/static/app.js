// matminer-clasp search page: query /api/search, fill the table, highlight hits on the map.
"use strict";

const $ = (id) => document.getElementById(id);
let mapData = null;

function setStatus(text, isError) {
  const el = $("status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

async function getJSON(url, options) {
  const resp = await fetch(url, options);
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    const detail = body && body.detail ? body.detail : resp.statusText;
    throw new Error(detail);
  }
  return body;
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  td.textContent = text === null || text === undefined ? "" : String(text);
  row.appendChild(td);
  return td;
}

function describe(hit) {
  const parts = [];
  if (hit.mineral && hit.mineral !== "None") parts.push(hit.mineral);
  if (hit.title && hit.title !== "None") parts.push(hit.title);
  return parts.join(" \u2014 ");
}

function fillTable(results) {
  const body = $("results").querySelector("tbody");
  body.replaceChildren();
  for (const hit of results) {
    const tr = document.createElement("tr");
    tr.dataset.id = hit.id;
    cell(tr, hit.rank, "rank");
    cell(tr, hit.id, "id");
    cell(tr, hit.formula, "formula");
    const title = document.createElement("div");
    title.textContent = describe(hit);
    title.title = describe(hit);
    cell(tr, "", "title").appendChild(title);
    cell(tr, hit.score.toFixed(4), "score");
    const td = cell(tr, "", "cif");
    const a = document.createElement("a");
    a.href = "/api/structure/" + encodeURIComponent(hit.id);
    a.textContent = "CIF";
    a.className = "cif-link";
    td.appendChild(a);
    body.appendChild(tr);
  }
}

function drawMap(hits) {
  const canvas = $("map");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 12;
  ctx.clearRect(0, 0, w, h);
  if (!mapData || !mapData.x.length) return;
  const px = (x) => pad + x * (w - 2 * pad);
  const py = (y) => h - pad - y * (h - 2 * pad);
  ctx.fillStyle = "rgba(120, 120, 140, 0.35)";
  for (let i = 0; i < mapData.x.length; i++) {
    ctx.fillRect(px(mapData.x[i]) - 1, py(mapData.y[i]) - 1, 2, 2);
  }
  if (!hits) return;
  for (let i = hits.length - 1; i >= 0; i--) {
    const hit = hits[i];
    if (hit.x === undefined) continue;
    ctx.beginPath();
    ctx.arc(px(hit.x), py(hit.y), i === 0 ? 6 : 4, 0, 2 * Math.PI);
    ctx.fillStyle = i === 0 ? "#d62728" : "rgba(230, 85, 13, 0.85)";
    ctx.fill();
    ctx.strokeStyle = "#fff";
    ctx.stroke();
  }
}

async function search(event) {
  if (event) event.preventDefault();
  const q = $("q").value.trim();
  if (!q) { setStatus("Type a query first.", true); return; }
  const k = $("k").value || "20";
  setStatus("Searching\u2026", false);
  const t0 = performance.now();
  try {
    const data = await getJSON("/api/search?q=" + encodeURIComponent(q) + "&k=" + encodeURIComponent(k));
    fillTable(data.results);
    drawMap(data.results);
    const ms = Math.round(performance.now() - t0);
    setStatus(data.results.length + " results for \u201c" + data.query + "\u201d (" + ms + " ms)", false);
    history.replaceState(null, "", "?q=" + encodeURIComponent(q) + "&k=" + encodeURIComponent(k));
  } catch (err) {
    setStatus(err.message, true);
  }
}

async function init() {
  $("search-form").addEventListener("submit", search);
  try {
    const health = await getJSON("/api/health");
    $("health").textContent = health.n + " structures \u00b7 model " + health.model;
    mapData = await getJSON("/api/map");
    $("map-caption").textContent = mapData.method
      ? "Embedding map (" + mapData.method.toUpperCase() + ", " + mapData.x.length + " of " + mapData.n + " points); hits in orange, best in red."
      : "No embedding map (started with --map none).";
    drawMap(null);
  } catch (err) {
    setStatus("Service not reachable: " + err.message, true);
  }
  const params = new URLSearchParams(location.search);
  if (params.get("q")) {
    $("q").value = params.get("q");
    if (params.get("k")) $("k").value = params.get("k");
    search();
  }
}

init();

/* The attention page's script (tinygpt). attn_views.c writes it into the page after its inert
   data blocks:
     "meta"    JSON: shapes, the prompt's length, the model, first_visible[l][i] (the first key
               query i sees in layer l: layers may differ, e.g. Gemma 3's local and global ones), each head's atlas statistics, the probe, the measured cost, vscale
     "toks"    JSON: each position's token
     "explain" JSON: one query through the formula (--attn-explain), or null
     "weights" one line of base64 per map (layer-major): the lower triangle as bytes round(255 p),
               rows i = 0 .. T-1 of i + 1 keys, a run of zeros written as 0 then its length
     "vnorms"  base64: per map, T bytes round(255 n_j / vscale), n_j = ||W_O,h v_j||
   It draws from them; it asks for nothing. Maps are decoded when first drawn, and the model
   view's thumbnails are drawn when they scroll into sight, so large runs stay usable. */
"use strict";
const $ = id => document.getElementById(id);
function report(msg) { $("status").textContent = msg; document.title = msg; }
window.onerror = (msg, src, line) => { report("error: " + msg + " (line " + line + ")"); };
document.addEventListener("securitypolicyviolation", e => report("error: blocked " + e.blockedURI));
const t0 = performance.now();
const meta = JSON.parse($("meta").textContent);
const toks = JSON.parse($("toks").textContent);
const explain = JSON.parse($("explain").textContent);
const L = meta.layers, H = meta.heads, T = meta.positions, W = meta.window, first = meta.first_visible;
const TRI = T * (T + 1) / 2;
const lines = $("weights").textContent.split("\n").filter(s => s.length > 0);
if (lines.length !== L * H || toks.length !== T || first.length !== L || first.some(f => f.length !== T))
  throw new Error("data: " + lines.length + " maps, " + toks.length + " tokens, " + first.length +
                  " layers of first keys; expected " + L * H + ", " + T + ", " + L + " of " + T);
function bytes(b64) {
  const s = atob(b64), out = new Uint8Array(s.length);
  for (let k = 0; k < s.length; k++) out[k] = s.charCodeAt(k);
  return out;
}
/* map k's lower triangle, 0 .. 255 per cell, decoded once */
const maps = new Array(L * H);
function weights(k) {
  if (maps[k]) return maps[k];
  const rle = bytes(lines[k]), out = new Uint8Array(TRI);
  let w = 0;
  for (let r = 0; r < rle.length; r++) {
    if (rle[r] === 0) w += rle[++r];  /* a run of zeros (the array starts zeroed) */
    else out[w++] = rle[r];
  }
  if (w !== TRI) throw new Error("map " + k + " decodes to " + w + " cells, expected " + TRI);
  return maps[k] = out;
}
const vn = meta.vscale ? bytes($("vnorms").textContent.replace(/\s+/g, "")) : null;
if (vn && vn.length !== L * H * T) throw new Error("vnorms: " + vn.length + " bytes, expected " + L * H * T);
/* value-weighted map k: p_ij ||W_O,h v_j|| per cell, scaled to its largest cell = 255 */
const vmaps = new Array(L * H), vmax = new Float64Array(L * H);
function valueWeighted(k) {
  if (vmaps[k]) return vmaps[k];
  const p = weights(k), out = new Uint8Array(TRI), f = new Float32Array(TRI);
  let mx = 0;
  for (let i = 0, c = 0; i < T; i++)
    for (let j = 0; j <= i; j++, c++) {
      f[c] = p[c] / 255 * vn[k * T + j] / 255 * meta.vscale[k];
      if (f[c] > mx) mx = f[c];
    }
  for (let c = 0; c < TRI; c++) out[c] = mx > 0 ? Math.round(255 * f[c] / mx) : 0;
  vmax[k] = mx;
  return vmaps[k] = out;
}
let mode = "p";  /* "p": the weights; "v": value-weighted */
const cells = k => mode === "v" ? valueWeighted(k) : weights(k);
const rowStart = i => i * (i + 1) / 2;
/* the shown value of query i on key j (j <= i) in head (l, h), 0 .. 255 */
const q8 = (l, h, i, j) => cells(l * H + h)[rowStart(i) + j];
/* the future, or a key before the query's window (the C side computed where it starts) */
const masked = (l, i, j) => j > i || j < first[l][i];
/* tokens made visible: spaces, newlines, tabs and other controls get marks */
function shown(s) {
  return s.replace(/ /g, "\u00b7").replace(/\n/g, "\u21b5").replace(/\t/g, "\u2192")
          .replace(/[\u0000-\u001f\u007f-\u009f]/g, c => "\\x" + c.charCodeAt(0).toString(16).padStart(2, "0"))
          || "\u2205";
}
const labels = toks.map(t => shown(t.text));
/* colour ramp (ColorBrewer Blues), a lookup table per scale */
const STOPS = [[247, 251, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107]];
function ramp(v) {
  const x = v * (STOPS.length - 1), k = Math.min(Math.floor(x), STOPS.length - 2), f = x - k;
  return STOPS[k].map((c, m) => Math.round(c + f * (STOPS[k + 1][m] - c)));
}
const LUT = {};
for (const s of ["lin", "sqrt"]) {
  LUT[s] = [];
  for (let b = 0; b < 256; b++) LUT[s].push(ramp(s === "lin" ? b / 255 : Math.sqrt(b / 255)));
}
const MASK = [222, 222, 222];
/* the coref probe: the maps are its first sentence's; open on the best head at the pronoun */
const coref = meta.coref || null;
function corefBest() {
  let b = 0;
  for (let k = 1; k < coref.hits.length; k++)
    if (coref.hits[k] > coref.hits[b] || (coref.hits[k] === coref.hits[b] && coref.vhits[k] > coref.vhits[b])) b = k;
  return b;
}
const k0 = coref ? corefBest() : 0;
const state = { l: Math.floor(k0 / H), h: k0 % H, i: explain ? explain.pos : coref ? coref.pron : T - 1 };
if (explain) { state.l = explain.layer; state.h = explain.head; }
let lut = LUT.lin;
/* an image of head (l, h) of side n <= T: cell (y, x) shows the largest value among the cells it
   covers (so a sharp head stays visible in a small thumbnail); masked cells get maskRGB, or stay
   transparent when it is null */
function paint(canvas, l, h, maskRGB, n) {
  canvas.width = n; canvas.height = n;
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(n, n), d = img.data;
  const c = cells(l * H + h), best = new Int16Array(n * n).fill(-1);
  for (let i = 0; i < T; i++) {
    const y = Math.floor(i * n / T), row = rowStart(i);
    for (let j = first[l][i]; j <= i; j++) {
      const o = y * n + Math.floor(j * n / T);
      if (c[row + j] > best[o]) best[o] = c[row + j];
    }
  }
  for (let o = 0; o < n * n; o++) {
    const col = best[o] >= 0 ? lut[best[o]] : maskRGB;
    if (!col) continue;
    d[4 * o] = col[0]; d[4 * o + 1] = col[1]; d[4 * o + 2] = col[2]; d[4 * o + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}
function fmt(i) { return i + " " + JSON.stringify(labels[i]); }
const tip = $("tip");
function showTip(e, text) {
  tip.textContent = text; tip.style.display = "block";
  tip.style.left = (e.clientX + 14) + "px"; tip.style.top = (e.clientY + 14) + "px";
}
function hideTip() { tip.style.display = "none"; }
function cellText(l, h, i, j) {
  const where = "layer " + l + " head " + h + "\nquery " + fmt(i) + "\nkey   " + fmt(j) + "\n";
  if (masked(l, i, j)) return where + (j > i ? "masked: the future" : "masked: outside the window");
  const k = l * H + h, p = weights(k)[rowStart(i) + j] / 255;
  let s = where + "weight " + p.toFixed(3);
  if (vn) s += "\n|p W_O v| " + (p * vn[k * T + j] / 255 * meta.vscale[k]).toPrecision(3) +
               " (|W_O v_j| " + (vn[k * T + j] / 255 * meta.vscale[k]).toPrecision(3) + ")";
  return s;
}
/* tokens */
const tokSpans = toks.map((t, i) => {
  const s = document.createElement("span");
  s.textContent = labels[i];
  if (i >= meta.prompt) s.classList.add("gen");
  if (t.special) s.classList.add("special");
  if (coref && coref.ant.includes(i)) s.classList.add("ant");
  if (coref && i === coref.pron) s.classList.add("pron");
  s.title = "position " + i;
  s.onclick = () => { state.i = i; drawQuery(); drawTokens(); };
  $("tokens").appendChild(s);
  return s;
});
/* the selected query's weights in the selected head, as token backgrounds */
function drawTokens() {
  tokSpans.forEach((s, j) => {
    s.classList.toggle("sel", j === state.i);
    if (masked(state.l, state.i, j)) { s.style.background = ""; return; }
    const c = lut[q8(state.l, state.h, state.i, j)];
    s.style.background = "rgb(" + c + ")";
    s.style.color = c[0] < 120 ? "#fff" : "";
  });
}
/* model view: every layer x head, each thumbnail drawn when it first comes into sight */
const thumbPx = Math.max(24, Math.min(96, Math.floor(900 / H) - 6));
const thumbRes = Math.min(T, Math.ceil(thumbPx * (window.devicePixelRatio || 1)));
const grid = $("grid");
grid.style.gridTemplateColumns = "auto repeat(" + H + ", " + (thumbPx + 4) + "px)";
grid.appendChild(document.createElement("div"));
for (let h = 0; h < H; h++) { const d = document.createElement("div"); d.textContent = "h" + h; grid.appendChild(d); }
const thumbs = [], drawn = new Uint8Array(L * H);
function roleOf(k) { return meta.stats ? meta.stats[k][meta.stats[k].length - 1] : ""; }
for (let l = 0; l < L; l++) {
  const d = document.createElement("div"); d.textContent = "L" + l; grid.appendChild(d);
  for (let h = 0; h < H; h++) {
    const c = document.createElement("canvas");
    c.className = "thumb"; c.style.width = c.style.height = thumbPx + "px";
    c.title = "layer " + l + " head " + h + (roleOf(l * H + h) ? ": " + roleOf(l * H + h) : "");
    if (roleOf(l * H + h) === "induction") c.classList.add("induction");
    if (roleOf(l * H + h) === "coref") c.classList.add("coref");
    c.dataset.k = l * H + h;
    c.onclick = () => select(l, h);
    grid.appendChild(c);
    thumbs.push(c);
  }
}
function drawThumb(k) { paint(thumbs[k], Math.floor(k / H), k % H, MASK, thumbRes); drawn[k] = 1; }
const seen = new Set();  /* thumbnails in sight */
const observer = "IntersectionObserver" in window ? new IntersectionObserver(entries => {
  for (const e of entries) {
    const k = +e.target.dataset.k;
    if (e.isIntersecting) { seen.add(k); if (!drawn[k]) drawThumb(k); } else seen.delete(k);
  }
}) : null;
function drawThumbs() {
  drawn.fill(0);
  if (!observer) { for (let k = 0; k < L * H; k++) drawThumb(k); return; }
  for (const k of seen) drawThumb(k);
}
thumbs.forEach(c => observer ? observer.observe(c) : null);
/* the chosen head, large, token labels on both axes when the cells are big enough for them */
const big = $("big"), off = document.createElement("canvas");
const cell = T <= 30 ? 22 : T <= 60 ? 14 : T <= 120 ? 10 : T <= 250 ? 5 : T <= 400 ? 3 : 2;
const bigLabels = cell >= 8;
let margin = 0;
function hatch(ctx) {
  const p = document.createElement("canvas"); p.width = p.height = 6;
  const c = p.getContext("2d");
  c.fillStyle = "#eee"; c.fillRect(0, 0, 6, 6);
  c.strokeStyle = "#bbb"; c.beginPath(); c.moveTo(0, 6); c.lineTo(6, 0); c.stroke();
  return ctx.createPattern(p, "repeat");
}
function drawBig() {
  const font = Math.min(12, cell - 1) + "px monospace";
  let ctx = big.getContext("2d");
  ctx.font = font;
  margin = bigLabels ? 8 + Math.min(140, Math.max(...labels.map((s, i) => ctx.measureText(i + " " + s).width))) : 4;
  big.width = big.height = margin + T * cell;
  ctx = big.getContext("2d");
  ctx.fillStyle = hatch(ctx); ctx.fillRect(margin, margin, T * cell, T * cell);
  paint(off, state.l, state.h, null, T);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, margin, margin, T * cell, T * cell);
  if (bigLabels) {
    ctx.font = font; ctx.textBaseline = "middle";
    for (let i = 0; i < T; i++) {
      ctx.fillStyle = i === state.i ? "#d33" : i >= meta.prompt ? "#269" : "#222";
      ctx.textAlign = "right";
      ctx.fillText(i + " " + labels[i], margin - 4, margin + (i + 0.5) * cell, margin - 6);
      ctx.save(); ctx.translate(margin + (i + 0.5) * cell, margin - 4); ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "left"; ctx.fillText(i + " " + labels[i], 0, 0, margin - 6); ctx.restore();
    }
  }
  if (coref) { /* the pronoun's row, and its cells on the antecedent */
    ctx.lineWidth = 2; ctx.strokeStyle = "#d33";
    ctx.strokeRect(margin, margin + coref.pron * cell, (coref.pron + 1) * cell, cell);
    ctx.strokeStyle = "#2a2";
    for (const j of coref.ant) ctx.strokeRect(margin + j * cell + 1, margin + coref.pron * cell + 1, cell - 2, cell - 2);
  }
  const what = mode === "v" ? "value-weighted |p W_O v|, scaled to the head's largest cell" : "weights";
  $("bigtitle").textContent = "Layer " + state.l + ", head " + state.h + ": " + what +
    " (rows = queries, columns = keys" + (bigLabels ? "" : "; hover for labels") + ")";
  thumbs.forEach((c, k) => c.classList.toggle("sel", k === state.l * H + state.h));
}
function bigCell(e) {
  const r = big.getBoundingClientRect();
  const x = (e.clientX - r.left) * big.width / r.width - margin, y = (e.clientY - r.top) * big.height / r.height - margin;
  return [Math.floor(y / cell), Math.floor(x / cell)];
}
big.onmousemove = e => {
  const [i, j] = bigCell(e);
  if (i >= 0 && i < T && j >= 0 && j < T) showTip(e, cellText(state.l, state.h, i, j)); else hideTip();
};
big.onmouseleave = hideTip;
big.onclick = e => { const [i] = bigCell(e); if (i >= 0 && i < T) { state.i = i; drawQuery(); drawTokens(); drawBig(); } };
/* the selected query in every head of the selected layer: rows heads, columns keys */
const qv = $("qview"), QROW = 16, QLEFT = 40;
const qcell = Math.max(2, Math.min(16, Math.floor(1100 / T)));
function drawQuery() {
  const i = state.i, l = state.l;
  qv.width = QLEFT + T * qcell; qv.height = H * QROW;
  const ctx = qv.getContext("2d"), pat = hatch(ctx);
  ctx.font = "11px monospace"; ctx.textBaseline = "middle";
  for (let h = 0; h < H; h++) {
    ctx.fillStyle = h === state.h ? "#d33" : "#222"; ctx.fillText("h" + h, 2, (h + 0.5) * QROW);
    for (let j = 0; j < T; j++) {
      ctx.fillStyle = masked(l, i, j) ? pat : "rgb(" + lut[q8(l, h, i, j)] + ")";
      ctx.fillRect(QLEFT + j * qcell, h * QROW, qcell, QROW - 2);
    }
  }
  $("qtitle").textContent = "Where query " + fmt(i) + " looks in every head of layer " + l + " (columns = keys)";
}
qv.onmousemove = e => {
  const r = qv.getBoundingClientRect();
  const h = Math.floor((e.clientY - r.top) / QROW), j = Math.floor((e.clientX - r.left - QLEFT) / qcell);
  if (h >= 0 && h < H && j >= 0 && j < T) showTip(e, cellText(state.l, h, state.i, j)); else hideTip();
};
qv.onmouseleave = hideTip;
/* the atlas: one row per head, sortable, click to choose it */
const COLS = ["distance", "entropy", "prev", "self", "sink", "induct", "copy"].concat(coref ? ["coref", "vcoref"] : [], ["role"]);
const ROLE = COLS.length - 1;
let sortCol = meta.probe ? 5 : coref ? 7 : 3;
function drawAtlas() {
  const tb = $("atlas"), rows = [];
  tb.textContent = "";
  const hr = tb.insertRow();
  ["layer", "head"].concat(COLS).forEach((name, c) => {
    const th = document.createElement("th"); th.textContent = name + (c - 2 === sortCol ? " \u25bc" : "");
    if (c >= 2) th.onclick = () => { sortCol = c - 2; drawAtlas(); };
    hr.appendChild(th);
  });
  for (let k = 0; k < L * H; k++) rows.push(k);
  const key = k => meta.stats[k][sortCol];
  rows.sort((a, b) => sortCol === ROLE ? String(key(a)).localeCompare(key(b)) : key(b) - key(a));
  for (const k of rows.slice(0, 64)) {
    const r = tb.insertRow(), s = meta.stats[k];
    r.onclick = () => select(Math.floor(k / H), k % H);
    if (k === state.l * H + state.h) r.className = "sel";
    [Math.floor(k / H), k % H].concat(s).forEach((v, c) => {
      const td = r.insertCell();
      td.textContent = c === ROLE + 2 ? v : c >= 2 ? ((c === 7 || c === 8) && !meta.probe ? "-" : v.toFixed(3)) : v;
    });
  }
  $("atlasnote").textContent = (L * H > 64 ? "the 64 highest of " + L * H + " heads by the column marked; " : "") +
    (meta.probe ? "induction probe: positions " + meta.probe[0] + ".." + (meta.probe[0] + meta.probe[1] - 1) +
       " repeated once; role induction from induct >= " + meta.induction_role
     : "induct and copy are scored on the probe: run with --attn-probe induction") +
    (coref ? "; coref probe: " + coref.n + " sentences (the maps are the first one's): coref = the share whose pronoun " +
       "attends most to the antecedent (chance " + coref.chance.toFixed(3) + "), vcoref = the same value-weighted; " +
       "role coref when P(as many by chance) < " + coref.alpha.toPrecision(2) : "");
}
/* one query through the formula (--attn-explain) */
function drawExplain() {
  const box = $("explainbox");
  if (!explain) { box.textContent = "Run with --attn-explain LAYER.HEAD.POSITION to follow one query through the formula here."; return; }
  const e = explain, P = e.pos, norm = x => Math.sqrt(x.reduce((s, v) => s + v * v, 0));
  const f6 = x => x.toFixed(6);
  let t = "layer " + e.layer + " head " + e.head + ", query " + fmt(P) + "\n";
  t += e.group > 1 ? "key/value head " + e.kv_head + ", shared by query heads " + e.kv_head * e.group + ".." +
                     (e.kv_head * e.group + e.group - 1) + "\n" : "key/value head " + e.kv_head + "\n";
  t += e.rope ? "q and k after RoPE (" + e.rope + " pairs): the scores are those of the rotated vectors\n"
              : "no RoPE: q and k as projected\n";
  t += "|q| = " + f6(norm(e.q)) + ", q[0..7] = " + e.q.slice(0, 8).map(f6).join(" ") + "\n";
  t += "score_j = q.k_j x " + f6(e.scale) + " (1/sqrt(" + e.head_dim + ")); p = softmax(scores); o = sum_j p_j v_j\n\n";
  t += "  key        q.k     scaled          p    |p v|  token\n";
  for (let j = 0; j <= P; j++) {
    const m = j < e.lo;
    t += String(j).padStart(5) + e.dots[j].toFixed(4).padStart(11) + (m ? "-inf (window)" : (e.dots[j] * e.scale).toFixed(4)).padStart(11) +
         e.probs[j].toFixed(6).padStart(11) + e.pv[j].toFixed(4).padStart(9) + "  " + labels[j] + "  " +
         "\u2588".repeat(Math.round(e.probs[j] * 30)) + "\n";
  }
  t += "\n|o| = " + f6(norm(e.o)) + ", o[0..7] = " + e.o.slice(0, 8).map(f6).join(" ") +
       "\nmax |o - the engine's output| = " + Math.max(...e.o.map((v, i) => Math.abs(v - e.engine_o[i]))).toExponential(2);
  box.textContent = t;
}
/* the measured cost: ms per generated token against its position, and the FLOP model */
function drawCost() {
  const c = meta.cost, cv = $("cost"), note = $("costnote");
  if (!c) { note.textContent = "Run with -v (and at least 2 generated tokens) to measure the time per token here."; cv.width = cv.height = 0; return; }
  const w = 520, h = 220, pad = 40, ctx = (cv.width = w, cv.height = h, cv.getContext("2d"));
  const n = c.pos.length, sorted = c.ms.slice().sort((a, b) => a - b), med = sorted[Math.floor(n / 2)];
  /* the FLOP model, scaled to the median measurement over the median FLOPs */
  const fs = c.flops.slice().sort((a, b) => a - b), k = med / fs[Math.floor(n / 2)];
  const ymax = Math.max(sorted[Math.floor(n * 0.95)] || med, ...c.flops.map(f => f * k)) * 1.1 || 1;
  const x0 = c.pos[0], x1 = Math.max(c.pos[n - 1], x0 + 1);
  const X = p => pad + (p - x0) / (x1 - x0) * (w - 2 * pad), Y = v => h - pad - v / ymax * (h - 2 * pad);
  ctx.strokeStyle = "#999"; ctx.beginPath(); ctx.moveTo(pad, pad / 2); ctx.lineTo(pad, h - pad); ctx.lineTo(w - pad / 2, h - pad); ctx.stroke();
  ctx.fillStyle = "#222"; ctx.font = "11px sans-serif";
  ctx.fillText(ymax.toPrecision(2) + " ms", 2, pad / 2 + 4); ctx.fillText("0", pad - 10, h - pad + 4);
  ctx.fillText("position " + x0, pad, h - pad + 14); ctx.fillText(String(x1), w - pad - 10, h - pad + 14);
  ctx.fillText("time per generated token (dots), FLOP model (line)", pad + 10, h - 8);
  ctx.fillStyle = "#2171b5";
  for (let i = 0; i < n; i++) ctx.fillRect(X(c.pos[i]) - 1.5, Y(Math.min(c.ms[i], ymax)) - 1.5, 3, 3);
  ctx.strokeStyle = "#d33"; ctx.beginPath();
  for (let i = 0; i < n; i++) (i ? ctx.lineTo : ctx.moveTo).call(ctx, X(c.pos[i]), Y(c.flops[i] * k));
  ctx.stroke();
  note.textContent = "Measured on the machine that wrote this page" + (c.capturing ? ", with the attention capture on" : "") +
    "; KV cache " + meta.kv_token_bytes + " bytes per token: " + (meta.kv_token_bytes * (x0 + 1) / 1024).toFixed(1) +
    " KiB at position " + x0 + ", " + (meta.kv_token_bytes * (x1 + 1) / 1024).toFixed(1) + " KiB at " + x1 + ".";
}
/* controls */
for (let l = 0; l < L; l++) $("layer").add(new Option(String(l), l));
for (let h = 0; h < H; h++) $("head").add(new Option(String(h), h));
function select(l, h) {
  state.l = l; state.h = h; $("layer").value = l; $("head").value = h;
  drawBig(); drawQuery(); drawTokens(); if (meta.stats) drawAtlas();
}
$("layer").onchange = () => select(+$("layer").value, state.h);
$("head").onchange = () => select(state.l, +$("head").value);
$("scale").onchange = () => { lut = LUT[$("scale").value]; drawThumbs(); select(state.l, state.h); };
if (!vn) $("mode").disabled = true;
$("mode").onchange = () => { mode = $("mode").value; drawThumbs(); select(state.l, state.h); };
$("info").textContent = meta.model + ": " + L + " layers x " + H + " heads, " + T + " positions (" +
  meta.prompt + " prompt, " + (T - meta.prompt) + " generated)" + (W ? ", sliding window " + W : "") +
  (meta.probe ? ", the induction probe as the prompt" : "") +
  (coref ? ", the first sentence of the coref probe: pronoun at " + fmt(coref.pron) + " (red), antecedent in green" : "");
if (!observer) drawThumbs();
select(state.l, state.h);
drawExplain();
drawCost();
report("ok: " + L + " layers x " + H + " heads, " + T + " tokens, " + thumbs.length + " maps, rendered in " +
       Math.round(performance.now() - t0) + " ms, " + Math.round(performance.now()) + " ms after the page began loading");

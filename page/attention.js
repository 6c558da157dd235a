/* The attention page's script (tinygpt). attn_views.c writes it into the page after three inert
   data blocks: "meta" (JSON: shapes, the prompt's length, the model, and first_visible[i], the
   first key query i sees), "toks" (JSON: each position's token) and "weights" (base64: each map's
   lower triangle, one byte per cell, round(255 p)). It draws from them; it asks for nothing. */
"use strict";
const $ = id => document.getElementById(id);
function report(msg) { $("status").textContent = msg; document.title = msg; }
window.onerror = (msg, src, line) => { report("error: " + msg + " (line " + line + ")"); };
document.addEventListener("securitypolicyviolation", e => report("error: blocked " + e.blockedURI));
const t0 = performance.now();
const meta = JSON.parse($("meta").textContent);
const toks = JSON.parse($("toks").textContent);
const L = meta.layers, H = meta.heads, T = meta.positions, W = meta.window, first = meta.first_visible;
const TRI = T * (T + 1) / 2;
const bin = atob($("weights").textContent.replace(/\s+/g, ""));
if (bin.length !== L * H * TRI || toks.length !== T || first.length !== T)
  throw new Error("data: " + bin.length + " bytes, " + toks.length + " tokens, " + first.length +
                  " rows; expected " + L * H * TRI + ", " + T + ", " + T);
const Q = new Uint8Array(bin.length);
for (let k = 0; k < bin.length; k++) Q[k] = bin.charCodeAt(k);
/* where row i of head (l, h) starts in Q: maps in (layer, head) order, row i holds keys 0 .. i */
const rowStart = (l, h, i) => (l * H + h) * TRI + i * (i + 1) / 2;
/* weight of query i on key j (j <= i) in head (l, h), 0 .. 255 */
const q8 = (l, h, i, j) => Q[rowStart(l, h, i) + j];
/* the future, or a key before the query's window (the C side computed where it starts) */
const masked = (i, j) => j > i || j < first[i];
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
const state = { l: 0, h: 0, i: T - 1 };
let lut = LUT.lin;
/* a T x T image of one head: one pixel per cell */
function paint(canvas, l, h, maskRGB) {
  canvas.width = T; canvas.height = T;
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(T, T), d = img.data;
  for (let i = 0; i < T; i++) {
    const row = rowStart(l, h, i);
    for (let j = 0, o = 4 * i * T; j < T; j++, o += 4) {
      const c = masked(i, j) ? maskRGB : lut[Q[row + j]];
      if (!c) continue;  /* masked, left transparent */
      d[o] = c[0]; d[o + 1] = c[1]; d[o + 2] = c[2]; d[o + 3] = 255;
    }
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
  if (masked(i, j)) return where + (j > i ? "masked: the future" : "masked: outside the window");
  return where + "weight " + (q8(l, h, i, j) / 255).toFixed(3);
}
/* tokens */
const tokSpans = toks.map((t, i) => {
  const s = document.createElement("span");
  s.textContent = labels[i];
  if (i >= meta.prompt) s.classList.add("gen");
  if (t.special) s.classList.add("special");
  s.title = "position " + i;
  s.onclick = () => { state.i = i; drawQuery(); drawTokens(); };
  $("tokens").appendChild(s);
  return s;
});
/* the selected query's weights in the selected head, as token backgrounds */
function drawTokens() {
  tokSpans.forEach((s, j) => {
    s.classList.toggle("sel", j === state.i);
    if (masked(state.i, j)) { s.style.background = ""; return; }
    const c = lut[q8(state.l, state.h, state.i, j)];
    s.style.background = "rgb(" + c + ")";
    s.style.color = c[0] < 120 ? "#fff" : "";
  });
}
/* model view: every layer x head */
const thumbPx = Math.max(40, Math.min(96, Math.floor(900 / H) - 6));
const grid = $("grid");
grid.style.gridTemplateColumns = "auto repeat(" + H + ", " + (thumbPx + 4) + "px)";
grid.appendChild(document.createElement("div"));
for (let h = 0; h < H; h++) { const d = document.createElement("div"); d.textContent = "h" + h; grid.appendChild(d); }
const thumbs = [];
for (let l = 0; l < L; l++) {
  const d = document.createElement("div"); d.textContent = "L" + l; grid.appendChild(d);
  for (let h = 0; h < H; h++) {
    const c = document.createElement("canvas");
    c.className = "thumb"; c.style.width = c.style.height = thumbPx + "px";
    c.title = "layer " + l + " head " + h;
    c.onclick = () => select(l, h);
    grid.appendChild(c);
    thumbs.push(c);
  }
}
function drawThumbs() { for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) paint(thumbs[l * H + h], l, h, MASK); }
/* the chosen head, large, token labels on both axes, masked cells hatched */
const big = $("big"), off = document.createElement("canvas");
const cell = T <= 30 ? 22 : T <= 60 ? 14 : 10;
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
  margin = 8 + Math.min(140, Math.max(...labels.map((s, i) => ctx.measureText(i + " " + s).width)));
  big.width = big.height = margin + T * cell;
  ctx = big.getContext("2d");
  ctx.fillStyle = hatch(ctx); ctx.fillRect(margin, margin, T * cell, T * cell);
  paint(off, state.l, state.h, null);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(off, margin, margin, T * cell, T * cell);
  ctx.font = font; ctx.fillStyle = "#222"; ctx.textBaseline = "middle";
  for (let i = 0; i < T; i++) {
    ctx.fillStyle = i === state.i ? "#d33" : i >= meta.prompt ? "#269" : "#222";
    ctx.textAlign = "right";
    ctx.fillText(i + " " + labels[i], margin - 4, margin + (i + 0.5) * cell, margin - 6);
    ctx.save(); ctx.translate(margin + (i + 0.5) * cell, margin - 4); ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "left"; ctx.fillText(i + " " + labels[i], 0, 0, margin - 6); ctx.restore();
  }
  $("bigtitle").textContent = "Layer " + state.l + ", head " + state.h + " (rows = queries, columns = keys)";
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
const qcell = Math.max(4, Math.min(16, Math.floor(1100 / T)));
function drawQuery() {
  const i = state.i, l = state.l;
  qv.width = QLEFT + T * qcell; qv.height = H * QROW;
  const ctx = qv.getContext("2d"), pat = hatch(ctx);
  ctx.font = "11px monospace"; ctx.textBaseline = "middle";
  for (let h = 0; h < H; h++) {
    ctx.fillStyle = h === state.h ? "#d33" : "#222"; ctx.fillText("h" + h, 2, (h + 0.5) * QROW);
    for (let j = 0; j < T; j++) {
      ctx.fillStyle = masked(i, j) ? pat : "rgb(" + lut[q8(l, h, i, j)] + ")";
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
/* controls */
for (let l = 0; l < L; l++) $("layer").add(new Option(String(l), l));
for (let h = 0; h < H; h++) $("head").add(new Option(String(h), h));
function select(l, h) {
  state.l = l; state.h = h; $("layer").value = l; $("head").value = h;
  drawBig(); drawQuery(); drawTokens();
}
$("layer").onchange = () => select(+$("layer").value, state.h);
$("head").onchange = () => select(state.l, +$("head").value);
$("scale").onchange = () => { lut = LUT[$("scale").value]; drawThumbs(); select(state.l, state.h); };
$("info").textContent = meta.model + ": " + L + " layers x " + H + " heads, " + T + " positions (" +
  meta.prompt + " prompt, " + (T - meta.prompt) + " generated)" + (W ? ", sliding window " + W : "");
drawThumbs();
select(0, 0);
report("ok: " + L + " layers x " + H + " heads, " + T + " tokens, " + thumbs.length + " maps, rendered in " +
       Math.round(performance.now() - t0) + " ms");

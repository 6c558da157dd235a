/* attn.c: seeing attention. The forward pass hands each layer's softmax probabilities to
 * RunState.attn_hook; here they are kept for every layer and head and then
 *
 *   --dump-attn PATH.npy   written exactly, float32 (n_layers, n_heads, T, T)
 *   --attn-html PATH.html  drawn in a self-contained page (weights quantized to 8 bits)
 *   --attn-show L.H        printed as a heatmap of one head, with each query's top three keys
 *   --attn-stats           summarised as one line per head: distance, entropy, previous token,
 *                          self, first token, and a role label
 *   -v                     the KV cache's size and the FLOP share of attention (no maps needed)
 *
 * A map is (T, T): row i = the query at position i, column j = the key at position j; entries
 * above the diagonal (the future) and outside a sliding window are exactly zero.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attn_views.h"

#define ATTN_MAX_BYTES ((double)(2u << 30))  /* refuse maps larger than 2 GiB */

/* ------------------------------------------------------------------------------------------ */
/* Capture */

int attn_wanted(const AttnOptions *o) {
    return o->dump || o->html || o->show_layer >= 0 || o->stats;
}

int attn_parse_head(const char *s, int *layer, int *head, Error *err) {
    /* exactly digits '.' digits: no signs, spaces or trailing text */
    const char *dot = strchr(s, '.');
    size_t n1 = dot ? (size_t)(dot - s) : 0, n2 = dot ? strlen(dot + 1) : 0;
    if (!dot || n1 == 0 || n2 == 0 || n1 > 6 || n2 > 6 || strspn(s, "0123456789") != n1 ||
        strspn(dot + 1, "0123456789") != n2)
        return fail(err, "--attn-show expects LAYER.HEAD, e.g. 0.3 (counting from 0), got '%s'", s);
    *layer = atoi(s);
    *head = atoi(dot + 1);
    return 0;
}

int attn_maps_init(AttnMaps *a, const AttnOptions *o, const Config *c, int n_prompt, int cap,
                   Error *err) {
    memset(a, 0, sizeof *a);
    if (o->show_layer >= c->n_layers || o->show_head >= c->n_heads)
        return fail(err, "--attn-show %d.%d: the model has layers 0..%d and heads 0..%d",
                    o->show_layer, o->show_head, c->n_layers - 1, c->n_heads - 1);
    if (o->stats && cap < 2)
        return fail(err, "--attn-stats needs at least 2 positions (prompt tokens + generated - 1), "
                    "this run has %d", cap);
    double bytes = (double)c->n_layers * c->n_heads * cap * (double)cap * sizeof(float);
    if (bytes > ATTN_MAX_BYTES)
        return fail(err, "attention maps for %d positions need %.1f GiB (%d layers x %d heads x "
                    "%d x %d x 4 bytes), more than the 2 GiB limit; shorten the prompt or -n",
                    cap, bytes / (1 << 30), c->n_layers, c->n_heads, cap, cap);
    a->n_layers = c->n_layers;
    a->n_heads = c->n_heads;
    a->window = c->sliding_window;
    a->cap = cap;
    a->n_prompt = n_prompt;
    a->probs = calloc((size_t)c->n_layers * c->n_heads * cap * cap, sizeof(float));
    a->tokens = calloc((size_t)cap, sizeof(int));
    if (!a->probs || !a->tokens) {
        attn_maps_free(a);
        return fail(err, "out of memory for the attention maps (%.0f MB)", bytes / 1e6);
    }
    return 0;
}

void attn_maps_free(AttnMaps *a) {
    free(a->probs);
    free(a->tokens);
    a->probs = NULL;
    a->tokens = NULL;
}

/* Row i of head (l, h): cap floats, keys 0 .. cap-1. */
static float *map_row(const AttnMaps *a, int l, int h, int i) {
    return a->probs + (((size_t)l * a->n_heads + h) * a->cap + i) * a->cap;
}

void attn_hook(void *ctx, int layer, int pos0, int n, const float *probs, int stride) {
    AttnMaps *a = ctx;
    for (int t = 0; t < n && pos0 + t < a->cap; t++) {
        const int i = pos0 + t;
        /* keys after i are zero in the hook's row and already zero in ours (calloc) */
        for (int h = 0; h < a->n_heads; h++)
            memcpy(map_row(a, layer, h, i), probs + ((size_t)t * a->n_heads + h) * stride,
                   (size_t)(i + 1) * sizeof(float));
        if (i + 1 > a->n) a->n = i + 1;
    }
}

void attn_maps_tokens(AttnMaps *a, int pos0, const int *tokens, int n) {
    for (int t = 0; t < n && pos0 + t < a->cap; t++) a->tokens[pos0 + t] = tokens[t];
}

void attn_maps_pack(AttnMaps *a) {
    const int T = a->n;
    if (T == a->cap) return;
    /* Row r moves from r * cap to r * T (r counts rows over all maps): never forwards, so copying
       in increasing order never overwrites a row not yet moved. */
    for (size_t r = 0; r < (size_t)a->n_layers * a->n_heads * a->cap; r++) {
        size_t map = r / a->cap, i = r % a->cap;
        if ((int)i < T)
            memmove(a->probs + (map * T + i) * T, a->probs + r * a->cap, (size_t)T * sizeof(float));
    }
    a->cap = T;
}

/* ------------------------------------------------------------------------------------------ */
/* Token labels: the text each position's token decodes to. Each piece keeps its own leading
   space (SentencePiece drops it at the start of a text; a label should not). A byte token that
   only starts a character gets "…", the token completing it the whole character. */

static char **token_labels(const AttnMaps *a, const Tokenizer *tok, unsigned char *special,
                           Error *err) {
    const size_t cap = 2 * ((size_t)tokenizer_max_token_len(tok) + 8) + 32;
    char **labels = calloc((size_t)a->n, sizeof *labels);
    char *buf = malloc(cap);
    if (!labels || !buf) goto oom;
    Decoder d;
    decoder_init(&d);
    for (int i = 0; i < a->n; i++) {
        const int id = a->tokens[i];
        d.prev_token = id;  /* not at the start: keep the leading space (a no-op for control ids) */
        size_t len = decoder_push(tok, &d, id, buf, cap);
        if (len == 0) {
            special[i] = 1;
            if (d.n_pending > 0) snprintf(buf, cap, "\xE2\x80\xA6");
            else if (id == tokenizer_bos(tok)) snprintf(buf, cap, "<bos>");
            else if (id == tokenizer_eos(tok)) snprintf(buf, cap, "<eos>");
            else snprintf(buf, cap, "<%d>", id);
        }
        if (!(labels[i] = strdup(buf))) goto oom;
    }
    free(buf);
    return labels;
oom:
    if (labels)
        for (int i = 0; i < a->n; i++) free(labels[i]);
    free(labels);
    free(buf);
    fail(err, "out of memory for token labels");
    return NULL;
}

static void free_labels(char **labels, int n) {
    for (int i = 0; i < n; i++) free(labels[i]);
    free(labels);
}

/* Bytes of the UTF-8 character starting with byte c (the text is valid UTF-8). */
static int utf8_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

/* Writes s for a terminal into out (capacity >= 4 * cols + 1), at most `cols` characters:
   whitespace shown as visible marks (space ·, newline ↵, tab →), other control characters in
   caret notation, so no token can move the cursor or start an escape sequence. Returns the
   characters written (one column each, except wide CJK/emoji, which we do not measure). */
static int visible(const char *s, char *out, int cols) {
    int n = 0;
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && n < cols;) {
        int k = utf8_len(*p);
        const char *mark = NULL;
        char caret[3] = {'^', 0, 0};
        if (*p == ' ') mark = "\xC2\xB7";
        else if (*p == '\n') mark = "\xE2\x86\xB5";
        else if (*p == '\t') mark = "\xE2\x86\x92";
        else if (*p < 0x20 || *p == 0x7F) caret[1] = (char)(*p ^ 0x40), mark = caret;
        else if (*p == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F) mark = "\xEF\xBF\xBD";  /* C1 */
        if (mark && mark == caret && n + 2 > cols) break;
        if (mark) {
            size_t m = strlen(mark);
            memcpy(out + w, mark, m);
            w += m;
            n += mark == caret ? 2 : 1;
        } else {
            memcpy(out + w, p, (size_t)k);
            w += (size_t)k;
            n++;
        }
        p += k;
    }
    out[w] = '\0';
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* The atlas: one line of statistics per head. Query 0 sees only itself (its row is always
   [1]), so every average is over the queries i = 1 .. T-1:
     distance  sum_j p_ij (i - j)          mean distance back to the keys attended
     entropy   -sum_j p_ij ln p_ij (nats)  0 = one key, ln(keys) = uniform
     prev      p_i,i-1                     weight on the previous token
     self      p_i,i                       weight on the query's own position
     sink      p_i,0                       weight on the first token */

typedef struct {
    double distance, entropy, prev, self, sink;
} HeadStats;

static HeadStats head_stats(const AttnMaps *a, int l, int h) {
    HeadStats s = {0, 0, 0, 0, 0};
    for (int i = 1; i < a->n; i++) {
        const float *p = map_row(a, l, h, i);
        for (int j = 0; j <= i; j++) {
            s.distance += (double)p[j] * (i - j);
            if (p[j] > 0.0f) s.entropy -= (double)p[j] * log((double)p[j]);
        }
        s.prev += p[i - 1];
        s.self += p[i];
        s.sink += p[0];
    }
    const double q = a->n > 1 ? a->n - 1 : 1;
    s.distance /= q;
    s.entropy /= q;
    s.prev /= q;
    s.self /= q;
    s.sink /= q;
    return s;
}

/* The first rule that holds names the head (thresholds in the README). */
static const char *head_role(const HeadStats *s) {
    if (s->prev >= 0.5) return "previous-token";
    if (s->sink >= 0.5) return "first-token/sink";
    if (s->self >= 0.5) return "self";
    if (s->distance <= 3.0) return "local";
    return "broad";
}

static int print_stats(const AttnMaps *a, FILE *f, Error *err) {
    if (a->n < 2) return fail(err, "--attn-stats needs at least 2 positions, got %d", a->n);
    fprintf(f, "attention atlas: %d layers x %d heads, %d positions (averages over queries 1..%d)\n",
            a->n_layers, a->n_heads, a->n, a->n - 1);
    fprintf(f, "layer head distance entropy   prev   self   sink  role\n");
    for (int l = 0; l < a->n_layers; l++)
        for (int h = 0; h < a->n_heads; h++) {
            HeadStats s = head_stats(a, l, h);
            fprintf(f, "%5d %4d %8.3f %7.3f %6.3f %6.3f %6.3f  %s\n", l, h, s.distance, s.entropy,
                    s.prev, s.self, s.sink, head_role(&s));
        }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* One head in the terminal: rows are queries, columns keys, one character per cell. With a
   colour terminal each cell is a background colour (viridis, ten steps, in the xterm 256-colour
   cube); otherwise a character from ".:-=+*#%@" (weights 0 .. 1 in nine equal steps). Masked
   cells are blank: the future is not printed, keys before a sliding window are spaces. */

#define LABEL_COLS 10   /* token label width in the row headers */
#define HEADER_ROWS 6   /* characters of each key's label, printed vertically above its column */

static const int VIRIDIS_256[10] = {53, 54, 60, 24, 30, 36, 72, 77, 148, 220};
static const char RAMP[] = ".:-=+*#%@";

static int use_colour(FILE *f) {
    const char *term = getenv("TERM"), *no_colour = getenv("NO_COLOR");
    return isatty(fileno(f)) && !(no_colour && *no_colour) && !(term && strcmp(term, "dumb") == 0);
}

static void print_head(const AttnMaps *a, char **labels, int l, int h, FILE *f) {
    const int T = a->n, colour = use_colour(f);
    int iw = 1;  /* digits of the largest position */
    for (int t = T - 1; t >= 10; t /= 10) iw++;
    char vis[4 * LABEL_COLS + 1];

    fprintf(f, "attention layer %d head %d: %d positions, rows = queries, columns = keys; ", l, h, T);
    if (colour) {
        fprintf(f, "weight 0 ");
        for (int k = 0; k < 10; k++) fprintf(f, "\033[48;5;%dm \033[0m", VIRIDIS_256[k]);
        fprintf(f, " 1\n");
    } else {
        fprintf(f, "weight 0 %s 1 (each ~1/9), masked blank\n", RAMP);
    }
    /* key labels, read downwards: row r holds character r of each label */
    for (int r = 0; r < HEADER_ROWS; r++) {
        fprintf(f, "%*s", iw + 1 + LABEL_COLS + 1, "");
        for (int j = 0; j < T; j++) {
            char col[4 * HEADER_ROWS + 1];
            visible(labels[j], col, HEADER_ROWS);
            const char *p = col;
            for (int k = 0; k < r && *p; k++) p += utf8_len((unsigned char)*p);
            if (*p) fwrite(p, 1, (size_t)utf8_len((unsigned char)*p), f);
            else fputc(' ', f);
        }
        fputc('\n', f);
    }
    for (int i = 0; i < T; i++) {
        const float *p = map_row(a, l, h, i);
        const int lo = attn_first_visible(i, a->window);
        int n = visible(labels[i], vis, LABEL_COLS);
        fprintf(f, "%*d %s%*s ", iw, i, vis, LABEL_COLS - n, "");
        for (int j = 0; j < lo; j++) fputc(' ', f);
        for (int j = lo; j <= i; j++) {
            if (colour) {
                int k = (int)(p[j] * 10.0f);
                fprintf(f, "\033[48;5;%dm ", VIRIDIS_256[k < 0 ? 0 : k > 9 ? 9 : k]);
            } else {
                int k = (int)(p[j] * 9.0f);
                fputc(RAMP[k < 0 ? 0 : k > 8 ? 8 : k], f);
            }
        }
        fputs(colour ? "\033[0m\n" : "\n", f);
    }

    /* each query's three largest weights, ties to the earlier key */
    fprintf(f, "\ntop keys per query: position token <- key token weight (three largest)\n");
    for (int i = 0; i < T; i++) {
        const float *p = map_row(a, l, h, i);
        int best[3] = {-1, -1, -1};
        for (int j = 0; j <= i; j++) {
            int k = 3;
            while (k > 0 && (best[k - 1] < 0 || p[j] > p[best[k - 1]])) k--;
            if (k < 3) {
                for (int m = 2; m > k; m--) best[m] = best[m - 1];
                best[k] = j;
            }
        }
        int n = visible(labels[i], vis, LABEL_COLS);
        fprintf(f, "%*d %s%*s <-", iw, i, vis, LABEL_COLS - n, "");
        for (int k = 0; k < 3 && best[k] >= 0; k++) {
            visible(labels[best[k]], vis, LABEL_COLS);
            fprintf(f, "  %d %s %.3f", best[k], vis, p[best[k]]);
        }
        fputc('\n', f);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The page: one HTML file, no requests (a Content-Security-Policy forbids any), its data in
   three inert <script> blocks: meta and tokens as JSON, the weights as base64 of one byte per
   visible-or-not cell of each map's lower triangle, round(255 p), maps in (layer, head) order,
   rows i = 0 .. T-1 of i + 1 keys each. 12 layers x 12 heads x 200 tokens is 2.9 MB of bytes,
   3.9 MB of base64. */

static const char *const PAGE_HEAD[] = {
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
    "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; ",
    "script-src 'unsafe-inline'; style-src 'unsafe-inline'\">\n",
    "<title>tinygpt attention</title>\n<style>\n",
    "body { font: 13px system-ui, sans-serif; margin: 12px; color: #222; }\n",
    "h1 { font-size: 17px; margin: 0 0 6px; }\n",
    "h2 { font-size: 14px; margin: 14px 0 4px; }\n",
    ".note { color: #666; }\n",
    "#tokens { line-height: 1.9; max-width: 1200px; }\n",
    "#tokens span { font-family: monospace; padding: 1px 2px; margin: 0 1px; border: 1px solid #ddd;",
    " border-radius: 3px; cursor: pointer; white-space: pre; }\n",
    "#tokens span.gen { border-color: #9bd; }\n",
    "#tokens span.special { font-style: italic; color: #888; }\n",
    "#tokens span.sel { outline: 2px solid #d33; }\n",
    "#views { display: flex; gap: 18px; align-items: flex-start; flex-wrap: wrap; }\n",
    "#grid { display: grid; gap: 3px; align-items: center; }\n",
    "#grid canvas { image-rendering: pixelated; border: 2px solid transparent; cursor: pointer; }\n",
    "#grid canvas.sel { border-color: #d33; }\n",
    "#grid div { font-size: 11px; color: #666; text-align: center; }\n",
    "#bigbox { max-width: 100%; max-height: 860px; overflow: auto; border: 1px solid #ddd; }\n",
    "#tip { position: fixed; pointer-events: none; background: #fffbe6; border: 1px solid #cc9;",
    " padding: 3px 6px; font: 12px monospace; display: none; white-space: pre; }\n",
    "#status { color: #666; font-size: 11px; }\n",
    "select { font: inherit; }\n",
    "</style>\n</head>\n<body>\n",
    "<h1>Attention</h1>\n<div id=\"info\" class=\"note\"></div>\n",
    "<h2>Tokens <span class=\"note\">(click one to see where it looks; blue border = generated)</span>",
    "</h2>\n<div id=\"tokens\"></div>\n",
    "<p>layer <select id=\"layer\"></select> head <select id=\"head\"></select> colour scale ",
    "<select id=\"scale\"><option value=\"lin\">linear</option><option value=\"sqrt\">square root",
    "</option></select> <span class=\"note\">weights shown to 8 bits; the .npy from --dump-attn has ",
    "the exact values. Hatched = masked (future, or outside the sliding window).</span></p>\n",
    "<div id=\"views\">\n<div><h2>Model view <span class=\"note\">(rows layers, columns heads; ",
    "click one)</span></h2><div id=\"grid\"></div></div>\n",
    "<div><h2 id=\"bigtitle\"></h2><div id=\"bigbox\"><canvas id=\"big\"></canvas></div></div>\n",
    "</div>\n<h2 id=\"qtitle\"></h2>\n<canvas id=\"qview\"></canvas>\n",
    "<div id=\"tip\"></div>\n<pre id=\"status\">rendering...</pre>\n",
    NULL
};

static const char *const PAGE_SCRIPT[] = {
    "<script>\n\"use strict\";\n",
    "const $ = id => document.getElementById(id);\n",
    "function report(msg) { $(\"status\").textContent = msg; document.title = msg; }\n",
    "window.onerror = (msg, src, line) => { report(\"error: \" + msg + \" (line \" + line + \")\"); };\n",
    "document.addEventListener(\"securitypolicyviolation\", e => report(\"error: blocked \" + e.blockedURI));\n",
    "const t0 = performance.now();\n",
    "const meta = JSON.parse($(\"meta\").textContent);\n",
    "const toks = JSON.parse($(\"toks\").textContent);\n",
    "const L = meta.layers, H = meta.heads, T = meta.positions, W = meta.window;\n",
    "const TRI = T * (T + 1) / 2;\n",
    "const bin = atob($(\"weights\").textContent.replace(/\\s+/g, \"\"));\n",
    "if (bin.length !== L * H * TRI || toks.length !== T)\n",
    "  throw new Error(\"data: \" + bin.length + \" bytes, \" + toks.length + \" tokens; expected \" + L * H * TRI + \", \" + T);\n",
    "const Q = new Uint8Array(bin.length);\n",
    "for (let k = 0; k < bin.length; k++) Q[k] = bin.charCodeAt(k);\n",
    "/* weight of query i on key j (j <= i) in head (l, h), 0 .. 255 */\n",
    "const q8 = (l, h, i, j) => Q[(l * H + h) * TRI + i * (i + 1) / 2 + j];\n",
    "const masked = (i, j) => j > i || (W > 0 && j <= i - W);\n",
    "/* tokens made visible: spaces, newlines, tabs and other controls get marks */\n",
    "function shown(s) {\n",
    "  return s.replace(/ /g, \"\\u00b7\").replace(/\\n/g, \"\\u21b5\").replace(/\\t/g, \"\\u2192\")\n",
    "          .replace(/[\\u0000-\\u001f\\u007f-\\u009f]/g, c => \"\\\\x\" + c.charCodeAt(0).toString(16).padStart(2, \"0\"))\n",
    "          || \"\\u2205\";\n",
    "}\n",
    "const labels = toks.map(t => shown(t.text));\n",
    "/* colour ramp (ColorBrewer Blues), a lookup table per scale */\n",
    "const STOPS = [[247, 251, 255], [198, 219, 239], [107, 174, 214], [33, 113, 181], [8, 48, 107]];\n",
    "function ramp(v) {\n",
    "  const x = v * (STOPS.length - 1), k = Math.min(Math.floor(x), STOPS.length - 2), f = x - k;\n",
    "  return STOPS[k].map((c, m) => Math.round(c + f * (STOPS[k + 1][m] - c)));\n",
    "}\n",
    "const LUT = {};\n",
    "for (const s of [\"lin\", \"sqrt\"]) {\n",
    "  LUT[s] = [];\n",
    "  for (let b = 0; b < 256; b++) LUT[s].push(ramp(s === \"lin\" ? b / 255 : Math.sqrt(b / 255)));\n",
    "}\n",
    "const MASK = [222, 222, 222];\n",
    "const state = { l: 0, h: 0, i: T - 1 };\n",
    "let lut = LUT.lin;\n",
    "/* a T x T image of one head: one pixel per cell */\n",
    "function paint(canvas, l, h, maskRGB) {\n",
    "  canvas.width = T; canvas.height = T;\n",
    "  const ctx = canvas.getContext(\"2d\"), img = ctx.createImageData(T, T), d = img.data;\n",
    "  const base = (l * H + h) * TRI;\n",
    "  for (let i = 0; i < T; i++) {\n",
    "    const row = base + i * (i + 1) / 2, lo = W > 0 ? Math.max(0, i - W + 1) : 0;\n",
    "    for (let j = 0, o = 4 * i * T; j < T; j++, o += 4) {\n",
    "      const c = j > i || j < lo ? maskRGB : lut[Q[row + j]];\n",
    "      if (!c) continue;  /* masked, left transparent */\n",
    "      d[o] = c[0]; d[o + 1] = c[1]; d[o + 2] = c[2]; d[o + 3] = 255;\n",
    "    }\n",
    "  }\n",
    "  ctx.putImageData(img, 0, 0);\n",
    "}\n",
    "function fmt(i) { return i + \" \" + JSON.stringify(labels[i]); }\n",
    "const tip = $(\"tip\");\n",
    "function showTip(e, text) {\n",
    "  tip.textContent = text; tip.style.display = \"block\";\n",
    "  tip.style.left = (e.clientX + 14) + \"px\"; tip.style.top = (e.clientY + 14) + \"px\";\n",
    "}\n",
    "function hideTip() { tip.style.display = \"none\"; }\n",
    "function cellText(l, h, i, j) {\n",
    "  const where = \"layer \" + l + \" head \" + h + \"\\nquery \" + fmt(i) + \"\\nkey   \" + fmt(j) + \"\\n\";\n",
    "  if (masked(i, j)) return where + (j > i ? \"masked: the future\" : \"masked: outside the window\");\n",
    "  return where + \"weight \" + (q8(l, h, i, j) / 255).toFixed(3);\n",
    "}\n",
    "/* tokens */\n",
    "const tokSpans = toks.map((t, i) => {\n",
    "  const s = document.createElement(\"span\");\n",
    "  s.textContent = labels[i];\n",
    "  if (i >= meta.prompt) s.classList.add(\"gen\");\n",
    "  if (t.special) s.classList.add(\"special\");\n",
    "  s.title = \"position \" + i;\n",
    "  s.onclick = () => { state.i = i; drawQuery(); drawTokens(); };\n",
    "  $(\"tokens\").appendChild(s);\n",
    "  return s;\n",
    "});\n",
    "/* the selected query's weights in the selected head, as token backgrounds */\n",
    "function drawTokens() {\n",
    "  tokSpans.forEach((s, j) => {\n",
    "    s.classList.toggle(\"sel\", j === state.i);\n",
    "    if (masked(state.i, j)) { s.style.background = \"\"; return; }\n",
    "    const c = lut[q8(state.l, state.h, state.i, j)];\n",
    "    s.style.background = \"rgb(\" + c + \")\";\n",
    "    s.style.color = c[0] < 120 ? \"#fff\" : \"\";\n",
    "  });\n",
    "}\n",
    "/* model view: every layer x head */\n",
    "const thumbPx = Math.max(40, Math.min(96, Math.floor(900 / H) - 6));\n",
    "const grid = $(\"grid\");\n",
    "grid.style.gridTemplateColumns = \"auto repeat(\" + H + \", \" + (thumbPx + 4) + \"px)\";\n",
    "grid.appendChild(document.createElement(\"div\"));\n",
    "for (let h = 0; h < H; h++) { const d = document.createElement(\"div\"); d.textContent = \"h\" + h; grid.appendChild(d); }\n",
    "const thumbs = [];\n",
    "for (let l = 0; l < L; l++) {\n",
    "  const d = document.createElement(\"div\"); d.textContent = \"L\" + l; grid.appendChild(d);\n",
    "  for (let h = 0; h < H; h++) {\n",
    "    const c = document.createElement(\"canvas\");\n",
    "    c.className = \"thumb\"; c.style.width = c.style.height = thumbPx + \"px\";\n",
    "    c.title = \"layer \" + l + \" head \" + h;\n",
    "    c.onclick = () => select(l, h);\n",
    "    grid.appendChild(c);\n",
    "    thumbs.push(c);\n",
    "  }\n",
    "}\n",
    "function drawThumbs() { for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) paint(thumbs[l * H + h], l, h, MASK); }\n",
    "/* the chosen head, large, token labels on both axes, masked cells hatched */\n",
    "const big = $(\"big\"), off = document.createElement(\"canvas\");\n",
    "const cell = T <= 30 ? 22 : T <= 60 ? 14 : 10;\n",
    "let margin = 0;\n",
    "function hatch(ctx) {\n",
    "  const p = document.createElement(\"canvas\"); p.width = p.height = 6;\n",
    "  const c = p.getContext(\"2d\");\n",
    "  c.fillStyle = \"#eee\"; c.fillRect(0, 0, 6, 6);\n",
    "  c.strokeStyle = \"#bbb\"; c.beginPath(); c.moveTo(0, 6); c.lineTo(6, 0); c.stroke();\n",
    "  return ctx.createPattern(p, \"repeat\");\n",
    "}\n",
    "function drawBig() {\n",
    "  const font = Math.min(12, cell - 1) + \"px monospace\";\n",
    "  let ctx = big.getContext(\"2d\");\n",
    "  ctx.font = font;\n",
    "  margin = 8 + Math.min(140, Math.max(...labels.map((s, i) => ctx.measureText(i + \" \" + s).width)));\n",
    "  big.width = big.height = margin + T * cell;\n",
    "  ctx = big.getContext(\"2d\");\n",
    "  ctx.fillStyle = hatch(ctx); ctx.fillRect(margin, margin, T * cell, T * cell);\n",
    "  paint(off, state.l, state.h, null);\n",
    "  ctx.imageSmoothingEnabled = false;\n",
    "  ctx.drawImage(off, margin, margin, T * cell, T * cell);\n",
    "  ctx.font = font; ctx.fillStyle = \"#222\"; ctx.textBaseline = \"middle\";\n",
    "  for (let i = 0; i < T; i++) {\n",
    "    ctx.fillStyle = i === state.i ? \"#d33\" : i >= meta.prompt ? \"#269\" : \"#222\";\n",
    "    ctx.textAlign = \"right\";\n",
    "    ctx.fillText(i + \" \" + labels[i], margin - 4, margin + (i + 0.5) * cell, margin - 6);\n",
    "    ctx.save(); ctx.translate(margin + (i + 0.5) * cell, margin - 4); ctx.rotate(-Math.PI / 2);\n",
    "    ctx.textAlign = \"left\"; ctx.fillText(i + \" \" + labels[i], 0, 0, margin - 6); ctx.restore();\n",
    "  }\n",
    "  $(\"bigtitle\").textContent = \"Layer \" + state.l + \", head \" + state.h + \" (rows = queries, columns = keys)\";\n",
    "  thumbs.forEach((c, k) => c.classList.toggle(\"sel\", k === state.l * H + state.h));\n",
    "}\n",
    "function bigCell(e) {\n",
    "  const r = big.getBoundingClientRect();\n",
    "  const x = (e.clientX - r.left) * big.width / r.width - margin, y = (e.clientY - r.top) * big.height / r.height - margin;\n",
    "  return [Math.floor(y / cell), Math.floor(x / cell)];\n",
    "}\n",
    "big.onmousemove = e => {\n",
    "  const [i, j] = bigCell(e);\n",
    "  if (i >= 0 && i < T && j >= 0 && j < T) showTip(e, cellText(state.l, state.h, i, j)); else hideTip();\n",
    "};\n",
    "big.onmouseleave = hideTip;\n",
    "big.onclick = e => { const [i] = bigCell(e); if (i >= 0 && i < T) { state.i = i; drawQuery(); drawTokens(); drawBig(); } };\n",
    "/* the selected query in every head of the selected layer: rows heads, columns keys */\n",
    "const qv = $(\"qview\"), QROW = 16, QLEFT = 40;\n",
    "const qcell = Math.max(4, Math.min(16, Math.floor(1100 / T)));\n",
    "function drawQuery() {\n",
    "  const i = state.i, l = state.l;\n",
    "  qv.width = QLEFT + T * qcell; qv.height = H * QROW;\n",
    "  const ctx = qv.getContext(\"2d\"), pat = hatch(ctx);\n",
    "  ctx.font = \"11px monospace\"; ctx.textBaseline = \"middle\";\n",
    "  for (let h = 0; h < H; h++) {\n",
    "    ctx.fillStyle = h === state.h ? \"#d33\" : \"#222\"; ctx.fillText(\"h\" + h, 2, (h + 0.5) * QROW);\n",
    "    for (let j = 0; j < T; j++) {\n",
    "      ctx.fillStyle = masked(i, j) ? pat : \"rgb(\" + lut[q8(l, h, i, j)] + \")\";\n",
    "      ctx.fillRect(QLEFT + j * qcell, h * QROW, qcell, QROW - 2);\n",
    "    }\n",
    "  }\n",
    "  $(\"qtitle\").textContent = \"Where query \" + fmt(i) + \" looks in every head of layer \" + l + \" (columns = keys)\";\n",
    "}\n",
    "qv.onmousemove = e => {\n",
    "  const r = qv.getBoundingClientRect();\n",
    "  const h = Math.floor((e.clientY - r.top) / QROW), j = Math.floor((e.clientX - r.left - QLEFT) / qcell);\n",
    "  if (h >= 0 && h < H && j >= 0 && j < T) showTip(e, cellText(state.l, h, state.i, j)); else hideTip();\n",
    "};\n",
    "qv.onmouseleave = hideTip;\n",
    "/* controls */\n",
    "for (let l = 0; l < L; l++) $(\"layer\").add(new Option(String(l), l));\n",
    "for (let h = 0; h < H; h++) $(\"head\").add(new Option(String(h), h));\n",
    "function select(l, h) {\n",
    "  state.l = l; state.h = h; $(\"layer\").value = l; $(\"head\").value = h;\n",
    "  drawBig(); drawQuery(); drawTokens();\n",
    "}\n",
    "$(\"layer\").onchange = () => select(+$(\"layer\").value, state.h);\n",
    "$(\"head\").onchange = () => select(state.l, +$(\"head\").value);\n",
    "$(\"scale\").onchange = () => { lut = LUT[$(\"scale\").value]; drawThumbs(); select(state.l, state.h); };\n",
    "$(\"info\").textContent = meta.model + \": \" + L + \" layers x \" + H + \" heads, \" + T + \" positions (\" +\n",
    "  meta.prompt + \" prompt, \" + (T - meta.prompt) + \" generated)\" + (W ? \", sliding window \" + W : \"\");\n",
    "drawThumbs();\n",
    "select(0, 0);\n",
    "report(\"ok: \" + L + \" layers x \" + H + \" heads, \" + T + \" tokens, \" + thumbs.length + \" maps, rendered in \" +\n",
    "       Math.round(performance.now() - t0) + \" ms\");\n",
    "</script>\n</body>\n</html>\n",
    NULL
};

/* A JSON string for an inert <script> block: besides JSON's own escapes, '<', '>' and '&' become
   \u escapes, so no token can close the block. */
static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == '<' || *p == '>' || *p == '&') fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static void base64_bytes(FILE *f, const unsigned char *b, size_t n) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16 | (i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0) |
                     (i + 2 < n ? b[i + 2] : 0);
        char out[4] = {A[v >> 18], A[(v >> 12) & 63], i + 1 < n ? A[(v >> 6) & 63] : '=',
                       i + 2 < n ? A[v & 63] : '='};
        fwrite(out, 1, 4, f);
        if ((i / 3) % 19 == 18) fputc('\n', f);  /* lines of 76 characters */
    }
}

static int write_html(const AttnMaps *a, char **labels, const unsigned char *special,
                      const char *model_name, const char *path, Error *err) {
    const int T = a->n;
    const size_t tri = (size_t)T * (T + 1) / 2, total = tri * a->n_layers * a->n_heads;
    unsigned char *q = malloc(total);  /* every map's lower triangle, quantized */
    if (!q) return fail(err, "out of memory writing '%s'", path);
    size_t k = 0;
    for (int l = 0; l < a->n_layers; l++)
        for (int h = 0; h < a->n_heads; h++)
            for (int i = 0; i < T; i++) {
                const float *p = map_row(a, l, h, i);
                for (int j = 0; j <= i; j++) {
                    float v = p[j] * 255.0f + 0.5f;
                    q[k++] = (unsigned char)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
                }
            }
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(q);
        return fail(err, "cannot write '%s': %s", path, strerror(errno));
    }
    for (const char *const *line = PAGE_HEAD; *line; line++) fputs(*line, f);
    fprintf(f, "<script id=\"meta\" type=\"application/json\">{\"layers\": %d, \"heads\": %d, "
               "\"positions\": %d, \"prompt\": %d, \"window\": %d, \"model\": ",
            a->n_layers, a->n_heads, T, a->n_prompt, a->window);
    const char *slash = strrchr(model_name, '/');
    json_string(f, slash ? slash + 1 : model_name);
    fputs("}</script>\n<script id=\"toks\" type=\"application/json\">[", f);
    for (int i = 0; i < T; i++) {
        fprintf(f, "%s\n{\"id\": %d, \"special\": %s, \"text\": ", i ? "," : "", a->tokens[i],
                special[i] ? "true" : "false");
        json_string(f, labels[i]);
        fputc('}', f);
    }
    fputs("]</script>\n<script id=\"weights\" type=\"text/plain\">\n", f);
    base64_bytes(f, q, total);
    fputs("\n</script>\n", f);
    for (const char *const *line = PAGE_SCRIPT; *line; line++) fputs(*line, f);
    free(q);
    if (ferror(f) | fclose(f)) return fail(err, "error writing '%s'", path);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */

int attn_report(const AttnMaps *a, const AttnOptions *o, const Tokenizer *tok, const char *model_name,
                int printed, Error *err) {
    if (!o->html && !o->stats && o->show_layer < 0) return 0;
    unsigned char *special = calloc(a->n > 0 ? (size_t)a->n : 1, 1);
    char **labels = special ? token_labels(a, tok, special, err) : NULL;
    int rc = -1;
    if (!labels) {
        if (!special) fail(err, "out of memory for token labels");
        goto done;
    }
    if (o->html && write_html(a, labels, special, model_name, o->html, err)) goto done;
    if (o->stats) {
        if (printed) fputc('\n', stdout);
        if (print_stats(a, stdout, err)) goto done;
        printed = 1;
    }
    if (o->show_layer >= 0) {
        if (printed) fputc('\n', stdout);
        print_head(a, labels, o->show_layer, o->show_head, stdout);
    }
    fflush(stdout);
    rc = 0;
done:
    if (labels) free_labels(labels, a->n);
    free(special);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* The cost of context. The KV cache holds a key and a value row of kv_dim floats per layer for
   every position. Per position, the weight matrices cost 2 FLOPs per weight (the output layer
   included, the embedding lookup not); attention costs, per layer and query head, 2 * head_dim
   FLOPs per visible key for the scores q.k and as much for the weighted sum of values. So the
   attention share grows with the number of keys a position sees: counted here from the shapes,
   not timed. */

static void print_bytes(FILE *f, double b) {
    if (b >= 1 << 30) fprintf(f, "%.2f GiB", b / (1 << 30));
    else if (b >= 1 << 20) fprintf(f, "%.1f MiB", b / (1 << 20));
    else if (b >= 1 << 10) fprintf(f, "%.1f KiB", b / (1 << 10));
    else fprintf(f, "%.0f bytes", b);
}

void attn_print_kv_cache(const Config *c, FILE *f) {
    const int kv_dim = c->n_kv_heads * c->head_dim;
    const double per_token = 2.0 * c->n_layers * kv_dim * sizeof(float);
    fprintf(f, "kv cache: 2 (k, v) x %d layers x %d kv dim x 4 bytes = %.0f bytes per token, ",
            c->n_layers, kv_dim, per_token);
    print_bytes(f, per_token * c->seq_len);
    fprintf(f, " at the context length %d\n", c->seq_len);
}

static double matmul_flops(const Config *c) {
    const double q_dim = (double)c->n_heads * c->head_dim, kv_dim = (double)c->n_kv_heads * c->head_dim;
    const double ffn = (c->ffn == FFN_SWIGLU ? 3.0 : 2.0) * c->dim * c->hidden_dim;
    const double layer = 2.0 * c->dim * q_dim + 2.0 * c->dim * kv_dim + ffn;  /* wq wo, wk wv, ffn */
    return 2.0 * (c->n_layers * layer + (double)c->vocab_size * c->dim);
}

static int visible_keys(const Config *c, int pos) {
    return pos - attn_first_visible(pos, c->sliding_window) + 1;
}

static double attention_share(const Config *c, int pos) {
    const double att = 4.0 * c->n_layers * c->n_heads * c->head_dim * visible_keys(c, pos);
    return 100.0 * att / (att + matmul_flops(c));
}

void attn_print_cost(const Config *c, int n_prompt, int generated, FILE *f) {
    /* generated token 1 comes from the prompt's last position, token k from position P + k - 2 */
    const int first = n_prompt - 1, last = generated > 0 ? n_prompt + generated - 2 : n_prompt - 1;
    fprintf(f, "attention share of the FLOPs (counted from the shapes, not timed; %.1f MFLOP of "
               "matmuls per position): ", matmul_flops(c) / 1e6);
    if (generated > 0)
        fprintf(f, "%.2f%% for the first generated token (%d keys) -> %.2f%% for the last (%d keys)",
                attention_share(c, first), visible_keys(c, first), attention_share(c, last),
                visible_keys(c, last));
    else
        fprintf(f, "%.2f%% at the last prompt position (%d keys)", attention_share(c, first),
                visible_keys(c, first));
    fprintf(f, "; %.2f%% at the full context (%d keys)\n", attention_share(c, c->seq_len - 1),
            visible_keys(c, c->seq_len - 1));
}

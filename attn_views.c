/* attn_views.c: seeing attention. The maps attn_maps.c captured (every layer and head) are
 *
 *   --dump-attn PATH.npy   written exactly, float32 (n_layers, n_heads, T, T)
 *   --attn-html PATH.html  drawn in a self-contained page (weights quantized to 8 bits)
 *   --attn-show L.H        printed as a heatmap of one head, with each query's top three keys
 *   --attn-stats           summarised as one line per head: distance, entropy, previous token,
 *                          self, first token, and a role label; on the probes (attn_probe.c)
 *                          also prefix matching and copying, or the coref scores
 *   -v                     the KV cache's size and the FLOP share of attention (no maps needed),
 *                          and the measured time per generated token by position
 *
 * attn_circuits.c adds what needs the model's weights or run state: --attn-explain, the value
 * norms (--dump-attn-norms, the page's value-weighted maps) and the copying score.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "attn_circuits.h"
#include "attn_probe.h"
#include "attn_views.h"

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
    double induction;     /* on the probe: mean weight on the token after the previous occurrence */
    double copying;       /* on the probe: the OV circuit's copying score (attn_circuits.c) */
    double coref, vcoref; /* on the coref probe: the share of sentences whose pronoun attends most
                             to its antecedent, by weight and value-weighted (attn_probe.c) */
    int coref_role;       /* the coref probe's test says: above chance */
} HeadStats;

#define INDUCTION_ROLE 0.4 /* prefix-matching score that names a head `induction` */

/* Prefix matching: each query i of the probe's second copy (token t at i, first seen at i - R)
   and its weight on key i - R + 1, the token that followed t the first time. */
static double induction_score(const AttnMaps *a, int l, int h) {
    const int R = a->probe_len, first = a->probe_start + R;
    double sum = 0.0;
    for (int i = first; i < first + R; i++) sum += attn_map_row(a, l, h, i)[i - R + 1];
    return sum / R;
}

static HeadStats head_stats(const AttnMaps *a, int l, int h) {
    HeadStats s = {0};
    for (int i = 1; i < a->n; i++) {
        const float *p = attn_map_row(a, l, h, i);
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
    if (a->probe_len && a->probe_start + 2 * a->probe_len <= a->n)
        s.induction = induction_score(a, l, h);
    return s;
}

/* The first rule that holds names the head (thresholds in docs/attention.md). */
static const char *head_role(const HeadStats *s) {
    if (s->induction >= INDUCTION_ROLE) return "induction";
    if (s->coref_role) return "coref";
    if (s->prev >= 0.5) return "previous-token";
    if (s->sink >= 0.5) return "first-token/sink";
    if (s->self >= 0.5) return "self";
    if (s->distance <= 3.0) return "local";
    return "broad";
}

/* Every head's statistics, (n_layers * n_heads) in (layer, head) order; NULL if out of memory. */
static HeadStats *all_stats(const AttnMaps *a, Error *err) {
    HeadStats *st = malloc((size_t)a->n_layers * a->n_heads * sizeof *st);
    double *copy = a->probe_len ? malloc((size_t)a->n_layers * a->n_heads * sizeof *copy) : NULL;
    if (!st || (a->probe_len && !copy)) {
        free(st);
        free(copy);
        fail(err, "out of memory for the atlas");
        return NULL;
    }
    if (copy && attn_copying_scores(a, copy, err)) {
        free(st);
        free(copy);
        return NULL;
    }
    for (int l = 0; l < a->n_layers; l++)
        for (int h = 0; h < a->n_heads; h++) {
            HeadStats *s = &st[l * a->n_heads + h];
            *s = head_stats(a, l, h);
            if (copy) s->copying = copy[l * a->n_heads + h];
            if (a->coref) {
                const int k = l * a->n_heads + h;
                s->coref = (double)a->coref->hits[k] / a->coref->n;
                s->vcoref = (double)a->coref->vhits[k] / a->coref->n;
                s->coref_role = attn_coref_role(a->coref, k);
            }
        }
    free(copy);
    return st;
}

static int print_stats(const AttnMaps *a, const HeadStats *st, FILE *f, Error *err) {
    if (a->n < 2) return fail(err, "--attn-stats needs at least 2 positions, got %d", a->n);
    fprintf(f,
            "attention atlas: %d layers x %d heads, %d positions (averages over queries 1..%d)\n",
            a->n_layers, a->n_heads, a->n, a->n - 1);
    if (a->probe_len)
        fprintf(f,
                "induction probe: positions %d..%d repeated at %d..%d; induct = prefix matching, "
                "copy = OV copying score (role induction from induct >= %.1f)\n",
                a->probe_start, a->probe_start + a->probe_len - 1, a->probe_start + a->probe_len,
                a->probe_start + 2 * a->probe_len - 1, INDUCTION_ROLE);
    if (a->coref)
        fprintf(f,
                "coref probe: %d sentences, the maps are the first one's; coref = the share whose "
                "pronoun attends most to the antecedent, vcoref = the same value-weighted (chance "
                "%.3f; role coref from p < %.2g)\n",
                a->coref->n, a->coref->chance, a->coref->alpha);
    fprintf(f, "layer head distance entropy   prev   self   sink%s%s  role\n",
            a->probe_len ? " induct   copy" : "", a->coref ? "  coref vcoref" : "");
    for (int l = 0; l < a->n_layers; l++)
        for (int h = 0; h < a->n_heads; h++) {
            const HeadStats *s = &st[l * a->n_heads + h];
            fprintf(f, "%5d %4d %8.3f %7.3f %6.3f %6.3f %6.3f", l, h, s->distance, s->entropy,
                    s->prev, s->self, s->sink);
            if (a->probe_len) fprintf(f, " %6.3f %6.3f", s->induction, s->copying);
            if (a->coref) fprintf(f, " %6.3f %6.3f", s->coref, s->vcoref);
            fprintf(f, "  %s\n", head_role(s));
        }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* One head in the terminal: rows are queries, columns keys, one character per cell. With a
   colour terminal each cell is a background colour (viridis, ten steps, in the xterm 256-colour
   cube); otherwise a character from ".:-=+*#%@" (weights 0 .. 1 in nine equal steps). Masked
   cells are blank: the future is not printed, keys before a sliding window are spaces. */

#define LABEL_COLS 10 /* token label width in the row headers */
#define HEADER_ROWS 6 /* characters of each key's label, printed vertically above its column */

static const int VIRIDIS_256[10] = {53, 54, 60, 24, 30, 36, 72, 77, 148, 220};
static const char RAMP[] = ".:-=+*#%@";

static int use_colour(FILE *f) {
    const char *term = getenv("TERM"), *no_colour = getenv("NO_COLOR");
    return isatty(fileno(f)) && !(no_colour && *no_colour) && !(term && strcmp(term, "dumb") == 0);
}

static void print_head(const AttnMaps *a, char **labels, int l, int h, FILE *f) {
    const int T = a->n, colour = use_colour(f);
    int iw = 1; /* digits of the largest position */
    for (int t = T - 1; t >= 10; t /= 10) iw++;
    char vis[4 * LABEL_COLS + 1];

    fprintf(f, "attention layer %d head %d: %d positions, rows = queries, columns = keys; ", l, h,
            T);
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
            attn_visible(labels[j], col, HEADER_ROWS);
            const char *p = col;
            for (int k = 0; k < r && *p; k++) p += attn_utf8_len((unsigned char)*p);
            if (*p)
                fwrite(p, 1, (size_t)attn_utf8_len((unsigned char)*p), f);
            else
                fputc(' ', f);
        }
        fputc('\n', f);
    }
    for (int i = 0; i < T; i++) {
        const float *p = attn_map_row(a, l, h, i);
        const int lo = attn_first_visible(i, layer_window(&a->model->config, l));
        int n = attn_visible(labels[i], vis, LABEL_COLS);
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
        const float *p = attn_map_row(a, l, h, i);
        int best[3] = {-1, -1, -1};
        for (int j = 0; j <= i; j++) {
            int k = 3;
            while (k > 0 && (best[k - 1] < 0 || p[j] > p[best[k - 1]])) k--;
            if (k < 3) {
                for (int m = 2; m > k; m--) best[m] = best[m - 1];
                best[k] = j;
            }
        }
        int n = attn_visible(labels[i], vis, LABEL_COLS);
        fprintf(f, "%*d %s%*s <-", iw, i, vis, LABEL_COLS - n, "");
        for (int k = 0; k < 3 && best[k] >= 0; k++) {
            attn_visible(labels[best[k]], vis, LABEL_COLS);
            fprintf(f, "  %d %s %.3f", best[k], vis, p[best[k]]);
        }
        fputc('\n', f);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The page: one HTML file, no requests (a Content-Security-Policy forbids any), its data in
   three inert <script> blocks: meta and tokens as JSON, the weights as base64 of one byte per
   visible-or-not cell of each map's lower triangle, round(255 p), maps in (layer, head) order,
   rows i = 0 .. T-1 of i + 1 keys each. meta.first_visible[i] is the first key query i sees
   (attn_first_visible), so the script need not know the window rule. 12 layers x 12 heads x 200
   tokens is 2.9 MB of bytes, 3.9 MB of base64.

   The markup and style are page/attention.html, the script page/attention.js; the build compiles
   both into ./run (tools/embed.c writes them as arrays into build/gen/attn_page.c). The page is
   the HTML with its marker line replaced by the data blocks and the script. */

static double position_flops(const Config *c, int pos); /* the cost section, below */

extern const char attn_page_html[], attn_page_js[];
extern const size_t attn_page_html_len, attn_page_js_len;

#define PAGE_MARKER "<!-- attn_views.c writes the data blocks and page/attention.js here -->\n"

/* A JSON string for an inert <script> block: besides JSON's own escapes, '<', '>' and '&' become
   \u escapes, so no token can close the block. */
static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == '<' || *p == '>' || *p == '&')
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* base64 of n bytes, on one line. */
static void base64_bytes(FILE *f, const unsigned char *b, size_t n) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16 | (i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0) |
                     (i + 2 < n ? b[i + 2] : 0);
        char out[4] = {A[v >> 18], A[(v >> 12) & 63], i + 1 < n ? A[(v >> 6) & 63] : '=',
                       i + 2 < n ? A[v & 63] : '='};
        fwrite(out, 1, 4, f);
    }
}

static unsigned char byte_of(float x) { /* round(255 x) for x in [0, 1] */
    float v = x * 255.0f + 0.5f;
    return (unsigned char)(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
}

/* One map's lower triangle as bytes round(255 p), rows i = 0 .. T-1 of i + 1 keys, with runs of
   zeros coded as 0 then the run's length (1 .. 255): most weights of a trained model's long rows
   round to 0. rle needs room for T (T + 1) bytes (the worst case: isolated zeros). Returns the
   bytes written. */
static size_t rle_map(const AttnMaps *a, int l, int h, unsigned char *rle) {
    size_t w = 0;
    int zeros = 0;
    for (int i = 0; i < a->n; i++) {
        const float *p = attn_map_row(a, l, h, i);
        for (int j = 0; j <= i; j++) {
            unsigned char b = byte_of(p[j]);
            if (b == 0 && zeros < 255) {
                zeros++;
                continue;
            }
            if (zeros) rle[w++] = 0, rle[w++] = (unsigned char)zeros;
            zeros = 0;
            if (b == 0)
                zeros = 1;
            else
                rle[w++] = b;
        }
    }
    if (zeros) rle[w++] = 0, rle[w++] = (unsigned char)zeros;
    return w;
}

static void json_numbers(FILE *f, const char *name, const double *x, int n) {
    fprintf(f, ", \"%s\": [", name);
    for (int i = 0; i < n; i++) fprintf(f, "%s%.6g", i ? ", " : "", x[i]);
    fputc(']', f);
}

/* meta.coref: the probe's sentences, chance, test, each head's counts and p-value, and the first
   sentence's pronoun and antecedent positions (the maps are that sentence's) */
static void write_coref(FILE *f, const AttnCoref *c) {
    fprintf(f,
            ", \"coref\": {\"n\": %d, \"chance\": %.6g, \"alpha\": %.6g, \"pron\": %d, \"ant\": [",
            c->n, c->chance, c->alpha, c->pron);
    for (int j = 0, first = 1; j < c->n_tokens; j++)
        if (c->ant[j]) fprintf(f, "%s%d", first ? "" : ", ", j), first = 0;
    fputs("], \"hits\": [", f);
    for (int k = 0; k < c->heads; k++) fprintf(f, "%s%d", k ? ", " : "", c->hits[k]);
    fputs("], \"vhits\": [", f);
    for (int k = 0; k < c->heads; k++) fprintf(f, "%s%d", k ? ", " : "", c->vhits[k]);
    fputs("], \"p\": [", f);
    for (int k = 0; k < c->heads; k++) fprintf(f, "%s%.6g", k ? ", " : "", c->pvalue[k]);
    fputs("]}", f);
}

/* meta's statistics of every head and the measured cost */
static void write_meta_extra(FILE *f, const AttnMaps *a, const HeadStats *st) {
    const Config *c = &a->model->config;
    const int heads = a->n_layers * a->n_heads;
    if (a->probe_len)
        fprintf(f, ", \"probe\": [%d, %d], \"induction_role\": %.2f", a->probe_start, a->probe_len,
                INDUCTION_ROLE);
    if (a->coref) write_coref(f, a->coref);
    fputs(", \"stats\": [", f); /* the columns of the atlas, the role last */
    for (int k = 0; k < heads; k++) {
        fprintf(f, "%s[%.4f, %.4f, %.4f, %.4f, %.4f, %.4f, %.4f", k ? ", " : "", st[k].distance,
                st[k].entropy, st[k].prev, st[k].self, st[k].sink, st[k].induction, st[k].copying);
        if (a->coref) fprintf(f, ", %.4f, %.4f", st[k].coref, st[k].vcoref);
        fprintf(f, ", \"%s\"]", head_role(&st[k]));
    }
    fprintf(f, "], \"kv_token_bytes\": %.0f",
            2.0 * c->n_layers * c->n_kv_heads * c->head_dim * sizeof(float));
    if (a->step_ms && a->n > a->n_prompt) { /* positions n_prompt .. n-1 were fed one at a time */
        const int n = a->n - a->n_prompt;
        double *x = malloc((size_t)n * 3 * sizeof(double));
        if (x) {
            for (int k = 0; k < n; k++) {
                x[k] = a->n_prompt + k;
                x[n + k] = a->step_ms[a->n_prompt + k];
                x[2 * n + k] = position_flops(c, a->n_prompt + k);
            }
            fputs(", \"cost\": {\"capturing\": true", f);
            json_numbers(f, "pos", x, n);
            json_numbers(f, "ms", x + n, n);
            json_numbers(f, "flops", x + 2 * n, n);
            fputc('}', f);
            free(x);
        }
    }
}

/* The data blocks: meta, toks, explain, weights (one line of base64 per map, see rle_map), vnorms
   (one line: per map, T bytes round(255 n_j / max_j n_j) of ||W_O,h v_j||, the maxima in
   meta.vscale). */
static int write_page_data(FILE *f, const AttnMaps *a, char **labels, const unsigned char *special,
                           const HeadStats *st, const char *model_name) {
    const int T = a->n, heads = a->n_layers * a->n_heads;
    fprintf(f,
            "<script id=\"meta\" type=\"application/json\">{\"layers\": %d, \"heads\": %d, "
            "\"positions\": %d, \"prompt\": %d, \"window\": %d, \"first_visible\": [",
            a->n_layers, a->n_heads, T, a->n_prompt, a->window);
    for (int l = 0; l < a->n_layers; l++) { /* per layer: local and global layers differ */
        const int w = layer_window(&a->model->config, l);
        fprintf(f, "%s[", l ? ", " : "");
        for (int i = 0; i < T; i++) fprintf(f, "%s%d", i ? ", " : "", attn_first_visible(i, w));
        fputc(']', f);
    }
    fputs("], \"model\": ", f);
    const char *slash = strrchr(model_name, '/');
    json_string(f, slash ? slash + 1 : model_name);
    write_meta_extra(f, a, st);
    if (a->vnorms) {
        fputs(", \"vscale\": [", f);
        for (int k = 0; k < heads; k++) {
            float mx = 0.0f;
            for (int j = 0; j < T; j++) mx = fmaxf(mx, a->vnorms[(size_t)k * T + j]);
            fprintf(f, "%s%.6g", k ? ", " : "", mx);
        }
        fputc(']', f);
    }
    fputs("}</script>\n<script id=\"toks\" type=\"application/json\">[", f);
    for (int i = 0; i < T; i++) {
        fprintf(f, "%s\n{\"id\": %d, \"special\": %s, \"text\": ", i ? "," : "", a->tokens[i],
                special[i] ? "true" : "false");
        json_string(f, labels[i]);
        fputc('}', f);
    }
    fputs("]</script>\n<script id=\"explain\" type=\"application/json\">", f);
    if (a->explain.captured)
        attn_explain_json(a, f);
    else
        fputs("null", f);
    fputs("</script>\n<script id=\"weights\" type=\"text/plain\">\n", f);
    unsigned char *buf = malloc((size_t)T * (T + 1) + (size_t)heads * T + 1);
    if (!buf) return -1;
    for (int l = 0; l < a->n_layers; l++)
        for (int h = 0; h < a->n_heads; h++) {
            base64_bytes(f, buf, rle_map(a, l, h, buf));
            fputc('\n', f);
        }
    fputs("</script>\n<script id=\"vnorms\" type=\"text/plain\">\n", f);
    if (a->vnorms) {
        for (int k = 0; k < heads; k++) {
            float mx = 0.0f;
            for (int j = 0; j < T; j++) mx = fmaxf(mx, a->vnorms[(size_t)k * T + j]);
            for (int j = 0; j < T; j++)
                buf[(size_t)k * T + j] =
                    byte_of(mx > 0.0f ? a->vnorms[(size_t)k * T + j] / mx : 0.0f);
        }
        base64_bytes(f, buf, (size_t)heads * T);
    }
    fputs("\n</script>\n", f);
    free(buf);
    return 0;
}

static int write_html(const AttnMaps *a, char **labels, const unsigned char *special,
                      const HeadStats *st, const char *model_name, const char *path, Error *err) {
    const char *marker = strstr(attn_page_html, PAGE_MARKER);
    if (!marker) return fail(err, "page/attention.html (built into ./run) lacks its marker line");
    const size_t before = (size_t)(marker - attn_page_html), after = before + strlen(PAGE_MARKER);
    FILE *f = fopen(path, "wb");
    if (!f) return fail(err, "cannot write '%s': %s", path, strerror(errno));
    fwrite(attn_page_html, 1, before, f);
    if (write_page_data(f, a, labels, special, st, model_name)) {
        fclose(f);
        return fail(err, "out of memory writing '%s'", path);
    }
    fputs("<script>\n", f);
    fwrite(attn_page_js, 1, attn_page_js_len, f);
    fputs("</script>\n", f);
    fwrite(attn_page_html + after, 1, attn_page_html_len - after, f);
    if (ferror(f) | fclose(f)) return fail(err, "error writing '%s'", path);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */

int attn_report(const AttnMaps *a, const AttnOptions *o, const Tokenizer *tok,
                const char *model_name, int printed, Error *err) {
    if (!o->html && !o->stats && o->show_layer < 0 && o->explain[0] < 0) return 0;
    unsigned char *special = calloc(a->n > 0 ? (size_t)a->n : 1, 1);
    char **labels = special ? attn_token_labels(a, tok, special, err) : NULL;
    HeadStats *st = NULL;
    int rc = -1;
    if (!labels) {
        if (!special) fail(err, "out of memory for token labels");
        goto done;
    }
    if ((o->html || o->stats) && !(st = all_stats(a, err))) goto done;
    if (o->html && write_html(a, labels, special, st, model_name, o->html, err)) goto done;
    if (o->stats) {
        if (printed) fputc('\n', stdout);
        if (print_stats(a, st, stdout, err)) goto done;
        printed = 1;
    }
    if (o->show_layer >= 0) {
        if (printed) fputc('\n', stdout);
        print_head(a, labels, o->show_layer, o->show_head, stdout);
        printed = 1;
    }
    if (o->explain[0] >= 0) {
        if (printed) fputc('\n', stdout);
        if (attn_explain_print(a, labels, stdout, err)) goto done;
    }
    fflush(stdout);
    rc = 0;
done:
    if (labels) attn_free_labels(labels, a->n);
    free(special);
    free(st);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* The cost of context. The KV cache holds a key and a value row of kv_dim elements (floats, or
   halves with --kv-cache f16) per layer for every position. Per position, the weight matrices
   cost 2 FLOPs per weight (the output layer included, the embedding lookup not); attention
   costs, per layer and query head, 2 * head_dim FLOPs per visible key for the scores q.k and as
   much for the weighted sum of values. So the attention share grows with the number of keys a
   position sees: counted here from the shapes, not timed. */

static void print_bytes(FILE *f, double b) {
    if (b >= 1 << 30)
        fprintf(f, "%.2f GiB", b / (1 << 30));
    else if (b >= 1 << 20)
        fprintf(f, "%.1f MiB", b / (1 << 20));
    else if (b >= 1 << 10)
        fprintf(f, "%.1f KiB", b / (1 << 10));
    else
        fprintf(f, "%.0f bytes", b);
}

void attn_print_kv_cache(const Config *c, FILE *f) {
    const int kv_dim = c->n_kv_heads * c->head_dim;
    const size_t bytes = kv_types[c->kv_cache].bytes; /* per element: 4 (f32) or 2 (f16) */
    const double per_token = 2.0 * c->n_layers * kv_dim * bytes;
    fprintf(f, "kv cache: 2 (k, v) x %d layers x %d kv dim x %zu bytes = %.0f bytes per token, ",
            c->n_layers, kv_dim, bytes, per_token);
    print_bytes(f, per_token * c->seq_len);
    fprintf(f, " at the context length %d\n", c->seq_len);
}

static double matmul_flops(const Config *c) {
    const double q_dim = (double)c->n_heads * c->head_dim,
                 kv_dim = (double)c->n_kv_heads * c->head_dim;
    const double ffn = (ffn_gated(c->ffn) ? 3.0 : 2.0) * c->dim * c->hidden_dim;
    const double layer = 2.0 * c->dim * q_dim + 2.0 * c->dim * kv_dim + ffn; /* wq wo, wk wv, ffn */
    return 2.0 * (c->n_layers * layer + (double)c->vocab_size * c->dim);
}

/* The keys a query at pos sees, averaged over the layers: each layer has its own window (Gemma 3's
   global layers see every key, its local ones the last W). */
static double visible_keys(const Config *c, int pos) {
    double n = 0.0;
    for (int l = 0; l < c->n_layers; l++)
        n += pos - attn_first_visible(pos, layer_window(c, l)) + 1;
    return n / c->n_layers;
}

/* FLOPs of attention at one position: scores q.k and the weighted sum of values, per visible key,
   head and layer. */
static double attention_flops(const Config *c, int pos) {
    return 4.0 * c->n_layers * c->n_heads * c->head_dim * visible_keys(c, pos);
}

static double attention_share(const Config *c, int pos) {
    const double att = attention_flops(c, pos);
    return 100.0 * att / (att + matmul_flops(c));
}

/* FLOPs of the forward pass at one position: the matrix products plus attention over its keys. */
static double position_flops(const Config *c, int pos) {
    return matmul_flops(c) + attention_flops(c, pos);
}

#define COST_ROWS 12 /* rows of the measured table: the generated positions in equal groups */

/* The measured time per generated token, in up to COST_ROWS groups of positions, beside the KV
   cache's bytes at that length and the FLOP model's prediction scaled to the first group. */
static void print_cost_table(const Config *c, int first, int last, const double *step_ms,
                             int capturing, FILE *f) {
    const int n = last - first + 1, per = (n + COST_ROWS - 1) / COST_ROWS;
    const double kv_token =
        2.0 * c->n_layers * c->n_kv_heads * c->head_dim * kv_types[c->kv_cache].bytes;
    double ms[COST_ROWS], fl[COST_ROWS], ratio[COST_ROWS];
    int rows = 0;
    for (int g = first; g <= last; g += per, rows++) {
        const int end = g + per - 1 < last ? g + per - 1 : last;
        ms[rows] = 0.0;
        for (int p = g; p <= end; p++) ms[rows] += step_ms[p];
        ms[rows] /= end - g + 1;
        fl[rows] = position_flops(c, (g + end) / 2);
        ratio[rows] = ms[rows] / fl[rows];
    }
    /* the FLOP model in milliseconds: scaled by the median of measured / predicted over the rows,
       so that one disturbed row (another process on the machine) does not set the scale */
    for (int i = 1; i < rows; i++)
        for (int j = i; j > 0 && ratio[j] < ratio[j - 1]; j--) {
            double t = ratio[j];
            ratio[j] = ratio[j - 1];
            ratio[j - 1] = t;
        }
    const double k = ratio[rows / 2];
    fprintf(f,
            "time per generated token against its position (measured on this machine%s; the FLOP "
            "model in ms at the median ratio of the rows):\n",
            capturing ? ", with the attention capture on" : "");
    fprintf(f, "   positions   keys   ms/token   FLOP model   kv cache\n");
    int r = 0;
    for (int g = first; g <= last; g += per, r++) {
        const int end = g + per - 1 < last ? g + per - 1 : last;
        fprintf(f, "  %4d..%-4d %6g %10.4f %12.4f   ", g, end, visible_keys(c, (g + end) / 2),
                ms[r], k * fl[r]);
        print_bytes(f, kv_token * (end + 1));
        fputc('\n', f);
    }
}

void attn_print_cost(const Config *c, int n_prompt, int generated, const double *step_ms,
                     int capturing, FILE *f) {
    /* generated token 1 comes from the prompt's last position, token k from position P + k - 2 */
    const int first = n_prompt - 1, last = generated > 0 ? n_prompt + generated - 2 : n_prompt - 1;
    fprintf(f,
            "attention share of the FLOPs (counted from the shapes, not timed; %.1f MFLOP of "
            "matmuls per position): ",
            matmul_flops(c) / 1e6);
    if (generated > 0)
        fprintf(f,
                "%.2f%% for the first generated token (%g keys) -> %.2f%% for the last (%g keys)",
                attention_share(c, first), visible_keys(c, first), attention_share(c, last),
                visible_keys(c, last));
    else
        fprintf(f, "%.2f%% at the last prompt position (%g keys)", attention_share(c, first),
                visible_keys(c, first));
    fprintf(f, "; %.2f%% at the full context (%g keys)\n", attention_share(c, c->seq_len - 1),
            visible_keys(c, c->seq_len - 1));
    /* positions fed one at a time: the generated tokens after the first, n_prompt .. last */
    if (step_ms && last >= n_prompt) print_cost_table(c, n_prompt, last, step_ms, capturing, f);
}

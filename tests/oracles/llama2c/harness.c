/* harness.c: llama2.c's own encode and greedy loop, printing token ids (its `run` prints only
 * text). Built by make_golden.sh against a checkout of karpathy/llama2.c that is never part of
 * this repository: it includes that checkout's run.c (or runq.c with -DRUNQ), whose main() is
 * left out by TESTING, and calls its functions.
 *
 *   harness tok TOKENIZER.bin VOCAB TEXT...       one line per text: encode(text, BOS, no EOS)
 *   harness gen MODEL.bin TOKENIZER.bin STEPS PROMPT
 *       "prompt ids | generated ids": run.c's generate() loop at temperature 0 (argmax, the
 *       prompt forced, stopping at BOS or after STEPS positions), ids instead of text
 */
#define TESTING
#ifdef RUNQ
#include "runq.c"
#else
#include "run.c"
#endif

static void encode_texts(const char *path, int vocab, int n, char **texts) {
    Tokenizer t;
    build_tokenizer(&t, (char *)path, vocab);
    for (int a = 0; a < n; a++) {
        int *ids = malloc((strlen(texts[a]) + 3) * sizeof(int)), n_ids;
        encode(&t, texts[a], 1, 0, ids, &n_ids);
        for (int i = 0; i < n_ids; i++) printf("%s%d", i ? " " : "", ids[i]);
        printf("\n");
        free(ids);
    }
    free_tokenizer(&t);
}

static void greedy(char *model, char *tok_path, int steps, char *prompt) {
    Transformer tr;
    build_transformer(&tr, model);
    if (steps <= 0 || steps > tr.config.seq_len) steps = tr.config.seq_len;
    Tokenizer t;
    build_tokenizer(&t, tok_path, tr.config.vocab_size);
    int *ids = malloc((strlen(prompt) + 3) * sizeof(int)), n;
    encode(&t, prompt, 1, 0, ids, &n);
    for (int i = 0; i < n; i++) printf("%d ", ids[i]);
    printf("|");
    int token = ids[0];
    for (int pos = 0; pos < steps; pos++) {
        float *logits = forward(&tr, token, pos);
        int next = pos < n - 1 ? ids[pos + 1] : sample_argmax(logits, tr.config.vocab_size);
        if (next == 1) break;
        if (pos >= n - 1) printf(" %d", next);
        token = next;
    }
    printf("\n");
    free(ids);
    free_tokenizer(&t);
    free_transformer(&tr);
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "tok") == 0) {
        encode_texts(argv[2], atoi(argv[3]), argc - 4, argv + 4);
        return 0;
    }
    if (argc == 6 && strcmp(argv[1], "gen") == 0) {
        greedy(argv[2], argv[3], atoi(argv[4]), argv[5]);
        return 0;
    }
    fprintf(stderr, "usage: harness tok TOKENIZER VOCAB TEXT... | gen MODEL TOKENIZER STEPS PROMPT\n");
    return 2;
}

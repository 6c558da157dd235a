/* replay.c: a main() for a fuzz target without libFuzzer, so that the ordinary builds replay the
 * seed corpus and every input that once crashed (make test-c, and make sanitize under ASan):
 *
 *   build/native/tests/fuzz/replay_gguf [-v] tests/fuzz/corpus/gguf tests/fuzz/regressions/gguf
 *
 * Each argument is a file or a folder of files (not descended into). Each input is handed over in
 * a buffer of exactly its size, as libFuzzer does, so that ASan catches a read past its end. A
 * crash ends the run; -v names each file first, to tell which one it was.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int verbose;

/* Reads the whole file into a buffer of exactly its size, so that a read past the input hits
   the allocation's end; NULL (with a message) if it cannot. */
static uint8_t *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        if (f) fclose(f);
        return NULL;
    }
    *size = (size_t)st.st_size;
    uint8_t *data = malloc(*size ? *size : 1);
    int ok = data && fread(data, 1, *size, f) == *size;
    fclose(f);
    if (!ok) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        free(data);
        return NULL;
    }
    return data;
}

static int run_file(const char *path) {
    size_t size;
    uint8_t *data = read_file(path, &size);
    if (!data) return -1;
    if (verbose) fprintf(stderr, "replay: %s (%zu bytes)\n", path, size);
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 0;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file in dir, in name order; counts them in *passed and *failed. */
static void run_dir(const char *dir, int *passed, int *failed) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "replay: cannot open %s: %s\n", dir, strerror(errno));
        (*failed)++;
        return;
    }
    char **paths = NULL;
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        char **p = realloc(paths, (n + 1) * sizeof *paths);
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        char *path = malloc(len);
        if (!p || !path) {
            fprintf(stderr, "replay: out of memory\n");
            exit(1);
        }
        paths = p;
        snprintf(path, len, "%s/%s", dir, e->d_name);
        paths[n++] = path;
    }
    closedir(d);
    qsort(paths, n, sizeof *paths, by_name);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (stat(paths[i], &st) == 0 && S_ISREG(st.st_mode))
            run_file(paths[i]) == 0 ? (*passed)++ : (*failed)++;
        free(paths[i]);
    }
    free(paths);
}

int main(int argc, char **argv) {
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    int passed = 0, failed = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (strcmp(argv[i], "-v") == 0)
            verbose = 1;
        else if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode))
            run_dir(argv[i], &passed, &failed);
        else
            run_file(argv[i]) == 0 ? passed++ : failed++;
    }
    if (passed + failed == 0) {
        fprintf(stderr, "usage: %s [-v] FILE_OR_FOLDER...\n", name);
        return 2;
    }
    printf("%s: %d passed, %d failed\n", name, passed, failed);
    return failed > 0;
}

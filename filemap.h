/* filemap.h: a whole file mapped read-only (filemap.c), for the model and tokenizer files that
 * gguf.c and llama2c.c read in place. */
#ifndef FILEMAP_H
#define FILEMAP_H

#include "common.h"

/* Maps the regular file at path read-only into buf[0..size) (what names it in the errors: "model",
   "tokenizer"). A file of fewer than min_size bytes (min_size >= 1: an empty file cannot be mapped)
   is not mapped: returns 1 with *size set and no error, for the caller to say what it needed.
   Returns -1 with err when the file cannot be opened, is not a regular file or cannot be mapped. */
int map_file(const char *path, const char *what, size_t min_size, const uint8_t **buf, size_t *size,
             Error *err);
/* Unmaps what map_file mapped. */
void unmap_file(const uint8_t *buf, size_t size);

#endif /* FILEMAP_H */

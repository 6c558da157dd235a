/* heap.h: one binary heap for the two places that keep "the best so far": the tokenizer's queue
 * of merge candidates and the sampler's k most probable tokens.
 *
 * The heap is an array h[0..n) of elements of `size` bytes; before(a, b) is 1 when a belongs
 * nearer the root than b (a strict order), so h[0] is the element that comes out first. The
 * functions are static inline so that, called with a constant size and comparator, the compiler
 * inlines both and the moves are plain copies.
 */
#ifndef HEAP_H
#define HEAP_H

#include <string.h>

typedef int (*HeapBefore)(const void *a, const void *b);

#define HEAP_MAX_ELEM 32 /* bytes of the largest element a heap holds */

/* Moves h[i] up until its parent comes before it (after appending at i = n - 1). */
static inline void heap_sift_up(void *h, size_t size, int i, HeapBefore before) {
    unsigned char item[HEAP_MAX_ELEM], *base = h;
    memcpy(item, base + (size_t)i * size, size);
    while (i > 0 && before(item, base + (size_t)((i - 1) / 2) * size)) {
        memcpy(base + (size_t)i * size, base + (size_t)((i - 1) / 2) * size, size);
        i = (i - 1) / 2;
    }
    memcpy(base + (size_t)i * size, item, size);
}

/* Moves h[i] down until no child of it comes before it (after replacing the root). */
static inline void heap_sift_down(void *h, size_t size, int n, int i, HeapBefore before) {
    unsigned char item[HEAP_MAX_ELEM], *base = h;
    memcpy(item, base + (size_t)i * size, size);
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(base + (size_t)(c + 1) * size, base + (size_t)c * size)) c++;
        if (!before(base + (size_t)c * size, item)) break;
        memcpy(base + (size_t)i * size, base + (size_t)c * size, size);
        i = c;
    }
    memcpy(base + (size_t)i * size, item, size);
}

#endif /* HEAP_H */

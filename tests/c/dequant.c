/* dequant.c: the engine's dequantizer as a tool, for tests/py/test_quant.py, which holds it bit
 * for bit against an independent numpy decoder.
 *
 *   dequant TYPE IN OUT      IN: whole blocks of ggml type number TYPE; OUT: their weights as
 *                            little-endian float32
 */
#include <stdio.h>
#include <stdlib.h>

#include "kernels.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: dequant TYPE IN OUT\n");
        return 2;
    }
    kernels_init();
    const uint32_t type = (uint32_t)strtoul(argv[1], NULL, 10);
    const uint32_t block = ggml_block_size(type);
    if (!weight_type(type) || block < 2) {
        fprintf(stderr, "dequant: %s is not a quantized type the engine runs\n", argv[1]);
        return 1;
    }
    const size_t bytes = ggml_row_bytes(type, block);
    FILE *in = fopen(argv[2], "rb"), *out = fopen(argv[3], "wb");
    if (!in || !out) {
        fprintf(stderr, "dequant: cannot open %s or %s\n", argv[2], argv[3]);
        return 1;
    }
    unsigned char *raw = malloc(bytes);
    float *w = malloc(block * sizeof(float));
    size_t n = 0;
    while (fread(raw, 1, bytes, in) == bytes) {
        dequantize(type, w, raw, (int)block);
        fwrite(w, sizeof(float), block, out);
        n++;
    }
    free(raw);
    free(w);
    fclose(in);
    return fclose(out) != 0 || n == 0;
}

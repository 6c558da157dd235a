/* kernels_sets.h: what the kernel sets share with the driver (kernels.c); not part of the engine's
 * interface (kernels.h). One file per set, each exporting its table of leaf kernels:
 *   kernels_portable.c  plain C, every target
 *   kernels_avx512.c    AVX-512 F/BW/VL + VNNI  } x86-64 with GCC or Clang: target attributes, so
 *   kernels_avx2.c      AVX2 + FMA + F16C       } no -march flag is needed; chosen at run time
 *   kernels_neon.c      NEON, AArch64's baseline
 * The file of a set the target lacks compiles to nothing. The SIMD sets are the template
 * kernels_simd.h under each set's mapping macros. */
#ifndef KERNELS_SETS_H
#define KERNELS_SETS_H

#include "kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KERNELS_X86 1
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
#define KERNELS_NEON 1
#endif

extern const Kernels kernels_portable;
#ifdef KERNELS_X86
extern const Kernels kernels_avx512, kernels_avx2;
#endif
#ifdef KERNELS_NEON
extern const Kernels kernels_neon;
#endif

#endif /* KERNELS_SETS_H */

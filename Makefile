# tinygpt: `make` builds ./run; `make test` runs every test; `make help` lists the targets.
CC      ?= cc
CFLAGS  ?= -O2 -march=native
WARN    := -std=c11 -Wall -Wextra -Wshadow -Wno-unknown-pragmas -fopenmp-simd
LDLIBS  := -lm
SRC     := run.c model.c gguf.c tokenizer.c kernels.c attn.c
HDR     := model.h kernels_simd.h unicode_tables.h

# OpenMP when the compiler has it; `make NO_OMP=1` builds without.
ifndef NO_OMP
OMP_OK := $(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo yes)
ifeq ($(OMP_OK),yes)
OMPFLAGS := -fopenmp
endif
endif

# Python for the PyTorch comparisons: the first interpreter that can import torch and numpy.
PYTHON ?= $(shell for p in /usr/bin/python3 python3; do $$p -c 'import torch, numpy' >/dev/null 2>&1 && { command -v $$p; break; }; done)

BIN := $(CURDIR)/run
.PHONY: all run test test-c test-py test-arm sanitize bench clean help
all: $(BIN)

# The program is the file ./run; `make run` builds it and generates from the shipped model.
# (The file's target is spelled $(CURDIR)/run so that it differs from the command `make run`.)
$(BIN): $(SRC) $(HDR)
	$(CC) $(WARN) $(CFLAGS) $(OMPFLAGS) -o $@ $(SRC) $(LDLIBS)

PROMPT ?= And the LORD said
run: $(BIN)
	./run -i "$(PROMPT)" -n 128

# Debug build with AddressSanitizer + UndefinedBehaviorSanitizer.
run-asan: $(SRC) $(HDR)
	$(CC) $(WARN) $(ASAN) -o $@ $(SRC) $(LDLIBS)

tests/test_kernels: tests/test_kernels.c kernels.c gguf.c $(HDR)
	$(CC) $(WARN) $(CFLAGS) $(OMPFLAGS) -I. -o $@ tests/test_kernels.c kernels.c gguf.c $(LDLIBS)

# The sampler: run.c included whole (main renamed), so it links the other sources.
OTHER_SRC := $(filter-out run.c,$(SRC))
tests/test_sampler: tests/test_sampler.c $(SRC) $(HDR)
	$(CC) $(WARN) $(CFLAGS) $(OMPFLAGS) -I. -o $@ tests/test_sampler.c $(OTHER_SRC) $(LDLIBS)

tests/npycmp: tests/npycmp.c
	$(CC) $(WARN) -O2 -o $@ tests/npycmp.c $(LDLIBS)

# C-only tests: kernels vs their references, the sampler, golden fixtures, bad input. Needs only a
# C compiler.
test-c: $(BIN) tests/test_kernels tests/test_sampler tests/npycmp
	./tests/test_kernels
	./tests/test_sampler
	RUN=./run sh tests/golden.sh
	RUN=./run sh tests/bad_input.sh

# Live comparisons against PyTorch, when an interpreter with torch is found.
test-py: $(BIN)
	@if [ -z "$(PYTHON)" ]; then \
	  echo "test-py: SKIPPED: no python3 with torch and numpy found (install python3-torch python3-numpy, or set PYTHON=...)"; \
	else \
	  $(PYTHON) -m pytest -q tests; \
	fi

test: test-c test-py

# AArch64 (NEON kernels): cross-built, static, run under qemu-user. Needs Debian's
# gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user.
ARM_CC ?= aarch64-linux-gnu-gcc
build/arm/run: $(SRC) $(HDR)
	@mkdir -p build/arm
	$(ARM_CC) $(WARN) -O2 -static -o $@ $(SRC) $(LDLIBS)
build/arm/test_kernels: tests/test_kernels.c kernels.c gguf.c $(HDR)
	@mkdir -p build/arm
	$(ARM_CC) $(WARN) -O2 -static -I. -o $@ tests/test_kernels.c kernels.c gguf.c $(LDLIBS)
build/arm/test_sampler: tests/test_sampler.c $(SRC) $(HDR)
	@mkdir -p build/arm
	$(ARM_CC) $(WARN) -O2 -static -I. -o $@ tests/test_sampler.c $(OTHER_SRC) $(LDLIBS)
test-arm: build/arm/run build/arm/test_kernels build/arm/test_sampler tests/npycmp
	qemu-aarch64 build/arm/test_kernels
	qemu-aarch64 build/arm/test_sampler
	printf '#!/bin/sh\nexec qemu-aarch64 %s/build/arm/run "$$@"\n' "$(CURDIR)" > build/arm/run.sh
	chmod +x build/arm/run.sh
	RUN=build/arm/run.sh sh tests/golden.sh
	RUN=build/arm/run.sh sh tests/bad_input.sh

# Speed vs the machine's limits (read bandwidth, FMA peak, measured in the same run): random models
# at llama2.c's 15M/42M/110M shapes in F32/F16/Q8_0, 1 and 2 threads; writes bench/results.md.
build/bench/limits: bench/limits.c
	@mkdir -p build/bench
	$(CC) $(WARN) $(CFLAGS) $(OMPFLAGS) -o $@ bench/limits.c $(LDLIBS)

bench: $(BIN) build/bench/limits
	$(or $(PYTHON),/usr/bin/python3) bench/bench.py $(BENCH_ARGS)

# The C tests under ASan + UBSan (same scripts, sanitized binaries).
ASAN := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
tests/test_kernels-asan: tests/test_kernels.c kernels.c gguf.c $(HDR)
	$(CC) $(WARN) $(ASAN) -I. -o $@ tests/test_kernels.c kernels.c gguf.c $(LDLIBS)
tests/test_sampler-asan: tests/test_sampler.c $(SRC) $(HDR)
	$(CC) $(WARN) $(ASAN) -I. -o $@ tests/test_sampler.c $(OTHER_SRC) $(LDLIBS)

sanitize: run-asan tests/test_kernels-asan tests/test_sampler-asan tests/npycmp
	./tests/test_kernels-asan
	./tests/test_sampler-asan
	RUN=./run-asan sh tests/golden.sh
	RUN=./run-asan sh tests/bad_input.sh

clean:
	rm -f run run-asan tests/test_kernels tests/test_kernels-asan tests/test_sampler \
	      tests/test_sampler-asan tests/npycmp
	rm -rf build/arm

help:
	@echo "make            build ./run (OpenMP if available; NO_OMP=1 to disable)"
	@echo "make run        build, then generate from the shipped model (PROMPT=\"...\")"
	@echo "make test       C tests, then the PyTorch comparisons (if torch is installed)"
	@echo "make test-c     C-only tests: kernels, sampler, golden fixtures, bad input"
	@echo "make sanitize   C tests under AddressSanitizer + UBSan"
	@echo "make test-arm   C tests of an AArch64 (NEON) build under qemu-user"
	@echo "make bench      speed vs the machine's limits -> bench/results.md (BENCH_ARGS=--quick)"
	@echo "make clean      remove build outputs"

# tinygpt: `make` builds ./run; `make test` runs every test; `make help` lists the targets.
#
# Every build variant (native, asan, arm, ...) compiles the same sources with one rule into its
# own folder build/VARIANT/, with dependency files so that a changed header rebuilds what uses it.
.DEFAULT_GOAL := all
CC      ?= cc
CFLAGS  ?= -O2 -march=native
WARN    := -std=c11 -Wall -Wextra -Wshadow -Wno-unknown-pragmas -fopenmp-simd
DEPS    := -MMD -MP
LDLIBS  := -lm
ASAN    := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
FUZZ    := -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
           -fno-sanitize-recover=all -Wno-pass-failed
FUZZ_LINK := -fsanitize=fuzzer,address,undefined
ARM_CC  ?= aarch64-linux-gnu-gcc
HOST_CC ?= cc

# The engine (everything but main), then the program.
LIB_SRC := cli.c chat.c model.c llama2c.c forward.c gguf.c gguf_vocab.c filemap.c tokenizer.c \
           unicode.c sampler.c spec.c half.c kernels.c kernels_attn.c kernels_portable.c \
           kernels_quant.c kernels_iquant.c kernels_avx512.c kernels_avx2.c kernels_neon.c \
           attn_maps.c attn_circuits.c attn_probe.c attn_views.c build/gen/attn_page.c
SRC     := run.c $(LIB_SRC)
C_TESTS := tests/c/test_kernels tests/c/test_sampler tests/c/test_decoder tests/c/test_tokenizer \
           tests/c/test_spec \
           tests/c/test_cli
C_TOOLS := tests/c/dequant  # built for tests/py
# Fuzz targets tests/fuzz/fuzz_NAME.c: libFuzzer binaries build/fuzz/fuzz_NAME (make fuzz), and in
# every variant a replay of their seeds and regressions, build/VARIANT/tests/fuzz/replay_NAME.
FUZZ_TARGETS := gguf tokenizer cli llama2c numeric probe

# OpenMP when the compiler has it; `make NO_OMP=1` builds without.
ifndef NO_OMP
OMP_OK := $(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo yes)
ifeq ($(OMP_OK),yes)
OMPFLAGS := -fopenmp
endif
endif

# Python for the PyTorch comparisons: the first interpreter that can import torch and numpy.
PYTHON ?= $(shell for p in /usr/bin/python3 python3; do $$p -c 'import torch, numpy' >/dev/null 2>&1 && { command -v $$p; break; }; done)

# variant(NAME, COMPILER, FLAGS, LINK FLAGS): build/NAME/*.o from the sources, build/NAME/run, and
# build/NAME/tests/* from the C tests, each linked with the engine's objects. build/NAME/flags
# holds the compile line, so that objects built with other flags (NO_OMP=1, CC=clang) are rebuilt.
define variant
$(1)_CC    := $(2)
$(1)_FLAGS := $(3)
$(1)_LINK  := $(4)
build/$(1)/flags: FORCE
	@mkdir -p $$(@D)
	@echo '$(2) $(3) $(4)' | cmp -s - $$@ || echo '$(2) $(3) $(4)' > $$@
build/$(1)/%.o: %.c build/$(1)/flags
	@mkdir -p $$(@D)
	$$($(1)_CC) $$(WARN) $$($(1)_FLAGS) $$(DEPS) -I. -c -o $$@ $$<
build/$(1)/run: $$(SRC:%.c=build/$(1)/%.o)
	$$($(1)_CC) $$($(1)_FLAGS) $$($(1)_LINK) -o $$@ $$^ $$(LDLIBS)
build/$(1)/tests/%: build/$(1)/tests/%.o $$(LIB_SRC:%.c=build/$(1)/%.o)
	$$($(1)_CC) $$($(1)_FLAGS) $$($(1)_LINK) -o $$@ $$^ $$(LDLIBS)
build/$(1)/tests/fuzz/replay_%: build/$(1)/tests/fuzz/replay.o build/$(1)/tests/fuzz/fuzz_%.o \
                                $$(LIB_SRC:%.c=build/$(1)/%.o)
	$$($(1)_CC) $$($(1)_FLAGS) $$($(1)_LINK) -o $$@ $$^ $$(LDLIBS)
-include $$(wildcard build/$(1)/*.d build/$(1)/tests/*/*.d)
endef
$(eval $(call variant,native,$(CC),$(CFLAGS) $(OMPFLAGS),))
$(eval $(call variant,asan,$(CC),$(ASAN),))
# For Valgrind: portable (its CPU model lacks AVX-512, which the kernels then do not choose), no
# OpenMP (its runtime's thread pool is noise to memcheck), symbols for the reports.
$(eval $(call variant,valgrind,$(CC),-O1 -g,))
$(eval $(call variant,arm,$(ARM_CC),-O2,-static))
FUZZ_CC ?= clang
$(eval $(call variant,fuzz,$(FUZZ_CC),$(FUZZ),$(FUZZ_LINK)))

# The attention page (page/) is part of the program: tools/embed, built for this machine even when
# cross-compiling, writes its files as C arrays into build/gen/attn_page.c, a source like the others.
PAGE := page/attention.html page/attention.js
build/tools/embed: tools/embed.c
	@mkdir -p $(@D)
	$(HOST_CC) $(WARN) -O2 -o $@ $<
build/gen/attn_page.c: build/tools/embed $(PAGE)
	@mkdir -p $(@D)
	build/tools/embed $@ attn_page_html=page/attention.html attn_page_js=page/attention.js

# The page's script parses, and holds no "</script" (which would end its block in the page).
check-page:
	node --check page/attention.js
	! grep -in '</script' page/attention.js

BIN := $(CURDIR)/run
.PHONY: all run FORCE test test-c test-py docs-check test-arm sanitize memcheck fuzz fuzz-run bench \
        check-page mutants format format-check clean help
.SECONDARY:  # keep every intermediate file (objects, the generated page source)
all: $(BIN)

# The program is the file ./run; `make run` builds it and generates from the shipped model.
# (The file's target is spelled $(CURDIR)/run so that it differs from the command `make run`.)
$(BIN): build/native/run
	cp $< $@.tmp && mv -f $@.tmp $@

PROMPT ?= And the LORD said
run: $(BIN)
	./run -i "$(PROMPT)" -n 128

# The golden scripts' comparison tool runs on the build machine, whatever the variant under test.
build/npycmp: tests/c/npycmp.c
	@mkdir -p $(@D)
	$(CC) $(WARN) -O2 -o $@ $< $(LDLIBS)

# The C tests of one variant: kernels vs their references, the sampler, the streaming decoder,
# special tokens vs brute force, speculative sampling's distribution, the options' ranges, golden
# fixtures, bad input. Needs only a C compiler. $(2) runs a binary of another architecture (qemu).
# The kernels run with OpenMP workers on 128 KiB stacks (musl's default), which big stack buffers
# would overflow.
define c_tests
	OMP_STACKSIZE=128K $(2) build/$(1)/tests/c/test_kernels
	$(2) build/$(1)/tests/c/test_sampler
	$(2) build/$(1)/tests/c/test_decoder
	$(2) build/$(1)/tests/c/test_tokenizer
	$(2) build/$(1)/tests/c/test_spec
	$(2) build/$(1)/tests/c/test_cli
	RUN="$(3)" sh tests/c/golden.sh
	RUN="$(3)" sh tests/c/bad_input.sh
	RUN="$(3)" sh tests/c/llamacpp_vectors.sh
	$(2) build/$(1)/tests/fuzz/replay_gguf $(wildcard tests/fuzz/*/gguf)
	$(2) build/$(1)/tests/fuzz/replay_tokenizer $(wildcard tests/fuzz/*/tokenizer)
	$(2) build/$(1)/tests/fuzz/replay_cli $(wildcard tests/fuzz/*/cli)
	$(2) build/$(1)/tests/fuzz/replay_llama2c $(wildcard tests/fuzz/*/llama2c)
	$(2) build/$(1)/tests/fuzz/replay_numeric $(wildcard tests/fuzz/*/numeric)
	$(2) build/$(1)/tests/fuzz/replay_probe $(wildcard tests/fuzz/*/probe)
endef
REPLAYS = $(FUZZ_TARGETS:%=build/$(1)/tests/fuzz/replay_%)

test-c: $(BIN) $(C_TESTS:%=build/native/%) $(call REPLAYS,native) build/npycmp
	$(call c_tests,native,,./run)

# llama.cpp's own quantizer, for tests/py/test_quant.py and bench/quality.py: calls
# llama_model_quantize in the npm oracle's libllama (dlopen; -ldl for glibc before 2.34).
build/tools/llama_quantize: tests/oracles/llama_quantize.c
	@mkdir -p $(@D)
	$(HOST_CC) $(WARN) -O2 -o $@ $< -ldl

# Live comparisons against PyTorch, when an interpreter with torch is found.
test-py: $(BIN) $(C_TOOLS:%=build/native/%) build/tools/llama_quantize
	@if [ -z "$(PYTHON)" ]; then \
	  echo "test-py: SKIPPED: no python3 with torch and numpy found (install python3-torch python3-numpy, or set PYTHON=...)"; \
	else \
	  $(PYTHON) -m pytest -q tests/py; \
	fi

# The examples in README.md and docs/: each `$ command` of a console block is run and its output
# compared with the one shown (tests/docs_check.py; `python3 tests/docs_check.py --update` rewrites
# the outputs from the program).
docs-check: $(BIN)
	python3 tests/docs_check.py

test: test-c docs-check test-py

# The C tests under AddressSanitizer + UndefinedBehaviorSanitizer (same scripts, sanitized binaries).
# And GGUF files aligned to 1 and 2 bytes (tests/py/test_alignment.py), which UBSan checks for
# misaligned loads, when an interpreter with torch is found.
sanitize: build/asan/run $(C_TESTS:%=build/asan/%) $(call REPLAYS,asan) build/npycmp
	$(call c_tests,asan,,build/asan/run)
	@if [ -n "$(PYTHON)" ]; then \
	  RUN_BIN=$(CURDIR)/build/asan/run $(PYTHON) -m pytest -q tests/py/test_alignment.py; \
	else \
	  echo "sanitize: tests/py/test_alignment.py SKIPPED: no python3 with torch and numpy"; \
	fi

# Valgrind's memcheck (Debian's valgrind) on short generations of every model family and weight
# type the tests have or make (tests/c/memcheck.sh; the generated ones need $(PYTHON)), a chat with
# context shifts included: no read of memory nothing wrote, no invalid access, no definite leak.
memcheck: build/valgrind/run
	VG_RUN=build/valgrind/run PYTHON="$(PYTHON)" sh tests/c/memcheck.sh

# AArch64 (NEON kernels): cross-built, static, run under qemu-user. Needs Debian's
# gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user.
build/arm/run.sh: build/arm/run
	printf '#!/bin/sh\nexec qemu-aarch64 %s/build/arm/run "$$@"\n' "$(CURDIR)" > $@
	chmod +x $@
test-arm: build/arm/run.sh $(C_TESTS:%=build/arm/%) $(call REPLAYS,arm) build/npycmp
	$(call c_tests,arm,qemu-aarch64,build/arm/run.sh)

# Fuzzing (libFuzzer, clang; Debian's clang and libclang-rt-dev): `make fuzz` builds
# build/fuzz/fuzz_NAME; `make fuzz-run` runs each for FUZZ_SECONDS from its committed seeds
# (tests/fuzz/corpus/NAME, read only: new inputs go to build/fuzz/corpus/NAME) and fails on a crash.
FUZZ_SECONDS ?= 60
build/fuzz/fuzz_%: build/fuzz/tests/fuzz/fuzz_%.o $(LIB_SRC:%.c=build/fuzz/%.o)
	$(FUZZ_CC) $(FUZZ) $(FUZZ_LINK) -o $@ $^ $(LDLIBS)

fuzz: $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)

fuzz-run: fuzz
	for t in $(FUZZ_TARGETS); do sh tests/fuzz/run.sh $$t $(FUZZ_SECONDS) || exit 1; done

# Speed vs the machine's limits (read bandwidth, FMA peak, measured in the same run): random models
# at llama2.c's 15M/42M/110M shapes in F32/F16/Q8_0/Q4_0/Q4_K/Q4_K_M, 1 and 2 threads; writes bench/results.md.
build/bench/limits: bench/limits.c
	@mkdir -p build/bench
	$(CC) $(WARN) $(CFLAGS) $(OMPFLAGS) -o $@ bench/limits.c $(LDLIBS)

# Then the speculative rows (bench/spec_bench.py -> bench/results-spec.md): plain vs --lookup vs -md
# here and in llama.cpp built natively from node-llama-cpp's bundled source (bench/build_llamacpp.sh,
# cached in build/llama.cpp; only make bench builds it). SPEC_BENCH_ARGS: its options (--quick
# follows BENCH_ARGS).
SPEC_BENCH_ARGS ?= $(filter --quick,$(BENCH_ARGS))
bench: $(BIN) build/bench/limits build/tools/llama_quantize
	$(or $(PYTHON),/usr/bin/python3) bench/bench.py $(BENCH_ARGS)
	$(or $(PYTHON),/usr/bin/python3) bench/spec_bench.py $(SPEC_BENCH_ARGS)

# Mutation testing: each planted bug of tools/mutants.txt must make one of its tests fail
# (tools/mutants.py copies the tree to a temporary directory; MUTANTS_ARGS="--only sampler.c").
mutants:
	/usr/bin/python3 tools/mutants.py $(MUTANTS_ARGS)

# The C style (.clang-format, clang-format 14). unicode_tables.h is generated, so left as written.
FORMAT_SRC := $(filter-out unicode_tables.h,$(wildcard *.c *.h)) $(wildcard tests/c/*.c \
              tests/fuzz/*.c tests/fuzz/*.h tests/oracles/*.c tools/*.c bench/*.c)
format:
	clang-format -i $(FORMAT_SRC)
format-check:
	clang-format --dry-run --Werror $(FORMAT_SRC)

clean:
	rm -rf build run

help:
	@echo "make            build ./run (OpenMP if available; NO_OMP=1 to disable)"
	@echo "make run        build, then generate from the shipped model (PROMPT=\"...\")"
	@echo "make test       C tests, the docs' examples, then the PyTorch comparisons (if torch)"
	@echo "make test-c     C-only tests: kernels, sampler, decoder, golden fixtures, bad input"
	@echo "make docs-check run the examples of README.md and docs/, compare with their output"
	@echo "                (python3 tests/docs_check.py --update rewrites them)"
	@echo "make sanitize   C tests under AddressSanitizer + UBSan"
	@echo "make memcheck   short generations of every test model under Valgrind's memcheck"
	@echo "make fuzz-run   each libFuzzer target for FUZZ_SECONDS (default 60; make fuzz builds them)"
	@echo "make test-arm   C tests of an AArch64 (NEON) build under qemu-user"
	@echo "make check-page syntax check of the attention page's script (node)"
	@echo "make bench      speed vs the machine's limits -> bench/results.md (BENCH_ARGS=--quick),"
	@echo "                speculative decoding vs native llama.cpp -> bench/results-spec.md"
	@echo "make mutants    plant each bug of tools/mutants.txt, check that a test fails (MUTANTS_ARGS=--only X)"
	@echo "make format     apply the C style (.clang-format); make format-check: fail if unformatted"
	@echo "make clean      remove everything built"

#!/bin/sh
# memcheck.sh: Valgrind's memcheck on short generations (a short prompt, 4 tokens): no read of
# memory nothing wrote, no invalid access, no definite leak. On the committed fixtures (every
# family they hold, a llama2.c checkpoint, a chat with context shifts, the F16 KV cache, the
# weights read in place) and, when PYTHON names an interpreter with numpy, on generated models:
# the other families (tests/gen/make_models.py), every weight type (tools/quantize_gguf.py), a
# llama2.c version-2 checkpoint and a GGUF file aligned to 1 byte. Runs $VG_RUN (make memcheck:
# build/valgrind/run, built for Valgrind). Exit non-zero on any report.
# Planted bug: model_free without free(m->packed) gives "2,097,152 bytes in 1 blocks are
# definitely lost" (model_repack) and exit 99 on llama_gqa.
set -u
VG_RUN=${VG_RUN:-build/valgrind/run}
PYTHON=${PYTHON:-}
# 99: memcheck found errors (a program's own error exits 1 or 2, also a failure here)
VALGRIND="valgrind -q --error-exitcode=99 --errors-for-leak-kinds=definite --leak-check=full"
PROMPT="In the beginning God created"
FIX=tests/fixtures
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0

# make NAME COMMAND...: runs a step that makes models, its output shown only if it fails.
make_step() {
    name=$1
    shift
    if ! "$@" > "$tmp/gen.log" 2>&1; then
        fail=$((fail + 1))
        echo "FAIL making $name:"
        tail -5 "$tmp/gen.log" | sed 's/^/    /'
    fi
}

# check NAME ARGS...: valgrind on $VG_RUN ARGS (stdin from $STDIN, else /dev/null), exit 0 wanted.
check() {
    name=$1
    shift
    $VALGRIND "$VG_RUN" "$@" > "$tmp/out" 2> "$tmp/err" < "${STDIN:-/dev/null}"
    code=$?
    if [ "$code" -eq 0 ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL $name: exit $code$([ "$code" -eq 99 ] && echo ' (memcheck errors)'):"
        grep -v '^load:\|^prompt:' "$tmp/err" | head -40 | sed 's/^/    /'
    fi
}

for m in gpt2 llama_gqa qwen2 llama_long; do
    check "$m" "$FIX/$m.gguf" -i "$PROMPT" -n 4
done
check "llama_gqa --no-repack" "$FIX/llama_gqa.gguf" -i "$PROMPT" -n 4 --no-repack
check "llama_gqa --kv-cache f16" "$FIX/llama_gqa.gguf" -i "$PROMPT" -n 4 --kv-cache f16
check "llama_gqa, batch 1, sampled" "$FIX/llama_gqa.gguf" -i "$PROMPT" -n 4 -b 1 -s 1 \
    --repeat-penalty 1.3 --top-k 5
check "llama2.c checkpoint" "$FIX/llama2c/tiny.bin" -i "hi" -n 4
check "attention outputs" "$FIX/llama_gqa.gguf" -i "$PROMPT" -n 2 --attn-stats \
    --dump-attn "$tmp/a.npy" --attn-html "$tmp/a.html"
printf 'hello there\nhow are you today\nand what is this\nand that one too\n' > "$tmp/turns.txt"
STDIN=$tmp/turns.txt check "chat with context shifts" "$FIX/llama_gqa.gguf" --chat \
    --chat-template llama2 -n 6 -c 40 --context-shift

if [ -n "$PYTHON" ] && "$PYTHON" -c 'import numpy' 2> /dev/null; then
    gen="$tmp/gen"
    families="qwen3 gemma3 phi3_longrope mistral_window gpt2_sinusoidal llama_bias"
    # shellcheck disable=SC2086  # the list is words
    make_step families "$PYTHON" tests/gen/make_models.py "$gen" $families llama_256
    make_step llama2.c "$PYTHON" tests/gen/make_llama2c.py "$gen/l2c"
    for m in $families llama_256; do
        make_step "$m" "$PYTHON" export.py "$gen/$m" "$gen/$m.gguf"
    done
    for m in $families; do
        check "$m" "$gen/$m.gguf" -i "$PROMPT" -n 4
    done
    for t in f16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k q4_k q5_k q6_k iq4_nl q4_k_m; do
        make_step "$t" "$PYTHON" tools/quantize_gguf.py "$gen/llama_256.gguf" "$gen/$t.gguf" \
            --dtype "$t"
        check "llama_256 $t" "$gen/$t.gguf" -i "$PROMPT" -n 4
    done
    check "llama_256 q4_k_m --no-repack" "$gen/q4_k_m.gguf" -i "$PROMPT" -n 4 --no-repack
    for m in l2c_v2 l2c_v2_gs48; do
        check "llama2.c $m" "$gen/l2c/$m.bin" -z "$gen/l2c/tok512.bin" -i "$PROMPT" -n 4
    done
    make_step "alignment 1" "$PYTHON" -c "import sys; sys.path.insert(0, 'tests/py'); \
import gguf_read; gguf_read.realigned('$FIX/llama_gqa.gguf', 1, '$gen/align1.gguf')"
    check "alignment 1" "$gen/align1.gguf" -i "$PROMPT" -n 4
else
    echo "memcheck: generated models SKIPPED: no python3 with numpy (set PYTHON=...)"
fi

echo "memcheck: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

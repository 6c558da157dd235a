#!/bin/sh
# golden.sh: the engine against logits and token ids that PyTorch computed when the fixtures were
# made (tests/gen/make_fixtures.py). Needs only ./run and build/npycmp (`make test-c` builds both),
# run from the repository root: no Python.
set -u
RUN=${RUN:-./run}
NPYCMP=${NPYCMP:-build/npycmp}
FIX=tests/fixtures
TOL=1e-4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

# Models (tests/gen/make_fixtures.py says what each covers): llama GQA, qwen2 and gpt2 over ~50
# positions; llama_long over 100 (a prompt of 67, so the KV cache's second 64-key tile is read
# by the prompt, by every generated token and, at batch 100, inside one batch), with an RMSNorm
# epsilon that matters and F16 weights.
for v in llama_gqa qwen2 gpt2 llama_long; do
    model=$FIX/$v.gguf
    # prompt ids: ours must be a prefix of the golden sequence
    ids=$($RUN "$model" -i - --tokenize < "$FIX/$v.prompt.txt") || { bad "$v: --tokenize failed"; continue; }
    golden=$(cat "$FIX/$v.ids.txt")
    case "$golden" in
        "$ids "*) ok ;;
        *) bad "$v: prompt ids '$ids' are not a prefix of the golden '$golden'"; continue ;;
    esac
    p=$(echo "$ids" | wc -w)
    total=$(echo "$golden" | wc -w)
    n=$((total - p))
    for batch in 64 1 100; do
        if $RUN "$model" -i - -n "$n" -t 0 -b "$batch" --dump-logits "$tmp/$v.npy" \
                < "$FIX/$v.prompt.txt" > "$tmp/$v.txt" 2> "$tmp/$v.err" &&
           "$NPYCMP" "$tmp/$v.npy" "$FIX/$v.logits.npy" $TOL "$FIX/$v.ids.txt" "$p"; then
            ok
        else
            bad "$v (batch $batch): logits or greedy tokens differ from PyTorch's"
            cat "$tmp/$v.err"
        fi
    done
    # attention weights: rows sum to 1, the future is exactly zero (PyTorch's values are checked
    # by tests/py/test_attention.py)
    if $RUN "$model" -i - -n 8 -t 0 --dump-attn "$tmp/$v.attn.npy" < "$FIX/$v.prompt.txt" \
            > /dev/null 2> "$tmp/$v.err" && "$NPYCMP" --attn "$tmp/$v.attn.npy"; then
        ok
    else
        bad "$v: attention dump"
        cat "$tmp/$v.err"
    fi
done

# Tokenizers: for each text in tok_texts/, the ids of an independent implementation
# (tests/gen/make_tokenizers.py): the sentencepiece library on spm-kjv.model, which llama_gqa.gguf
# carries, and GPT-2's encoder.py algorithm on gpt2-bpe/, which gpt2.gguf carries. The last texts
# are runs of "l" ("l l" is a merge in both): the leftmost of tied pairs must merge first.
tokenize_golden() {  # MODEL GOLDEN_FILE REFERENCE_NAME
    i=0
    while IFS= read -r expected; do
        f=$(printf '%s/tok_texts/%02d.txt' "$FIX" "$i")
        got=$($RUN "$1" -i - --tokenize < "$f")
        if [ "$got" = "$expected" ]; then ok; else bad "tokenize $f with $1: got '$got', $3 '$expected'"; fi
        i=$((i + 1))
    done < "$2"
}
tokenize_golden "$FIX/llama_gqa.gguf" "$FIX/tokenizer_golden_spm.txt" sentencepiece
tokenize_golden "$FIX/gpt2.gguf" "$FIX/tokenizer_golden_gpt2.txt" encoder.py

# A llama2.c checkpoint (legacy layout) with tokenizer.bin beside it: what llama2.c's own `run`
# printed for `run tiny.bin -t 0 -n 24 -i "In the beginning"` (tests/oracles/llama2c). llama2.c
# counts 24 positions from BOS and prints the prompt too; ./run prints what it generates.
l2c=$FIX/llama2c
p=$($RUN "$l2c/tiny.bin" --tokenize -i "In the beginning" | wc -w)
if $RUN "$l2c/tiny.bin" -t 0 -n $((24 - (p - 1))) -i "In the beginning" > "$tmp/tiny.txt" 2> "$tmp/tiny.err" &&
   { printf 'In the beginning'; cat "$tmp/tiny.txt"; } | cmp -s - "$l2c/tiny.golden.txt"; then
    ok
else
    bad "llama2c tiny.bin: greedy text differs from llama2.c's run"
    cat "$tmp/tiny.txt" "$tmp/tiny.err"
fi

# The penalties' window holds the whole prompt, its first token (BOS) included: from an empty
# prompt (BOS alone), a presence penalty of -100 raises BOS alone by 100, so greedy decoding picks
# BOS every time, which prints nothing. Left out of the window, BOS is not raised and the text is
# the model's own (checked non-empty, so that this can fail).
g=$FIX/llama_gqa.gguf
plain=$($RUN "$g" -i "" -n 4 -t 0 2> /dev/null)
boosted=$($RUN "$g" -i "" -n 4 -t 0 --presence-penalty -100 --repeat-last-n 64 2> "$tmp/pen.err")
if [ -n "$plain" ] && [ -z "$boosted" ] && grep -q "generated: 4 tokens" "$tmp/pen.err" &&
   ! grep -q "end of text" "$tmp/pen.err"; then
    ok
else
    bad "penalty window: BOS not counted (greedy with BOS raised printed '$boosted', plain '$plain')"
fi
# The smallest temperature the options accept (0.001; below it is refused, see bad_input.sh)
# samples the greedy text here: no overflow turns its probabilities into garbage.
greedy=$($RUN "$g" -i "In the beginning" -n 12 -t 0 2> /dev/null)
tiny=$($RUN "$g" -i "In the beginning" -n 12 -t 0.001 -s 7 2> /dev/null)
if [ -n "$greedy" ] && [ "$tiny" = "$greedy" ]; then ok; else bad "-t 0.001: '$tiny', greedy '$greedy'"; fi

echo "golden: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

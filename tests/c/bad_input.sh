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
# a Hugging Face model as downloaded: its directory, its safetensors or PyTorch weights
mkdir "$tmp/hf"
echo '{"model_type": "llama"}' > "$tmp/hf/config.json"
perl -e '$j = q({"__metadata__":{}}); print pack("Q<", length $j), $j' > "$tmp/hf/model.safetensors"
printf 'PK\003\004 zip' > "$tmp/hf/pytorch_model.bin"
expect "HF directory"          1 "'$tmp/hf' is a Hugging Face model directory: convert it with python3 export.py $tmp/hf out.gguf" -- $RUN "$tmp/hf" -i hi
expect "safetensors"           1 "is safetensors weights.*convert the model's directory with python3 export.py $tmp/hf out.gguf" -- $RUN "$tmp/hf/model.safetensors" -i hi
expect "PyTorch weights"       1 "is PyTorch weights.*convert the model's directory with python3 export.py $tmp/hf out.gguf" -- $RUN "$tmp/hf/pytorch_model.bin" -i hi
expect "10-byte file"          1 "model '$tmp/tiny.gguf' is too small to be a GGUF file (10 bytes)" -- $RUN "$tmp/tiny.gguf" -i hi
: > "$tmp/empty.gguf"
expect "empty file"            1 "model '$tmp/empty.gguf' is empty" -- $RUN "$tmp/empty.gguf" -i hi
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
expect "negative temperature"  2 "-t expects 0 or a number"          -- $RUN "$GOOD" -t -1
expect "top-p above 1"         2 "--top-p expects a number"     -- $RUN "$GOOD" --top-p 1.5
expect "top-p 0"               2 "--top-p expects a number in (0, 1], got '0'" -- $RUN "$GOOD" --top-p 0
expect "repeat penalty 0"      2 "--repeat-penalty expects a number in \[0.001, 100\], got '0'" -- $RUN "$GOOD" --repeat-penalty 0
expect "tiny temperature"      2 "-t expects 0 or a number in \[0.001, 100\], got '1e-9'" -- $RUN "$GOOD" -t 1e-9
expect "temperature NaN"       2 "--temp expects 0 or a number in \[0.001, 100\], got 'nan'" -- $RUN "$GOOD" --temp nan
expect "threads 0"             2 "--threads expects an integer in \[1, 1024\], got '0'" -- $RUN "$GOOD" --threads 0
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
expect "attn-probe name"       2 "the probes are 'induction' and 'coref'" -- $RUN "$GOOD" --attn-probe bigram
expect "attn-probe and prompt" 2 "replaces the prompt"          -- $RUN "$GOOD" -i hi --attn-probe induction
# the coref probe's sentence file: each malformed line named by its number
good_line='The doctor fired [the nurse] because {she} was tired.'
printf '%s\n' "$good_line" 'The doctor fired [the nurse because {she} was tired.' > "$tmp/unbalanced.txt"
printf '%s\n' "$good_line" '' '# a comment' 'The doctor fired [the nurse] because she was tired.' > "$tmp/nopronoun.txt"
printf '%s\n' "$good_line" '{She} said that [the nurse] was tired.' > "$tmp/before.txt"
printf '%s\n' "$good_line" 'The doctor fired [the nurse]] because {she} was tired.' > "$tmp/twice.txt"
printf '%s\n' "$good_line" 'The doctor [fired {the] nurse} because she was tired.' > "$tmp/overlap.txt"
printf 'The [doctor] and {the nurse\n' > "$tmp/open.txt"
expect "probe-file unbalanced" 1 "line 2: .*unbalanced" -- $RUN "$GOOD" --attn-probe coref --probe-file "$tmp/unbalanced.txt"
expect "probe-file no pronoun" 1 "line 4: no pronoun in {braces}" -- $RUN "$GOOD" --attn-probe coref --probe-file "$tmp/nopronoun.txt"
expect "probe-file order"      1 "line 2: the pronoun {She} comes before the antecedent" -- $RUN "$GOOD" --attn-probe coref --probe-file "$tmp/before.txt"
expect "probe-file twice"      1 "line 2: .*unbalanced" -- $RUN "$GOOD" --attn-probe coref --probe-file "$tmp/twice.txt"
expect "probe-file overlap"    1 "line 2: the pronoun {.*} comes before the antecedent" -- $RUN "$GOOD" --attn-probe coref --probe-file "$tmp/overlap.txt"
expect "probe-file open"       1 "line 1: .*unbalanced" -- $RUN "$GOOD" --attn-probe coref --probe-file "$tmp/open.txt"
printf '%s\n' "$good_line" > "$tmp/good.txt"
expect "probe-file too long"   1 "line 1: the sentence is [0-9]* tokens, longer than the context of 8" -- $RUN "$GOOD" -c 8 --attn-probe coref --probe-file "$tmp/good.txt"
expect "probe-file missing"    1 "cannot open" -- $RUN "$GOOD" --attn-probe coref --probe-file "$tmp/none.txt"
: > "$tmp/empty.txt"
expect "probe-file empty"      1 "no sentences" -- $RUN "$GOOD" --attn-probe coref --probe-file "$tmp/empty.txt"
expect "probe-file alone"      2 "--probe-file needs --attn-probe coref" -- $RUN "$GOOD" --probe-file "$tmp/before.txt"
expect "coref --tokenize"      2 "the coref probe runs many sentences" -- $RUN "$GOOD" --attn-probe coref --tokenize
expect "draft vocabulary"      1 "same vocabulary"              -- $RUN "$GOOD" -i hi -n 2 -md models/kjv.gguf
expect "draft missing"         1 "nope.gguf"                    -- $RUN "$GOOD" -i hi -n 2 -md "$tmp/nope.gguf"
expect "draft and lookup"      2 "give one"                     -- $RUN "$GOOD" -i hi -md "$GOOD" --lookup 2
expect "draft-max alone"       2 "needs -md"                    -- $RUN "$GOOD" -i hi --draft-max 4
expect "draft-max range"       2 "expects an integer in \[1, 64\]" -- $RUN "$GOOD" -i hi -md "$GOOD" --draft-max 0
expect "lookup range"          2 "expects an integer in \[0, 64\]" -- $RUN "$GOOD" -i hi --lookup 65
expect "lookup, dump-logits"   2 "do not work with --ppl"       -- $RUN "$GOOD" -i hi --lookup 4 --dump-logits "$tmp/l.npy"
expect "draft, attention"      2 "do not work with --ppl"       -- $RUN "$GOOD" -i hi -md "$GOOD" --attn-stats
expect "lookup, ppl"           2 "do not work with --ppl"       -- $RUN "$GOOD" --ppl x --lookup 4
expect "--ppl with -c 1"       1 "--ppl needs a context of at least 2 positions; this one is 1 (see -c)" -- $RUN "$GOOD" --ppl "$tmp/long.txt" -c 1
expect "attn-norms with --ppl" 2 "do not work with --ppl"       -- $RUN "$GOOD" --ppl x --dump-attn-norms x.npy
printf 'In the\000 beginning\n' > "$tmp/nul_turn.txt"
STDIN=$tmp/nul_turn.txt expect "chat turn with NUL" 1 "the user's turn holds a NUL byte (byte 6)" -- $RUN models/kjv.gguf --chat --chat-template mistral -n 1
STDIN=$tmp/nul_turn.txt expect "chat --tokenize NUL" 1 "the turns hold a NUL byte (byte 6)" -- $RUN models/kjv.gguf --chat --tokenize --chat-template mistral

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
: > "$tmp/tok_empty.bin"
expect "l2c -z empty"           1 "tokenizer '$tmp/tok_empty.bin' is empty" -- $RUN "$L2C/tiny.bin" -z "$tmp/tok_empty.bin" -i hi
expect "l2c -z directory"       1 "tokenizer '$tmp' is not a regular file" -- $RUN "$L2C/tiny.bin" -z "$tmp" -i hi
expect "-z with a GGUF"         1 "is for llama2.c checkpoints"    -- $RUN "$GOOD" -z "$L2C/tokenizer.bin" -i hi

# Non-finite numbers: the model's logits must be finite, or the run stops naming the position.
# poke NAME TENSOR BYTES: $tmp/NAME.gguf, GOOD with the first bytes of the tensor's data replaced
# by the perl expression BYTES (the GGUF header walked to find them: metadata, then tensor infos,
# then the data at the alignment).
poke() {
    perl -e '
        my ($in, $want, $expr) = @ARGV;
        my $bytes = eval $expr;
        open my $f, "<:raw", $in or die; local $/; my $b = <$f>;
        my $p = 8;
        my ($nt, $nkv) = unpack("Q< Q<", substr($b, $p, 16)); $p += 16;
        my %size = (0, 1, 1, 1, 2, 2, 3, 2, 4, 4, 5, 4, 6, 4, 7, 1, 10, 8, 11, 8, 12, 8);
        sub str { my $n = unpack("Q<", substr($b, $p, 8)); $p += 8 + $n; substr($b, $p - $n, $n) }
        sub val { my $t = shift;
            return str() if $t == 8;
            if ($t == 9) { my ($et, $n) = unpack("V Q<", substr($b, $p, 12)); $p += 12;
                           val($et) for 1 .. $n; return "" }
            $p += $size{$t}; substr($b, $p - $size{$t}, $size{$t}) }
        my $align = 32;
        for (1 .. $nkv) { my $k = str(); my $t = unpack("V", substr($b, $p, 4)); $p += 4;
                          my $v = val($t); $align = unpack("V", $v) if $k eq "general.alignment" }
        my $off;
        for (1 .. $nt) { my $name = str(); my $nd = unpack("V", substr($b, $p, 4));
                         $p += 4 + 8 * $nd + 4; my $o = unpack("Q<", substr($b, $p, 8)); $p += 8;
                         $off = $o if $name eq $want }
        defined $off or die "no tensor $want\n";
        my $data = int(($p + $align - 1) / $align) * $align;
        substr($b, $data + $off, length $bytes) = $bytes;
        print $b' "$GOOD" "$2" "$3" > "$tmp/$1.gguf"
    cmp -s "$GOOD" "$tmp/$1.gguf" && { echo "FAIL poke $1: the edit changed nothing"; fail=$((fail + 1)); }
}
NAN='pack("V", 0x7fc00000)'  # a float32 quiet NaN
poke nan_norm output_norm.weight "$NAN"
poke nan_layer1 blk.1.ffn_down.weight "$NAN"
poke big_v blk.0.attn_v.weight 'pack("f<", 1e10) x 64'  # |v| far above F16's 65504
echo "In the beginning God created the heaven and the earth." > "$tmp/text.txt"
nonfinite="non-finite logit (nan) at position 0 (token 1)"
expect "NaN logits, min-p"      1 "$nonfinite; the weights or the KV cache" -- $RUN "$tmp/nan_norm.gguf" -i "" -k 0 -p 1 --min-p 0.1 -t 1
expect "NaN logits, greedy"     1 "$nonfinite"                  -- $RUN "$tmp/nan_norm.gguf" -i "" -t 0
expect "NaN logits, --ppl"      1 "non-finite logit (nan) at position 0" -- $RUN "$tmp/nan_norm.gguf" --ppl "$tmp/text.txt"
expect "NaN logits, chat"       1 "non-finite logit (nan) at position" -- $RUN "$tmp/nan_norm.gguf" --chat --chat-template llama2 -i hi
expect "F16 KV cache overflow"  1 "non-finite logit"            -- $RUN "$tmp/big_v.gguf" -i "In the" --kv-cache f16 -n 4
# with -v the error names where the residual stream first went non-finite (stderr holds more)
verbose_error() {  # NAME PATTERN -- command...
    name=$1 pattern=$2
    shift 3
    timeout 20 "$@" > /dev/null 2> "$tmp/err" < /dev/null
    code=$?
    if [ "$code" -eq 1 ] && [ "$(grep -c '^error: ' "$tmp/err")" -eq 1 ] && grep -q "^error: .*$pattern" "$tmp/err"; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL $name: exit $code, want 1 and an error with '$pattern':"
        grep '^error' "$tmp/err" | head -3
    fi
}
verbose_error "-v: NaN in layer 1"     "after layer 1$"       -- $RUN "$tmp/nan_layer1.gguf" -i "In the" -v
verbose_error "-v: NaN in the head"    "stayed finite: the output norm or head" -- $RUN "$tmp/nan_norm.gguf" -i "" -v
verbose_error "-v: F16 cache, layer 0" "after layer 0$"       -- $RUN "$tmp/big_v.gguf" -i "In the" --kv-cache f16 -n 4 -v
if $RUN "$tmp/big_v.gguf" -i "In the" --kv-cache f32 -n 4 > /dev/null 2>&1; then
    pass=$((pass + 1))
else
    fail=$((fail + 1))
    echo "FAIL big values in v: an F32 KV cache holds them, the run should succeed"
fi

echo "bad_input: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

#!/bin/sh
# run.sh NAME SECONDS: runs build/fuzz/fuzz_NAME (make fuzz) for SECONDS from the committed seeds
# tests/fuzz/corpus/NAME and the regressions tests/fuzz/regressions/NAME, which it only reads:
# libFuzzer writes new inputs into the first folder it is given, build/fuzz/corpus/NAME. A crash,
# a leak, a slow input (-timeout) or an allocation above -malloc_limit_mb fails the run and leaves
# the input in build/fuzz/artifacts/NAME/. The full log is build/fuzz/NAME.log.
set -u
name=$1 seconds=$2
work=build/fuzz/corpus/$name
mkdir -p "$work" "build/fuzz/artifacts/$name"
set -- "$work" tests/fuzz/corpus/"$name"
[ -d tests/fuzz/regressions/"$name" ] && set -- "$@" tests/fuzz/regressions/"$name"
[ -f tests/fuzz/"$name".dict ] && set -- -dict=tests/fuzz/"$name".dict "$@"
echo "fuzz-run: $name for $seconds s"
build/fuzz/fuzz_"$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=256 -print_final_stats=1 -artifact_prefix=build/fuzz/artifacts/"$name"/ \
    "$@" > build/fuzz/"$name".log 2>&1
code=$?
if [ "$code" -ne 0 ]; then
    tail -n 40 build/fuzz/"$name".log
    echo "fuzz-run: $name FAILED (exit $code): input in build/fuzz/artifacts/$name/, log build/fuzz/$name.log"
    exit 1
fi
# The last status line (executions, coverage: edges "cov" and features "ft", corpus) and the time.
grep -E '^#[0-9]+[[:space:]]+DONE' build/fuzz/"$name".log | tail -n 1
grep -E '^Done [0-9]+ runs' build/fuzz/"$name".log

#!/bin/sh
# Builds llama.cpp natively (-march=native via GGML_NATIVE) from the source bundled with the npm
# oracle node-llama-cpp, into build/llama.cpp; the binaries land in build/llama.cpp/build/bin.
# Cached: a second run only rebuilds what changed. Used by make bench only; CI does not need it.
# Usage: sh bench/build_llamacpp.sh [JOBS]   (JOBS defaults to 2)
set -e
jobs=${1:-2}
bundle=tests/oracles/node_modules/node-llama-cpp/llama/gitRelease.bundle
src=build/llama.cpp
bin=$src/build/bin
tools="llama-bench llama-speculative llama-lookup llama-quantize"
have=1
for t in $tools; do [ -x "$bin/$t" ] || have=0; done
if [ $have = 1 ]; then echo "$bin"; exit 0; fi
if [ ! -f "$bundle" ]; then
    echo "bench/build_llamacpp.sh: $bundle not found: install the npm oracles (docs/testing.md)" >&2
    exit 1
fi
command -v cmake >/dev/null || { echo "bench/build_llamacpp.sh: cmake not found: apt-get install cmake" >&2; exit 1; }
mkdir -p build
[ -d "$src/.git" ] || git clone -q "$bundle" "$src" >&2
cmake -S "$src" -B "$src/build" -DGGML_NATIVE=ON -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >&2
for t in $tools; do cmake --build "$src/build" -j "$jobs" --target "$t" >&2; done
echo "$bin"

#!/usr/bin/env bash
# Configures and builds medstream (the executable is build/medstream).
#   BUILD_TYPE=RelWithDebInfo (default) -> build/
#   BUILD_TYPE=asan                     -> build-asan/: AddressSanitizer + UndefinedBehaviorSanitizer
#                                          (GCC), for scripts/test.sh and scripts/sanitize.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}"
if [ "$BUILD_TYPE" = "asan" ]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMEDSTREAM_SANITIZE=ON \
    -DMEDSTREAM_BUILD_BENCHMARKS=OFF >/dev/null
  cmake --build build-asan -- -j"$(nproc)"
  exit 0
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" >/dev/null
cmake --build build -- -j"$(nproc)"

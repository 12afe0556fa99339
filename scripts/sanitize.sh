#!/usr/bin/env bash
# The whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer (GCC), in build-asan/.
# Any memory error, leak (host processes and tests) or undefined behaviour fails the run.
#   bash scripts/sanitize.sh [ctest arguments, e.g. -R Server]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_TYPE=asan bash scripts/build.sh
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
cd build-asan
# The sanitized code is 2-5x slower: more time per test.
ctest --output-on-failure -j"$(nproc)" --timeout 1200 "$@"

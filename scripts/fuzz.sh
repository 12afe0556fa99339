#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang-19 with ASan + UBSan) in build-fuzz/ and runs each for
# SECONDS (default 60) on its seed corpus, one after another, then reports crashes, hangs and leaks.
#   bash scripts/fuzz.sh [SECONDS] [TARGET ...]
# Seeds come from real data (tests/data, and ../shared/data when present) through fuzz/make_seeds.
# Findings land in build-fuzz/findings/TARGET/ (crash-*, timeout-*, leak-*, oom-*); the run fails
# if there is any. The corpus grows in build-fuzz/corpus/TARGET/ (kept between runs).
# FUZZ_JOBS=N runs N targets at once (default: the number of cores).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
CXX_FUZZ="${CXX_FUZZ:-clang++-19}"
CC_FUZZ="${CC_FUZZ:-clang-19}"
if ! command -v "$CXX_FUZZ" >/dev/null; then
  echo "fuzz: $CXX_FUZZ not found (bash scripts/install-deps.sh installs clang-19 and libFuzzer)" >&2
  exit 1
fi
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$CXX_FUZZ" \
  -DCMAKE_C_COMPILER="$CC_FUZZ" -DMEDSTREAM_FUZZ=ON -DMEDSTREAM_BUILD_TESTS=OFF \
  -DMEDSTREAM_BUILD_BENCHMARKS=OFF >/dev/null
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then read -r -a targets <<<"$(tr ';' ' ' <build-fuzz/fuzz_targets.txt)"; fi
echo "fuzz: building ${#targets[@]} targets"
cmake --build build-fuzz --target make_seeds $(printf '%s_fuzz ' "${targets[@]}") -- -j"$(nproc)" >/dev/null
shared=../shared/data
seeds=build-fuzz/seeds
rm -rf "$seeds"
build-fuzz/fuzz/make_seeds "$seeds" tests/data $([ -d "$shared" ] && echo "$shared")
# Leaks are findings too; UBSan reports abort; the enclave core writes counters under /tmp.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:symbolize=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
jobs="${FUZZ_JOBS:-$(nproc)}"
run_one() {
  local t=$1 seconds=$2
  local corpus=build-fuzz/corpus/$t findings=build-fuzz/findings/$t
  mkdir -p "$corpus" "$findings"
  cp -n build-fuzz/seeds/"$t"/* "$corpus"/ 2>/dev/null || true
  # -timeout: one input may take at most 10 s (a hang is a finding); -rss_limit_mb: 2 GiB.
  if build-fuzz/fuzz/"${t}"_fuzz "$corpus" -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 -artifact_prefix="$findings/" \
      >build-fuzz/"$t".log 2>&1; then
    echo "fuzz: $t: $(grep -E '^stat::number_of_executed_units' build-fuzz/"$t".log | awk '{print $2}') runs, $(ls "$corpus" | wc -l) corpus files, 0 findings"
  else
    echo "fuzz: $t: FINDING (see build-fuzz/$t.log and $findings/)"
    grep -E "ERROR|SUMMARY|invariant" build-fuzz/"$t".log | head -5
    return 1
  fi
}
export -f run_one
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c "run_one {} $seconds"

#!/usr/bin/env bash
# Builds, checks formatting, and runs every test (CTest). Used by the README and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
bash scripts/check-format.sh
cd build
ctest --output-on-failure -j"$(nproc)"

#!/usr/bin/env bash
# Scores medstream's QRS detector on the shared MIT-BIH development set (ANSI/AAMI EC57, 150 ms):
# the five full WFDB records and the 5-minute CSV excerpts of 100 and 105 with their annotations.
# Skips (exit 0, said) when ../shared/data is absent. Usage: bash scripts/ecg-eval.sh [MEDSTREAM]
set -euo pipefail
cd "$(dirname "$0")/.."
medstream="${1:-build/medstream}"
shared=../shared/data
if [ ! -d "$shared/wfdb/mitdb" ]; then
  echo "ecg-eval: $shared/wfdb/mitdb absent: skipped"
  exit 0
fi
records=()
for r in 101 106 119 208 233; do records+=("$shared/wfdb/mitdb/$r"); done
exec "$medstream" ecg eval "${records[@]}" \
  "$shared/ecg/mitdb_100_first5min_360Hz_mV.csv" "$shared/ecg/mitdb_105_first5min_360Hz_mV.csv" \
  --reference "$shared/rr/mitdb_100_annotations.csv" --reference "$shared/rr/mitdb_105_annotations.csv"

#!/usr/bin/env bash
# Regenerates the HRV reference values with numpy/scipy and checks the committed file matches, so
# the tests can never drift from what the independent script computes.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
/usr/bin/python3 "$root/tools/hrv_reference.py" >"$tmp"
if ! cmp -s "$tmp" "$root/tests/data/hrv_reference.json"; then
  diff <(head -c 20000 "$root/tests/data/hrv_reference.json") <(head -c 20000 "$tmp") | head -20
  echo "tests/data/hrv_reference.json is stale: regenerate with tools/hrv_reference.py" >&2
  exit 1
fi
echo "hrv_reference.json reproduced exactly by tools/hrv_reference.py"

#!/usr/bin/env bash
# Regenerates the HRV reference values with numpy/scipy and checks the committed file matches, so
# the tests can never drift from what the independent script computes.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
/usr/bin/python3 "$root/tools/hrv_reference.py" >"$tmp"
# Equal to 1e-12 relative: the BLAS numpy picks (reference or OpenBLAS, which other Debian
# packages pull in) may move the last bit of a float.
if ! /usr/bin/python3 - "$tmp" "$root/tests/data/hrv_reference.json" <<'PY'
import json, math, sys
def same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    return a == b
sys.exit(0 if same(json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))) else 1)
PY
then
  diff <(head -c 20000 "$root/tests/data/hrv_reference.json") <(head -c 20000 "$tmp") | head -20
  echo "tests/data/hrv_reference.json is stale: regenerate with tools/hrv_reference.py" >&2
  exit 1
fi
echo "hrv_reference.json reproduced by tools/hrv_reference.py (to 1e-12 relative)"

#!/usr/bin/env bash
# Regenerates docs/evaluation/: the full `medstream bench` grid (CSV, table, PNG/SVG figures) and
# the results section of docs/evaluation.md. Takes about 25 minutes on 2 cores.
#   bash scripts/evaluation.sh [extra medstream bench options]
# The work directory is on tmpfs (/dev/shm) when there is one, so that the VM's disk (fsync of
# every batch and result, identical in every mode) does not drown the differences between modes;
# pass --dir to measure on disk instead.
set -euo pipefail
cd "$(dirname "$0")/.."
medstream=${MEDSTREAM:-build/medstream}  # a copy elsewhere lets you rebuild meanwhile
[ -x "$medstream" ] || bash scripts/build.sh
out=docs/evaluation
mkdir -p "$out"
work=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
trap 'rm -rf "$work"' EXIT
"$medstream" bench --duration "${DURATION:-5}" --reps 3 --dir "$work" \
  --csv "$out/results.csv" --plot "$out/plots" "$@" | tee "$out/table.txt"
rm -f "$out"/plots/*.gp
{
  echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
    "$(free -g | awk '/Mem:/ {print $2}') GiB; $(uname -sr); measured $(date -u +%Y-%m-%d)."
  echo
  /usr/bin/python3 tools/evaluation_table.py "$out/results.csv"
} > "$out/results.md"
/usr/bin/python3 - "$out/results.md" <<'PY'
import re, sys
doc = open("docs/evaluation.md").read()
body = open(sys.argv[1]).read()
doc = re.sub(r"(<!-- results:begin -->\n).*?(<!-- results:end -->)",
             lambda m: m.group(1) + body + m.group(2), doc, flags=re.S)
open("docs/evaluation.md", "w").write(doc)
PY
echo "evaluation: docs/evaluation.md, $out/results.csv, $out/plots/"

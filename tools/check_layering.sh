#!/usr/bin/env bash
# Which side may include which (docs/ARCHITECTURE.md, "Sides"): a #include across a line below
# fails. Tests (*_test.cc, test fixtures) may reach across; product code may not.
#   algo/      pure algorithms: algo/ and common/base only (no crypto, no transport, no I/O)
#   common/    formats, crypto, the edge ABI: common/ and algo/ (the formats carry beats)
#   enclave/   trusted: enclave/, algo/, common/ (never host/, owner/, adapters/, apps/)
#   host/      untrusted host: never owner/ or apps/ (it has no key and no plaintext), and never
#              enclave/ (it links the ABI, not the trusted core) but for host/inproc, the backend
#              that runs the core in-process on purpose
#   adapters/  transports and file formats: never owner/, enclave/ or apps/
#   owner/     the data owner's side: never enclave/ (it speaks to the enclave through the ABIs in
#              common/: abi, lake_abi) or apps/
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
bad=0
rule() {  # rule DIR ALLOWED_REGEX
  local dir=$1 allowed=$2
  [ -d "$dir" ] || return 0
  while IFS= read -r line; do
    file=${line%%:*}
    case "$file" in *_test.cc | *fixture*.h | *_fuzz.cc) continue ;; esac
    inc=$(sed -E 's/.*#include "([^"]+)".*/\1/' <<<"$line")
    case "$inc" in */*) ;; *) continue ;; esac
    if ! grep -Eq "^($allowed)" <<<"$inc"; then
      echo "check_layering: $file includes $inc ($dir/ may include only: $allowed)" >&2
      bad=1
    fi
  done < <(grep -rnE '#include "[a-z_]+/' "$dir" --include=*.cc --include=*.h || true)
}
rule algo 'algo/|common/base/'
rule common 'common/|algo/'
rule enclave 'enclave/|algo/|common/'
rule host/server 'host/|common/|algo/|adapters/'
rule host/lake_host 'host/|common/|algo/|adapters/'
rule host/inproc 'host/|enclave/|common/|algo/|adapters/'
rule host/worker 'host/|common/|algo/|adapters/'
rule host/cluster 'host/|common/|algo/|adapters/'
rule adapters 'adapters/|host/|common/|algo/'
rule owner 'owner/|host/|common/|algo/|adapters/'
# docs/ARCHITECTURE.md's module table equals the tree: every module folder (a CMakeLists.txt one
# level below a side) has its row, and every row names a module folder.
if [ -f docs/ARCHITECTURE.md ]; then
  documented=$(grep -oE '^\| `[a-z]+/[a-z_]+/`' docs/ARCHITECTURE.md | sed -E 's/^\| `(.*)\/`/\1/' | sort)
  actual=$(ls -d {common,algo,enclave,host,owner,adapters,apps}/*/CMakeLists.txt 2>/dev/null |
    sed 's|/CMakeLists.txt||' | sort)
  if [ "$documented" != "$actual" ]; then
    echo "check_layering: docs/ARCHITECTURE.md's module table differs from the tree:" >&2
    diff <(echo "$documented") <(echo "$actual") | sed 's/^</  only in the docs:/; s/^>/  only in the tree:/' | grep only >&2
    bad=1
  fi
fi
[ "$bad" -eq 0 ] && echo "check_layering: every include stays on its side; the module table equals the tree"
exit "$bad"

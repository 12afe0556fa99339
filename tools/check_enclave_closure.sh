#!/usr/bin/env bash
# The enclave's link closure is enclave/ + algo/ + common/ and no network, MQTT, SSH, HTTP, NATS or
# SQLite library (docs/ARCHITECTURE.md). Checks the final link command of medstream-enclave (every
# static module and library it names) and, on the built executable, what the loader would map.
#
#   check_enclave_closure.sh BUILD_DIR              the real build (needs ninja and ldd)
#   check_enclave_closure.sh --link-line FILE       a link command from FILE (tests the checker)
set -euo pipefail
forbidden='mosquitto|ssh|sqlite|curl|nats|httplib|microhttpd|websocket|zmq|grpc|nghttp|cares|libuv|libevent'
if [ "${1:-}" = "--link-line" ]; then
  link=$(cat "$2")
  exe=""
else
  build=${1:?usage: check_enclave_closure.sh BUILD_DIR | --link-line FILE}
  link=$(ninja -C "$build" -t commands medstream-enclave | tail -1)
  exe="$build/medstream-enclave"
fi
bad=0
modules=0
for tok in $link; do
  case "$tok" in
    *.a | *.so | *.so.* | -l*) ;;
    *) continue ;;
  esac
  if basename -- "$tok" | grep -Eiq "$forbidden"; then
    echo "check_enclave_closure: forbidden library in medstream-enclave's link: $tok" >&2
    bad=1
  fi
  if [[ "$tok" == *libmedstream_*.a ]]; then
    modules=$((modules + 1))
    case "$tok" in
      enclave/* | algo/* | common/*) ;;
      *)
        echo "check_enclave_closure: module outside enclave/, algo/, common/ in medstream-enclave: $tok" >&2
        bad=1
        ;;
    esac
  fi
done
if [ "$modules" -eq 0 ]; then
  echo "check_enclave_closure: no medstream module in the link command (wrong build dir?)" >&2
  exit 1
fi
if [ -n "$exe" ]; then
  if loaded=$(ldd "$exe" | grep -Ei "$forbidden"); then
    echo "check_enclave_closure: medstream-enclave loads a forbidden library: $loaded" >&2
    bad=1
  fi
fi
[ "$bad" -eq 0 ] && echo "check_enclave_closure: $modules modules, all from enclave/, algo/, common/; no forbidden library"
exit "$bad"

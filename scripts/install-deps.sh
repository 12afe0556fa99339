#!/usr/bin/env bash
# Installs everything medstream needs to build, test and run, from Debian 12 packages.
# Idempotent and non-interactive; run as root (or with sudo available).
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git clang-format
  # libraries
  libfftw3-dev libcli11-dev nlohmann-json3-dev libfmt-dev libssl-dev libseccomp-dev
  libmosquitto-dev libssh-dev libnats-dev
  # AES-256-GCM's bulk work (common/crypto): AVX-512/VAES code OpenSSL 3.0 lacks
  libipsec-mb-dev
  # real servers the tests and the demo start on loopback ports
  mosquitto openssh-server openssh-client nats-server
  # mosquitto_pub/_sub: the tests try the broker as an outsider would
  mosquitto-clients
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # fuzzing (scripts/fuzz.sh; clang 14-16 cannot compile libstdc++ 12's std::expected)
  clang-19 libfuzzer-19-dev libclang-rt-19-dev
  # reference values for the HRV tests (tools/hrv_reference.py), the bench's pandas baseline
  # and its plots, the data lake's SQL oracle
  python3 python3-numpy python3-scipy python3-pandas gnuplot-nox sqlite3 libsqlite3-dev
  # the checks of the owner's dashboard and metrics endpoints (medstream's own HTTP/HTTPS server):
  # headless Chromium drives the dashboard, promtool (Prometheus) checks the metrics text
  chromium prometheus
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-deps: run as root (or install sudo)" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-deps: apt-get update"
$SUDO apt-get update -qq
echo "install-deps: installing ${#PACKAGES[@]} packages (already installed ones are kept)"
$SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
# Node.js runs the web test tools (tools/web: the FHIR R4 schema validator, a Chromium driver),
# pinned by tools/web/package-lock.json and taken from the npm registry.
if ! command -v npm >/dev/null 2>&1; then
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
echo "install-deps: npm ci in tools/web"
(cd "$(dirname "$0")/../tools/web" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
echo "install-deps: done"

#!/usr/bin/env bash
# The tests of medstream's in-process threading under ThreadSanitizer (GCC), in build-tsan/: the
# shared helper thread and the segment claiming of wire (gateway sealing and opening), the
# analysis thread pool, the enclave's worker and stream service, AesGcm used from several
# threads at once, and the gateway (the sensors' callback, its main loop and the cluster's
# provisioning thread, with the server and enclave in process), the SFTP client's watchdog
# against a real sshd (run as root, as CI does), and a relay's serving side (ServeListener: a
# thread per connection, reaped as they end), and a cluster worker's lease keeper (its renewal
# thread beside the processing thread), and the HTTP server's bounded pool and connection reaper. Any
# data race fails the run.
# Process-level tests are left to scripts/sanitize.sh (a TSan runtime cannot run under the
# enclave's seccomp filter, and they add no thread of their own).
#   bash scripts/tsan.sh
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(wire_test streams_test platform_test crypto_test gateway_unit_test sftp_test transport_test
  lease_keeper_test http_test)
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS=-fsanitize=thread -DCMAKE_CXX_FLAGS=-fsanitize=thread \
  -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread -DMEDSTREAM_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build build-tsan --target "${targets[@]}" -- -j"$(nproc)"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1"
for t in "${targets[@]}"; do
  echo "tsan: $t"
  build-tsan/tests/"$t" --gtest_brief=1
done

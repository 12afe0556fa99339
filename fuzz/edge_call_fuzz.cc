// Every edge call's request as the enclave parses it: a frame header (as main.cc reads it from
// the host), then the call id and payload into EnclaveCore::Handle, the single entry point of the
// trusted core, on a fresh core per input (a temporary simulated platform, made once).
//
// Not fed: commit, lake_commit and checkpoint (they advance the platform's counter files, which
// would carry state from one input to the next; their requests are one u64 or nothing).
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdlib>
#include <filesystem>

#include "common/abi/edge.h"
#include "common/attest/sim_platform.h"
#include "enclave/core/core.h"
#include "fuzz/fuzz.h"

namespace {

const std::string& PlatformDir() {
  // Never destroyed: the exit handler below runs after static destructors registered later.
  static const std::string* const dir = new std::string([] {
    const std::string d = (std::filesystem::temp_directory_path() /
                           ("medstream-fuzz-platform-" + std::to_string(getpid())))
                              .string();
    if (!medstream::attest::InitPlatform({.dir = d, .force = true, .now = 1700000000})) {
      std::abort();
    }
    // libFuzzer leaves by exit() at the end of its time: the platform's keys go with it, or every
    // run would leave a folder of them behind. A crash keeps them, beside its reproducer.
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(PlatformDir(), ec);
    });
    return d;
  }());
  return *dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace medstream;
  FuzzedDataProvider in(data, size);
  // The frame header as the enclave's loop decodes it.
  const auto header_bytes = in.ConsumeBytes<uint8_t>(enclave::kFrameHeaderSize);
  if (header_bytes.size() == enclave::kFrameHeaderSize) {
    (void)enclave::DecodeFrameHeader(true, header_bytes);
  }
  static const uint16_t kFed[] = {1, 2, 3, 4, 7, 8, 9, 10, 11, 0, 13, 14, 0xffff};
  const uint16_t call = in.PickValueInArray(kFed);
  const auto request = in.ConsumeRemainingBytes<uint8_t>();
  enclave::CoreOptions o;
  o.backend = "inproc";
  o.platform_dir = PlatformDir();
  o.identity.mr_enclave.fill(0x11);
  o.identity.mr_signer.fill(0x22);
  auto core = enclave::EnclaveCore::Create(o);
  MEDSTREAM_FUZZ_CHECK(core.has_value());
  auto reply = (*core)->Handle(call, request);
  if (reply) {
    const enclave::CallSpec* spec = enclave::FindCall(call);
    MEDSTREAM_FUZZ_CHECK(spec && reply->size() <= spec->max_response);
  }
  return 0;
}

// medstream-enclave: the trusted executable of the `process` backend.
//
//   medstream-enclave --platform DIR [--debug] [--seal-policy mrenclave|mrsigner]
//
// Started by the host with its end of a socketpair as fd 3; serves the calls of edge.h until
// shutdown or until the host goes away. A software-simulated TEE boundary: see core.cc's note.
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/base/fdio.h"
#include "common/base/file.h"
#include "common/base/memory.h"
#include "common/crypto/crypto.h"
#include "enclave/core/core.h"
#include "enclave/core/hardening.h"

// Sanitizer builds: LeakSanitizer's exit-time check stops the world with ptrace and clone, which
// the seccomp filter (rightly) kills; memory errors are still caught and reported. The host
// processes and the tests keep leak checking.
#if defined(__SANITIZE_ADDRESS__)
extern "C" const char* __asan_default_options() {
  return "detect_leaks=0";
}
// Also when ASAN_OPTIONS (which overrides the defaults above) asks for leak checks.
extern "C" int __lsan_is_turned_off() {
  return 1;
}
#endif

namespace {

constexpr int kChannelFd = 3;
constexpr int kSharedFd = 4;
uint8_t* g_shared = nullptr;  // the host's shared payload region, if it gave us one

// A result is sealed in private memory and then copied out whole. Sealing straight into the shared
// region would save the copy but let the host rewrite ciphertext between OpenSSL writing it and
// GHASH reading it back from the same buffer, and so obtain a valid tag on ciphertext of its
// choice.
bool Respond(uint16_t status, std::span<const uint8_t> payload) {
  using namespace medstream::enclave;
  uint8_t header[kFrameHeaderSize];
  const bool via_shared = g_shared && payload.size() >= kSharedThreshold &&
                          payload.size() <= kSharedProgressOffset - kSharedResponseOffset;
  if (via_shared) std::memcpy(g_shared + kSharedResponseOffset, payload.data(), payload.size());
  EncodeFrameHeader(false, status | (via_shared ? kSharedPayloadFlag : 0), payload.size(), header);
  return medstream::WriteFull(kChannelFd, header, sizeof header) &&
         (via_shared || medstream::WriteFull(kChannelFd, payload.data(), payload.size()));
}

int Die(const std::string& message) {
  std::fprintf(stderr, "medstream-enclave: %s\n", message.c_str());
  return 3;
}

// OpenSSL initialises lazily (config, RNG); do it before the sandbox closes.
void WarmUpCrypto() {
  uint8_t b[32];
  (void)medstream::crypto::RandomBytes(b);
  (void)medstream::crypto::X25519Generate();
  (void)medstream::crypto::EcKey::Generate();
  auto gcm = medstream::crypto::AesGcm::Create(medstream::crypto::Key256());
  if (gcm) (void)gcm->Seal(std::span(b).first(12), {}, b);
  (void)medstream::crypto::HkdfSha256(b, b, b, b);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace medstream::enclave;
  medstream::TuneAllocatorForLargeBuffers();
  CoreOptions options;
  options.backend = "process";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--platform" && i + 1 < argc) {
      options.platform_dir = argv[++i];
    } else if (a == "--debug") {
      options.debug = true;
    } else if (a == "--seal-policy" && i + 1 < argc) {
      const std::string p = argv[++i];
      if (p != "mrenclave" && p != "mrsigner") return Die("--seal-policy: mrenclave or mrsigner");
      options.seal_policy = p == "mrsigner" ? SealPolicy::kMrSigner : SealPolicy::kMrEnclave;
    } else if (a == "--help" || a == "-h") {
      std::printf(
          "medstream-enclave --platform DIR [--debug] [--seal-policy mrenclave|mrsigner]\n"
          "The trusted half of medstream's process backend, started by 'medstream server' with\n"
          "a socketpair on fd 3. Not meant to be run by hand.\n");
      return 0;
    } else {
      return Die("unknown argument '" + a + "' (see --help)");
    }
  }
  if (options.platform_dir.empty()) return Die("--platform DIR is required");
  std::string hardening = "DEBUG: no hardening";
  if (!options.debug) {
    auto h = HardenProcess();
    if (!h) return Die(h.error().message());
    hardening = *h;
  }
  // EINIT: refuse to run code that does not match its signature.
  auto self = medstream::SelfPath();
  if (!self) return Die(self.error().message());
  auto identity = medstream::attest::LoadIdentity(*self);
  if (!identity) return Die(identity.error().message());
  options.identity = *identity;
  options.hardening = hardening;
  auto core = EnclaveCore::Create(options);
  if (!core) return Die(core.error().message());
  WarmUpCrypto();
  {
    void* p = mmap(nullptr, kSharedSize, PROT_READ | PROT_WRITE, MAP_SHARED, kSharedFd, 0);
    if (p != MAP_FAILED) g_shared = static_cast<uint8_t*>(p);
  }
  // The guard: the host's death closes its end of the channel; the enclave exits then, even in
  // the middle of a call the main thread is computing (a killed host must never leave an enclave
  // spinning on the CPU). Started before the sandbox closes (no thread creation after).
  std::atomic<bool> guard_running{false};
  std::thread([&guard_running] {
    guard_running = true;
    guard_running.notify_one();
    pollfd p{kChannelFd, POLLRDHUP, 0};
    for (;;) {
      const int r = poll(&p, 1, -1);
      if (r > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) _exit(0);
      if (r < 0 && errno != EINTR) return;
    }
  }).detach();
  // A thread registers itself (rseq) as it starts: it must be running before the filter closes.
  guard_running.wait(false);
  if (!options.debug) {
    if (auto s = InstallSyscallFilter(kChannelFd); !s) return Die(s.error().message());
  }
  std::vector<uint8_t> request;
  for (;;) {
    uint8_t raw[kFrameHeaderSize];
    (void)medstream::SpinUntilReadable(kChannelFd, kChannelSpinMicros);  // then block in read
    if (!medstream::ReadFull(kChannelFd, raw, sizeof raw)) return 0;     // the host went away
    auto header = DecodeFrameHeader(true, raw);
    if (!header) return Die(header.error().message());
    const bool shared_request = header->call_or_status & kSharedPayloadFlag;
    header->call_or_status &= static_cast<uint16_t>(~kSharedPayloadFlag);
    if (shared_request && (!g_shared || header->length > kSharedResponseOffset)) {
      return Die("shared-memory request out of bounds");
    }
    const CallSpec* spec = FindCall(header->call_or_status);
    // Refuse before allocating: the length comes from the untrusted host.
    if (!spec || header->length > spec->max_request) {
      const std::string why = !spec ? "call not in the edge interface" : "request exceeds its cap";
      if (header->length > (64u << 20)) return Die(why);  // cannot skip it safely
      request.resize(header->length);
      if (!shared_request && !medstream::ReadFull(kChannelFd, request.data(), request.size()))
        return 0;
      if (!Respond(StatusFromError(medstream::Error(medstream::Error::Code::kInvalidArgument, why)),
                   std::span(reinterpret_cast<const uint8_t*>(why.data()), why.size()))) {
        return 0;
      }
      continue;
    }
    medstream::Result<medstream::crypto::Bytes> reply = medstream::crypto::Bytes{};
    if (shared_request && spec->call == Call::kProcessBatch) {
      // No private copy of the whole batch: each piece is copied in once as it is authenticated
      // (the host can write to the shared region at any time; nothing is read from it twice).
      reply = (*core)->HandleSharedBatch(g_shared, header->length, SharedProgress(g_shared));
    } else {
      request.resize(header->length);
      if (shared_request) {
        std::memcpy(request.data(), g_shared, request.size());  // a private copy first
      } else if (!medstream::ReadFull(kChannelFd, request.data(), request.size())) {
        return 0;
      }
      reply = (*core)->Handle(header->call_or_status, request);
    }
    const bool ok =
        reply ? Respond(0, *reply)
              : Respond(StatusFromError(reply.error()),
                        std::span(reinterpret_cast<const uint8_t*>(reply.error().message().data()),
                                  reply.error().message().size()));
    if (!ok || (*core)->shutdown_requested()) return 0;
  }
}

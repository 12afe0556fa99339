// medstream-enclave: the trusted executable of the `process` backend.
//
//   medstream-enclave --platform DIR [--debug] [--seal-policy mrenclave|mrsigner]
//
// Started by the host with its end of a socketpair as fd 3; serves the calls of edge.h until
// shutdown or until the host goes away. A software-simulated TEE boundary: see core.cc's note.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "base/memory.h"
#include "crypto/crypto.h"
#include "enclave/core.h"
#include "enclave/hardening.h"

namespace {

constexpr int kChannelFd = 3;

bool ReadAll(int fd, uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool WriteAll(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    const ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool Respond(uint16_t status, std::span<const uint8_t> payload) {
  uint8_t header[medstream::enclave::kFrameHeaderSize];
  medstream::enclave::EncodeFrameHeader(false, status, payload.size(), header);
  return WriteAll(kChannelFd, header, sizeof header) &&
         WriteAll(kChannelFd, payload.data(), payload.size());
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
  auto self = SelfPath();
  if (!self) return Die(self.error().message());
  auto identity = LoadIdentity(*self);
  if (!identity) return Die(identity.error().message());
  options.identity = *identity;
  options.hardening = hardening;
  auto core = EnclaveCore::Create(options);
  if (!core) return Die(core.error().message());
  WarmUpCrypto();
  if (!options.debug) {
    if (auto s = InstallSyscallFilter(kChannelFd); !s) return Die(s.error().message());
  }
  std::vector<uint8_t> request;
  for (;;) {
    uint8_t raw[kFrameHeaderSize];
    if (!ReadAll(kChannelFd, raw, sizeof raw)) return 0;  // the host went away
    auto header = DecodeFrameHeader(true, raw);
    if (!header) return Die(header.error().message());
    const CallSpec* spec = FindCall(header->call_or_status);
    // Refuse before allocating: the length comes from the untrusted host.
    if (!spec || header->length > spec->max_request) {
      const std::string why = !spec ? "call not in the edge interface" : "request exceeds its cap";
      if (header->length > (64u << 20)) return Die(why);  // cannot skip it safely
      request.resize(header->length);
      if (!ReadAll(kChannelFd, request.data(), request.size())) return 0;
      if (!Respond(StatusFromError(medstream::Error(medstream::Error::Code::kInvalidArgument, why)),
                   std::span(reinterpret_cast<const uint8_t*>(why.data()), why.size()))) {
        return 0;
      }
      continue;
    }
    request.resize(header->length);
    if (!ReadAll(kChannelFd, request.data(), request.size())) return 0;
    auto reply = (*core)->Handle(header->call_or_status, request);
    const bool ok =
        reply ? Respond(0, *reply)
              : Respond(StatusFromError(reply.error()),
                        std::span(reinterpret_cast<const uint8_t*>(reply.error().message().data()),
                                  reply.error().message().size()));
    if (!ok || (*core)->shutdown_requested()) return 0;
  }
}

// Sealing: enclave state encrypted so that only the same enclave (or a later release of the same
// signer) on the same platform can read it back, with rollback detection.
//
// Key = HKDF-SHA256(platform sealing root, salt = MRENCLAVE or MRSIGNER, info = policy, product
// id, the sealer's SVN). A blob carries a version; a monotonic counter records the latest
// committed version, and restoring anything older is refused as a rollback.
//
// Commit protocol (so a crash never strands the only good blob): Checkpoint seals version
// committed + 1 and hands it to the host; the host stores it durably and then calls Commit, which
// advances the counter. Restore accepts the committed version, or committed + 1 (stored but not yet
// committed when the host crashed; accepting it commits it). Older versions are rollbacks.
//
// What the simulation cannot guarantee: the sealing root and the counter are files of the
// simulated platform, so an attacker with the host's file access (root, the same uid) can read
// the sealing root or rewind the counter. Real deployments take the sealing key from the CPU (SGX
// EGETKEY, or a TDX/SNP-derived key) and the counter from a TPM NV index or a replicated counter
// service (e.g. ROTE); SGX's own monotonic counters are deprecated.
#pragma once

#include <string>

#include "common/abi/edge.h"
#include "common/crypto/crypto.h"

namespace medstream::enclave {

// What SealData adds to the plaintext: its header (magic, format, policy, product id, SVN,
// version, nonce) and the GCM tag.
inline constexpr size_t kSealOverhead = 4 + 2 + 1 + 2 + 2 + 8 + 12 + 16;

struct SealIdentity {
  crypto::Digest mr_enclave{};
  crypto::Digest mr_signer{};
  uint16_t isv_prod_id = 0;
  uint16_t isv_svn = 0;
};

Result<crypto::Bytes> SealData(crypto::ByteView plaintext, const crypto::Key256& sealing_root,
                               const SealIdentity& self, SealPolicy policy, uint64_t version);

struct Unsealed {
  crypto::Bytes data;
  uint64_t version = 0;
  SealPolicy policy = SealPolicy::kMrEnclave;
};
Result<Unsealed> UnsealData(crypto::ByteView blob, const crypto::Key256& sealing_root,
                            const SealIdentity& self);

// A persistent 64-bit counter (simulated: an 8-byte file, opened before the sandbox closes and
// then written with pwrite + fdatasync, so no path lookups are needed afterwards).
class MonotonicCounter {
 public:
  static Result<MonotonicCounter> Open(const std::string& path);
  MonotonicCounter(MonotonicCounter&& o) noexcept : fd_(o.fd_), value_(o.value_) { o.fd_ = -1; }
  MonotonicCounter& operator=(MonotonicCounter&& o) noexcept;
  ~MonotonicCounter();
  uint64_t value() const { return value_; }
  // Refuses to go backwards.
  Status Advance(uint64_t to);

 private:
  MonotonicCounter(int fd, uint64_t value) : fd_(fd), value_(value) {}
  int fd_ = -1;
  uint64_t value_ = 0;
};

}  // namespace medstream::enclave

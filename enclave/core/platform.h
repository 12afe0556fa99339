// platform: everything the enclave asks of the platform it runs on, in one declared interface.
//
// On a real TEE these are the hardware's (SGX: EREPORT/quoting enclave, EGETKEY, a monotonic
// counter service, the host's clock); here the simulated platform of attest/sim_platform.h stands
// behind it, its keys in files and its counters in files opened before the sandbox closes. The
// trusted core (core.h) reaches the platform only through this interface, so the list below is the
// enclave's whole dependency on the world beyond the edge calls:
//   Quote          evidence over a report (the attestation key never enters the core)
//   sealing_root   the root from which sealing keys are derived (per identity, sealing.h)
//   counters       persistent monotonic counters: the checkpoint's and the lake manifest's
//                  committed versions (rollback detection); they refuse to go backwards
//   Now            wall-clock seconds, for the lake's audit log only; on a real TEE this is the
//                  host's time, so nothing that protects data depends on it
// A Platform is used by one thread at a time (the core serialises calls).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/attest/quote.h"
#include "common/base/result.h"
#include "common/crypto/crypto.h"

namespace medstream::enclave {

enum class CounterId { kCheckpoint, kLake };

class Platform {
 public:
  virtual ~Platform() = default;
  virtual Result<crypto::Bytes> Quote(const attest::ReportBody& report) const = 0;
  virtual const crypto::Key256& sealing_root() const = 0;
  virtual uint64_t counter(CounterId id) const = 0;
  // kFailedPrecondition when `to` is below the counter's value (a rollback).
  virtual Status AdvanceCounter(CounterId id, uint64_t to) = 0;
  virtual int64_t Now() const = 0;
};

// The simulated platform in `dir` (medstream platform init): its attestation key and sealing root,
// and the counters of the enclave identified by `counter_owner` (its MRENCLAVE, or its MRSIGNER
// under the MRSIGNER sealing policy) in dir/counters/<hex>.ctr and .lake.ctr.
Result<std::unique_ptr<Platform>> OpenSimulatedPlatform(const std::string& dir,
                                                        const crypto::Digest& counter_owner);

// A platform in memory for unit tests of the trusted services: counters that live as long as the
// object (and refuse to go back, as the real ones), the given sealing root, a clock the test sets.
// It cannot quote: Quote is kFailedPrecondition (attestation is tested with the simulated one).
class MemoryPlatform : public Platform {
 public:
  explicit MemoryPlatform(const crypto::Key256& sealing_root) : root_(sealing_root) {}
  Result<crypto::Bytes> Quote(const attest::ReportBody& report) const override;
  const crypto::Key256& sealing_root() const override { return root_; }
  uint64_t counter(CounterId id) const override { return counters_[Index(id)]; }
  Status AdvanceCounter(CounterId id, uint64_t to) override;
  int64_t Now() const override { return now; }
  int64_t now = 0;

 private:
  static size_t Index(CounterId id) { return id == CounterId::kCheckpoint ? 0 : 1; }
  crypto::Key256 root_;
  uint64_t counters_[2] = {0, 0};
};

}  // namespace medstream::enclave

// host/claim: which server (or lake host) instance owns a platform's rollback counter.
//
// The simulated platform keeps one monotonic counter per enclave build (enclave/core/sealing.h),
// and a sealed checkpoint is accepted only at the counter's current version. Two instances with
// their own state directories on one platform and build would therefore break each other: B's
// checkpoints advance the counter past A's, and A's next start is refused as a rollback. So each
// counter has an owner, recorded beside it (PLATFORM/counters/<id>.<kind>.owner) and held with an
// flock(2) while the instance runs:
//  - another running instance holds the lock: refused, naming it (its directory and pid);
//  - the owner recorded is another directory that still holds sealed state: refused, naming it
//    (stop using it, remove it, or give this instance a platform of its own);
//  - otherwise (no owner yet, the same directory, or an owner whose state is gone) the claim is
//    taken and recorded.
// This is bookkeeping of the untrusted host, not a security boundary: the counter itself is what
// refuses rollbacks. Thread-safety: a claim is a value held by one owner; not shared.
#pragma once

#include <string>

#include "common/base/result.h"
#include "common/crypto/crypto.h"

namespace medstream::host {

class CounterClaim {
 public:
  // `kind` names the counter ("server" or "lake"); `state_file` is the file, relative to an
  // instance directory, whose presence means the instance holds sealed state.
  static Result<CounterClaim> Acquire(const std::string& platform_dir,
                                      const crypto::Digest& counter_id, const std::string& kind,
                                      const std::string& instance_dir,
                                      const std::string& state_file);
  CounterClaim(CounterClaim&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  CounterClaim& operator=(CounterClaim&& o) noexcept;
  CounterClaim(const CounterClaim&) = delete;
  CounterClaim& operator=(const CounterClaim&) = delete;
  ~CounterClaim();

 private:
  explicit CounterClaim(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace medstream::host

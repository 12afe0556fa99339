#include "enclave/core/platform.h"

#include <ctime>

#include "common/attest/sim_platform.h"
#include "common/base/bytes.h"
#include "enclave/core/sealing.h"

namespace medstream::enclave {

namespace {

class SimulatedPlatform : public Platform {
 public:
  SimulatedPlatform(attest::SimPlatform sim, MonotonicCounter checkpoint, MonotonicCounter lake)
      : sim_(std::move(sim)), checkpoint_(std::move(checkpoint)), lake_(std::move(lake)) {}
  Result<crypto::Bytes> Quote(const attest::ReportBody& report) const override {
    return sim_.Quote(report);
  }
  const crypto::Key256& sealing_root() const override { return sim_.sealing_root(); }
  uint64_t counter(CounterId id) const override { return Counter(id).value(); }
  Status AdvanceCounter(CounterId id, uint64_t to) override { return Counter(id).Advance(to); }
  int64_t Now() const override { return static_cast<int64_t>(time(nullptr)); }

 private:
  MonotonicCounter& Counter(CounterId id) {
    return id == CounterId::kCheckpoint ? checkpoint_ : lake_;
  }
  const MonotonicCounter& Counter(CounterId id) const {
    return id == CounterId::kCheckpoint ? checkpoint_ : lake_;
  }
  attest::SimPlatform sim_;
  MonotonicCounter checkpoint_, lake_;
};

}  // namespace

Result<std::unique_ptr<Platform>> OpenSimulatedPlatform(const std::string& dir,
                                                        const crypto::Digest& counter_owner) {
  MEDSTREAM_TRY(sim, attest::SimPlatform::Load(dir));
  const std::string base = sim.counter_dir() + "/" + crypto::ToHex(counter_owner);
  MEDSTREAM_TRY(checkpoint, MonotonicCounter::Open(base + ".ctr"));
  MEDSTREAM_TRY(lake, MonotonicCounter::Open(base + ".lake.ctr"));
  return std::unique_ptr<Platform>(
      std::make_unique<SimulatedPlatform>(std::move(sim), std::move(checkpoint), std::move(lake)));
}

Result<crypto::Bytes> MemoryPlatform::Quote(const attest::ReportBody&) const {
  return Fail(Error::Code::kFailedPrecondition, "the in-memory platform cannot quote");
}

Status MemoryPlatform::AdvanceCounter(CounterId id, uint64_t to) {
  uint64_t& c = counters_[Index(id)];
  if (to < c) {
    return Fail(Error::Code::kFailedPrecondition,
                "counter at " + std::to_string(c) + " cannot go back to " + std::to_string(to));
  }
  c = to;
  return {};
}

}  // namespace medstream::enclave

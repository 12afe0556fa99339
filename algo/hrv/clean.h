// Beat-by-beat cleaning: raw beats in, NN intervals out (see CleaningOptions for the rules).
#pragma once

#include "algo/hrv/types.h"
#include "common/base/bytes.h"

namespace medstream::hrv {

class Cleaner {
 public:
  enum class Verdict : uint8_t { kAccepted, kInvalid, kTimeOrder, kRange, kEctopic };

  explicit Cleaner(const CleaningOptions& options) : options_(options) {}

  // Classifies the next beat of the stream and updates the state. Every beat passed in counts in
  // the report exactly once.
  Verdict Classify(const Beat& beat);

  const CleaningReport& report() const { return report_; }
  const CleaningOptions& options() const { return options_; }
  // Time of the last beat with a valid timestamp, or -inf before the first.
  double last_time() const { return last_t_; }

  // The stream state (not the options), for checkpoints: kStateBytes bytes.
  static constexpr size_t kStateBytes = 6 * 8 + 8 + 8 + 4;
  void SaveState(ByteWriter* w) const;
  Status LoadState(ByteReader* r);

 private:
  CleaningOptions options_;
  CleaningReport report_;
  double last_t_ = -std::numeric_limits<double>::infinity();
  double reference_nn_ = kNaN;  // last accepted NN interval
  int consecutive_ectopic_ = 0;
};

}  // namespace medstream::hrv

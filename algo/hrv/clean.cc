#include "algo/hrv/clean.h"

#include <cmath>

namespace medstream::hrv {

Cleaner::Verdict Cleaner::Classify(const Beat& beat) {
  ++report_.seen;
  if (!BeatInLimits(beat)) {
    ++report_.invalid;
    return Verdict::kInvalid;
  }
  // Not after the previous valid beat, or closer to it than any heart beats (kMinBeatGapS): this
  // bounds the beats a window holds, whatever times a sensor sends.
  if (!(beat.t_s - last_t_ >= kMinBeatGapS)) {
    ++report_.time_order;
    return Verdict::kTimeOrder;
  }
  last_t_ = beat.t_s;
  if (options_.enabled) {
    if (beat.rr_ms < options_.min_rr_ms || beat.rr_ms > options_.max_rr_ms) {
      ++report_.range;
      return Verdict::kRange;
    }
    if (!std::isnan(reference_nn_) &&
        std::fabs(beat.rr_ms - reference_nn_) > options_.ectopic_threshold * reference_nn_) {
      ++consecutive_ectopic_;
      if (consecutive_ectopic_ < options_.ectopic_reset_after) {
        ++report_.ectopic;
        return Verdict::kEctopic;
      }
    }
  }
  reference_nn_ = beat.rr_ms;
  consecutive_ectopic_ = 0;
  ++report_.accepted;
  return Verdict::kAccepted;
}

}  // namespace medstream::hrv

namespace medstream::hrv {

void Cleaner::SaveState(ByteWriter* w) const {
  for (uint64_t v : {report_.seen, report_.accepted, report_.invalid, report_.time_order,
                     report_.range, report_.ectopic}) {
    w->U64(v);
  }
  w->F64(last_t_);
  w->F64(reference_nn_);
  w->U32(static_cast<uint32_t>(consecutive_ectopic_));
}

Status Cleaner::LoadState(ByteReader* r) {
  for (uint64_t* v : {&report_.seen, &report_.accepted, &report_.invalid, &report_.time_order,
                      &report_.range, &report_.ectopic}) {
    MEDSTREAM_TRY(x, r->U64("cleaning counter"));
    *v = x;
  }
  MEDSTREAM_TRY(last, r->F64("last beat time"));
  MEDSTREAM_TRY(ref, r->F64("reference NN"));
  MEDSTREAM_TRY(run, r->U32("ectopic run"));
  last_t_ = last;
  reference_nn_ = ref;
  consecutive_ectopic_ = static_cast<int>(run);
  return {};
}

}  // namespace medstream::hrv

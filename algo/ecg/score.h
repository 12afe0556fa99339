// ecg/score: beat-by-beat comparison of detected beats with reference annotations, the ANSI/AAMI
// EC57 way (as PhysioNet's bxb): a detection within 150 ms of a reference beat matches it (each
// used once, nearest first); Se = TP / (TP + FN), +P = TP / (TP + FP). Pure.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace medstream::ecg {

struct Score {
  uint64_t tp = 0, fn = 0, fp = 0;
  double Sensitivity() const;
  double PositivePredictivity() const;
  Score& operator+=(const Score& o);
};

// `reference` and `detected`: sample indices in increasing order; `window` in samples.
Score Compare(std::span<const int64_t> reference, std::span<const int64_t> detected,
              int64_t window);

}  // namespace medstream::ecg

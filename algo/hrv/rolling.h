// Rolling-window HRV over a stream of beats, fed in chunks of any size.
//
// Windows are aligned to absolute time: window k covers beat times in [k*step, k*step + window),
// so two processes that see the same beats report the same windows, whatever they started with.
// A window is reported once a later beat proves it complete (or at Finish), and only when its NN
// intervals cover at least min_coverage of its length, so edge windows and windows over gaps are
// not passed off as complete. Every window's metrics are computed from its own NN intervals in a
// fixed order: the output is identical whether beats arrive one at a time or all at once.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "algo/hrv/clean.h"
#include "algo/hrv/metrics.h"
#include "algo/hrv/parallel.h"
#include "common/base/result.h"

namespace medstream::hrv {

struct WindowOptions {
  double window_s = 300;
  double step_s = 30;
  double min_coverage = 0.85;  // sum of the window's NN intervals / window length
};

struct WindowResult {
  int64_t index = 0;  // k
  double t_start = 0;
  double t_end = 0;
  double coverage = 0;
  Metrics metrics;
};

Status Validate(const WindowOptions& options);
Status Validate(const AnalysisOptions& options);

class RollingAnalyzer {
 public:
  // Beats per piece of a parallel Push: about 1700 windows at 0.8 s beats and a 30 s step, enough
  // to keep every worker busy and few pool wake-ups per batch (16384 cost a 4 MB sdnn batch 10 %),
  // while a piece's intervals stay about 1 MB.
  static constexpr size_t kParallelPieceBeats = 65536;

  static Result<RollingAnalyzer> Create(const CleaningOptions& cleaning,
                                        const WindowOptions& windows);

  // Consumes beats in stream order and appends every window they complete to `out`.
  void Push(std::span<const Beat> beats, MetricsEngine& engine, std::vector<WindowResult>* out);
  // The same with the windows computed on `workers` (same output) once per kParallelPieceBeats
  // beats pushed, however the beats are chunked: memory does not grow with a long chunk, and short
  // chunks (the enclave pushes a batch as its 256 KiB segments are authenticated) do not pay a
  // pool run each for a few windows. So windows this leaves in `out` may still be pending, their
  // metrics not yet computed: call Flush, with the same `out`, before reading `out`, saving
  // state, or pushing to another `out`.
  void Push(std::span<const Beat> beats, const WindowWorkers& workers,
            std::vector<WindowResult>* out);
  // Computes the windows a parallel Push left pending in `out`.
  void Flush(const WindowWorkers& workers, std::vector<WindowResult>* out);
  // End of stream: reports the windows still open (subject to the coverage rule).
  void Finish(MetricsEngine& engine, std::vector<WindowResult>* out);

  const CleaningReport& report() const { return cleaner_.report(); }
  const WindowOptions& options() const { return options_; }
  // NN intervals held for windows not yet reported.
  size_t buffered() const { return t_.size() - head_; }
  // NN intervals in memory: the buffered ones and those not yet compacted away.
  size_t held() const { return t_.size(); }

  // Everything needed to continue the stream elsewhere (a checkpoint): cleaning state, the next
  // window, and the NN intervals of open windows. Restoring and continuing gives output
  // bit-identical to never having stopped.
  void SaveState(ByteWriter* w) const;
  static Result<RollingAnalyzer> LoadState(ByteReader* r, const CleaningOptions& cleaning,
                                           const WindowOptions& windows);

 private:
  RollingAnalyzer(const CleaningOptions& cleaning, const WindowOptions& windows)
      : cleaner_(cleaning), options_(windows) {}

  // Smallest k whose window ends after t.
  int64_t FirstWindowEndingAfter(double t) const;
  void SetNextWindow(int64_t k);
  // Reports window next_k_ if covered enough: computed now on `engine`, or, when `engine` is null,
  // recorded in pending_ for Flush (the buffer is not compacted until then).
  void CloseWindow(MetricsEngine* engine, std::vector<WindowResult>* out);
  void PushBeats(std::span<const Beat> beats, MetricsEngine* engine,
                 std::vector<WindowResult>* out);
  void Compact();

  Cleaner cleaner_;
  WindowOptions options_;
  bool started_ = false;
  int64_t next_k_ = 0;
  double next_end_ = 0;  // end of window next_k_
  // Accepted NN intervals from the start of window next_k_ on; [head_, size) is live.
  std::vector<double> t_, nn_;
  size_t head_ = 0;
  // Windows reported but not yet computed: out index and their NN intervals [lo, hi).
  struct Pending {
    size_t out = 0;
    size_t lo = 0;
    size_t hi = 0;
    double covered_ms = 0;
  };
  std::vector<Pending> pending_;
  size_t unflushed_ = 0;  // beats pushed in parallel since pending_ was last computed
};

}  // namespace medstream::hrv

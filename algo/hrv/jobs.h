// The named analytics jobs of the streaming engine, and whole-record analysis.
//
//   identity   takes every sample and refers to the batch (count and digest, below) instead of
//              echoing it: the pipeline's cost without analytics
//   sdnn       rolling SDNN (with n_beats and mean_nn_ms)
//   hrv-bands  rolling VLF/LF/HF powers, LF/HF, normalised units and peaks
//   hrv-full   every metric of hrv::Metrics per window
// A job's state is per stream; the MetricsEngine it computes with is per thread and shared.
#pragma once

#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "algo/hrv/rolling.h"
#include "common/base/result.h"

namespace medstream::hrv {

enum class JobKind : uint8_t { kIdentity = 0, kSdnn = 1, kHrvBands = 2, kHrvFull = 3 };

inline constexpr std::array kAllJobs = {JobKind::kIdentity, JobKind::kSdnn, JobKind::kHrvBands,
                                        JobKind::kHrvFull};

std::string_view JobName(JobKind kind);
Result<JobKind> ParseJobKind(std::string_view name);
// "sdnn,hrv-bands" -> {kSdnn, kHrvBands}; an error names the first unknown job.
Result<std::vector<JobKind>> ParseJobList(std::string_view comma_separated);
// The metrics a job reports, in kMetricTable order.
std::span<const MetricInfo* const> JobMetrics(JobKind kind);
// The engine configuration a job needs: only what it reports is computed.
MetricSelection JobSelection(JobKind kind);

// Extends `digest` over `beats` in order: each beat's t_s and rr_ms as IEEE-754 bit patterns. It
// does not depend on how the beats are chunked. Not a MAC (the result that carries it is sealed):
// it tells the owner, who holds the batch, that the enclave analysed exactly those beats.
inline constexpr uint64_t kBeatDigestSeed = 0x6d65'6473'7472'6561;  // "medstrea"
uint64_t BeatDigest(std::span<const Beat> beats, uint64_t digest = kBeatDigestSeed);

// The identity job's output for a batch: a reference to the beats the owner already holds rather
// than a batch-sized echo of them (which cost a copy and a batch's worth of enclave memory).
struct BeatReference {
  uint64_t count = 0;
  uint64_t digest = kBeatDigestSeed;
  friend bool operator==(const BeatReference&, const BeatReference&) = default;
};

struct JobOutput {
  BeatReference beats;                // identity
  std::vector<WindowResult> windows;  // windowed jobs
};

class StreamJob {
 public:
  static Result<StreamJob> Create(JobKind kind, const AnalysisOptions& analysis,
                                  const WindowOptions& windows);

  void Push(std::span<const Beat> beats, MetricsEngine& engine, JobOutput* out);
  // The same with the windows computed on `workers` (bit-identical output; parallel.h), some of
  // them possibly not until Flush (RollingAnalyzer::Push): call Flush before reading `out`.
  void Push(std::span<const Beat> beats, const WindowWorkers& workers, JobOutput* out);
  void Flush(const WindowWorkers& workers, JobOutput* out);
  void Finish(MetricsEngine& engine, JobOutput* out);

  JobKind kind() const { return kind_; }
  // Cleaning counts; identity does not clean and reports every beat as seen.
  CleaningReport report() const;

  // Checkpoint support (see RollingAnalyzer::SaveState; the caller flushes first, as
  // StreamTable does by saving only between batches); the options are not saved: the caller
  // restores with the ones the job was created with.
  // At most kMaxStateBytes: a rolling job holds the beats of its open windows, which span less
  // than one window, at least kMinBeatGapS apart (types.h), so never more than
  // kMaxWindowS / kMinBeatGapS + 1 of them (16 bytes each; +2 for the division's rounding), and
  // its counters. Checkpoints size their parts by it at compile time.
  static constexpr uint64_t kMaxBufferedBeats =
      static_cast<uint64_t>(kMaxWindowS / kMinBeatGapS) + 2;
  static constexpr uint64_t kMaxStateBytes =
      1 + Cleaner::kStateBytes + 1 + 8 + 8 + 16 * kMaxBufferedBeats;
  void SaveState(ByteWriter* w) const;
  static Result<StreamJob> LoadState(ByteReader* r, const AnalysisOptions& analysis,
                                     const WindowOptions& windows);

 private:
  StreamJob(JobKind kind, std::unique_ptr<RollingAnalyzer> rolling)
      : kind_(kind), rolling_(std::move(rolling)) {}
  JobKind kind_;
  std::unique_ptr<RollingAnalyzer> rolling_;  // null for identity
  uint64_t identity_seen_ = 0;
};

struct RecordAnalysis {
  Metrics metrics;
  CleaningReport cleaning;
};

// All metrics over a whole record (cleaned as configured).
Result<RecordAnalysis> AnalyzeRecord(std::span<const Beat> beats, const AnalysisOptions& options);

}  // namespace medstream::hrv

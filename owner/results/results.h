// results: reads the HRV results the data owner holds, for people and other systems (the demo's
// table, the dashboard, the report, the FHIR export). Two sources, one shape:
//   - a gateway's results directory: RESULTS/<user>.jsonl, one line per window and job (gateway.h);
//   - `medstream hrv --window ... --json` of a file: one line per window, no job or sequence.
// The files are the owner's own plaintext, but they may be large or damaged (a crash mid-append,
// a hand-edited file): reading is bounded (kMaxFileBytes, kMaxLineBytes, kMaxWindows) and a
// malformed line is counted and skipped, never fatal.
//
// Pure apart from reading the files it is given; thread-compatible (no shared state).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "algo/hrv/types.h"
#include "common/base/result.h"

namespace medstream::results {

inline constexpr uint64_t kMaxFileBytes = uint64_t{1} << 30;  // 1 GiB per results file
inline constexpr size_t kMaxLineBytes = 64 * 1024;
inline constexpr size_t kMaxWindows = 4'000'000;  // per user (a week of 1 s steps x 6 jobs)
inline constexpr size_t kMaxUsers = 100'000;

struct Window {
  std::string job;   // "sdnn", "hrv-bands", ...; "" for `medstream hrv` output
  uint64_t seq = 0;  // the batch whose result carried it (0: not from a gateway)
  double t_start = 0, t_end = 0, coverage = 0;
  uint64_t lost_beats = 0;  // beats the device sent inside the window that never arrived
  hrv::Metrics metrics;     // the job's metrics; the others NaN
};

struct UserResults {
  std::string user;
  std::vector<Window> windows;  // in file order (sequence order for a gateway)
  uint64_t malformed_lines = 0;
};

// The users of a results directory (one per <user>.jsonl), sorted. kNotFound when `dir` is absent.
Result<std::vector<std::string>> ListUsers(const std::string& dir);
// Reads one JSON-lines results file (either source above). `user` names it in the result.
Result<UserResults> ReadFile(const std::string& path, const std::string& user);
// RESULTS/<user>.jsonl; kNotFound for an unknown user, kInvalidArgument for a name with a '/'.
Result<UserResults> ReadUser(const std::string& dir, const std::string& user);
// What a command was pointed at: a results directory (every user, or `user` only) or one JSON-lines
// file (`medstream hrv --json` output, or a gateway's <user>.jsonl), named `user` or else after
// the file. kNotFound when there is nothing; a directory without results is kNotFound too.
Result<std::vector<UserResults>> Load(const std::string& dir_or_file, const std::string& user = "");
// Parses one line; kCorrupt when it is not a window (a marker line of an empty result is
// kNotFound).
Result<Window> ParseLine(std::string_view line);

// The latest window with results, every job's metrics merged (jobs report the same window grid,
// so "sdnn" and "hrv-bands" of one window become one row). Windows ending later than `not_after`
// are ignored. ok == false when there is none.
struct Latest {
  bool ok = false;
  double t_start = 0, t_end = 0;
  uint64_t lost_beats = 0;
  hrv::Metrics metrics;
};
Latest LatestWindow(const std::vector<Window>& windows);

// One row per window start, every job's metrics merged, in time order.
std::vector<Window> MergeByWindow(const std::vector<Window>& windows);

// The headline metrics a clinician reads first (HR, SDNN, RMSSD, pNN50, LF, HF, LF/HF).
std::vector<const hrv::MetricInfo*> HeadlineMetrics();

// How people name a metric: "SDNN", "LF/HF", "HR" (mean_hr_bpm); the metric's name otherwise.
std::string_view DisplayName(const hrv::MetricInfo& m);
// Its unit for display: "ms²" for ms2, "" for none.
std::string_view DisplayUnit(const hrv::MetricInfo& m);
// "SDNN ms", "LF/HF".
std::string Label(const hrv::MetricInfo& m);

// "2026-12-02T10:40:32Z" (UTC; milliseconds shown when the time has a fraction). Times outside
// years 1..9999 (hrv's beat-time limits keep inside) give "".
std::string IsoUtc(double unix_seconds);

}  // namespace medstream::results

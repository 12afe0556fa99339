// recording: reads beat recordings from files into hrv::Beat series.
//
// Two formats:
//  - rr:  one RR interval per line ('#' comments and blank lines skipped); the beat time is the
//         running sum of the intervals, so the first beat is at t = RR[0].
//  - csv: a header row, then one beat per row; columns picked by name (case-insensitive), by
//         default the first of time/t/t_s/time_s/beat_time_s/timestamp and of
//         rr/rr_ms/rr_s/nn/nn_ms/nn_s/rri/rri_ms/ibi/ibi_ms. With only a time column, RR is the
//         difference of consecutive times (the first beat has none and is skipped); with only an
//         RR column, times are the running sum as for rr files.
// Units: an explicit unit wins; otherwise a column name ending in _s or _ms decides; otherwise
// values with a median below 10 are taken as seconds.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "algo/hrv/types.h"
#include "common/base/result.h"

namespace medstream::recording {

enum class Format { kAuto, kRr, kCsv };
enum class Unit { kAuto, kMs, kS };

struct ReadOptions {
  Format format = Format::kAuto;  // auto: csv when the first non-comment line has a letter
  Unit unit = Unit::kAuto;        // unit of the RR values (times are always seconds)
  std::string time_col;           // csv: empty = detect
  std::string rr_col;             // csv: empty = detect
};

struct Recording {
  std::vector<hrv::Beat> beats;
  std::string source;  // how the beats were read, e.g. "csv: time=beat_time_s, rr=rr_ms (ms)"
};

// Parses `text`; `name` labels error messages ("NAME line 12: ...").
Result<Recording> ParseRecording(std::string_view text, std::string_view name,
                                 const ReadOptions& options);
Result<Recording> ReadRecording(const std::string& path, const ReadOptions& options);

Result<Format> ParseFormat(std::string_view s);
Result<Unit> ParseUnit(std::string_view s);

}  // namespace medstream::recording

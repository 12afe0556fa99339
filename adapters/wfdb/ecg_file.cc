#include "adapters/wfdb/ecg_file.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>

#include <fmt/format.h>

#include "adapters/wfdb/wfdb.h"
#include "algo/ecg/qrs.h"
#include "common/base/bytes.h"
#include "common/base/file.h"

namespace medstream::wfdb {

namespace {

constexpr uint64_t kMaxCsvBytes = uint64_t{2} << 30;

std::vector<std::string_view> Split(std::string_view line) {
  std::vector<std::string_view> out;
  size_t at = 0;
  for (;;) {
    const size_t comma = line.find(',', at);
    out.push_back(line.substr(at, comma == std::string_view::npos ? line.npos : comma - at));
    if (comma == std::string_view::npos) break;
    at = comma + 1;
  }
  for (auto& f : out) {
    while (!f.empty() && (f.back() == '\r' || f.back() == ' ')) f.remove_suffix(1);
    while (!f.empty() && f.front() == ' ') f.remove_prefix(1);
  }
  return out;
}

bool Double(std::string_view s, double* v) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && end == s.data() + s.size() && std::isfinite(*v);
}

Result<Ecg> LoadCsv(const std::string& path, int channel) {
  MEDSTREAM_TRY(text, ReadFileText(path, kMaxCsvBytes));
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line)) return InvalidArgument(path + ": empty file");
  const auto header = Split(line);
  int time_col = -1;
  std::vector<int> signal_cols;
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i] == "time_s" || header[i] == "time") {
      time_col = static_cast<int>(i);
    } else {
      signal_cols.push_back(static_cast<int>(i));
    }
  }
  if (time_col < 0) return InvalidArgument(path + ": no time_s column (an ECG CSV needs one)");
  if (channel < 0 || channel >= static_cast<int>(signal_cols.size())) {
    return InvalidArgument(fmt::format("{}: no signal column {} ({} signal columns)", path, channel,
                                       signal_cols.size()));
  }
  Ecg e;
  e.name = std::filesystem::path(path).stem().string();
  e.channel = std::string(header[static_cast<size_t>(signal_cols[static_cast<size_t>(channel)])]);
  std::vector<double> times;
  size_t line_no = 1;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty() || line == "\r") continue;
    const auto f = Split(line);
    double t = 0, v = 0;
    const size_t sc = static_cast<size_t>(signal_cols[static_cast<size_t>(channel)]);
    if (f.size() != header.size() || !Double(f[static_cast<size_t>(time_col)], &t) ||
        !Double(f[sc], &v)) {
      return InvalidArgument(
          fmt::format("{} line {}: not {} numbers", path, line_no, header.size()));
    }
    times.push_back(t);
    e.samples.push_back(v);
  }
  if (times.size() < 2) return InvalidArgument(path + ": fewer than two samples");
  const double span = times.back() - times.front();
  e.fs = static_cast<double>(times.size() - 1) / span;
  if (!(span > 0) || !(e.fs >= 100 && e.fs <= 2000)) {
    return InvalidArgument(
        fmt::format("{}: sampling rate {:.6g} Hz from its times (100 to 2000 Hz "
                    "supported)",
                    path, e.fs));
  }
  // Uniform sampling is assumed: say so when the times say otherwise.
  for (size_t i = 1; i < times.size(); ++i) {
    const double dt = times[i] - times[i - 1];
    if (std::fabs(dt * e.fs - 1) > 0.1) {
      return InvalidArgument(
          fmt::format("{} line {}: samples are not evenly spaced ({} s after "
                      "the previous, expected {:.6g})",
                      path, i + 2, dt, 1 / e.fs));
    }
  }
  e.fs = std::round(e.fs * 1000) / 1000;
  return e;
}

}  // namespace

Result<Ecg> LoadEcg(const std::string& path, int channel) {
  if (path.ends_with(".csv")) return LoadCsv(path, channel);
  MEDSTREAM_TRY(r, ReadRecord(path));
  if (channel < 0 || channel >= static_cast<int>(r.header.signals.size())) {
    return InvalidArgument(
        fmt::format("{}: no signal {} ({} signals)", path, channel, r.header.signals.size()));
  }
  Ecg e;
  e.name = r.header.record;
  e.channel = r.header.signals[static_cast<size_t>(channel)].description;
  e.fs = r.header.fs;
  const size_t c = static_cast<size_t>(channel);
  e.samples.resize(r.samples[c].size());
  for (size_t i = 0; i < e.samples.size(); ++i) e.samples[i] = r.Physical(c, i);
  return e;
}

Result<std::vector<int64_t>> LoadReferenceBeats(const std::string& path,
                                                const std::string& annotator,
                                                const std::string& reference_csv) {
  std::vector<int64_t> out;
  if (reference_csv.empty()) {
    MEDSTREAM_TRY(anns, ReadAnnotations(path, annotator));
    for (const Annotation& a : anns) {
      if (a.IsBeat()) out.push_back(a.sample);
    }
    return out;
  }
  MEDSTREAM_TRY(text, ReadFileText(reference_csv, kMaxCsvBytes));
  std::istringstream in(text);
  std::string line;
  std::getline(in, line);
  const auto header = Split(line);
  int sample_col = -1, beat_col = -1, symbol_col = -1;
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i] == "sample") sample_col = static_cast<int>(i);
    if (header[i] == "is_beat") beat_col = static_cast<int>(i);
    if (header[i] == "symbol") symbol_col = static_cast<int>(i);
  }
  if (sample_col < 0 || (beat_col < 0 && symbol_col < 0)) {
    return InvalidArgument(reference_csv + ": needs a sample column and is_beat or symbol");
  }
  size_t line_no = 1;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    const auto f = Split(line);
    double s = 0;
    // A sample index: a whole number a double holds exactly (converting 1e30 to int64 would be
    // undefined behaviour; -3 or 2.5 are no sample).
    if (f.size() <= static_cast<size_t>(std::max({sample_col, beat_col, symbol_col})) ||
        !Double(f[static_cast<size_t>(sample_col)], &s) || s < 0 || s > 9007199254740992.0 ||
        s != std::floor(s)) {
      return InvalidArgument(fmt::format(
          "{} line {}: bad row (the sample column must be a whole number from 0 to 2^53)",
          reference_csv, line_no));
    }
    bool beat = false;
    if (beat_col >= 0) {
      beat = f[static_cast<size_t>(beat_col)] == "1";
    } else {
      Annotation a;
      const auto sym = f[static_cast<size_t>(symbol_col)];
      a.symbol = sym.size() == 1 ? sym[0] : '#';
      beat = a.IsBeat();
    }
    if (beat) out.push_back(static_cast<int64_t>(s));
  }
  return out;
}

Result<std::vector<ecg::Beat>> DetectBeats(const Ecg& e) {
  MEDSTREAM_TRY(d, ecg::QrsDetector::Create(e.fs));
  std::vector<ecg::Beat> beats;
  d.Push(e.samples, &beats);
  d.Finish(&beats);
  return beats;
}

Result<Evaluation> EvaluateRecord(const std::string& path, const std::string& annotator,
                                  const std::string& reference_csv, int channel) {
  MEDSTREAM_TRY(e, LoadEcg(path, channel));
  MEDSTREAM_TRY(ref, LoadReferenceBeats(path, annotator, reference_csv));
  std::erase_if(ref, [&](int64_t s) { return s >= static_cast<int64_t>(e.samples.size()); });
  MEDSTREAM_TRY(beats, DetectBeats(e));
  Evaluation out;
  out.name = e.name;
  out.reference_beats = ref.size();
  std::vector<int64_t> found;
  int64_t latency = 0;
  for (const ecg::Beat& b : beats) {
    found.push_back(b.sample);
    out.searchback += b.searchback;
    if (!b.searchback && static_cast<double>(b.sample) > 2.5 * e.fs) {
      latency = std::max(latency, b.decided_at - b.sample);
    }
  }
  out.score = ecg::Compare(ref, found, std::llround(0.150 * e.fs));
  out.decision_max_s = static_cast<double>(latency) / e.fs;
  return out;
}

Result<BeatSeries> ReadRecordBeats(const std::string& path, const std::string& annotator,
                                   bool detect, int channel) {
  BeatSeries out;
  if (detect) {
    MEDSTREAM_TRY(e, LoadEcg(path, channel));
    MEDSTREAM_TRY(beats, DetectBeats(e));
    for (size_t i = 1; i < beats.size(); ++i) {
      out.beats.push_back(
          {static_cast<double>(beats[i].sample) / e.fs,
           static_cast<double>(beats[i].sample - beats[i - 1].sample) * 1000 / e.fs});
    }
    out.source = fmt::format("{}: {} beats detected on {} at {:g} Hz (medstream's QRS detector)",
                             e.name, beats.size(), e.channel, e.fs);
    return out;
  }
  MEDSTREAM_TRY(text, ReadFileText(RecordBase(path) + ".hea", kMaxCsvBytes));
  MEDSTREAM_TRY(h, ParseHeader(text, RecordBase(path) + ".hea"));
  MEDSTREAM_TRY(anns, ReadAnnotations(path, annotator));
  auto normal = [](char c) { return c == 'N' || c == 'L' || c == 'R'; };
  std::map<char, uint64_t> excluded;
  const Annotation* prev = nullptr;
  uint64_t beats = 0;
  for (const Annotation& a : anns) {
    if (!a.IsBeat()) continue;
    ++beats;
    if (prev) {
      if (normal(prev->symbol) && normal(a.symbol)) {
        out.beats.push_back({static_cast<double>(a.sample) / h.fs,
                             static_cast<double>(a.sample - prev->sample) * 1000 / h.fs});
      } else {
        ++out.excluded;
        ++excluded[normal(a.symbol) ? prev->symbol : a.symbol];
      }
    }
    prev = &a;
  }
  std::string why;
  for (const auto& [symbol, n] : excluded) why += fmt::format(" {} {}", n, symbol);
  out.source = fmt::format(
      "{}.{} at {:g} Hz: {} beats, {} NN intervals (between N, L or R beats), {} excluded{}{}",
      h.record, annotator, h.fs, beats, out.beats.size(), out.excluded,
      out.excluded ? " next to:" : "", why);
  return out;
}

}  // namespace medstream::wfdb

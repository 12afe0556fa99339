#include "owner/results/results.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "common/base/bytes.h"
#include "common/base/file.h"

namespace medstream::results {

namespace {

using nlohmann::json;

bool ValidUserName(std::string_view user) {
  return !user.empty() && user.size() <= 200 && user.find('/') == std::string_view::npos &&
         user != "." && user != "..";
}

double Number(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return hrv::kNaN;
  return it->get<double>();
}

}  // namespace

Result<Window> ParseLine(std::string_view line) {
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Corrupt("not a JSON object");
  if (!j.contains("t_start")) {
    if (j.contains("windows")) return NotFound("a result without windows");
    return Corrupt("no t_start");
  }
  Window w;
  if (auto it = j.find("job"); it != j.end() && it->is_string()) w.job = it->get<std::string>();
  if (auto it = j.find("seq"); it != j.end() && it->is_number_unsigned()) w.seq = *it;
  if (auto it = j.find("lost_beats"); it != j.end() && it->is_number_unsigned()) w.lost_beats = *it;
  w.t_start = Number(j, "t_start");
  w.t_end = Number(j, "t_end");
  w.coverage = Number(j, "coverage");
  if (!std::isfinite(w.t_start) || !std::isfinite(w.t_end) || w.t_end < w.t_start)
    return Corrupt("window times missing or out of order");
  w.metrics.n_beats = hrv::kNaN;
  for (const hrv::MetricInfo& m : hrv::kMetricTable)
    w.metrics.*(m.field) = Number(j, m.name.data());
  return w;
}

Result<UserResults> ReadFile(const std::string& path, const std::string& user) {
  auto text = ReadFileText(path, kMaxFileBytes);
  if (!text) return std::unexpected(std::move(text.error()));
  UserResults out;
  out.user = user;
  size_t pos = 0;
  while (pos < text->size()) {
    size_t end = text->find('\n', pos);
    if (end == std::string::npos) end = text->size();
    const std::string_view line(text->data() + pos, end - pos);
    pos = end + 1;
    if (line.empty()) continue;
    if (line.size() > kMaxLineBytes) {
      ++out.malformed_lines;
      continue;
    }
    auto w = ParseLine(line);
    if (!w) {
      if (w.error().code() != Error::Code::kNotFound) ++out.malformed_lines;
      continue;
    }
    if (out.windows.size() >= kMaxWindows)
      return Fail(Error::Code::kResourceExhausted,
                  fmt::format("{}: more than {} windows", path, kMaxWindows));
    out.windows.push_back(std::move(*w));
  }
  return out;
}

Result<std::vector<std::string>> ListUsers(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return NotFound(dir + ": no such results directory");
  std::vector<std::string> users;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.ends_with(".jsonl") || !it->is_regular_file(ec)) continue;
    if (users.size() >= kMaxUsers)
      return Fail(Error::Code::kResourceExhausted,
                  fmt::format("{}: more than {} users", dir, kMaxUsers));
    users.push_back(name.substr(0, name.size() - 6));
  }
  if (ec) return Fail(Error::Code::kIo, dir + ": " + ec.message());
  std::sort(users.begin(), users.end());
  return users;
}

Result<UserResults> ReadUser(const std::string& dir, const std::string& user) {
  if (!ValidUserName(user)) return InvalidArgument("not a user name: " + user);
  auto r = ReadFile(dir + "/" + user + ".jsonl", user);
  if (!r && r.error().code() == Error::Code::kNotFound)
    return NotFound("no results for user " + user + " in " + dir);
  return r;
}

Result<std::vector<UserResults>> Load(const std::string& dir_or_file, const std::string& user) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<UserResults> out;
  if (fs::is_regular_file(dir_or_file, ec)) {
    MEDSTREAM_TRY(
        r, ReadFile(dir_or_file, user.empty() ? fs::path(dir_or_file).stem().string() : user));
    out.push_back(std::move(r));
    return out;
  }
  if (!user.empty()) {
    MEDSTREAM_TRY(r, ReadUser(dir_or_file, user));
    out.push_back(std::move(r));
    return out;
  }
  MEDSTREAM_TRY(users, ListUsers(dir_or_file));
  if (users.empty()) return NotFound(dir_or_file + ": no results (<user>.jsonl) in it");
  for (const std::string& u : users) {
    MEDSTREAM_TRY(r, ReadUser(dir_or_file, u));
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<Window> MergeByWindow(const std::vector<Window>& windows) {
  std::map<double, Window> by_start;
  for (const Window& w : windows) {
    auto [it, fresh] = by_start.try_emplace(w.t_start, w);
    if (fresh) {
      it->second.job.clear();
      continue;
    }
    Window& m = it->second;
    m.lost_beats = std::max(m.lost_beats, w.lost_beats);
    m.t_end = std::max(m.t_end, w.t_end);
    for (const hrv::MetricInfo& info : hrv::kMetricTable) {
      if (std::isnan(m.metrics.*(info.field))) m.metrics.*(info.field) = w.metrics.*(info.field);
    }
  }
  std::vector<Window> out;
  out.reserve(by_start.size());
  for (auto& [start, w] : by_start) out.push_back(std::move(w));
  return out;
}

Latest LatestWindow(const std::vector<Window>& windows) {
  Latest latest;
  if (windows.empty()) return latest;
  double start = -INFINITY;
  for (const Window& w : windows) start = std::max(start, w.t_start);
  std::vector<Window> same;
  for (const Window& w : windows) {
    if (w.t_start == start) same.push_back(w);
  }
  const Window merged = MergeByWindow(same).front();
  latest.ok = true;
  latest.t_start = merged.t_start;
  latest.t_end = merged.t_end;
  latest.lost_beats = merged.lost_beats;
  latest.metrics = merged.metrics;
  return latest;
}

std::vector<const hrv::MetricInfo*> HeadlineMetrics() {
  std::vector<const hrv::MetricInfo*> out;
  for (std::string_view name :
       {"mean_hr_bpm", "sdnn_ms", "rmssd_ms", "pnn50_pct", "lf_ms2", "hf_ms2", "lf_hf"}) {
    out.push_back(hrv::FindMetric(name));
  }
  return out;
}

std::string_view DisplayName(const hrv::MetricInfo& m) {
  static const std::map<std::string_view, std::string_view> kNames = {
      {"mean_hr_bpm", "HR"},
      {"min_hr_bpm", "HR min"},
      {"max_hr_bpm", "HR max"},
      {"std_hr_bpm", "HR SD"},
      {"mean_nn_ms", "Mean NN"},
      {"median_nn_ms", "Median NN"},
      {"sdnn_ms", "SDNN"},
      {"sdsd_ms", "SDSD"},
      {"rmssd_ms", "RMSSD"},
      {"nn50", "NN50"},
      {"pnn50_pct", "pNN50"},
      {"nn20", "NN20"},
      {"pnn20_pct", "pNN20"},
      {"cvnn", "CVNN"},
      {"vlf_ms2", "VLF"},
      {"lf_ms2", "LF"},
      {"hf_ms2", "HF"},
      {"total_power_ms2", "Total power"},
      {"lf_hf", "LF/HF"},
      {"lf_nu", "LF n.u."},
      {"hf_nu", "HF n.u."},
      {"lf_peak_hz", "LF peak"},
      {"hf_peak_hz", "HF peak"},
      {"sd1_ms", "SD1"},
      {"sd2_ms", "SD2"},
      {"sd1_sd2", "SD1/SD2"},
      {"sampen", "SampEn"},
      {"dfa_alpha1", "DFA α1"},
      {"dfa_alpha2", "DFA α2"},
      {"n_beats", "NN intervals"},
      {"hrv_triangular_index", "HRV triangular index"},
  };
  auto it = kNames.find(m.name);
  return it == kNames.end() ? m.name : it->second;
}

std::string_view DisplayUnit(const hrv::MetricInfo& m) {
  if (m.unit == "ms2") return "ms²";
  if (m.unit == "n.u.") return "";  // the name says it
  return m.unit;
}

std::string Label(const hrv::MetricInfo& m) {
  const std::string_view unit = DisplayUnit(m);
  return unit.empty() ? std::string(DisplayName(m)) : fmt::format("{} {}", DisplayName(m), unit);
}

std::string IsoUtc(double t) {
  // Years 1..9999 only: ISO 8601's four-digit years (and gmtime's range).
  if (!std::isfinite(t) || t < -62135596800.0 || t >= 253402300800.0) return "";
  const double whole = std::floor(t);
  const auto secs = static_cast<time_t>(whole);
  const int ms = static_cast<int>(std::lround((t - whole) * 1000));
  std::tm tm{};
  if (gmtime_r(&secs, &tm) == nullptr) return "";
  std::string out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", tm.tm_year + 1900,
                                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  // A fraction that rounds to 1000 ms is shown as .999 rather than carried into the next second.
  if (ms > 0) out += fmt::format(".{:03}", std::min(ms, 999));
  return out + "Z";
}

}  // namespace medstream::results

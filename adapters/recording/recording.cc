#include "adapters/recording/recording.h"

#include <fmt/format.h>
#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <optional>
#include <span>
#include <sstream>

namespace medstream::recording {

namespace {

constexpr std::string_view kTimeNames[] = {"time",   "t",           "t_s",
                                           "time_s", "beat_time_s", "timestamp"};
// The physiological range used to tell RR data from other signals (wider than cleaning's).
constexpr double kPlausibleMinRrMs = 200;
constexpr double kPlausibleMaxRrMs = 3000;

constexpr std::string_view kRrNames[] = {"rr",   "rr_ms", "rr_s",   "nn",  "nn_ms",
                                         "nn_s", "rri",   "rri_ms", "ibi", "ibi_ms"};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// At most kExcerpt characters of a bad line or cell for an error message (a line can be megabytes
// long), printable ASCII only.
constexpr size_t kExcerpt = 40;
std::string Excerpt(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < kExcerpt; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  if (s.size() > kExcerpt) out += fmt::format("... ({} bytes)", s.size());
  return out;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::optional<double> ParseNumber(std::string_view cell) {
  cell = Trim(cell);
  if (cell.size() >= 2 && cell.front() == '"' && cell.back() == '"') {
    cell = Trim(cell.substr(1, cell.size() - 2));
  }
  if (!cell.empty() && cell.front() == '+') cell.remove_prefix(1);
  double v = 0;
  const auto [ptr, ec] = std::from_chars(cell.data(), cell.data() + cell.size(), v);
  if (ec != std::errc() || ptr != cell.data() + cell.size() || cell.empty()) return std::nullopt;
  return v;
}

std::vector<std::string_view> SplitCsv(std::string_view line) {
  std::vector<std::string_view> cells;
  size_t start = 0;
  bool quoted = false;
  for (size_t i = 0; i <= line.size(); ++i) {
    if (i < line.size() && line[i] == '"') quoted = !quoted;
    if (i == line.size() || (line[i] == ',' && !quoted)) {
      cells.push_back(line.substr(start, i - start));
      start = i + 1;
    }
  }
  return cells;
}

bool IsSkippable(std::string_view line) {
  line = Trim(line);
  return line.empty() || line.front() == '#';
}

struct Line {
  size_t number;
  std::string_view text;
};

std::vector<Line> SplitLines(std::string_view text) {
  std::vector<Line> lines;
  size_t number = 0, pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    ++number;
    if (!IsSkippable(line)) lines.push_back({number, line});
    pos = end + 1;
  }
  return lines;
}

double MedianAbs(std::vector<double> v) {
  for (double& x : v) x = std::fabs(x);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
  return v[v.size() / 2];
}

// Resolves the unit of RR values: explicit, else from a column name, else by magnitude.
Unit ResolveUnit(Unit requested, std::string_view column, const std::vector<double>& values) {
  if (requested != Unit::kAuto) return requested;
  const std::string c = Lower(column);
  if (c.ends_with("_ms")) return Unit::kMs;
  if (c.ends_with("_s") || c.ends_with("_secs") || c.ends_with("_sec")) return Unit::kS;
  if (values.empty()) return Unit::kMs;
  return MedianAbs(values) < 10 ? Unit::kS : Unit::kMs;
}

std::string_view UnitName(Unit u) {
  return u == Unit::kS ? "s" : "ms";
}

// Beat times as the running sum of the intervals (s), the same sequential order numpy.cumsum uses.
void TimesFromIntervals(std::vector<hrv::Beat>* beats) {
  double t = 0;
  for (hrv::Beat& b : *beats) {
    t += b.rr_ms / 1000.0;
    b.t_s = t;
  }
}

// The column list of a header for an error message, bounded like Excerpt.
std::string HeaderList(const std::vector<std::string>& header) {
  std::string have;
  for (size_t i = 0; i < header.size() && i < 20; ++i) {
    have += (have.empty() ? "" : ", ") + Excerpt(header[i]);
  }
  if (header.size() > 20) have += fmt::format(", ... ({} columns)", header.size());
  return have;
}

// WFDB beat annotation codes (ecgcodes.h: NORMAL ... UNKNOWN, PACE, PFUS, ...): every other code
// (rhythm changes '+', noise '~', comments '"', ...) marks no beat.
bool IsBeatSymbol(std::string_view s) {
  static constexpr std::string_view kBeats[] = {"N", "L", "R", "B", "A", "a", "J", "S", "V", "r",
                                                "F", "e", "j", "n", "E", "/", "f", "Q", "?"};
  s = Trim(s);
  return std::find(std::begin(kBeats), std::end(kBeats), s) != std::end(kBeats);
}

// Every beat must keep hrv's limits on time (finite, |t| <= kMaxBeatTimeS) and have a finite RR;
// RR values outside (0, kMaxRrMs] are kept and counted as invalid by the cleaner.
Status CheckValues(const Recording& rec, const std::vector<size_t>& line_of, std::string_view name,
                   bool running_sum) {
  for (size_t i = 0; i < rec.beats.size(); ++i) {
    const hrv::Beat& b = rec.beats[i];
    if (!std::isfinite(b.rr_ms)) {
      return Corrupt(
          fmt::format("{} line {}: the RR value is not a finite number", name, line_of[i]));
    }
    if (!std::isfinite(b.t_s) || std::fabs(b.t_s) > hrv::kMaxBeatTimeS) {
      return Corrupt(fmt::format(
          "{} line {}: beat time {:.6g} s is out of range (|time| <= {:g} s){}", name, line_of[i],
          b.t_s, hrv::kMaxBeatTimeS,
          running_sum
              ? "; times are the running sum of the RR values, so this value or an earlier one is "
                "far too large"
              : ""));
    }
  }
  return {};
}

// Refuses data that is not RR intervals (a raw ECG, a voltage column taken for RR): most real
// RR intervals lie within 200-3000 ms, and where the file also has beat times, each RR is the
// spacing of consecutive times. At least half of the values must pass each test.
Status CheckLooksLikeRr(const Recording& rec, std::string_view name, bool has_time_and_rr) {
  const size_t n = rec.beats.size();
  if (n < 10) return {};
  size_t plausible = 0;
  std::vector<double> rr;
  rr.reserve(n);
  for (const hrv::Beat& b : rec.beats) {
    plausible += b.rr_ms >= kPlausibleMinRrMs && b.rr_ms <= kPlausibleMaxRrMs;
    rr.push_back(b.rr_ms);
  }
  std::nth_element(rr.begin(), rr.begin() + static_cast<std::ptrdiff_t>(n / 2), rr.end());
  const double median = rr[n / 2];
  if (plausible * 2 < n) {
    return InvalidArgument(fmt::format(
        "{}: this does not look like RR intervals: only {:.0f}% of the {} values lie within "
        "{:g}-{:g} ms (median {:.4g} ms; read as {}). medstream hrv needs RR intervals or beat "
        "times, not a sampled signal such as raw ECG; name the columns with --time-col/--rr-col "
        "and the unit with --unit",
        name, 100.0 * static_cast<double>(plausible) / static_cast<double>(n), n, kPlausibleMinRrMs,
        kPlausibleMaxRrMs, median, rec.source));
  }
  if (has_time_and_rr) {
    size_t consistent = 0;
    for (size_t i = 1; i < n; ++i) {
      const double dt_ms = (rec.beats[i].t_s - rec.beats[i - 1].t_s) * 1000.0;
      consistent +=
          std::fabs(dt_ms - rec.beats[i].rr_ms) <= 0.2 * std::fabs(rec.beats[i].rr_ms) + 10;
    }
    if (consistent * 2 < n - 1) {
      return InvalidArgument(fmt::format(
          "{}: the RR column does not match the spacing of the beat times (only {:.0f}% of the "
          "intervals agree within 20 %; read as {}): it is probably not an RR column (a sampled "
          "signal?); name the right one with --rr-col, or give only --time-col",
          name, 100.0 * static_cast<double>(consistent) / static_cast<double>(n - 1), rec.source));
    }
  }
  return {};
}

Result<Recording> ParseRr(const std::vector<Line>& lines, std::string_view name,
                          const ReadOptions& options) {
  std::vector<double> values;
  values.reserve(lines.size());
  for (const Line& line : lines) {
    const auto v = ParseNumber(line.text);
    if (!v) {
      return Corrupt(
          fmt::format("{} line {}: '{}' is not a number (rr format expects one RR "
                      "interval per line)",
                      name, line.number, Excerpt(Trim(line.text))));
    }
    values.push_back(*v);
  }
  const Unit unit = ResolveUnit(options.unit, "", values);
  Recording rec;
  rec.beats.resize(values.size());
  const double scale = unit == Unit::kS ? 1000.0 : 1.0;
  for (size_t i = 0; i < values.size(); ++i) rec.beats[i].rr_ms = values[i] * scale;
  TimesFromIntervals(&rec.beats);
  rec.source =
      fmt::format("rr: {} intervals in {}, times = running sum", values.size(), UnitName(unit));
  std::vector<size_t> line_of(lines.size());
  for (size_t i = 0; i < lines.size(); ++i) line_of[i] = lines[i].number;
  if (auto st = CheckValues(rec, line_of, name, true); !st) return std::unexpected(st.error());
  if (auto st = CheckLooksLikeRr(rec, name, false); !st) return std::unexpected(st.error());
  return rec;
}

// Index of the requested column, or of the first default name present; -1 when absent.
Result<int> FindColumn(const std::vector<std::string>& header, const std::string& requested,
                       std::span<const std::string_view> defaults, std::string_view name,
                       std::string_view what) {
  if (!requested.empty()) {
    const std::string want = Lower(requested);
    for (size_t i = 0; i < header.size(); ++i) {
      if (header[i] == want) return static_cast<int>(i);
    }
    return NotFound(fmt::format("{}: no {} column named '{}' (header has: {})", name, what,
                                Excerpt(requested), HeaderList(header)));
  }
  for (std::string_view d : defaults) {
    for (size_t i = 0; i < header.size(); ++i) {
      if (header[i] == d) return static_cast<int>(i);
    }
  }
  return -1;
}

Result<Recording> ParseCsv(const std::vector<Line>& lines, std::string_view name,
                           const ReadOptions& options) {
  std::vector<std::string> header;
  for (std::string_view cell : SplitCsv(lines[0].text)) {
    std::string h = Lower(Trim(cell));
    if (h.size() >= 2 && h.front() == '"' && h.back() == '"') h = h.substr(1, h.size() - 2);
    header.push_back(h);
  }
  auto time_col = FindColumn(header, options.time_col, kTimeNames, name, "time");
  if (!time_col) return std::unexpected(time_col.error());
  auto rr_col = FindColumn(header, options.rr_col, kRrNames, name, "RR");
  if (!rr_col) return std::unexpected(rr_col.error());
  if (*time_col < 0 && *rr_col < 0) {
    return NotFound(fmt::format(
        "{}: found neither a time nor an RR column (header has: {}); name them with --time-col "
        "and --rr-col",
        name, HeaderList(header)));
  }
  // Annotation tables (e.g. WFDB annotations as CSV) mark beats with is_beat or a beat symbol;
  // other rows (rhythm changes, noise, comments) are not beats and are skipped.
  const int is_beat_col =
      *FindColumn(header, "", std::array<std::string_view, 1>{"is_beat"}, name, "");
  const int symbol_col =
      is_beat_col >= 0
          ? -1
          : *FindColumn(header, "", std::array<std::string_view, 1>{"symbol"}, name, "");
  const size_t needed =
      static_cast<size_t>(std::max({*time_col, *rr_col, is_beat_col, symbol_col})) + 1;
  std::vector<double> times, rrs;
  std::vector<size_t> line_of;
  size_t not_beats = 0;
  for (size_t i = 1; i < lines.size(); ++i) {
    const auto cells = SplitCsv(lines[i].text);
    if (cells.size() < needed) {
      return Corrupt(fmt::format("{} line {}: {} cells, but the header names {} columns", name,
                                 lines[i].number, cells.size(), header.size()));
    }
    if (is_beat_col >= 0) {
      const auto flag = ParseNumber(cells[static_cast<size_t>(is_beat_col)]);
      if (!flag || (*flag != 0 && *flag != 1)) {
        return Corrupt(fmt::format("{} line {}: is_beat must be 0 or 1, not '{}'", name,
                                   lines[i].number,
                                   Excerpt(Trim(cells[static_cast<size_t>(is_beat_col)]))));
      }
      if (*flag == 0) {
        ++not_beats;
        continue;
      }
    } else if (symbol_col >= 0 && !IsBeatSymbol(cells[static_cast<size_t>(symbol_col)])) {
      ++not_beats;
      continue;
    }
    line_of.push_back(lines[i].number);
    for (int col : {*time_col, *rr_col}) {
      if (col < 0) continue;
      const auto v = ParseNumber(cells[static_cast<size_t>(col)]);
      if (!v) {
        return Corrupt(fmt::format("{} line {}: column '{}' value '{}' is not a number", name,
                                   lines[i].number, Excerpt(header[static_cast<size_t>(col)]),
                                   Excerpt(Trim(cells[static_cast<size_t>(col)]))));
      }
      (col == *time_col ? times : rrs).push_back(*v);
    }
  }
  if (times.empty() && rrs.empty()) {
    return Corrupt(fmt::format("{}: header only, no beats", name));
  }
  // Non-finite values never reach the arithmetic below (a NaN time would poison every later
  // difference).
  for (size_t i = 0; i < times.size(); ++i) {
    if (!std::isfinite(times[i]) || std::fabs(times[i]) > hrv::kMaxBeatTimeS) {
      return Corrupt(
          fmt::format("{} line {}: beat time {:.6g} s is out of range (|time| <= {:g} s)", name,
                      line_of[i], times[i], hrv::kMaxBeatTimeS));
    }
  }
  Recording rec;
  if (*rr_col >= 0) {
    const std::string& col = header[static_cast<size_t>(*rr_col)];
    const Unit unit = ResolveUnit(options.unit, col, rrs);
    const double scale = unit == Unit::kS ? 1000.0 : 1.0;
    rec.beats.resize(rrs.size());
    for (size_t i = 0; i < rrs.size(); ++i) rec.beats[i].rr_ms = rrs[i] * scale;
    if (*time_col >= 0) {
      for (size_t i = 0; i < times.size(); ++i) rec.beats[i].t_s = times[i];
      rec.source = fmt::format("csv: time={}, rr={} ({})", header[static_cast<size_t>(*time_col)],
                               col, UnitName(unit));
    } else {
      TimesFromIntervals(&rec.beats);
      rec.source = fmt::format("csv: rr={} ({}), times = running sum", col, UnitName(unit));
    }
  } else {
    for (size_t i = 1; i < times.size(); ++i) {
      rec.beats.push_back({times[i], (times[i] - times[i - 1]) * 1000.0});
    }
    line_of.erase(line_of.begin());  // the first beat has no RR
    rec.source = fmt::format("csv: time={}, rr = difference of times",
                             header[static_cast<size_t>(*time_col)]);
  }
  if (not_beats > 0) {
    rec.source += fmt::format("; {} rows that mark no beat skipped ({})", not_beats,
                              is_beat_col >= 0 ? "is_beat = 0" : "symbol");
  }
  const bool running_sum = *time_col < 0;
  if (auto st = CheckValues(rec, line_of, name, running_sum); !st) {
    return std::unexpected(st.error());
  }
  if (auto st = CheckLooksLikeRr(rec, name, *time_col >= 0 && *rr_col >= 0); !st) {
    return std::unexpected(st.error());
  }
  return rec;
}

}  // namespace

Result<Recording> ParseRecording(std::string_view text, std::string_view name,
                                 const ReadOptions& options) {
  const std::vector<Line> lines = SplitLines(text);
  if (lines.empty()) return Corrupt(fmt::format("{}: empty file, no beats", name));
  Format format = options.format;
  if (format == Format::kAuto) {
    const bool has_letter = std::any_of(lines[0].text.begin(), lines[0].text.end(), [](char c) {
      return std::isalpha(static_cast<unsigned char>(c)) && c != 'e' && c != 'E';
    });
    format = has_letter ? Format::kCsv : Format::kRr;
  }
  auto rec =
      format == Format::kCsv ? ParseCsv(lines, name, options) : ParseRr(lines, name, options);
  if (rec && rec->beats.empty()) {
    return Corrupt(fmt::format("{}: no beats ({})", name, rec->source));
  }
  return rec;
}

Result<Recording> ReadRecording(const std::string& path, const ReadOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return IoError(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return IoError(fmt::format("cannot read {}: {}", path, std::strerror(errno)));
  return ParseRecording(buf.str(), path, options);
}

Result<Format> ParseFormat(std::string_view s) {
  if (s == "auto") return Format::kAuto;
  if (s == "rr") return Format::kRr;
  if (s == "csv") return Format::kCsv;
  return InvalidArgument(fmt::format("unknown format '{}': expected rr, csv or auto", s));
}

Result<Unit> ParseUnit(std::string_view s) {
  if (s == "auto") return Unit::kAuto;
  if (s == "ms") return Unit::kMs;
  if (s == "s") return Unit::kS;
  return InvalidArgument(fmt::format("unknown unit '{}': expected ms, s or auto", s));
}

}  // namespace medstream::recording

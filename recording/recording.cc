#include "recording/recording.h"

#include <fmt/format.h>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <optional>
#include <span>
#include <sstream>

namespace medstream::recording {

namespace {

constexpr std::string_view kTimeNames[] = {"time",   "t",           "t_s",
                                           "time_s", "beat_time_s", "timestamp"};
constexpr std::string_view kRrNames[] = {"rr",   "rr_ms", "rr_s",   "nn",  "nn_ms",
                                         "nn_s", "rri",   "rri_ms", "ibi", "ibi_ms"};

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
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
                      name, line.number, Trim(line.text)));
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
    std::string have;
    for (const std::string& h : header) have += (have.empty() ? "" : ", ") + h;
    return NotFound(
        fmt::format("{}: no {} column named '{}' (header has: {})", name, what, requested, have));
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
    std::string have;
    for (const std::string& h : header) have += (have.empty() ? "" : ", ") + h;
    return NotFound(fmt::format(
        "{}: found neither a time nor an RR column (header has: {}); name them with --time-col "
        "and --rr-col",
        name, have));
  }
  const size_t needed = static_cast<size_t>(std::max(*time_col, *rr_col)) + 1;
  std::vector<double> times, rrs;
  for (size_t i = 1; i < lines.size(); ++i) {
    const auto cells = SplitCsv(lines[i].text);
    if (cells.size() < needed) {
      return Corrupt(fmt::format("{} line {}: {} cells, but the header names {} columns", name,
                                 lines[i].number, cells.size(), header.size()));
    }
    for (int col : {*time_col, *rr_col}) {
      if (col < 0) continue;
      const auto v = ParseNumber(cells[static_cast<size_t>(col)]);
      if (!v) {
        return Corrupt(fmt::format("{} line {}: column '{}' value '{}' is not a number", name,
                                   lines[i].number, header[static_cast<size_t>(col)],
                                   Trim(cells[static_cast<size_t>(col)])));
      }
      (col == *time_col ? times : rrs).push_back(*v);
    }
  }
  if (times.empty() && rrs.empty()) {
    return Corrupt(fmt::format("{}: header only, no beats", name));
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
    rec.source = fmt::format("csv: time={}, rr = difference of times",
                             header[static_cast<size_t>(*time_col)]);
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

#include "adapters/wfdb/wfdb.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <sstream>

#include <fmt/format.h>

#include "common/base/bytes.h"
#include "common/base/file.h"

namespace medstream::wfdb {

namespace {

constexpr size_t kMaxSignals = 64;
constexpr int64_t kMaxSamples = int64_t{1} << 31;
constexpr uint64_t kMaxHeaderBytes = 16 << 20;
constexpr uint64_t kMaxSignalBytes = uint64_t{4} << 30;
constexpr uint64_t kMaxAnnotationBytes = 1 << 30;

std::vector<std::string> Fields(std::string_view line) {
  std::vector<std::string> out;
  std::istringstream in{std::string(line)};
  for (std::string f; in >> f;) out.push_back(f);
  return out;
}

template <class T>
bool Number(std::string_view s, T* v) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && end == s.data() + s.size();
}

// The leading number of "360/...(...)" or "200(1024)/mV".
std::string_view Lead(std::string_view s) {
  const size_t end = s.find_first_of("/(:+x");
  return s.substr(0, end);
}

}  // namespace

bool Annotation::IsBeat() const {
  return std::string_view("NLRBAaJSVrFejnE/fQ?").find(symbol) != std::string_view::npos;
}

Result<Header> ParseHeader(std::string_view text, const std::string& where) {
  Header h;
  size_t at = 0, line_no = 0;
  size_t nsig = 0;
  bool record_seen = false;
  auto bad = [&](const std::string& what) {
    return InvalidArgument(fmt::format("{} line {}: {}", where, line_no, what));
  };
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(at, end - at);
    at = end + 1;
    ++line_no;
    if (const size_t hash = line.find('#'); hash != std::string_view::npos) {
      line = line.substr(0, hash);
    }
    const auto f = Fields(line);
    if (f.empty()) continue;
    if (!record_seen) {
      record_seen = true;
      if (f[0].find('/') != std::string::npos) {
        return bad("multi-segment record '" + f[0] + "': not supported (read its segments)");
      }
      h.record = f[0];
      if (f.size() < 2 || !Number(f[1], &nsig)) return bad("record line: no signal count");
      if (nsig == 0 || nsig > kMaxSignals) {
        return bad(fmt::format("{} signals: 1 to {} supported", nsig, kMaxSignals));
      }
      if (f.size() > 2 && (!Number(Lead(f[2]), &h.fs) || !(h.fs > 0 && h.fs <= 1e6))) {
        return bad("sampling frequency '" + f[2] + "' is not a positive number");
      }
      if (f.size() > 3 && (!Number(f[3], &h.samples) || h.samples < 0 || h.samples > kMaxSamples)) {
        return bad("sample count '" + f[3] + "' out of range");
      }
      continue;
    }
    if (h.signals.size() == nsig) continue;  // info lines after the signals
    Signal s;
    s.file = f[0];
    if (s.file.find('/') != std::string::npos || s.file == "." || s.file == "..") {
      return bad("signal file '" + s.file + "' must be in the record's folder");
    }
    if (f.size() < 2 || !Number(Lead(f[1]), &s.format)) return bad("no signal format");
    if (s.format != 212 && s.format != 16) {
      return bad(fmt::format("signal format {}: only 212 and 16 are supported", s.format));
    }
    if (std::string_view(f[1]).find_first_of("x:+") != std::string_view::npos) {
      return bad("signal format '" + f[1] + "': samples per frame, skew and offset not supported");
    }
    s.adc_resolution = s.format == 212 ? 12 : 16;
    bool baseline_given = false;
    if (f.size() > 2) {
      const std::string& g = f[2];
      if (!Number(Lead(g), &s.gain) || !std::isfinite(s.gain) || s.gain < 0) {
        return bad("gain '" + g + "' is not a number");
      }
      if (s.gain == 0) s.gain = 200;
      if (const size_t open = g.find('('); open != std::string::npos) {
        const size_t close = g.find(')', open);
        if (close == std::string::npos ||
            !Number(std::string_view(g).substr(open + 1, close - open - 1), &s.baseline)) {
          return bad("baseline in '" + g + "' is not an integer");
        }
        baseline_given = true;
      }
      if (const size_t slash = g.find('/'); slash != std::string::npos)
        s.units = g.substr(slash + 1);
    }
    if (f.size() > 3 && !Number(f[3], &s.adc_resolution)) return bad("ADC resolution");
    if (f.size() > 4 && !Number(f[4], &s.adc_zero)) return bad("ADC zero");
    if (f.size() > 5 && !Number(f[5], &s.initial)) return bad("initial value");
    if (f.size() > 6) {
      if (!Number(f[6], &s.checksum)) return bad("checksum");
      s.has_checksum = true;
    }
    if (f.size() > 8) {
      for (size_t i = 8; i < f.size(); ++i) s.description += (i > 8 ? " " : "") + f[i];
    }
    if (!baseline_given) s.baseline = s.adc_zero;
    h.signals.push_back(std::move(s));
  }
  if (!record_seen) return InvalidArgument(where + ": no record line");
  if (h.signals.size() != nsig) {
    return InvalidArgument(
        fmt::format("{}: {} signal lines for {} signals", where, h.signals.size(), nsig));
  }
  return h;
}

namespace {

// Signals `idx` of one file, interleaved frame by frame.
Status DecodeFile(const Header& h, const std::vector<size_t>& idx, std::span<const uint8_t> data,
                  const std::string& where, std::vector<std::vector<int>>* out) {
  const int format = h.signals[idx[0]].format;
  for (size_t i : idx) {
    if (h.signals[i].format != format) {
      return InvalidArgument(where + ": signals of one file in different formats");
    }
  }
  const size_t n = idx.size();
  uint64_t values = 0;
  if (format == 16) {
    if (data.size() % 2) return Corrupt(where + ": odd length for format 16");
    values = data.size() / 2;
  } else {
    values = data.size() / 3 * 2 + (data.size() % 3 == 2 ? 1 : 0);
  }
  int64_t frames = static_cast<int64_t>(values / n);
  if (h.samples > 0) {
    if (frames < h.samples) {
      return Corrupt(
          fmt::format("{}: {} samples per signal, the header says {} (the file is "
                      "short: {} bytes)",
                      where, frames, h.samples, data.size()));
    }
    frames = h.samples;
  }
  for (size_t i : idx) (*out)[i].resize(static_cast<size_t>(frames));
  auto value = [&](uint64_t k) -> int {
    if (format == 16) {
      return static_cast<int16_t>(data[2 * k] | (data[2 * k + 1] << 8));
    }
    const size_t b = k / 2 * 3;
    int v = k % 2 == 0 ? data[b] | ((data[b + 1] & 0x0F) << 8)
                       : data[b + 2] | ((data[b + 1] & 0xF0) << 4);
    return v >= 2048 ? v - 4096 : v;
  };
  for (int64_t f = 0; f < frames; ++f) {
    for (size_t j = 0; j < n; ++j) {
      (*out)[idx[j]][static_cast<size_t>(f)] = value(static_cast<uint64_t>(f) * n + j);
    }
  }
  for (size_t i : idx) {
    const Signal& s = h.signals[i];
    const auto& v = (*out)[i];
    if (!v.empty() && v[0] != s.initial) {
      return Corrupt(
          fmt::format("{}: signal {} starts at {}, the header says {}", where, i, v[0], s.initial));
    }
    if (s.has_checksum) {
      int16_t sum = 0;
      for (int x : v) sum = static_cast<int16_t>(sum + x);
      if (sum != static_cast<int16_t>(s.checksum)) {
        return Corrupt(fmt::format("{}: signal {} checksum {} differs from the header's {}", where,
                                   i, sum, s.checksum));
      }
    }
  }
  return {};
}

}  // namespace

Result<std::vector<std::vector<int>>> DecodeSignals(const Header& h, std::span<const uint8_t> data,
                                                    const std::string& where) {
  std::vector<size_t> idx;
  for (size_t i = 0; i < h.signals.size(); ++i) {
    if (h.signals[i].file != h.signals[0].file) {
      return InvalidArgument(where + ": signals in several files: decode them file by file");
    }
    idx.push_back(i);
  }
  std::vector<std::vector<int>> out(h.signals.size());
  if (auto s = DecodeFile(h, idx, data, where, &out); !s) return std::unexpected(s.error());
  return out;
}

Result<std::vector<Annotation>> ParseAnnotations(std::span<const uint8_t> data,
                                                 const std::string& where) {
  static constexpr std::string_view kSymbols[] = {
      "",  "N", "L", "R", "a", "V", "F", "J", "A",  "S", "E", "j", "/", "Q",
      "~", "",  "|", "",  "s", "T", "*", "D", "\"", "=", "p", "B", "^", "t",
      "+", "u", "?", "!", "[", "]", "e", "n", "@",  "x", "f", "(", ")", "r"};
  std::vector<Annotation> out;
  int64_t t = 0;
  int num = 0, chan = 0;
  size_t i = 0;
  auto at = [&](size_t off) { return fmt::format("{} byte {}", where, off); };
  while (i + 1 < data.size()) {
    const size_t off = i;
    const unsigned w = data[i] | (data[i + 1] << 8);
    i += 2;
    const unsigned a = w >> 10, v = w & 0x3FF;
    if (a == 0 && v == 0) return out;
    const int sv = v < 512 ? static_cast<int>(v) : static_cast<int>(v) - 1024;
    switch (a) {
      case 59: {  // SKIP: a 32-bit interval, high word first
        if (i + 4 > data.size()) return Corrupt(at(off) + ": SKIP without its interval");
        const uint32_t hi = data[i] | (data[i + 1] << 8), lo = data[i + 2] | (data[i + 3] << 8);
        i += 4;
        t += static_cast<int32_t>((hi << 16) | lo);
        break;
      }
      case 60:
        num = sv;
        if (!out.empty()) out.back().num = num;
        break;
      case 61:
        if (!out.empty()) out.back().subtype = sv;
        break;
      case 62:
        chan = static_cast<int>(v);
        if (!out.empty()) out.back().chan = chan;
        break;
      case 63: {  // AUX: v bytes, padded to even
        if (i + v > data.size()) return Corrupt(at(off) + ": AUX runs past the end");
        std::string aux(reinterpret_cast<const char*>(data.data() + i), v);
        while (!aux.empty() && aux.back() == '\0') aux.pop_back();
        if (!out.empty()) out.back().aux = std::move(aux);
        i += v + (v & 1);
        break;
      }
      default: {
        if (a >= std::size(kSymbols) || kSymbols[a].empty()) {
          return Corrupt(fmt::format("{}: unknown annotation code {}", at(off), a));
        }
        t += v;
        if (t < 0) return Corrupt(at(off) + ": annotation before the record's start");
        Annotation an;
        an.sample = t;
        an.code = static_cast<int>(a);
        an.symbol = kSymbols[a][0];
        an.chan = chan;
        an.num = num;
        out.push_back(std::move(an));
      }
    }
  }
  return out;  // no end marker: tolerated (some writers omit it)
}

std::string RecordBase(const std::string& path) {
  return path.ends_with(".hea") ? path.substr(0, path.size() - 4) : path;
}

double Record::Physical(size_t s, size_t i) const {
  const Signal& sig = header.signals[s];
  return (samples[s][i] - sig.baseline) / sig.gain;
}

Result<Record> ReadRecord(const std::string& path) {
  namespace fs = std::filesystem;
  const std::string base = RecordBase(path);
  MEDSTREAM_TRY(text, ReadFileText(base + ".hea", kMaxHeaderBytes));
  Record r;
  MEDSTREAM_TRY(h, ParseHeader(text, base + ".hea"));
  r.header = std::move(h);
  r.dir = fs::path(base).parent_path().string();
  r.samples.resize(r.header.signals.size());
  // One decode per signal file.
  std::vector<std::string> files;
  for (const Signal& s : r.header.signals) {
    if (std::find(files.begin(), files.end(), s.file) == files.end()) files.push_back(s.file);
  }
  for (const std::string& file : files) {
    const std::string p = (r.dir.empty() ? std::string() : r.dir + "/") + file;
    MEDSTREAM_TRY(data, ReadFileBytes(p, kMaxSignalBytes));
    std::vector<size_t> idx;
    for (size_t i = 0; i < r.header.signals.size(); ++i) {
      if (r.header.signals[i].file == file) idx.push_back(i);
    }
    if (auto s = DecodeFile(r.header, idx, data, p, &r.samples); !s) {
      return std::unexpected(s.error());
    }
  }
  return r;
}

Result<std::vector<Annotation>> ReadAnnotations(const std::string& record_path,
                                                const std::string& annotator) {
  const std::string p = RecordBase(record_path) + "." + annotator;
  MEDSTREAM_TRY(data, ReadFileBytes(p, kMaxAnnotationBytes));
  return ParseAnnotations(data, p);
}

}  // namespace medstream::wfdb

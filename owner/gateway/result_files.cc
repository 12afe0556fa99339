#include "owner/gateway/result_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>

#include <nlohmann/json.hpp>

#include "owner/results/results.h"

namespace medstream::gateway {

namespace {

struct LineInfo {
  std::optional<uint64_t> seq;  // the result it belongs to; nullopt: a CSV header, damage
  bool end_marker = false;  // a JSON line {"seq":N,"windows":W,"end":true}: result N's last line
};

// The leading sequence number of a CSV row, the "seq" of a JSON line.
LineInfo ReadLine(std::string_view line, ResultFileKind kind) {
  LineInfo info;
  if (line.empty() || line.size() > results::kMaxLineBytes) return info;
  if (kind == ResultFileKind::kCsv) {
    uint64_t seq = 0;
    const auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), seq);
    if (ec == std::errc() && end != line.data() && end != line.data() + line.size() && *end == ',')
      info.seq = seq;
    return info;
  }
  const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return info;
  const auto it = j.find("seq");
  if (it == j.end() || !it->is_number_unsigned()) return info;
  info.seq = it->get<uint64_t>();
  info.end_marker = j.contains("end");
  return info;
}

std::unexpected<Error> SysError(const std::string& what, const std::string& path) {
  return IoError(what + " " + path + ": " + std::strerror(errno));
}

}  // namespace

ResultTail ScanResultTail(std::string_view tail, bool whole, ResultFileKind kind,
                          uint64_t max_seq) {
  ResultTail r;
  size_t end = tail.size();  // the end of the whole lines
  if (!tail.empty() && tail.back() != '\n') {
    const size_t nl = tail.rfind('\n');
    if (nl == std::string_view::npos && !whole) {
      r.need_more = true;
      return r;
    }
    end = nl == std::string_view::npos ? 0 : nl + 1;  // the torn line goes
  }
  // Backwards over the whole lines: those after the newest one that reads (damage, a row of a
  // result the jsonl does not have) go; then that result's block is whole or not.
  bool next_is_torn = end < tail.size();  // what follows the line looked at is the torn line
  std::optional<uint64_t> newest;
  size_t newest_end = 0;  // where the newest line that reads ends
  for (size_t pos = end; pos > 0;) {
    // The line [start, pos - 1) and its newline.
    const size_t nl = pos >= 2 ? tail.rfind('\n', pos - 2) : std::string_view::npos;
    const size_t start = nl == std::string_view::npos ? 0 : nl + 1;
    if (start == 0 && !whole) {
      r.need_more = true;  // this line may begin before the tail
      return r;
    }
    if (start == 0 && kind == ResultFileKind::kCsv) break;  // the header stays
    const LineInfo line = ReadLine(tail.substr(start, pos - 1 - start), kind);
    if (!newest) {
      if (line.seq && *line.seq <= max_seq) {
        newest = line.seq;
        newest_end = pos;
        // A JSON block ends with its marker; a CSV block is known cut only by a torn line
        // right after it (a tear exactly at a line boundary inside a CSV block cannot be seen).
        const bool whole_block =
            kind == ResultFileKind::kJsonLines ? line.end_marker : !next_is_torn;
        if (whole_block) {
          r.keep = pos;
          r.last_seq = *newest;
          return r;
        }
      } else {
        next_is_torn = false;
      }
    } else if (line.seq != newest) {
      if (kind == ResultFileKind::kJsonLines && line.seq && !line.end_marker) {
        // The result before ends without a marker: a file of before the markers, whose blocks
        // have none. The newest block is taken whole, as it was then.
        r.keep = newest_end;
        r.last_seq = *newest;
        return r;
      }
      // The lines after this one are the newest result's, cut short: they go, and that result is
      // read again.
      r.keep = pos;
      r.last_seq = *newest - std::min<uint64_t>(*newest, 1);
      r.cut_newest = true;
      return r;
    }
    pos = start;
  }
  // Back at the file's start (or its CSV header). With no line that reads, a JSON file keeps its
  // lines (nothing here says they are a tear); CSV rows of results the jsonl lacks go.
  if (!newest) {
    r.keep = kind == ResultFileKind::kCsv && end > 0 ? tail.find('\n') + 1 : end;
    return r;
  }
  r.keep = kind == ResultFileKind::kCsv ? tail.find('\n') + 1 : 0;
  {
    r.last_seq = *newest - std::min<uint64_t>(*newest, 1);
    r.cut_newest = true;
  }
  return r;
}

Result<ResultTail> SettleResultFile(const std::string& path, ResultFileKind kind, uint64_t max_seq,
                                    uint64_t* cut) {
  if (cut) *cut = 0;
  const int fd = open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    if (errno == ENOENT) return ResultTail{};
    return SysError("cannot open the results file", path);
  }
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  struct stat st {};
  if (fstat(fd, &st) != 0) return SysError("cannot stat", path);
  if (!S_ISREG(st.st_mode)) return InvalidArgument(path + " is not a regular file");
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  // From the end, longer only while no boundary is found; at most kMaxFileBytes (a longer line
  // at its start is taken for whole).
  for (uint64_t window = uint64_t{64} << 10;; window *= 4) {
    const uint64_t n = std::min({window, size, results::kMaxFileBytes});
    std::string tail(n, '\0');
    if (pread(fd, tail.data(), n, static_cast<off_t>(size - n)) != static_cast<ssize_t>(n)) {
      return SysError("cannot read", path);
    }
    const ResultTail r =
        ScanResultTail(tail, n == size || n == results::kMaxFileBytes, kind, max_seq);
    if (r.need_more) continue;
    if (r.keep < n) {
      const uint64_t at = size - n + r.keep;
      if (ftruncate(fd, static_cast<off_t>(at)) != 0 || fdatasync(fd) != 0) {
        return SysError("cannot cut the torn append off", path);
      }
      if (cut) *cut = n - r.keep;
    }
    return r;
  }
}

}  // namespace medstream::gateway

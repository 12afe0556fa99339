#include "host/server/env.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/base/bytes.h"
#include "common/base/file.h"

namespace medstream::host {

namespace {

class InotifyWatch : public ServerEnv::Watch {
 public:
  explicit InotifyWatch(int fd) : fd_(fd) {}
  ~InotifyWatch() override { close(fd_); }
  void Wait(double timeout_s) override {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout_s * 1000)) > 0) {
      char buf[4096];
      while (read(fd_, buf, sizeof buf) > 0) {
      }
    }
  }

 private:
  int fd_;
};

class PosixEnv : public ServerEnv {
 public:
  std::vector<std::string> ListDir(const std::string& dir) override {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec))
      names.push_back(e.path().filename().string());
    return names;
  }
  Result<crypto::Bytes> ReadFile(const std::string& path, uint64_t cap) override {
    return ReadFileBytes(path, cap);
  }
  Result<bool> ReadFileInto(const std::string& path, uint64_t cap, std::span<uint8_t> dest,
                            size_t* read_bytes, const ReadProgress* progress) override {
    return medstream::ReadFileInto(path, cap, dest, read_bytes, progress);
  }
  Result<crypto::Bytes> ReadAt(const std::string& path, uint64_t offset, size_t n) override {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) return NotFound(path + " does not exist");
      return IoError("cannot open " + path + ": " + std::strerror(errno));
    }
    crypto::Bytes out(n);
    size_t got = 0;
    while (got < n) {
      const ssize_t r = pread(fd, out.data() + got, n - got, static_cast<off_t>(offset + got));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        const int e = errno;
        close(fd);
        return IoError("cannot read " + path + ": " + std::strerror(e));
      }
      if (r == 0) break;
      got += static_cast<size_t>(r);
    }
    close(fd);
    out.resize(got);
    return out;
  }
  bool Exists(const std::string& path) override { return FileExists(path); }
  Status WriteAtomic(const std::string& path, crypto::ByteView data, int mode) override {
    return WriteFileAtomic(path, data, mode);
  }
  Status WriteAtomicFrom(const std::string& path, int mode,
                         const std::function<Status(const FileSink&)>& fill) override {
    return WriteFileAtomicFrom(path, mode, fill);
  }
  Status Append(const std::string& path, std::string_view text, bool sync) override {
    // A failed append leaves the file as it was: a journal line cut short and then followed by
    // the retried one would glue two names into one, and the replay would miss that batch.
    return AppendToFile(path, text, 0600, sync);
  }
  Status Rename(const std::string& from, const std::string& to) override {
    if (std::rename(from.c_str(), to.c_str()) != 0) {
      return IoError("cannot move " + from + " to " + to + ": " + std::strerror(errno));
    }
    return {};
  }
  Status MakeDirs(const std::string& dir) override { return medstream::MakeDirs(dir, 0700); }
  Result<std::unique_ptr<Watch>> WatchDir(const std::string& dir) override {
    const int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (fd < 0) return IoError(std::string("inotify: ") + std::strerror(errno));
    if (inotify_add_watch(fd, dir.c_str(), IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
      close(fd);
      return IoError("cannot watch " + dir + ": " + std::strerror(errno));
    }
    return std::make_unique<InotifyWatch>(fd);
  }
  double NowSeconds() override {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace

Result<crypto::Bytes> ServerEnv::ReadAt(const std::string& path, uint64_t offset, size_t n) {
  MEDSTREAM_TRY(file, ReadFile(path, kNoSizeLimit));
  if (offset >= file.size()) return crypto::Bytes{};
  const size_t from = static_cast<size_t>(offset);
  const size_t take = std::min(n, file.size() - from);
  return crypto::Bytes(file.begin() + static_cast<std::ptrdiff_t>(from),
                       file.begin() + static_cast<std::ptrdiff_t>(from + take));
}

Status ServerEnv::WriteAtomicFrom(const std::string& path, int mode,
                                  const std::function<Status(const FileSink&)>& fill) {
  crypto::Bytes file;
  const Status filled = fill([&](uint64_t offset, std::span<const uint8_t> part) -> Status {
    if (offset + part.size() > file.size()) file.resize(offset + part.size());
    std::copy(part.begin(), part.end(), file.begin() + static_cast<std::ptrdiff_t>(offset));
    return {};
  });
  if (!filled) return filled;
  return WriteAtomic(path, file, mode);
}

Result<bool> ServerEnv::ReadFileInto(const std::string& path, uint64_t cap, std::span<uint8_t> dest,
                                     size_t* read_bytes, const ReadProgress* progress) {
  MEDSTREAM_TRY(file, ReadFile(path, cap));
  if (file.size() > dest.size()) return false;
  if (progress) {
    if (auto s = progress->sized(file.size()); !s) return std::unexpected(s.error());
  }
  if (!file.empty()) std::memcpy(dest.data(), file.data(), file.size());
  if (progress && !file.empty()) progress->arrived(file.size());
  *read_bytes = file.size();
  return true;
}

ServerEnv& PosixServerEnv() {
  static PosixEnv env;
  return env;
}

}  // namespace medstream::host

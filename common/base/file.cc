#include "common/base/file.h"

#include "common/base/bytes.h"
#include "common/base/fdio.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

namespace medstream {

namespace {

std::unexpected<Error> Errno(const std::string& what, const std::string& path) {
  return IoError(what + " " + path + ": " + std::strerror(errno));
}

std::string Dirname(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

namespace {

// Opens a regular file for reading and checks its size against `max_bytes` (ReadFileBytes' rules).
Result<int> OpenRegular(const std::string& path, uint64_t max_bytes, uint64_t* size) {
  // O_NONBLOCK: opening a FIFO planted where a file is expected must not block (it is refused
  // below as not a regular file).
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    if (errno == ENOENT) return Fail(Error::Code::kNotFound, path + " does not exist");
    return Errno("cannot open", path);
  }
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    close(fd);
    errno = e;
    return Errno("cannot inspect", path);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return InvalidArgument(path + " is not a regular file");
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    close(fd);
    return ResourceExhausted(path + " is " + std::to_string(st.st_size) +
                             " bytes, over the limit of " + std::to_string(max_bytes));
  }
  *size = static_cast<uint64_t>(st.st_size);
  return fd;
}

// read(2) until `n` bytes or the end of the file: the bytes read, or -1 (errno set).
ssize_t ReadUpTo(int fd, uint8_t* p, size_t n) {
  size_t got = 0;
  while (got < n) {
    const ssize_t r = read(fd, p + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return static_cast<ssize_t>(got);
}

}  // namespace

Result<std::vector<uint8_t>> ReadFileBytes(const std::string& path, uint64_t max_bytes) {
  uint64_t size = 0;
  MEDSTREAM_TRY(fd, OpenRegular(path, max_bytes, &size));
  // Read straight into the result. The size is only a hint (a file can be sparse, shrink or
  // grow): what follows it is read in steps, and never more than the limit.
  std::vector<uint8_t> out(static_cast<size_t>(size));
  size_t have = 0;
  for (;;) {
    const ssize_t n = ReadUpTo(fd, out.data() + have, out.size() - have);
    if (n < 0) {
      const int e = errno;
      close(fd);
      errno = e;
      return Errno("cannot read", path);
    }
    have += static_cast<size_t>(n);
    if (have < out.size()) break;  // the end of the file
    if (have >= max_bytes) {
      uint8_t probe;
      const ssize_t more = ReadUpTo(fd, &probe, 1);
      close(fd);
      if (more != 0) {
        return ResourceExhausted(path + " grew over the limit of " + std::to_string(max_bytes) +
                                 " bytes while being read");
      }
      return out;
    }
    out.resize(static_cast<size_t>(std::min<uint64_t>(max_bytes, have + (size_t{1} << 16))));
  }
  close(fd);
  out.resize(have);
  return out;
}

Result<bool> ReadFileInto(const std::string& path, uint64_t max_bytes, std::span<uint8_t> dest,
                          size_t* read_bytes, const ReadProgress* progress) {
  uint64_t size = 0;
  MEDSTREAM_TRY(fd, OpenRegular(path, max_bytes, &size));
  if (size > dest.size()) {
    close(fd);
    return false;
  }
  if (progress) {
    if (auto s = progress->sized(size); !s) {
      close(fd);
      return std::unexpected(s.error());
    }
  }
  // In pieces when the bytes are used as they arrive; in one read otherwise.
  const size_t piece = progress ? kReadPiece : dest.size();
  ssize_t n = 0;
  while (static_cast<size_t>(n) < dest.size()) {
    const size_t want = std::min(piece, dest.size() - static_cast<size_t>(n));
    const ssize_t r = ReadUpTo(fd, dest.data() + n, want);
    if (r < 0) {
      n = -1;
      break;
    }
    n += r;
    if (progress && r > 0) progress->arrived(static_cast<size_t>(n));
    if (static_cast<size_t>(r) < want) break;  // the end of the file
  }
  uint8_t probe;
  const ssize_t more = n < 0 || static_cast<size_t>(n) < dest.size() ? 0 : ReadUpTo(fd, &probe, 1);
  const int e = errno;
  close(fd);
  if (n < 0 || more < 0) {
    errno = e;
    return Errno("cannot read", path);
  }
  if (progress && (static_cast<uint64_t>(n) != size || more > 0)) {
    return IoError(path + " changed size while being read (" + std::to_string(size) +
                   " bytes when opened)");
  }
  if (more > 0) {  // it grew while being read
    if (dest.size() >= max_bytes) {
      return ResourceExhausted(path + " grew over the limit of " + std::to_string(max_bytes) +
                               " bytes while being read");
    }
    return false;
  }
  *read_bytes = static_cast<size_t>(n);
  return true;
}

Result<std::string> ReadFileText(const std::string& path, uint64_t max_bytes) {
  auto b = ReadFileBytes(path, max_bytes);
  if (!b) return std::unexpected(b.error());
  return std::string(b->begin(), b->end());
}

Status WriteFileAtomic(const std::string& path, std::span<const uint8_t> data, int mode) {
  return WriteFileAtomicFrom(path, mode, [data](const FileSink& write) { return write(0, data); });
}

Status WriteFileAtomicFrom(const std::string& path, int mode,
                           const std::function<Status(const FileSink&)>& fill) {
  // A short temporary name in the same folder: `path` + a suffix could pass NAME_MAX (255) for a
  // long file name that is itself valid.
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = Dirname(path) + "/.tmp-" + std::to_string(getpid()) + "-" +
                          std::to_string(counter.fetch_add(1));
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Errno("cannot create", tmp);
  const Status filled = fill([&](uint64_t offset, std::span<const uint8_t> part) -> Status {
    if (PwriteFull(fd, part.data(), part.size(), offset)) return {};
    return Errno("cannot write", tmp);
  });
  if (!filled) {
    close(fd);
    unlink(tmp.c_str());
    return filled;
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    unlink(tmp.c_str());
    return Errno("cannot flush", tmp);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    unlink(tmp.c_str());
    return Errno("cannot rename into", path);
  }
  const int dir = open(Dirname(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    fsync(dir);
    close(dir);
  }
  return {};
}
Status WriteFileAtomic(const std::string& path, std::string_view text, int mode) {
  return WriteFileAtomic(
      path, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()), mode);
}

Status MakeDirs(const std::string& path, int mode) {
  if (path.empty()) return {};
  std::string partial;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    partial = path.substr(0, pos);
    if (partial.empty()) continue;
    if (mkdir(partial.c_str(), static_cast<mode_t>(mode)) != 0 && errno != EEXIST) {
      return Errno("cannot create directory", partial);
    }
  }
  return {};
}

Status MakePrivateDir(const std::string& path, bool* tightened) {
  if (tightened) *tightened = false;
  if (auto s = MakeDirs(path, 0700); !s) return s;
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return Errno("cannot inspect", path);
  if (!S_ISDIR(st.st_mode)) return IoError(path + " is not a directory");
  if ((st.st_mode & 077) != 0) {
    if (chmod(path.c_str(), 0700) != 0) return Errno("cannot make private (0700)", path);
    if (tightened) *tightened = true;
  }
  return {};
}

Status CreatePrivateFile(const std::string& path) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("cannot create", path);
  const bool ok = fchmod(fd, 0600) == 0;
  close(fd);
  if (!ok) return Errno("cannot make private (0600)", path);
  return {};
}

Status AppendToFile(const std::string& path, std::string_view data, int mode, bool sync,
                    bool* created) {
  int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (created) *created = false;
  if (fd < 0 && errno == ENOENT) {
    fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd >= 0 && created) *created = true;
  }
  if (fd < 0) return Errno("cannot open", path);
  struct stat st {};
  const off_t before = fstat(fd, &st) == 0 ? st.st_size : -1;
  if (!WriteFull(fd, reinterpret_cast<const uint8_t*>(data.data()), data.size()) ||
      (sync && fdatasync(fd) != 0)) {
    const int e = errno;
    // A short write (a full disk) would leave part of the data, which a retry would follow with
    // the whole: a line of a line-based file (the server's journal, a results file) glued to the
    // next one. Cut it off again.
    if (before >= 0) (void)!ftruncate(fd, before);
    close(fd);
    errno = e;
    return Errno("cannot append to", path);
  }
  close(fd);
  return {};
}

Status AppendPrivateFile(const std::string& path, std::string_view data, bool* created) {
  return AppendToFile(path, data, 0600, /*sync=*/false, created);
}

bool FileExists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

Result<std::string> SelfPath() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return IoError("cannot resolve /proc/self/exe");
  return std::string(buf, static_cast<size_t>(n));
}

}  // namespace medstream

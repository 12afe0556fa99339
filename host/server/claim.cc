#include "host/server/claim.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "common/base/file.h"

namespace medstream::host {

namespace {

namespace fs = std::filesystem;

std::string Canonical(const std::string& dir) {
  std::error_code ec;
  const fs::path p = fs::weakly_canonical(fs::absolute(dir, ec), ec);
  return ec ? dir : p.string();
}

std::string ReadAll(int fd) {
  std::string text;
  char buf[4096];
  ssize_t n;
  off_t off = 0;
  while ((n = pread(fd, buf, sizeof buf, off)) > 0 && text.size() < 64 * 1024) {
    text.append(buf, static_cast<size_t>(n));
    off += n;
  }
  return text;
}

}  // namespace

Result<CounterClaim> CounterClaim::Acquire(const std::string& platform_dir,
                                           const crypto::Digest& counter_id,
                                           const std::string& kind, const std::string& instance_dir,
                                           const std::string& state_file) {
  const std::string path =
      fmt::format("{}/counters/{}.{}.owner", platform_dir, crypto::ToHex(counter_id), kind);
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return IoError(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
  CounterClaim claim(fd);
  const std::string me = Canonical(instance_dir);
  // Recorded as "DIR\nPID\n".
  const std::string text = ReadAll(fd);
  const std::string owner = text.substr(0, text.find('\n'));
  const std::string pid =
      text.find('\n') == std::string::npos
          ? "?"
          : text.substr(text.find('\n') + 1,
                        text.find('\n', text.find('\n') + 1) - text.find('\n') - 1);
  const std::string advice = fmt::format(
      "give this {} a platform of its own (--platform DIR, made with 'medstream platform init "
      "--dir DIR')",
      kind);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    return Fail(Error::Code::kFailedPrecondition,
                fmt::format("this platform's rollback counter for this enclave build is in use by "
                            "the {} at {} (pid {}); {}",
                            kind, owner.empty() ? "?" : owner, pid, advice));
  }
  if (!owner.empty() && owner != me && FileExists(owner + "/" + state_file)) {
    return Fail(
        Error::Code::kFailedPrecondition,
        fmt::format("this platform's rollback counter for this enclave build belongs to the "
                    "{} at {}, which holds sealed state ({}): running a second {} here "
                    "would make that state look like a rollback. Keep using {}, remove it "
                    "if it is no longer needed, or {}",
                    kind, owner, state_file, kind, owner, advice));
  }
  const std::string record = fmt::format("{}\n{}\n", me, getpid());
  if (ftruncate(fd, 0) != 0 ||
      pwrite(fd, record.data(), record.size(), 0) != static_cast<ssize_t>(record.size()) ||
      fdatasync(fd) != 0) {
    return IoError(fmt::format("cannot record the owner in {}: {}", path, std::strerror(errno)));
  }
  return claim;
}

CounterClaim& CounterClaim::operator=(CounterClaim&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

CounterClaim::~CounterClaim() {
  if (fd_ >= 0) close(fd_);  // releases the flock
}

}  // namespace medstream::host

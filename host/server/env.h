// env: the server's view of its machine, as LevelDB's Env: the files of its directory (listing,
// reading with a cap, atomic writes, the journal's appends, moves), the watch on its inbox, and a
// steady clock for its timings. The server takes one (ServerOptions::env); PosixServerEnv is the
// real one. EnvWrapper forwards every call to another Env, so a test overrides only what it
// changes: a write that fails once, a move that fails (a full disk, a crash between two steps),
// a clock it sets, a watch it wakes. Implementations are thread-safe (the server calls from its
// loop and from relay threads).
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/file.h"
#include "common/base/result.h"
#include "common/crypto/crypto.h"

namespace medstream::host {

class ServerEnv {
 public:
  virtual ~ServerEnv() = default;

  // The names in `dir` (not paths), any order; an empty list if it cannot be read.
  virtual std::vector<std::string> ListDir(const std::string& dir) = 0;
  // kNotFound if absent; kResourceExhausted past `cap` bytes; kIo otherwise.
  virtual Result<crypto::Bytes> ReadFile(const std::string& path, uint64_t cap) = 0;
  // ReadFile into `dest` (the enclave's request buffer: no copy on the host): true and
  // *read_bytes when the file fit, false when it did not. `progress`, when given, is told the size
  // and the bytes as they arrive (common/base/file.h). By default through ReadFile.
  virtual Result<bool> ReadFileInto(const std::string& path, uint64_t cap, std::span<uint8_t> dest,
                                    size_t* read_bytes, const ReadProgress* progress);
  // Up to `n` bytes of `path` from `offset` (fewer at its end): a file too large to hold whole,
  // read in pieces (the enclave's checkpoint). kNotFound if absent. By default through ReadFile.
  virtual Result<crypto::Bytes> ReadAt(const std::string& path, uint64_t offset, size_t n);
  virtual bool Exists(const std::string& path) = 0;
  // Written whole or not at all (a temporary file, fsync'd, renamed over `path`).
  virtual Status WriteAtomic(const std::string& path, crypto::ByteView data, int mode) = 0;
  // The same for a file made while it is written (common/base/file.h, WriteFileAtomicFrom): no
  // need to hold it whole. By default gathered, then through WriteAtomic.
  virtual Status WriteAtomicFrom(const std::string& path, int mode,
                                 const std::function<Status(const FileSink&)>& fill);
  // Appends `text`; with `sync`, durable when this returns.
  virtual Status Append(const std::string& path, std::string_view text, bool sync) = 0;
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  virtual Status MakeDirs(const std::string& dir) = 0;

  // A watch on one directory: Wait returns when a file may have arrived, or after `timeout_s`.
  class Watch {
   public:
    virtual ~Watch() = default;
    virtual void Wait(double timeout_s) = 0;
  };
  virtual Result<std::unique_ptr<Watch>> WatchDir(const std::string& dir) = 0;

  // Seconds on a steady clock (timings only; never compared across processes).
  virtual double NowSeconds() = 0;
};

// The machine's own: the filesystem, inotify, std::chrono::steady_clock.
ServerEnv& PosixServerEnv();

// Forwards every call to `target` (which must outlive it).
class EnvWrapper : public ServerEnv {
 public:
  explicit EnvWrapper(ServerEnv& target) : target_(target) {}
  std::vector<std::string> ListDir(const std::string& dir) override { return target_.ListDir(dir); }
  Result<crypto::Bytes> ReadFile(const std::string& path, uint64_t cap) override {
    return target_.ReadFile(path, cap);
  }
  Result<bool> ReadFileInto(const std::string& path, uint64_t cap, std::span<uint8_t> dest,
                            size_t* read_bytes, const ReadProgress* progress) override {
    return target_.ReadFileInto(path, cap, dest, read_bytes, progress);
  }
  Result<crypto::Bytes> ReadAt(const std::string& path, uint64_t offset, size_t n) override {
    return target_.ReadAt(path, offset, n);
  }
  bool Exists(const std::string& path) override { return target_.Exists(path); }
  Status WriteAtomic(const std::string& path, crypto::ByteView data, int mode) override {
    return target_.WriteAtomic(path, data, mode);
  }
  Status WriteAtomicFrom(const std::string& path, int mode,
                         const std::function<Status(const FileSink&)>& fill) override {
    return target_.WriteAtomicFrom(path, mode, fill);
  }
  Status Append(const std::string& path, std::string_view text, bool sync) override {
    return target_.Append(path, text, sync);
  }
  Status Rename(const std::string& from, const std::string& to) override {
    return target_.Rename(from, to);
  }
  Status MakeDirs(const std::string& dir) override { return target_.MakeDirs(dir); }
  Result<std::unique_ptr<Watch>> WatchDir(const std::string& dir) override {
    return target_.WatchDir(dir);
  }
  double NowSeconds() override { return target_.NowSeconds(); }

 private:
  ServerEnv& target_;
};

}  // namespace medstream::host

// Small file helpers with Result errors. WriteFileAtomic is the one way medstream writes a file
// that must never be seen half-written: temp file, fsync, rename, fsync of the directory.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "common/base/result.h"

namespace medstream {

inline constexpr uint64_t kNoSizeLimit = ~uint64_t{0};
// Reads a whole regular file. Anything else (a FIFO, a directory, a device) is refused without
// blocking (kInvalidArgument), a missing file is kNotFound, and a file over `max_bytes` is refused
// (kResourceExhausted) before anything is allocated for it: pass a limit for every file that
// comes from outside (an inbox, a peer, a user).
Result<std::vector<uint8_t>> ReadFileBytes(const std::string& path,
                                           uint64_t max_bytes = kNoSizeLimit);
// For a reader that uses a file's bytes as they arrive (ReadFileInto): `sized` is told the file's
// size once it is open and known to fit, before any byte is read (its error stops the read), and
// `arrived` the count of leading bytes in place after each piece (kReadPiece) read. A file whose
// size changes while it is read is then an error (kIo), as its size was announced.
struct ReadProgress {
  std::function<Status(uint64_t size)> sized;
  std::function<void(size_t n)> arrived;
};
inline constexpr size_t kReadPiece = size_t{256} << 10;
// The same checks, read straight into `dest` (no copy on the way): true and *read_bytes when the
// whole file fit, false when it does not (nothing useful is left in `dest` then).
Result<bool> ReadFileInto(const std::string& path, uint64_t max_bytes, std::span<uint8_t> dest,
                          size_t* read_bytes, const ReadProgress* progress = nullptr);
Result<std::string> ReadFileText(const std::string& path, uint64_t max_bytes = kNoSizeLimit);
Status WriteFileAtomic(const std::string& path, std::span<const uint8_t> data, int mode = 0644);
Status WriteFileAtomic(const std::string& path, std::string_view text, int mode = 0644);
// Takes a file's bytes at their offsets, in any order, from one thread or several at once (each
// part written once; the parts are disjoint).
using FileSink = std::function<Status(uint64_t offset, std::span<const uint8_t> bytes)>;
// WriteFileAtomic for a file made while it is written: `fill` hands every part to the sink it is
// given, so each part is written as soon as it is made (a chunk of sealed segments) instead of
// the whole file being made first. The same guarantees: whatever `fill` or a
// write returns, a failure leaves no file at `path` (`fill`'s own error is returned as it is).
Status WriteFileAtomicFrom(const std::string& path, int mode,
                           const std::function<Status(const FileSink&)>& fill);
// mkdir -p with the given mode for directories it creates.
Status MakeDirs(const std::string& path, int mode = 0755);

// For files that hold plaintext health data on the data owner's side (results, recordings, logs
// with values): such files are 0600 inside 0700 folders, whatever the umask or what existed.
// MakePrivateDir creates `path` (and missing parents) 0700 and tightens an existing `path` that
// group or others may read to 0700 (*tightened says so, for a notice).
Status MakePrivateDir(const std::string& path, bool* tightened = nullptr);
// Creates or truncates `path` as an empty file with mode 0600 (an existing file's mode is set to
// 0600 too).
Status CreatePrivateFile(const std::string& path);
// Appends `data` in one write(2) to `path`, creating it 0600 when absent. *created says whether it
// was created by this call. A failed append leaves the file as it was (a short write is cut off).
Status AppendPrivateFile(const std::string& path, std::string_view data, bool* created = nullptr);
// The same for any file: created with `mode` when absent; `sync`: fdatasync before returning.
Status AppendToFile(const std::string& path, std::string_view data, int mode, bool sync,
                    bool* created = nullptr);
bool FileExists(const std::string& path);
// The running executable (/proc/self/exe).
Result<std::string> SelfPath();

}  // namespace medstream

// Small file helpers with Result errors. WriteFileAtomic is the one way medstream writes a file
// that must never be seen half-written: temp file, fsync, rename, fsync of the directory.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace medstream {

Result<std::vector<uint8_t>> ReadFileBytes(const std::string& path);
Result<std::string> ReadFileText(const std::string& path);
Status WriteFileAtomic(const std::string& path, std::span<const uint8_t> data, int mode = 0644);
Status WriteFileAtomic(const std::string& path, std::string_view text, int mode = 0644);
// mkdir -p with the given mode for directories it creates.
Status MakeDirs(const std::string& path, int mode = 0755);
bool FileExists(const std::string& path);

}  // namespace medstream

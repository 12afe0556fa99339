// memory_bucket: the state bucket (partition_state.h) as an in-memory map, for the chunk store's
// unit tests and its fuzz target: writes can be made to fail, and each write's source and the
// reads are recorded for the tests to check. Not for production (nothing is durable).
//
// Thread-safety: none; one user at a time.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "host/worker/partition_state.h"

namespace medstream::host {

class MemoryBucket final : public StateBucket {
 public:
  Result<crypto::Bytes> Get(const std::string& key) override {
    ++gets;
    auto it = values.find(key);
    if (it == values.end()) return Fail(Error::Code::kNotFound, "no key " + key);
    return it->second;
  }
  Status Put(const std::string& key, crypto::ByteView value) override {
    if (puts_left == 0) return Fail(Error::Code::kIo, "the bucket is gone");
    if (puts_left > 0) --puts_left;
    put_from[key] = value.data();
    values[key].assign(value.begin(), value.end());
    return {};
  }
  Status Delete(const std::string& key) override {
    values.erase(key);
    return {};
  }
  Result<std::vector<std::string>> Keys() override {
    std::vector<std::string> out;
    for (const auto& [k, v] : values) out.push_back(k);
    return out;
  }
  std::vector<std::string> KeysStartingWith(const std::string& prefix) const {
    std::vector<std::string> out;
    for (const auto& [k, v] : values)
      if (k.starts_with(prefix)) out.push_back(k);
    return out;
  }
  std::map<std::string, crypto::Bytes> values;
  std::map<std::string, const uint8_t*> put_from;  // where each value's bytes were when written
  int puts_left = -1;                              // -1: never fails
  int gets = 0;
};

}  // namespace medstream::host

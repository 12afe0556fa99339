// key_store: the gateway's secrets in STATE/keys (0600): the data key the enclave is provisioned
// with, the pseudonym key that turns a user's name into the stream id the server sees, the key id,
// and the write-ahead log's key derived from the data key. Created on first use, never rewritten.
// Immutable after Load; thread-safe to read.
#pragma once

#include <string>

#include "common/base/result.h"
#include "common/crypto/crypto.h"
#include "common/wire/wire.h"

namespace medstream::gateway {

class KeyStore {
 public:
  // Reads `path`, or creates it with fresh random keys (0600). kCorrupt if it is not 68 bytes.
  static Result<KeyStore> LoadOrCreate(const std::string& path);

  const crypto::Key256& data_key() const { return data_key_; }
  const crypto::Key256& log_key() const { return log_key_; }
  uint32_t key_id() const { return key_id_; }
  // The pseudonymous stream id of `user`: HMAC-SHA-256 under the pseudonym key, 16 bytes.
  wire::StreamId Pseudonym(const std::string& user) const;

 private:
  crypto::Key256 data_key_;
  crypto::Key256 pseudonym_key_;
  crypto::Key256 log_key_;
  uint32_t key_id_ = 1;
};

}  // namespace medstream::gateway

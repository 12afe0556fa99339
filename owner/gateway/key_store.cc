#include "owner/gateway/key_store.h"

#include <algorithm>
#include <cstring>

#include "common/base/file.h"
#include "owner/gateway/beat_log.h"

namespace medstream::gateway {

Result<KeyStore> KeyStore::LoadOrCreate(const std::string& path) {
  auto bytes = ReadFileBytes(path);
  if (!bytes) {
    crypto::Bytes fresh(68);
    if (auto s = crypto::RandomBytes(fresh); !s) return std::unexpected(s.error());
    if (auto s = WriteFileAtomic(path, fresh, 0600); !s) return std::unexpected(s.error());
    bytes = fresh;
  }
  if (bytes->size() != 68) return Corrupt(path + " is damaged (expected 68 bytes)");
  KeyStore k;
  k.data_key_ = crypto::Key256(std::span(*bytes).first(32));
  k.pseudonym_key_ = crypto::Key256(std::span(*bytes).subspan(32, 32));
  std::memcpy(&k.key_id_, bytes->data() + 64, 4);
  crypto::Wipe(*bytes);
  MEDSTREAM_TRY(log_key, BeatLogKey(k.data_key_));
  k.log_key_ = log_key;
  return k;
}

wire::StreamId KeyStore::Pseudonym(const std::string& user) const {
  const crypto::Digest mac = crypto::HmacSha256(pseudonym_key_.span(), crypto::AsBytes(user));
  wire::StreamId id{};
  std::copy_n(mac.begin(), id.size(), id.begin());
  return id;
}

}  // namespace medstream::gateway

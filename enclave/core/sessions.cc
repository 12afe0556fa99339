#include "enclave/core/sessions.h"

namespace medstream::enclave {

Result<crypto::Bytes> SessionTable::Open(crypto::ByteView hello, const Quote& quote) {
  const uint64_t id = next_++;
  MEDSTREAM_TRY(handshake, channel::ServerHandshake::Respond(hello, id, quote));
  if (sessions_.size() >= kMaxSessions) sessions_.erase(sessions_.begin());  // oldest
  auto hs = std::make_unique<channel::ServerHandshake>(std::move(handshake));
  crypto::Bytes reply = hs->reply();
  sessions_[id] = std::move(hs);
  return reply;
}

channel::ServerHandshake* SessionTable::Find(uint64_t id) {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second.get();
}

}  // namespace medstream::enclave

// sessions: the enclave's attested channels, by session id: the handshake that opens one (its
// quote binds the channel's keys to this enclave) and the record layer of each ready channel.
// Shared by the stream service (key provisioning) and the lake service (clients' requests).
// Bounded: at most kMaxSessions, the oldest dropped first. Not thread-safe (the core is driven by
// one caller).
#pragma once

#include <map>
#include <memory>

#include "common/base/bytes.h"
#include "common/base/result.h"
#include "common/channel/channel.h"

namespace medstream::enclave {

class SessionTable {
 public:
  static constexpr size_t kMaxSessions = 64;
  using Quote = std::function<Result<crypto::Bytes>(const channel::ReportData&)>;

  // Answers a client's hello with this enclave's quote over the handshake; returns the reply.
  Result<crypto::Bytes> Open(crypto::ByteView hello, const Quote& quote);
  // The session's handshake (ready() once the client's Finished arrived), or nullptr.
  channel::ServerHandshake* Find(uint64_t id);
  void Erase(uint64_t id) { sessions_.erase(id); }
  size_t size() const { return sessions_.size(); }

 private:
  std::map<uint64_t, std::unique_ptr<channel::ServerHandshake>> sessions_;
  uint64_t next_ = 1;
};

}  // namespace medstream::enclave

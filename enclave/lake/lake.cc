#include "enclave/lake/lake.h"

#include <algorithm>
#include <cstdlib>
#include <deque>

#include <fmt/format.h>

#include "common/lake_abi/csv.h"
#include "enclave/lake/lake_internal.h"

namespace medstream::lake {

using namespace internal;

Lake::Lake(Sealer seal, Unsealer unseal, std::function<int64_t()> now)
    : seal_(std::move(seal)), unseal_(std::move(unseal)), now_(std::move(now)) {
  rng_ = [this] { return RandomWord(); };
}

uint64_t Lake::RandomWord() {
  uint64_t w = 0;
  // OpenSSL's CSPRNG; were it to fail, stop rather than answer with predictable noise.
  if (!crypto::RandomBytes({reinterpret_cast<uint8_t*>(&w), sizeof w})) std::abort();
  return w;
}
Lake::~Lake() = default;

Lake::Dataset* Lake::FindDataset(std::string_view name) {
  auto it = datasets_.find(std::string(name));
  return it == datasets_.end() ? nullptr : it->second.get();
}

std::string Lake::Who(const Session& s) const {
  auto it = identities_.find(s.key);
  const std::string name = it == identities_.end() ? "unregistered" : it->second.name;
  return name + " (" + Fingerprint(s.key) + ")";
}

namespace {

// A text past kMaxAuditTextBytes: its start (cut on a UTF-8 boundary) and the SHA-256 of the whole.
std::string BoundAuditText(std::string text, size_t max = kMaxAuditTextBytes) {
  if (text.size() <= max) return text;
  const std::string digest = crypto::ToHex(crypto::Sha256(crypto::AsBytes(text)));
  size_t keep = max - 200;
  while (keep > 0 && (static_cast<uint8_t>(text[keep]) & 0xc0) == 0x80) --keep;
  std::string out = text.substr(0, keep);
  out += fmt::format("... [{} bytes in all, SHA-256 {}]", text.size(), digest);
  return out;
}

}  // namespace

void Lake::Audit(const Session& s, std::string op, std::string dataset, std::string detail,
                 std::string outcome) {
  AuditEntry e;
  e.seq = audit_.size() + 1;
  e.time = now_();
  e.who = Who(s);
  e.op = std::move(op);
  e.dataset = BoundAuditText(std::move(dataset), kMaxAuditDatasetsBytes);
  e.detail = BoundAuditText(std::move(detail));
  e.outcome = BoundAuditText(std::move(outcome));
  if (!audit_.empty()) e.prev = audit_.back().hash;
  e.hash = e.ComputeHash();
  audit_.push_back(std::move(e));
}

// ---- requests ----

void Lake::EndSession(uint64_t session) {
  sessions_.erase(session);
}

Output Lake::Handle(uint64_t session, crypto::ByteView request) {
  Output out;
  auto& slot = sessions_[session];
  if (!slot) slot = std::make_unique<Session>();
  Result<crypto::Bytes> reply = [&]() -> Result<crypto::Bytes> {
    auto decoded = DecodeRequest(request);
    if (!decoded) return RefuseUndecodable(*slot, request, std::move(decoded.error()), &out);
    return Dispatch(*slot, *decoded, &out);
  }();
  out.reply = EncodeReplyFrame(reply);
  return out;
}

// A request that does not decode (too long a query, an unknown operation, damaged fields) from a
// proven identity is audited as refused: an analyst probing the lake's edge with oversized or
// malformed requests is as much the admin's business as a refused query. Before an identity is
// proven nothing is recorded: an unauthenticated peer could otherwise fill the log.
Result<crypto::Bytes> Lake::RefuseUndecodable(Session& s, crypto::ByteView request, Error e,
                                              Output* out) {
  if (!loaded_ || !s.proven) return std::unexpected(std::move(e));
  const std::string op = request.empty() ? "none" : std::to_string(request[0]);
  Audit(s, "request", "", fmt::format("{} bytes, operation {}", request.size(), op),
        "refused: " + e.message());
  if (auto st = Persist(out); !st) return std::unexpected(st.error());
  return std::unexpected(std::move(e));
}

Result<crypto::Bytes> Lake::Dispatch(Session& s, const Request& request, Output* out) {
  if (!loaded_) return Fail(Error::Code::kFailedPrecondition, "the lake is not loaded");
  // Hello and Prove open a session; every other operation needs an identity proven on it.
  const bool opening = std::holds_alternative<HelloRequest>(request) ||
                       std::holds_alternative<ProveRequest>(request);
  if (!opening && !s.proven) return Denied("not authenticated: prove your identity first");
  return std::visit([&](const auto& m) { return On(s, m, out); }, request);
}

Role Lake::RoleOf(const Session& s) const {
  auto it = identities_.find(s.key);
  return it == identities_.end() ? Role::kNone : it->second.role;
}

bool Lake::Granted(const Session& s, const std::string& dataset) const {
  auto it = identities_.find(s.key);
  return it != identities_.end() &&
         std::find(it->second.datasets.begin(), it->second.datasets.end(), dataset) !=
             it->second.datasets.end();
}

// ---- identity ----

Result<crypto::Bytes> Lake::On(Session& s, const HelloRequest& m, Output*) {
  HelloReply reply;
  if (auto st = crypto::RandomBytes(reply.nonce); !st) return std::unexpected(st.error());
  s.key = m.key;
  s.nonce.assign(reply.nonce.begin(), reply.nonce.end());
  s.hello = true;
  s.proven = false;
  reply.version = version_;
  return Encode(reply);
}

Result<crypto::Bytes> Lake::On(Session& s, const ProveRequest& m, Output*) {
  if (!s.hello)
    return Fail(Error::Code::kFailedPrecondition, "say hello (with your public key) first");
  MEDSTREAM_TRY(key, crypto::EcKey::FromRawPublic(s.key));
  if (auto st = key.Verify(ProofMessage(s.nonce, s.key), m.signature); !st) {
    return Denied("identity proof failed: the signature does not match the public key");
  }
  s.proven = true;
  auto it = identities_.find(s.key);
  ProveReply reply;
  reply.role = RoleName(it == identities_.end() ? Role::kNone : it->second.role);
  reply.name = it == identities_.end() ? "" : it->second.name;
  reply.version = version_;
  return Encode(reply);
}

}  // namespace medstream::lake

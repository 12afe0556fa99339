// lake_abi/messages: the data lake's operations as typed messages, the contract between a lake
// client (the owner's side: hospitals, analysts) and the lake inside the enclave. They travel as
// application records of the attested channel, so the untrusted host relays them unread.
//
// Each operation has one request struct and, where it answers more than "ok", one reply struct;
// each struct has one encoder and one decoder, and the decoders are the only parsers of these
// bytes on either side. Every decoder is bounded by the caps below and refuses trailing bytes.
// A reply frame is status u8 (0 ok, else the error's code as the edge frames carry it:
// abi's StatusFromError) | payload or the error's message, so the client branches on the code.
//
// Also here, because both sides need them: roles, the identity proof, privacy policies, query
// results, audit entries and their hash chain. Pure: no I/O. Thread-safe: values only.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/base/bytes.h"
#include "common/base/result.h"
#include "common/crypto/crypto.h"
#include "common/lake_abi/csv.h"
#include "common/lake_abi/schema.h"

namespace medstream::lake {

enum class Op : uint8_t {
  kHello = 1,
  kProve = 2,
  kInit = 3,
  kGrant = 4,
  kIngestBegin = 5,
  kIngestChunk = 6,
  kIngestEnd = 7,
  kQuery = 8,
  kDelete = 9,
  kAudit = 10,
  kList = 11,
};

// Caps every decoder enforces (the enclave's limits; a client never sends more).
inline constexpr size_t kMaxNameBytes = 256;         // a dataset's or an identity's name
inline constexpr size_t kMaxDatasetNameBytes = 128;  // a new dataset's name (letters, digits, _)
inline constexpr size_t kMaxGrantDatasets = 1024;    // datasets in one grant
inline constexpr size_t kMaxQueryBytes = 64 * 1024;  // one SQL query
inline constexpr size_t kMaxBadRowsReported = 1000;  // bad rows named in an ingest's report
inline constexpr size_t kMaxListedDatasets = 1 << 16;
inline constexpr size_t kMaxAuditEntries = 1 << 24;
inline constexpr size_t kMaxResultColumns = 4096;
// One answer: at most kMaxAnswerCells values (rows x columns) and kMaxAnswerBytes as encoded
// (ResultSet::Encode). The enclave refuses a query whose answer would pass either before it builds
// the answer's cells: 600 000 groups of 64 aggregates once took 8 GB of enclave memory and ended in
// "response exceeds its cap" and a restarted enclave. The values' bytes are counted whole (tags,
// numbers and text), so an answer with its column names stays inside the 128 MiB a lake call may
// return (enclave/core/lake_service.cc checks it at compile time).
inline constexpr size_t kMaxAnswerCells = size_t{1} << 22;
inline constexpr size_t kMaxAnswerBytes = size_t{64} << 20;

enum class Role : uint8_t { kNone = 0, kAdmin = 1, kOwner = 2, kAnalyst = 3 };
std::string_view RoleName(Role r);
Result<Role> ParseRole(std::string_view name);

using PublicKey = std::array<uint8_t, 64>;
using Signature = std::array<uint8_t, 64>;
// What a client signs to prove its key: context string, the enclave's nonce, its public key.
crypto::Bytes ProofMessage(std::span<const uint8_t> nonce, const PublicKey& key);

// How a dataset answers analysts (owners and the admin always get exact answers on their own).
//   kDp     differentially private COUNT/SUM/AVG (enclave/lake/dp.h), each analyst's epsilon
//           budget spent by every query and kept in the sealed, rollback-protected manifest
//   kExact  exact aggregates with k-suppression, identifier columns closed to analysts, suppressed
//           and empty answers alike, and query-set-overlap control: a query whose selected rows
//           differ from one of the analyst's last kOverlapHistory answered queries on the dataset
//           by fewer than k rows (but some) is refused
enum class Privacy : uint8_t { kExact = 0, kDp = 1 };
std::string_view PrivacyName(Privacy p);
Result<Privacy> ParsePrivacy(std::string_view name);

inline constexpr size_t kOverlapHistory = 64;
// Epsilon per query: below kMinQueryEpsilon the noise is meaningless (and its scale, split over a
// query's aggregates, would leave what the enclave's sampler can draw exactly).
inline constexpr double kMinQueryEpsilon = 1e-6;
inline constexpr double kMaxQueryEpsilon = 10;
inline constexpr double kDpDelta = 1e-6;

struct PrivacyPolicy {
  Privacy privacy = Privacy::kDp;
  double epsilon = 0.5;  // per query, when the query does not say
  double budget = 5;     // per analyst, in all
  // kInvalidArgument for an unknown kind, or an epsilon or budget outside
  // [kMinQueryEpsilon, kMaxQueryEpsilon] and (0, 1e6].
  Status Check() const;
  void Encode(ByteWriter* w) const;
  static Result<PrivacyPolicy> Decode(ByteReader* r);
};

struct DatasetInfo {
  std::string name, owner;
  uint64_t rows = 0;
  std::string schema;
  uint32_t k = 5;
  PrivacyPolicy policy;
  double budget_spent = 0;  // the asking analyst's (dp datasets)
};

struct BadRow {
  uint64_t line = 0;
  std::string reason;
};

// A query's answer.
struct ResultSet {
  std::vector<std::string> columns;
  std::vector<std::vector<Value>> rows;
  uint64_t suppressed_groups = 0;
  // Differentially private answers (a `dp` dataset queried by an analyst): the privacy spent on
  // this query, what is left of the analyst's budget, the noisy count a group needed to be shown,
  // and per column the half-width of its 95 % error interval (0 for group keys).
  bool dp = false;
  double epsilon = 0, budget_remaining = 0, release_threshold = 0;
  std::vector<double> error95;
  void Encode(ByteWriter* w) const;
  static Result<ResultSet> Decode(ByteReader* r);
};

struct AuditEntry {
  uint64_t seq = 0;
  int64_t time = 0;
  std::string who;  // name and key fingerprint
  std::string op;
  std::string dataset;
  std::string detail;  // the query text
  std::string outcome;
  crypto::Digest prev{};
  crypto::Digest hash{};
  crypto::Digest ComputeHash() const;
  void Encode(ByteWriter* w) const;
  static Result<AuditEntry> Decode(ByteReader* r);
};
// Recomputes the chain; the first broken link is reported.
Status VerifyAuditChain(const std::vector<AuditEntry>& entries);
// An owner's view: a subset of a chain of `length` entries. Each entry's own hash is recomputed
// and the sequence numbers must rise within the chain (the links between them are not shown).
Status VerifyAuditEntries(const std::vector<AuditEntry>& entries, uint64_t length);

// ---- requests: client -> enclave ----

struct HelloRequest {
  PublicKey key{};
};
struct ProveRequest {
  Signature signature{};
};
struct InitRequest {
  std::string name;  // the admin's
};
struct GrantRequest {
  PublicKey key{};
  std::string name, role;
  std::vector<std::string> datasets;
};
struct IngestBeginRequest {
  std::string dataset;
  Schema schema;
  uint32_t k = 5;
  PrivacyPolicy policy;
};
struct IngestChunkRequest {
  uint64_t first_line = 0;  // the file's line number of the chunk's first record
  std::string csv;          // complete records only, at most kMaxIngestChunkBytes (csv.h)
};
struct IngestEndRequest {};
struct QueryRequest {
  std::string sql;
  double epsilon = 0;  // 0: the dataset's default (dp datasets; ignored by exact ones)
};
struct DeleteRequest {
  std::string dataset;
};
// The entries from sequence number `from` on (1: the first), as many as fit in one reply
// (kMaxAuditReplyBytes); the reply's `next` says where to go on.
struct AuditRequest {
  uint64_t from = 1;
};
struct ListRequest {};

using Request = std::variant<HelloRequest, ProveRequest, InitRequest, GrantRequest,
                             IngestBeginRequest, IngestChunkRequest, IngestEndRequest, QueryRequest,
                             DeleteRequest, AuditRequest, ListRequest>;
Op OpOf(const Request& request);
// op u8 | the request's fields.
crypto::Bytes EncodeRequest(const Request& request);
// kInvalidArgument for an unknown operation; kCorrupt for a truncated or overlong request;
// kResourceExhausted for a field over its cap.
Result<Request> DecodeRequest(crypto::ByteView bytes);

// ---- replies: enclave -> client (payloads inside a reply frame) ----

struct HelloReply {
  std::array<uint8_t, 32> nonce{};
  uint64_t version = 0;
};
struct ProveReply {
  std::string role;  // RoleName; "unregistered" for a key nobody granted
  std::string name;
  uint64_t version = 0;
};
struct IngestChunkReply {
  uint64_t stored = 0, refused = 0;
};
struct IngestEndReply {
  uint64_t stored = 0, refused = 0;
  std::vector<BadRow> bad_rows;  // the first kMaxBadRowsReported
  std::string schema;            // as stored, Schema::Describe
};
struct AuditReply {
  bool whole = false;   // the whole chain (the admin), else the owner's share of it
  uint64_t length = 0;  // entries in the whole chain
  std::vector<AuditEntry> entries;
  uint64_t next = 0;  // the `from` of the next page; 0: this page reaches the chain's end
};
// One audit reply's entries: at most this much encoded (a long log comes in pages; the whole of
// it once had to fit in one lake call's 128 MiB).
inline constexpr size_t kMaxAuditReplyBytes = size_t{16} << 20;
struct ListReply {
  std::vector<DatasetInfo> datasets;
};

crypto::Bytes Encode(const HelloReply& r);
crypto::Bytes Encode(const ProveReply& r);
crypto::Bytes Encode(const IngestChunkReply& r);
crypto::Bytes Encode(const IngestEndReply& r);
crypto::Bytes Encode(const ResultSet& r);
crypto::Bytes Encode(const AuditReply& r);
crypto::Bytes Encode(const ListReply& r);
Result<HelloReply> DecodeHelloReply(crypto::ByteView payload);
Result<ProveReply> DecodeProveReply(crypto::ByteView payload);
Result<IngestChunkReply> DecodeIngestChunkReply(crypto::ByteView payload);
Result<IngestEndReply> DecodeIngestEndReply(crypto::ByteView payload);
Result<ResultSet> DecodeResultSet(crypto::ByteView payload);
Result<AuditReply> DecodeAuditReply(crypto::ByteView payload);
Result<ListReply> DecodeListReply(crypto::ByteView payload);

// The frame around every reply: the payload, or the error with its code.
crypto::Bytes EncodeReplyFrame(const Result<crypto::Bytes>& reply);
// The payload, or the enclave's error with its code (an unknown status is kInternal, as for the
// edge frames); kCorrupt for a truncated frame.
Result<crypto::Bytes> DecodeReplyFrame(crypto::ByteView frame);

}  // namespace medstream::lake

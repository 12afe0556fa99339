// lake: the secure data lake's trusted core, run inside the enclave.
//
// Hospitals (owners) upload patient records as CSV; analysts get aggregates only. The enclave
// holds the datasets in memory and hands the host nothing but sealed blobs to store:
//   manifest        identities and roles, datasets (schema, k, pages and their SHA-256), audit log
//   page/<id>/<n>   a chunk of a dataset's rows, columnar, sealed; its plaintext starts with the
//                   dataset id, page number and lake version (the AAD-like binding), and the
//                   manifest pins its hash, so a swapped, altered or older page is refused
// The manifest carries the lake version; the enclave's monotonic counter (committed by the host
// after it stored a version, as for stream checkpoints) refuses an older manifest: rollback.
//
// Clients talk to it inside the attested channel (client/ attests first). Every session proves
// its identity: Hello(public key) -> nonce, Prove(ECDSA signature over the nonce). Roles:
//   admin    the lake's owner (created by init): registers identities (grant), and is an owner
//   owner    a hospital: ingests and deletes its own datasets, queries them (rows included)
//   analyst  aggregate queries on the datasets granted to it, small groups suppressed
// Every query, allowed or refused, is appended to a hash-chained audit log.
#pragma once

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/crypto/crypto.h"
#include "enclave/lake/query.h"
#include "enclave/lake/table.h"

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

enum class Role : uint8_t { kNone = 0, kAdmin = 1, kOwner = 2, kAnalyst = 3 };
std::string_view RoleName(Role r);
Result<Role> ParseRole(std::string_view name);

using PublicKey = std::array<uint8_t, 64>;
// What a client signs to prove its key: context string, the enclave's nonce, its public key.
crypto::Bytes ProofMessage(std::span<const uint8_t> nonce, const PublicKey& key);

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

// How a dataset answers analysts (owners and the admin always get exact answers on their own).
//   kDp     differentially private COUNT/SUM/AVG (enclave/lake/dp.h), each analyst's epsilon budget
//   spent
//           by every query and kept in the sealed, rollback-protected manifest
//   kExact  exact aggregates with k-suppression, identifier columns closed to analysts, suppressed
//           and empty answers alike, and query-set-overlap control: a query whose selected rows
//           differ from one of the analyst's last kOverlapHistory answered queries on the dataset
//           by fewer than k rows (but some) is refused
enum class Privacy : uint8_t { kExact = 0, kDp = 1 };
std::string_view PrivacyName(Privacy p);
Result<Privacy> ParsePrivacy(std::string_view name);

inline constexpr size_t kOverlapHistory = 64;
inline constexpr double kMaxQueryEpsilon = 10;
inline constexpr double kDpDelta = 1e-6;

struct PrivacyPolicy {
  Privacy privacy = Privacy::kDp;
  double epsilon = 0.5;  // per query, when the query does not say
  double budget = 5;     // per analyst, in all
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

// Encoding of query results (enclave -> client).
void EncodeResultSet(const ResultSet& r, ByteWriter* w);
Result<ResultSet> DecodeResultSet(ByteReader* r);

struct Write {
  std::string key;
  crypto::Bytes blob;  // empty: delete the key
};

struct Output {
  crypto::Bytes reply;        // plaintext for the channel: status u8 (0 ok, else 1 + Error::Code) |
                              // payload or message
  std::vector<Write> writes;  // for the host to store (sealed), manifest last
  bool mutated = false;       // the manifest changed: version() is new and must be committed
};

class Lake {
 public:
  using Sealer = std::function<Result<crypto::Bytes>(crypto::ByteView plain, uint64_t version)>;
  using Unsealer = std::function<Result<std::pair<crypto::Bytes, uint64_t>>(crypto::ByteView blob)>;
  Lake(Sealer seal, Unsealer unseal, std::function<int64_t()> now);
  ~Lake();

  // Loading at start: the manifest first, then every page it names, then Finish.
  Status LoadManifest(crypto::ByteView sealed);
  Status LoadPage(const std::string& key, crypto::ByteView sealed);
  Status FinishLoad();
  uint64_t version() const { return version_; }

  Output Handle(uint64_t session, crypto::ByteView request);
  void EndSession(uint64_t session);

 private:
  struct Dataset;
  struct Identity;
  struct Session;
  Result<crypto::Bytes> Dispatch(Session& s, Op op, ByteReader* r, Output* out);
  Result<crypto::Bytes> Ingest(Session& s, Op op, ByteReader* r, Output* out);
  Result<crypto::Bytes> RunQuery(Session& s, ByteReader* r, Output* out);
  // dp::RandomSource for the noise (OpenSSL's CSPRNG unless a test set another).
  uint64_t RandomWord();
  Status Persist(Output* out);
  // A blob the manifest pins by hash (a page, a query history): checked, then unsealed.
  Result<crypto::Bytes> OpenPinned(const std::string& what, const std::string& dataset,
                                   const crypto::Digest& pinned, bool loaded,
                                   crypto::ByteView sealed);
  void Audit(const Session& s, std::string op, std::string dataset, std::string detail,
             std::string outcome);
  Dataset* FindDataset(std::string_view name);
  std::string Who(const Session& s) const;

  Sealer seal_;
  Unsealer unseal_;
  std::function<int64_t()> now_;
  uint64_t version_ = 0;
  bool loaded_ = false;
  std::map<PublicKey, Identity> identities_;
  std::map<std::string, std::unique_ptr<Dataset>> datasets_;  // by name
  std::vector<AuditEntry> audit_;
  dp::RandomSource rng_;
  std::map<uint64_t, std::unique_ptr<Session>> sessions_;
};

}  // namespace medstream::lake

// lake: the secure data lake's trusted core, run inside the enclave.
//
// Hospitals (owners) upload patient records as CSV; analysts get aggregates only. The enclave
// holds the datasets in memory and hands the host nothing but sealed blobs to store:
//   manifest        identities and roles, datasets (schema, k, pages and their SHA-256), the
//                   audit log's segments (their SHA-256) and its newest entries
//   audit/<n>       kAuditSegmentEntries audit entries, sealed, pinned by the manifest: the log
//                   grows in these, so the manifest (one lake_load call) and what each request
//                   seals stay small however long the log gets (entries are held in memory)
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
#include "common/lake_abi/messages.h"
#include "enclave/lake/query.h"
#include "enclave/lake/table.h"

namespace medstream::lake {

// The largest plaintext of a blob the lake stores, the manifest aside (a page, a query history,
// an audit segment): the host hands each back in one lake_load call (enclave/core checks at
// compile time that it fits, sealed, in the call's cap).
inline constexpr size_t kMaxStoredBlobBytes = size_t{62} << 20;

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
  Result<crypto::Bytes> Dispatch(Session& s, const Request& request, Output* out);
  Result<crypto::Bytes> RefuseUndecodable(Session& s, crypto::ByteView request, Error e,
                                          Output* out);
  // One handler per operation (lake.cc: identity; lake_admin.cc: init, grant, delete, audit, list;
  // lake_ingest.cc: uploads; lake_query.cc: queries).
  Result<crypto::Bytes> On(Session& s, const HelloRequest& m, Output* out);
  Result<crypto::Bytes> On(Session& s, const ProveRequest& m, Output* out);
  Result<crypto::Bytes> On(Session& s, const InitRequest& m, Output* out);
  Result<crypto::Bytes> On(Session& s, const GrantRequest& m, Output* out);
  Result<crypto::Bytes> On(Session& s, const IngestBeginRequest& m, Output* out);
  Result<crypto::Bytes> On(Session& s, const IngestChunkRequest& m, Output* out);
  Result<crypto::Bytes> On(Session& s, const IngestEndRequest& m, Output* out);
  Result<crypto::Bytes> On(Session& s, const QueryRequest& m, Output* out);
  Result<crypto::Bytes> On(Session& s, const DeleteRequest& m, Output* out);
  Result<crypto::Bytes> On(Session& s, const AuditRequest& m, Output* out);
  Result<crypto::Bytes> On(Session& s, const ListRequest& m, Output* out);
  // Access control: the session's role, and whether its identity was granted `dataset`.
  Role RoleOf(const Session& s) const;
  bool Granted(const Session& s, const std::string& dataset) const;
  // kFailedPrecondition unless the session has an upload in progress.
  static Status HasUpload(const Session& s);
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
  // The audit log's sealed segments, oldest first: audit_'s first audit_sealed_ entries. While
  // loading, a segment's entries wait in it and the manifest's newest in audit_tail_.
  struct AuditSegment {
    std::string key;
    crypto::Digest hash{};
    uint32_t count = 0;
    bool loaded = false;
    std::vector<AuditEntry> entries;
  };
  std::vector<AuditSegment> audit_segments_;
  size_t audit_sealed_ = 0;
  std::vector<AuditEntry> audit_tail_;
  dp::RandomSource rng_;
  std::map<uint64_t, std::unique_ptr<Session>> sessions_;
};

}  // namespace medstream::lake

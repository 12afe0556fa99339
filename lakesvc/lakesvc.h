// lakesvc: the data lake outside the enclave.
//
//   Store      the untrusted host's storage: one SQLite file (DIR/lake.db) of sealed blobs keyed
//              by name. SQLite gives atomic multi-blob transactions (a manifest and its pages land
//              together or not at all) and crash safety for free; it never sees a plaintext row.
//   LakeHost   starts the enclave, loads the sealed blobs into it, and relays client calls: a
//              lake_request's writes are stored in one transaction, then the new manifest version
//              is committed to the enclave's counter. It exposes an EnclaveTransport, so clients
//              attest and talk through it exactly as they would to an enclave.
//   LakeClient a hospital's or analyst's side: attests the enclave, proves its identity key, and
//              sends requests inside the attested channel.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "client/client.h"
#include "host/claim.h"
#include "host/transport.h"
#include "lake/lake.h"

namespace medstream::lakesvc {

class Store {
 public:
  static Result<std::unique_ptr<Store>> Open(const std::string& path);
  ~Store();
  Result<std::vector<std::string>> Keys();
  Result<crypto::Bytes> Get(const std::string& key);  // NotFound if absent
  // All writes in one transaction (an empty blob deletes the key).
  Status Apply(const std::vector<std::pair<std::string, crypto::Bytes>>& writes);

 private:
  explicit Store(void* db) : db_(db) {}
  void* db_;
};

struct HostOptions {
  std::string dir;  // lake.db lives here
  std::string mode = "process";
  std::string platform_dir;
  std::string enclave_path;
  double call_budget_s = 0;  // process mode: per-call watchdog (0 = edge.h budgets)
};

class LakeHost {
 public:
  static Result<std::unique_ptr<LakeHost>> Start(const HostOptions& options);
  // What clients talk to: info, handshake and lake_request (stored and committed here). If the
  // enclave dies or the watchdog stops it during a call (a hostile request), that call fails and
  // a fresh enclave is loaded from the store at once, so later clients are served again (their
  // sessions start anew: channel keys never leave an enclave).
  host::EnclaveTransport& transport() { return *relay_; }
  uint64_t enclave_restarts() const { return restarts_; }
  // The remote case: serves transport() on TCP `address:port` to any number of clients (one call
  // at a time reaches the enclave) until `stop` is set. `on_listening` gets the bound port.
  Status Serve(const std::string& address, int port, const std::atomic<bool>& stop,
               const std::function<void(int port)>& on_listening);

 private:
  friend class Relay;
  explicit LakeHost(HostOptions o) : options_(std::move(o)) {}
  // Starts the enclave and loads the sealed store into it.
  Status LaunchAndLoad();
  HostOptions options_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<host::EnclaveTransport> enclave_;
  std::unique_ptr<host::EnclaveTransport> relay_;
  std::optional<host::CounterClaim> claim_;  // the platform's lake counter is this lake's
  uint64_t restarts_ = 0;
};

struct IngestReport {
  uint64_t stored = 0;
  uint64_t refused = 0;
  std::vector<lake::BadRow> bad_rows;  // the first 1000
  std::string schema;
};

class LakeClient {
 public:
  static Result<std::unique_ptr<LakeClient>> Connect(host::EnclaveTransport& t,
                                                     const client::AttestOptions& attest,
                                                     const crypto::EcKey& identity);
  const std::string& role() const { return role_; }
  const attest::Claims& claims() const { return session_.claims; }

  Status Init(const std::string& name);
  Status Grant(const lake::PublicKey& key, const std::string& name, const std::string& role,
               const std::vector<std::string>& datasets);
  // Streams the CSV (header first) in encrypted chunks; `schema` empty: inferred from the data.
  // `attributes` marks identifier columns and numeric bounds on the (given or inferred) schema:
  // "patient_id:id,systolic_bp:60..250" (lake::AnnotateSchema).
  struct IngestOptions {
    lake::PrivacyPolicy policy;
    std::string attributes;
  };
  Result<IngestReport> Ingest(const std::string& dataset, const std::string& csv_path,
                              const std::string& schema, uint32_t k,
                              const std::function<void(uint64_t done, uint64_t total)>& progress,
                              const IngestOptions& options);
  Result<IngestReport> Ingest(const std::string& dataset, const std::string& csv_path,
                              const std::string& schema, uint32_t k,
                              const std::function<void(uint64_t done, uint64_t total)>& progress) {
    return Ingest(dataset, csv_path, schema, k, progress, IngestOptions{});
  }
  // `epsilon` 0: the dataset's default (dp datasets; ignored by exact ones).
  Result<lake::ResultSet> Query(const std::string& sql, double epsilon = 0);
  Status Delete(const std::string& dataset);
  struct AuditView {
    std::vector<lake::AuditEntry> entries;
    bool whole = false;   // the whole chain (the admin), else the owner's share of it
    uint64_t length = 0;  // entries in the whole chain
  };
  Result<AuditView> Audit();
  Result<std::vector<lake::DatasetInfo>> List();

 private:
  LakeClient(host::EnclaveTransport& t, client::Session s) : t_(t), session_(std::move(s)) {}
  // Sends one operation; returns its payload or the enclave's error.
  Result<crypto::Bytes> Call(lake::Op op, const std::function<void(ByteWriter*)>& args);
  host::EnclaveTransport& t_;
  client::Session session_;
  std::string role_;
};

// A realistic synthetic admissions table (CSV with header) for demos and benchmarks.
std::string SynthesizeAdmissions(uint64_t rows, uint64_t seed);

}  // namespace medstream::lakesvc

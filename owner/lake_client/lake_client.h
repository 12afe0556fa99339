// lake_client: a hospital's or analyst's side of the data lake (namespace lakesvc; the untrusted
// host is host/lake_host). It attests the enclave, proves its identity key, and sends requests
// inside the attested channel, through any EnclaveTransport (a LakeHost's, or one over TCP).
// A LakeClient is used from one thread at a time.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/lake_abi/messages.h"
#include "host/server/transport.h"
#include "owner/client/client.h"

namespace medstream::lakesvc {

// The enclave's report of an upload: rows stored and refused, the first bad rows, the schema.
using IngestReport = lake::IngestEndReply;

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
  // The audit log as this identity may see it, its hashes (and for the admin, its chain) verified.
  using AuditView = lake::AuditReply;
  Result<AuditView> Audit();
  Result<std::vector<lake::DatasetInfo>> List();

 private:
  LakeClient(host::EnclaveTransport& t, client::Session s) : t_(t), session_(std::move(s)) {}
  // Sends one operation; returns its reply's payload or the enclave's error (with its code).
  Result<crypto::Bytes> Call(const lake::Request& message);
  host::EnclaveTransport& t_;
  client::Session session_;
  std::string role_;
};

// A realistic synthetic admissions table (CSV with header) for demos and benchmarks.
std::string SynthesizeAdmissions(uint64_t rows, uint64_t seed);

}  // namespace medstream::lakesvc

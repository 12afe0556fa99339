// lake_host: the data lake's untrusted host (namespace lakesvc; owner/lake_client is the other
// half, the data owner's and analysts' client).
//
//   Store      the untrusted host's storage: one SQLite file (DIR/lake.db) of sealed blobs keyed
//              by name. SQLite gives atomic multi-blob transactions (a manifest and its pages land
//              together or not at all) and crash safety for free; it never sees a plaintext row.
//   LakeHost   starts the enclave, loads the sealed blobs into it, and relays client calls: a
//              lake_request's writes are stored in one transaction, then the new manifest version
//              is committed to the enclave's counter. It exposes an EnclaveTransport, so clients
//              attest and talk through it exactly as they would to an enclave.
//
// The host sees sealed blobs and channel records only. One LakeHost serves one client call at a
// time (Serve and transport() serialise them); a Store is used from one thread.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/metrics/metrics.h"
#include "host/server/claim.h"
#include "host/server/transport.h"

namespace medstream::lakesvc {

// Where the host keeps the enclave's sealed blobs. Open() is the SQLite file; MemoryStore() keeps
// them in this process only (tests: a LakeHost without a file). Used from one thread.
class Store {
 public:
  static Result<std::unique_ptr<Store>> Open(const std::string& path);  // SQLite
  virtual ~Store() = default;
  virtual Result<std::vector<std::string>> Keys() = 0;            // sorted
  virtual Result<crypto::Bytes> Get(const std::string& key) = 0;  // NotFound if absent
  // All writes in one transaction (an empty blob deletes the key).
  virtual Status Apply(const std::vector<std::pair<std::string, crypto::Bytes>>& writes) = 0;
};
std::unique_ptr<Store> MemoryStore();

struct HostOptions {
  std::string dir;  // lake.db lives here (unless `store` is given)
  // The blob store; null: the SQLite file DIR/lake.db.
  std::function<Result<std::unique_ptr<Store>>()> store = nullptr;
  std::string mode = "process";
  std::string platform_dir;
  std::string enclave_path;
  double call_budget_s = 0;              // process mode: per-call watchdog (0 = edge.h budgets)
  host::InprocFactory inproc = nullptr;  // for mode "inproc" (host/inproc: LaunchInproc)
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
  // Calls relayed (by edge call and outcome), blobs stored, enclave restarts and relayed call
  // time, in the Prometheus text format (/metrics). Thread-safe.
  std::string MetricsText() const;
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
  mutable std::mutex metrics_mu_;
  std::map<std::pair<std::string, bool>, uint64_t> calls_;  // (call name, ok) -> count
  uint64_t blobs_written_ = 0;
  metrics::Histogram call_s_{metrics::LatencyBuckets()};
};

}  // namespace medstream::lakesvc

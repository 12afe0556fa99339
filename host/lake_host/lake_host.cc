#include "host/lake_host/lake_host.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "common/base/file.h"

namespace medstream::lakesvc {

namespace {

sqlite3* Db(void* p) {
  return static_cast<sqlite3*>(p);
}

std::unexpected<Error> SqlError(sqlite3* db, const std::string& what) {
  return IoError(what + ": " + sqlite3_errmsg(db));
}

}  // namespace

// The relay clients see: the handshake calls go to the enclave; lake_request is stored and
// committed here, and the enclave hands over its record only then. Nothing else passes.
class Relay : public host::EnclaveTransport {
 public:
  explicit Relay(LakeHost& host) : host_(host) {}
  Result<crypto::Bytes> Call(enclave::Call call, crypto::ByteView request) override {
    const auto start = std::chrono::steady_clock::now();
    auto r = Forward(call, request);
    {
      const auto* spec = enclave::FindCall(static_cast<uint16_t>(call));
      std::lock_guard lock(host_.metrics_mu_);
      ++host_.calls_[{spec ? std::string(spec->name) : "unknown", r.has_value()}];
      host_.call_s_.Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    if (!r && (r.error().code() == Error::Code::kInternal ||
               r.error().code() == Error::Code::kDeadlineExceeded)) {
      // The enclave died on (or was stopped over) this request: the request fails, the service
      // does not. A fresh enclave is loaded from the store for whoever comes next.
      std::fprintf(stderr, "lake host: %s; restarting the enclave\n", r.error().message().c_str());
      ++host_.restarts_;
      if (auto s = host_.LaunchAndLoad(); !s) {
        std::fprintf(stderr, "lake host: restart failed: %s\n", s.error().message().c_str());
      }
    }
    return r;
  }
  std::string_view backend() const override {
    return host_.enclave_ ? host_.enclave_->backend() : "none";
  }
  int pid() const override { return host_.enclave_ ? host_.enclave_->pid() : -1; }

 private:
  Result<crypto::Bytes> Forward(enclave::Call call, crypto::ByteView request) {
    if (!host_.enclave_) {  // an earlier restart failed: try again
      if (auto s = host_.LaunchAndLoad(); !s) return std::unexpected(s.error());
    }
    host::EnclaveTransport& enclave = *host_.enclave_;
    // What a lake client may ask is the ABI's to say (edge.h, CallSpec::relays).
    if (!enclave::RelayMayForward(enclave::kLakeRelay, static_cast<uint16_t>(call))) {
      return Fail(Error::Code::kPermissionDenied, "call not available to lake clients");
    }
    switch (call) {
      case enclave::Call::kLakeRequest: {
        MEDSTREAM_TRY(raw, enclave.Call(call, request));
        MEDSTREAM_TRY(response, enclave::LakeResponse::Decode(raw));
        if (!response.writes.empty()) {
          if (auto s = host_.store_->Apply(response.writes); !s) return std::unexpected(s.error());
          std::lock_guard lock(host_.metrics_mu_);
          host_.blobs_written_ += response.writes.size();
        }
        if (response.mutated) {
          // The enclave releases the reply of a request that changed the lake only once its
          // version is committed (enclave/core/core.h).
          MEDSTREAM_TRY(held, enclave.Call(enclave::Call::kLakeCommit,
                                           enclave::CommitVersion{response.version}.Encode()));
          if (response.record.empty()) return held;
        }
        return std::move(response.record);
      }
      default:
        return enclave.Call(call, request);
    }
  }
  LakeHost& host_;
};

std::string LakeHost::MetricsText() const {
  metrics::Text t;
  std::lock_guard lock(metrics_mu_);
  for (const auto& [key, n] : calls_) {
    t.Counter("medstream_lake_calls_total", "Edge calls relayed from lake clients, by outcome.",
              static_cast<double>(n),
              {{"call", key.first}, {"outcome", key.second ? "ok" : "error"}});
  }
  if (calls_.empty()) {
    t.Counter("medstream_lake_calls_total", "Edge calls relayed from lake clients, by outcome.", 0,
              {{"call", "lake_request"}, {"outcome", "ok"}});
  }
  t.Counter("medstream_lake_blobs_written_total", "Sealed blobs stored for the enclave.",
            static_cast<double>(blobs_written_));
  t.Counter("medstream_lake_enclave_restarts_total",
            "Lake enclaves restarted after dying or overrunning their time budget.",
            static_cast<double>(restarts_));
  t.Histogram("medstream_lake_call_seconds", "Relayed edge calls, end to end on the host.",
              call_s_);
  return t.str();
}

// ---- Store ----

namespace {

class SqliteStore : public Store {
 public:
  explicit SqliteStore(void* db) : db_(db) {}
  ~SqliteStore() override { sqlite3_close(Db(db_)); }
  Result<std::vector<std::string>> Keys() override;
  Result<crypto::Bytes> Get(const std::string& key) override;
  Status Apply(const std::vector<std::pair<std::string, crypto::Bytes>>& writes) override;

 private:
  void* db_;
};

class InMemoryStore : public Store {
 public:
  Result<std::vector<std::string>> Keys() override {
    std::vector<std::string> keys;
    for (const auto& [k, v] : blobs_) keys.push_back(k);
    return keys;
  }
  Result<crypto::Bytes> Get(const std::string& key) override {
    auto it = blobs_.find(key);
    if (it == blobs_.end()) return NotFound("no blob " + key);
    return it->second;
  }
  Status Apply(const std::vector<std::pair<std::string, crypto::Bytes>>& writes) override {
    for (const auto& [key, blob] : writes) {
      if (blob.empty()) {
        blobs_.erase(key);
      } else {
        blobs_[key] = blob;
      }
    }
    return {};
  }

 private:
  std::map<std::string, crypto::Bytes> blobs_;
};

}  // namespace

std::unique_ptr<Store> MemoryStore() {
  return std::make_unique<InMemoryStore>();
}

Result<std::unique_ptr<Store>> Store::Open(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    auto e = SqlError(db, "cannot open " + path);
    sqlite3_close(db);
    return e;
  }
  auto s = std::make_unique<SqliteStore>(db);
  const char* schema =
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
      "CREATE TABLE IF NOT EXISTS blobs (key TEXT PRIMARY KEY, data BLOB NOT NULL);";
  if (sqlite3_exec(db, schema, nullptr, nullptr, nullptr) != SQLITE_OK)
    return SqlError(db, "preparing " + path);
  return std::unique_ptr<Store>(std::move(s));
}

Result<std::vector<std::string>> SqliteStore::Keys() {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(Db(db_), "SELECT key FROM blobs ORDER BY key", -1, &st, nullptr) !=
      SQLITE_OK)
    return SqlError(Db(db_), "listing blobs");
  std::vector<std::string> keys;
  while (sqlite3_step(st) == SQLITE_ROW) {
    keys.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
  }
  sqlite3_finalize(st);
  return keys;
}

Result<crypto::Bytes> SqliteStore::Get(const std::string& key) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(Db(db_), "SELECT data FROM blobs WHERE key = ?", -1, &st, nullptr) !=
      SQLITE_OK)
    return SqlError(Db(db_), "reading " + key);
  sqlite3_bind_text(st, 1, key.c_str(), -1, SQLITE_TRANSIENT);
  Result<crypto::Bytes> out = NotFound("no blob " + key);
  if (sqlite3_step(st) == SQLITE_ROW) {
    const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(st, 0));
    out = crypto::Bytes(p, p + sqlite3_column_bytes(st, 0));
  }
  sqlite3_finalize(st);
  return out;
}

Status SqliteStore::Apply(const std::vector<std::pair<std::string, crypto::Bytes>>& writes) {
  sqlite3* db = Db(db_);
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK)
    return SqlError(db, "begin");
  sqlite3_stmt* put = nullptr;
  sqlite3_stmt* del = nullptr;
  sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO blobs (key, data) VALUES (?, ?)", -1, &put,
                     nullptr);
  sqlite3_prepare_v2(db, "DELETE FROM blobs WHERE key = ?", -1, &del, nullptr);
  bool ok = put && del;
  for (const auto& [key, blob] : writes) {
    if (!ok) break;
    sqlite3_stmt* st = blob.empty() ? del : put;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, key.c_str(), -1, SQLITE_TRANSIENT);
    if (!blob.empty()) sqlite3_bind_blob64(st, 2, blob.data(), blob.size(), SQLITE_STATIC);
    ok = sqlite3_step(st) == SQLITE_DONE;
  }
  sqlite3_finalize(put);
  sqlite3_finalize(del);
  if (!ok) {
    auto e = SqlError(db, "storing sealed blobs");
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return e;
  }
  if (sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK)
    return SqlError(db, "commit");
  return {};
}

// ---- LakeHost ----

Result<std::unique_ptr<LakeHost>> LakeHost::Start(const HostOptions& o) {
  std::unique_ptr<LakeHost> h(new LakeHost(o));
  MEDSTREAM_TRY(store, o.store ? o.store() : Store::Open(o.dir + "/lake.db"));
  h->store_ = std::move(store);
  if (auto s = h->LaunchAndLoad(); !s) return std::unexpected(s.error());
  h->relay_ = std::make_unique<Relay>(*h);
  return h;
}

Status LakeHost::LaunchAndLoad() {
  enclave_.reset();
  MEDSTREAM_TRY(t, host::LaunchEnclave({.backend = options_.mode,
                                        .platform_dir = options_.platform_dir,
                                        .enclave_path = options_.enclave_path,
                                        .call_budget_s = options_.call_budget_s,
                                        .inproc = options_.inproc}));
  enclave_ = std::move(t);
  if (!claim_) {
    MEDSTREAM_TRY(info, host::GetInfo(*enclave_));
    MEDSTREAM_TRY(claim, host::CounterClaim::Acquire(options_.platform_dir, info.mr_enclave, "lake",
                                                     options_.dir, "lake.db"));
    claim_.emplace(std::move(claim));
  }
  const std::string where = "loading " + options_.dir + "/lake.db";
  auto load = [&](enclave::LakeLoadKind kind, const std::string& key,
                  crypto::ByteView blob) -> Status {
    const crypto::Bytes req = enclave::LakeLoad{kind, key, blob}.Encode();
    MEDSTREAM_TRY(r, enclave_->Call(enclave::Call::kLakeLoad, req));
    (void)r;
    return {};
  };
  MEDSTREAM_TRY(keys, store_->Keys());
  if (std::find(keys.begin(), keys.end(), "manifest") != keys.end()) {
    MEDSTREAM_TRY(m, store_->Get("manifest"));
    if (auto s = load(enclave::LakeLoadKind::kManifest, "manifest", m); !s)
      return std::unexpected(std::move(s.error()).With(where));
  }
  for (const std::string& key : keys) {
    if (!key.starts_with("page/") && !key.starts_with("overlap/") && !key.starts_with("audit/")) {
      continue;
    }
    MEDSTREAM_TRY(blob, store_->Get(key));
    if (auto s = load(enclave::LakeLoadKind::kPage, key, blob); !s)
      return std::unexpected(std::move(s.error()).With(where));
  }
  if (auto s = load(enclave::LakeLoadKind::kDone, "", {}); !s)
    return std::unexpected(std::move(s.error()).With(where));
  return {};
}

Status LakeHost::Serve(const std::string& address, int port, const std::atomic<bool>& stop,
                       const std::function<void(int port)>& on_listening) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, address.c_str(), &addr.sin_addr) != 1)
    return InvalidArgument("'" + address + "' is not an IPv4 address");
  const int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  socklen_t len = sizeof addr;
  if (lfd < 0 || bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(lfd, 16) != 0 || getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string why = std::strerror(errno);
    if (lfd >= 0) close(lfd);
    return IoError("cannot listen on " + address + ":" + std::to_string(port) + ": " + why);
  }
  if (on_listening) on_listening(ntohs(addr.sin_port));
  std::mutex mu;  // the enclave takes one call at a time
  // Analysts' connections over the network, untrusted: each was a thread and a descriptor kept
  // until the host stopped, without a limit (a thousand connections over a day, or at once, and
  // accept failed for good, spinning), and a header's claimed length was allocated before a byte
  // of its request arrived.
  host::ServeListener(
      lfd, "lake serve", {.max_request = 64u << 20, .max_connections = 64, .idle_s = 300},
      [&](uint16_t call, crypto::ByteView request) {
        std::lock_guard lock(mu);
        return relay_->Call(static_cast<enclave::Call>(call), request);
      },
      stop);
  close(lfd);
  return {};
}

}  // namespace medstream::lakesvc

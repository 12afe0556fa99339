// cluster: the NATS JetStream cluster medstream scales out on (docs/scale-out.md): its
// certificate authority, each node's TLS certificate and configuration, the clients' credentials,
// and a launcher that runs the nodes on this machine (the demo, the tests).
//
//   DIR/ca.crt                    the cluster CA (public; clients and nodes verify nodes by it)
//   DIR/private/ca.key            its key (0600 in 0700): only `Init` needs it
//   DIR/nodes/nK/nats.conf        node K's configuration; server.crt, server.key (0600) beside it
//   DIR/nodes/nK/store/           node K's JetStream files (ciphertext only: sealed batches,
//                                 sealed results and checkpoints, leases)
//   DIR/users/ROLE.password       a client role's password (0600 in 0700); roles: gateway, worker
//   DIR/cluster.txt               one client URL per line (what clients are given)
//
// The nodes hold only what medstream seals before publishing, so the cluster is untrusted like the
// server: it is on the host side. Still, every hop is TLS: clients (a TLS-only listener; user and
// password inside TLS) and routes between nodes (mutual TLS, each node's certificate signed by
// the CA, for both serverAuth and clientAuth). Certificates are ECDSA P-256.
//
// Functions touch only DIR; LocalCluster owns its node processes. Not thread-safe per object.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "adapters/nats/nats.h"
#include "common/base/result.h"

namespace medstream::cluster {

inline constexpr const char* kGatewayRole = "gateway";
inline constexpr const char* kWorkerRole = "worker";

struct InitOptions {
  std::string dir = {};
  int nodes = 3;
  std::string listen = "127.0.0.1";
  // One client and one route port per node; empty: free loopback ports now.
  std::vector<int> client_ports = {}, route_ports = {};
  // Names the nodes' certificates carry (clients and routes check the host they dial).
  std::vector<std::string> names = {"127.0.0.1", "localhost"};
  // The largest message a node accepts. A sealed batch never exceeds it: the gateway cuts earlier.
  int64_t max_payload = 8 << 20;
  int64_t max_file_store = int64_t{8} << 30;  // per node, JetStream's file store
  int64_t now = 0;                            // Unix seconds; certificates start an hour before
  int validity_days = 825;
};

// Creates the CA, the nodes' certificates and configurations and the roles' passwords. An
// existing DIR/ca.crt is refused (kAlreadyExists): a second init would orphan the stores.
Status Init(const InitOptions& options);

struct NodeInfo {
  std::string name;    // n1, n2, ...
  std::string config;  // DIR/nodes/nK/nats.conf
  std::string store;
  int client_port = 0, route_port = 0;
};
struct Info {
  std::string dir, ca;
  std::vector<NodeInfo> nodes;
  std::vector<std::string> urls;  // tls://HOST:PORT, one per node
};
Result<Info> Load(const std::string& dir);

// How ROLE connects: every node's URL, the CA, the role's user and password.
Result<nats::ConnectOptions> ClientOptions(const std::string& dir, const std::string& role);

// The nodes of DIR as child processes of this one (nats-server from Debian's package). Stops
// them (SIGTERM, then SIGKILL) on destruction.
class LocalCluster {
 public:
  // Starts every node and waits until JetStream answers through a client connection (the nodes
  // elected a meta leader), at most `timeout_s`. Logs: DIR/nodes/nK/nats.log.
  static Result<std::unique_ptr<LocalCluster>> Start(const std::string& dir, double timeout_s = 30);
  ~LocalCluster();
  const Info& info() const { return info_; }
  // Sends `signal` to node `i` (0-based) and reaps it: SIGKILL is a crash.
  Status Kill(size_t i, int signal);
  // Starts node `i` again (after Kill) and waits until it listens.
  Status Restart(size_t i, double timeout_s = 30);
  pid_t pid(size_t i) const { return pids_.at(i); }

 private:
  explicit LocalCluster(Info info) : info_(std::move(info)) {}
  Status Launch(size_t i, double timeout_s);
  Info info_;
  std::vector<pid_t> pids_;
};

// Waits until JetStream answers `connection` (a meta leader exists), at most `timeout_s`.
Status WaitForJetStream(nats::Connection& connection, double timeout_s);

}  // namespace medstream::cluster

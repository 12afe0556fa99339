#include "host/cluster/cluster.h"

#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <map>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "adapters/proc/proc.h"
#include "common/base/address.h"
#include "common/base/bytes.h"
#include "common/base/file.h"
#include "common/crypto/crypto.h"

namespace medstream::cluster {

namespace {

namespace fs = std::filesystem;
constexpr int64_t kDay = 86400;
constexpr const char* kNatsServer = "/usr/sbin/nats-server";

Result<std::string> RandomPassword() {
  std::vector<uint8_t> b(24);
  if (auto s = crypto::RandomBytes(b); !s) return std::unexpected(s.error());
  return crypto::ToHex(b);
}

bool IsAddress(const std::string& n) {
  return std::all_of(n.begin(), n.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == ':';
  });
}

// What a role may not publish (docs/scale-out.md, Security). Neither may delete or purge a stream
// or bucket, or delete messages from one; a worker may not publish batches (inject or replay
// them into a partition) or call another worker's enclave; a gateway may not publish results or
// quarantine entries, nor write leases or partition state.
std::string DenyList(std::string_view role) {
  std::vector<std::string> deny = {"$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>",
                                   "$JS.API.STREAM.MSG.DELETE.>"};
  if (role == kWorkerRole) {
    deny.insert(deny.end(), {"medstream.batch.>", "medstream.edge.>"});
  } else {
    deny.insert(deny.end(), {"medstream.result.>", "medstream.quarantine.>",
                             "$KV.medstream-leases.>", "$KV.medstream-state.>"});
  }
  std::string out = "[";
  for (const std::string& d : deny) out += (out.size() > 1 ? ", " : "") + ("\"" + d + "\"");
  return out + "]";
}

// A NATS configuration string, quoted (paths and passwords are hex or file names; quote anyway).
std::string Q(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string NodeDir(const std::string& dir, size_t i) {
  return dir + "/nodes/n" + std::to_string(i + 1);
}

}  // namespace

Status Init(const InitOptions& o) {
  if (o.dir.empty()) return InvalidArgument("cluster init needs a directory");
  if (o.nodes < 1 || o.nodes > 9) {
    return InvalidArgument("a cluster has 1 to 9 nodes (3 for replicated streams), not " +
                           std::to_string(o.nodes));
  }
  if (!o.client_ports.empty() && o.client_ports.size() != static_cast<size_t>(o.nodes)) {
    return InvalidArgument("give one client port per node");
  }
  if (!o.route_ports.empty() && o.route_ports.size() != static_cast<size_t>(o.nodes)) {
    return InvalidArgument("give one route port per node");
  }
  if (o.names.empty()) return InvalidArgument("the nodes' certificates need at least one name");
  for (const std::string& n : o.names) {
    if (n.empty() || n.find_first_of(", \n\t\"") != std::string::npos) {
      return InvalidArgument("bad node name '" + n + "'");
    }
  }
  if (o.max_payload < 1024 || o.max_payload > (64 << 20)) {
    return InvalidArgument("max_payload must be 1 KiB to 64 MiB");
  }
  if (FileExists(o.dir + "/ca.crt")) {
    return Fail(Error::Code::kAlreadyExists,
                "a cluster is already set up in " + o.dir + " (remove the folder to start over)");
  }
  if (auto s = MakeDirs(o.dir, 0755); !s) return s;
  for (const std::string& d : {o.dir + "/private", o.dir + "/users"}) {
    if (auto s = MakePrivateDir(d); !s) return s;
  }
  const std::string dir = fs::absolute(o.dir).string();
  MEDSTREAM_TRY(ca_key, crypto::EcKey::Generate());
  MEDSTREAM_TRY(ca_serial, crypto::RandomSerial());
  MEDSTREAM_TRY(ca_cert,
                crypto::Certificate::Issue(
                    {.common_name = "medstream cluster CA", .organization = "medstream"}, ca_key,
                    nullptr, ca_key, /*ca=*/true, o.now - 3600, o.now + 3650 * kDay, ca_serial));
  if (auto s =
          crypto::WriteKeyAndCertificate(dir + "/ca.crt", dir + "/private/ca.key", ca_cert, ca_key);
      !s)
    return s;

  std::string san;
  for (const std::string& n : o.names) {
    // An address as IP (what Go's TLS checks) and as DNS too (OpenSSL's host check in libnats
    // compares the dialled host with DNS names).
    san += (san.empty() ? "" : ",") + std::string("DNS:") + n;
    if (IsAddress(n)) san += ",IP:" + n;
  }
  std::map<std::string, std::string> passwords;
  for (const char* role : {kGatewayRole, kWorkerRole}) {
    MEDSTREAM_TRY(pw, RandomPassword());
    if (auto s = WriteFileAtomic(dir + "/users/" + role + ".password", pw, 0600); !s) return s;
    passwords[role] = pw;
  }
  std::vector<int> client_ports = o.client_ports, route_ports = o.route_ports;
  for (int i = 0; i < o.nodes && client_ports.size() < static_cast<size_t>(o.nodes); ++i) {
    client_ports.push_back(proc::FreeLoopbackPort());
  }
  for (int i = 0; i < o.nodes && route_ports.size() < static_cast<size_t>(o.nodes); ++i) {
    int p = proc::FreeLoopbackPort();
    while (std::count(client_ports.begin(), client_ports.end(), p) > 0 ||
           std::count(route_ports.begin(), route_ports.end(), p) > 0) {
      p = proc::FreeLoopbackPort();
    }
    route_ports.push_back(p);
  }
  std::string urls;
  for (size_t i = 0; i < static_cast<size_t>(o.nodes); ++i) {
    const std::string nd = NodeDir(dir, i);
    if (auto s = MakeDirs(nd + "/store", 0700); !s) return s;
    MEDSTREAM_TRY(key, crypto::EcKey::Generate());
    MEDSTREAM_TRY(serial, crypto::RandomSerial());
    MEDSTREAM_TRY(
        cert,
        crypto::Certificate::Issue(
            {.common_name = "n" + std::to_string(i + 1), .organization = "medstream"}, key,
            &ca_cert, ca_key, /*ca=*/false, o.now - 3600, o.now + o.validity_days * kDay, serial,
            {.subject_alt_name = san, .extended_key_usage = "serverAuth,clientAuth"}));
    if (auto s = crypto::WriteKeyAndCertificate(nd + "/server.crt", nd + "/server.key", cert, key);
        !s)
      return s;
    std::string routes;
    for (size_t j = 0; j < static_cast<size_t>(o.nodes); ++j) {
      if (j == i) continue;
      routes += fmt::format("    {}\n",
                            Q(fmt::format("nats-route://{}:{}", o.names.front(), route_ports[j])));
    }
    const std::string tls =
        fmt::format("cert_file: {}\n    key_file: {}\n    ca_file: {}\n    timeout: 5",
                    Q(nd + "/server.crt"), Q(nd + "/server.key"), Q(dir + "/ca.crt"));
    std::string conf = fmt::format(
        "# Generated by medstream (host/cluster): node n{0} of {1}. Run `nats-server -c {2}`.\n"
        "# Clients: TLS only, user and password. Routes: mutual TLS with the cluster CA.\n"
        "server_name: n{0}\n"
        "listen: {3}:{4}\n"
        "max_payload: {5}\n"
        "tls {{\n    {6}\n}}\n"
        "authorization {{\n  users: [\n"
        "    {{user: {7}, password: {8}, permissions: {{publish: {{deny: {13}}}}}}}\n"
        "    {{user: {9}, password: {10}, permissions: {{publish: {{deny: {14}}}}}}}\n"
        "  ]\n}}\n"
        "jetstream {{\n  store_dir: {11}\n  max_file_store: {12}\n  max_memory_store: "
        "67108864\n}}\n",
        i + 1, o.nodes, nd + "/nats.conf", o.listen, client_ports[i], o.max_payload, tls,
        Q(kGatewayRole), Q(passwords[kGatewayRole]), Q(kWorkerRole), Q(passwords[kWorkerRole]),
        Q(nd + "/store"), o.max_file_store, DenyList(kGatewayRole), DenyList(kWorkerRole));
    if (o.nodes > 1) {
      conf += fmt::format(
          "cluster {{\n  name: medstream\n  listen: {}:{}\n"
          "  tls {{\n    {}\n    verify: true\n  }}\n  routes: [\n{}  ]\n}}\n",
          o.listen, route_ports[i], tls, routes);
    }
    // The configuration holds the passwords: the node's owner only.
    if (auto s = WriteFileAtomic(nd + "/nats.conf", conf, 0600); !s) return s;
    urls += fmt::format("tls://{}:{} {}\n", o.names.front(), client_ports[i], route_ports[i]);
  }
  return WriteFileAtomic(dir + "/cluster.txt", urls, 0644);
}

Result<Info> Load(const std::string& dir_in) {
  const std::string dir = fs::absolute(dir_in).string();
  auto text = ReadFileText(dir + "/cluster.txt", 1 << 16);
  if (!text) {
    return Fail(Error::Code::kNotFound, "no cluster in " + dir + " (set one up first)");
  }
  Info info{dir, dir + "/ca.crt", {}, {}};
  // One line a node: "tls://HOST:CLIENT_PORT ROUTE_PORT", as SetUp writes it. A damaged file is
  // refused with its line (std::stoi threw on a port that was not a number).
  std::istringstream in(*text);
  std::string line;
  size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    std::istringstream fields(line);
    std::string url, route_text, extra;
    fields >> url >> route_text;
    constexpr std::string_view kScheme = "tls://";
    const auto client = ParseHostPort(
        url.starts_with(kScheme) ? std::string_view(url).substr(kScheme.size()) : "", "node");
    const auto route = client ? ParseHostPort(client->host + ":" + route_text, "route") : client;
    if (!client || !route || (fields >> extra)) {
      return Fail(Error::Code::kCorrupt,
                  fmt::format("{}/cluster.txt line {}: expected \"tls://HOST:PORT ROUTE_PORT\" "
                              "with ports 1-65535 (set the cluster up again)",
                              dir, line_no));
    }
    const size_t i = info.nodes.size();
    NodeInfo n;
    n.name = "n" + std::to_string(i + 1);
    n.config = NodeDir(dir, i) + "/nats.conf";
    n.store = NodeDir(dir, i) + "/store";
    n.client_port = client->port;
    n.route_port = route->port;
    info.nodes.push_back(n);
    info.urls.push_back(url);
  }
  if (info.nodes.empty()) return Fail(Error::Code::kCorrupt, dir + "/cluster.txt names no node");
  return info;
}

Result<nats::ConnectOptions> ClientOptions(const std::string& dir, const std::string& role) {
  MEDSTREAM_TRY(info, Load(dir));
  auto pw = ReadFileText(info.dir + "/users/" + role + ".password", 1024);
  if (!pw) return Fail(Error::Code::kNotFound, "no credentials for role '" + role + "' in " + dir);
  nats::ConnectOptions o;
  o.servers = info.urls;
  o.ca = info.ca;
  o.user = role;
  o.password = *pw;
  o.name = "medstream-" + role;
  return o;
}

Status WaitForJetStream(nats::Connection& c, double timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  Status last = c.PingJetStream();
  while (!last && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    last = c.PingJetStream();
  }
  if (!last)
    return Fail(Error::Code::kDeadlineExceeded, "JetStream did not answer within " +
                                                    fmt::format("{:.0f}", timeout_s) +
                                                    " s: " + last.error().message());
  return {};
}

Result<std::unique_ptr<LocalCluster>> LocalCluster::Start(const std::string& dir,
                                                          double timeout_s) {
  if (access(kNatsServer, X_OK) != 0) {
    return Fail(Error::Code::kNotFound,
                std::string(kNatsServer) + " is missing (run scripts/install-deps.sh)");
  }
  MEDSTREAM_TRY(loaded, Load(dir));
  std::unique_ptr<LocalCluster> c(new LocalCluster(std::move(loaded)));
  c->pids_.assign(c->info_.nodes.size(), -1);
  for (size_t i = 0; i < c->pids_.size(); ++i) {
    if (auto s = c->Launch(i, timeout_s); !s) return std::unexpected(s.error());
  }
  MEDSTREAM_TRY(opts, ClientOptions(dir, kWorkerRole));
  opts.name = "medstream-cluster-check";
  MEDSTREAM_TRY(conn, nats::Connection::Connect(opts));
  if (auto s = WaitForJetStream(*conn, timeout_s); !s) return std::unexpected(s.error());
  return c;
}

Status LocalCluster::Launch(size_t i, double timeout_s) {
  const NodeInfo& n = info_.nodes.at(i);
  const std::string log = fs::path(n.config).parent_path().string() + "/nats.log";
  pids_[i] = proc::Spawn({kNatsServer, "-c", n.config}, log);
  if (pids_[i] <= 0) return Fail(Error::Code::kIo, "could not start nats-server for " + n.name);
  if (!proc::WaitForListener(n.client_port, static_cast<int>(timeout_s * 1000))) {
    int status = 0;
    if (waitpid(pids_[i], &status, WNOHANG) == pids_[i]) pids_[i] = -1;
    return Fail(Error::Code::kDeadlineExceeded,
                "nats-server " + n.name + " did not listen on port " +
                    std::to_string(n.client_port) + " (see " + log + ")");
  }
  return {};
}

Status LocalCluster::Kill(size_t i, int signal) {
  if (i >= pids_.size() || pids_[i] <= 0)
    return InvalidArgument("no running node " + std::to_string(i + 1));
  ::kill(pids_[i], signal);
  if (signal == SIGKILL || signal == SIGTERM || signal == SIGINT) {
    int status = 0;
    waitpid(pids_[i], &status, 0);
    pids_[i] = -1;
  }
  return {};
}

Status LocalCluster::Restart(size_t i, double timeout_s) {
  if (i >= pids_.size()) return InvalidArgument("no node " + std::to_string(i + 1));
  if (pids_[i] > 0) {
    if (auto s = Kill(i, SIGTERM); !s) return s;
  }
  return Launch(i, timeout_s);
}

LocalCluster::~LocalCluster() {
  for (pid_t p : pids_) {
    if (p > 0) proc::Stop(p, 5000);
  }
}

}  // namespace medstream::cluster

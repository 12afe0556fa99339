#include "adapters/http/http.h"

#include <httplib.h>

#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "common/base/address.h"
#include "common/base/log_limit.h"

namespace medstream::http {

namespace {

constexpr size_t kMaxRequestBody = 4096;
constexpr char kCookie[] = "medstream_token";

bool SameToken(std::string_view a, std::string_view b) {
  // Constant time in the content (a token is a password); the length may show.
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string CookieToken(const httplib::Request& req) {
  const std::string cookies = req.get_header_value("Cookie");
  const std::string key = std::string(kCookie) + "=";
  for (size_t pos = 0; pos < cookies.size();) {
    size_t end = cookies.find(';', pos);
    if (end == std::string::npos) end = cookies.size();
    std::string_view part(cookies.data() + pos, end - pos);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    if (part.starts_with(key)) return std::string(part.substr(key.size()));
    pos = end + 1;
  }
  return "";
}

// The connections a server holds, shared by its task queue (which the library creates and
// deletes inside its listening loop) and the Server (which must release a listening thread that
// waits for room before it can stop the library).
struct Admission {
  explicit Admission(size_t bound) : max(bound) {}
  const size_t max;
  std::mutex mu;
  std::condition_variable room;  // the listening thread waits here at the bound
  size_t held = 0;               // accepted and not yet closed
  size_t high_water = 0;
  bool full = false;
  bool stopping = false;  // no more waiting: the server is being stopped
  LogLimiter said{std::chrono::minutes(1)};
};

// Replaces cpp-httplib 0.11's ThreadPool, whose queue of accepted sockets has no bound (3000 idle
// connections held 2950 descriptors in the dashboard's process, and /healthz did not answer in
// 30 s). The library gives the queue no way to refuse a connection (enqueue returns nothing, and
// the job hides the socket), so at the bound enqueue waits: the listening thread stops accepting.
class BoundedPool final : public httplib::TaskQueue {
 public:
  BoundedPool(std::shared_ptr<Admission> admission, size_t threads)
      : admission_(std::move(admission)) {
    for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Serve(); });
  }
  ~BoundedPool() override { shutdown(); }

  void enqueue(std::function<void()> fn) override {
    Admission& a = *admission_;
    {
      std::unique_lock lock(a.mu);
      if (a.held >= a.max && !a.stopping) {
        a.full = true;
        if (auto held = a.said.Admit("full", LogLimiter::Clock::now())) {
          std::fprintf(stderr,
                       "http: %zu connections at once, the limit: new ones wait to be accepted%s\n",
                       a.max, HeldBackNote(*held).c_str());
        }
        a.room.wait(lock, [&] { return a.held < a.max || a.stopping; });
        a.full = false;
      }
      ++a.held;
      a.high_water = std::max(a.high_water, a.held);
      jobs_.push_back(std::move(fn));
    }
    work_.notify_one();
  }

  // Called by the library once its listening loop has ended: the queued connections are still
  // served (the library closes each at once, its server socket being closed), then the threads end.
  void shutdown() override {
    {
      std::lock_guard lock(admission_->mu);
      if (shutdown_) return;
      shutdown_ = true;
    }
    work_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

 private:
  void Serve() {
    Admission& a = *admission_;
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(a.mu);
        work_.wait(lock, [&] { return !jobs_.empty() || shutdown_; });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();  // serves the connection and closes it
      {
        std::lock_guard lock(a.mu);
        --a.held;
      }
      a.room.notify_one();
    }
  }

  std::shared_ptr<Admission> admission_;
  std::condition_variable work_;            // under admission_->mu
  std::deque<std::function<void()>> jobs_;  // under admission_->mu
  bool shutdown_ = false;                   // under admission_->mu
  std::vector<std::thread> threads_;
};

// The inode of the socket at descriptor `fd`, read from its name in /proc (the descriptor itself
// is not touched); none for another kind of file or a closed descriptor.
std::optional<ino_t> SocketInode(int fd) {
  char link[64];
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  const ssize_t n = readlink(path.c_str(), link, sizeof(link) - 1);
  if (n <= 0) return std::nullopt;
  link[n] = '\0';
  unsigned long long inode = 0;
  if (std::sscanf(link, "socket:[%llu]", &inode) != 1) return std::nullopt;
  return static_cast<ino_t>(inode);
}

// This server's accepted connections still open, by socket inode (a descriptor number is reused;
// an inode is not while its socket lives) -> descriptor: the process's TCP sockets whose local
// port is `port`, the listening one left out (a socket bound to a listener's port is one it
// accepted). cpp-httplib 0.11 does not hand its connections out, and their threads close them
// at any moment, so they are found by name only (/proc/self/fd, /proc/net/tcp and tcp6),
// without touching a descriptor.
std::map<ino_t, int> ConnectionsOnPort(int port) {
  std::map<ino_t, int> sockets;  // every socket of the process
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (const dirent* e = readdir(dir)) {
      char* end = nullptr;
      const long fd = std::strtol(e->d_name, &end, 10);
      if (end == e->d_name || *end != '\0') continue;  // "." and ".."
      if (auto inode = SocketInode(static_cast<int>(fd))) sockets.emplace(*inode, fd);
    }
    closedir(dir);
  }
  std::map<ino_t, int> out;
  if (sockets.empty()) return out;
  for (const char* table : {"/proc/self/net/tcp", "/proc/self/net/tcp6"}) {
    FILE* f = std::fopen(table, "re");
    if (f == nullptr) continue;
    char line[512];
    while (std::fgets(line, sizeof(line), f) != nullptr) {
      // "sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ..."; the
      // header line does not parse.
      char local[64];
      unsigned state = 0;
      unsigned long long inode = 0;
      if (std::sscanf(line, " %*s %63s %*s %x %*s %*s %*s %*s %*s %llu", local, &state, &inode) !=
          3) {
        continue;
      }
      const char* colon = std::strrchr(local, ':');
      constexpr unsigned kListen = 0x0A;
      if (colon == nullptr || std::strtol(colon + 1, nullptr, 16) != port || state == kListen) {
        continue;
      }
      if (auto it = sockets.find(static_cast<ino_t>(inode)); it != sockets.end()) out.insert(*it);
    }
    std::fclose(f);
  }
  return out;
}

// Shuts down (both ways) the connection that ConnectionsOnPort found as `inode` at `fd`; its
// thread sees the end at its next read or write, and closes it. The thread may have closed `fd`
// since and the number gone to another file, so it is looked at again just before. That leaves a
// window of microseconds in which another socket of the process could take the number and be
// shut down instead: a connection ended, which its owner must survive anyway. Not closed here,
// nor duplicated (closing a duplicate of a file would drop the POSIX locks that SQLite, in the
// lake host, holds on it).
void EndConnection(int fd, ino_t inode) {
  if (SocketInode(fd) == inode) shutdown(fd, SHUT_RDWR);
}

}  // namespace

Response NotFound() {
  return {404, "text/plain; charset=utf-8", "not found\n"};
}
Response Json(std::string body) {
  return {200, "application/json", std::move(body)};
}

std::vector<Route> MetricsRoutes(std::function<std::string()> text) {
  return {{"/metrics",
           [text](const Request&) {
             if (!text) return NotFound();
             return Response{200, "text/plain; version=0.0.4; charset=utf-8", text()};
           }},
          {"/healthz", [](const Request&) {
             return Response{200, "text/plain", "ok\n"};
           }}};
}

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host == "[::1]" || host.starts_with("127.");
}

struct Server::Impl {
  std::shared_ptr<Admission> admission;
  std::unique_ptr<httplib::Server> server;
  std::thread thread;
  // The reaper: ends connections older than max_connection_s, checking once a second while any
  // connection is held.
  std::thread reaper;
  std::mutex reaper_mu;
  std::condition_variable reaper_wake;
  bool reaper_stop = false;  // under reaper_mu

  void Reap(int port, std::chrono::seconds limit) {
    std::map<ino_t, std::chrono::steady_clock::time_point> first_seen;
    for (;;) {
      {
        std::unique_lock lock(reaper_mu);
        if (reaper_wake.wait_for(lock, std::chrono::seconds(1), [&] { return reaper_stop; }))
          return;
      }
      bool any;
      {
        std::lock_guard lock(admission->mu);
        any = admission->held > 0;
      }
      if (!any) {
        first_seen.clear();
        continue;
      }
      const auto now = std::chrono::steady_clock::now();
      const std::map<ino_t, int> open = ConnectionsOnPort(port);
      std::erase_if(first_seen, [&](const auto& kv) { return !open.contains(kv.first); });
      for (const auto& [inode, fd] : open) {
        const auto since = first_seen.try_emplace(inode, now).first->second;
        if (now - since < limit) continue;
        EndConnection(fd, inode);
        if (auto held = admission->said.Admit("old", LogLimiter::Clock::now())) {
          std::fprintf(stderr, "http: ended a connection open for more than %lld s%s\n",
                       static_cast<long long>(limit.count()), HeldBackNote(*held).c_str());
        }
      }
    }
  }
};

Result<std::unique_ptr<Server>> Server::Start(const Options& options, std::vector<Route> routes) {
  auto address = ParseHostPort(options.listen, "--http", {.default_port = -1, .allow_zero = true});
  if (!address) return std::unexpected(address.error());
  // "[::1]:8080" names the host ::1; the brackets are the URL's, not the address's.
  if (address->host.size() > 2 && address->host.front() == '[' && address->host.back() == ']') {
    address->host = address->host.substr(1, address->host.size() - 2);
  }
  const bool tls = !options.tls_cert.empty() || !options.tls_key.empty();
  if (tls && (options.tls_cert.empty() || options.tls_key.empty()))
    return InvalidArgument("TLS needs both a certificate and its key");
  if (options.threads == 0 || options.max_connections < options.threads ||
      options.max_connection_s <= 0) {
    return InvalidArgument(
        "an HTTP server needs at least one thread, room for at least as many "
        "connections as it has threads, and a connection time limit above 0");
  }
  if (!IsLoopback(address->host) && !(tls && !options.token.empty())) {
    return InvalidArgument(
        "refusing to serve on " + address->host +
        " (not a loopback address) without TLS and a token: pass a certificate, its key and a "
        "token, or listen on 127.0.0.1");
  }
  auto impl = std::make_unique<Impl>();
  if (tls) {
    auto ssl =
        std::make_unique<httplib::SSLServer>(options.tls_cert.c_str(), options.tls_key.c_str());
    if (!ssl->is_valid())
      return InvalidArgument("cannot load the TLS certificate " + options.tls_cert + " or key " +
                             options.tls_key);
    impl->server = std::move(ssl);
  } else {
    impl->server = std::make_unique<httplib::Server>();
  }
  httplib::Server& svr = *impl->server;
  impl->admission = std::make_shared<Admission>(options.max_connections);
  svr.new_task_queue = [admission = impl->admission, threads = options.threads] {
    return new BoundedPool(admission, threads);
  };
  svr.set_payload_max_length(kMaxRequestBody);
  svr.set_read_timeout(5);  // per read: what a slow client can hold a thread for, in steps
  svr.set_keep_alive_timeout(5);
  svr.set_keep_alive_max_count(5);
  svr.set_write_timeout(10);
  svr.set_default_headers({
      {"Cache-Control", "no-store"},
      {"X-Content-Type-Options", "nosniff"},
      {"X-Frame-Options", "DENY"},
      {"Referrer-Policy", "no-referrer"},
      {"Content-Security-Policy",
       "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'"},
  });
  const std::string token = options.token;
  svr.set_pre_routing_handler([token, tls](const httplib::Request& req, httplib::Response& res) {
    if (req.method != "GET" && req.method != "HEAD") {
      res.status = 405;
      res.set_content("only GET\n", "text/plain; charset=utf-8");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (token.empty() || req.path == "/healthz") return httplib::Server::HandlerResponse::Unhandled;
    std::string given;
    const std::string auth = req.get_header_value("Authorization");
    if (auth.starts_with("Bearer ")) given = auth.substr(7);
    if (given.empty()) given = CookieToken(req);
    const bool from_query = given.empty() && req.has_param("token");
    if (from_query) given = req.get_param_value("token");
    if (!SameToken(given, token)) {
      res.status = 401;
      res.set_header("WWW-Authenticate", "Bearer");
      res.set_content("a token is required (Authorization: Bearer TOKEN, or ?token=TOKEN once)\n",
                      "text/plain; charset=utf-8");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (from_query) {
      res.set_header("Set-Cookie", std::string(kCookie) + "=" + token +
                                       "; Path=/; HttpOnly; SameSite=Strict" +
                                       (tls ? "; Secure" : ""));
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  auto table = std::make_shared<std::vector<Route>>(std::move(routes));
  svr.Get(R"(/.*)", [table](const httplib::Request& req, httplib::Response& res) {
    Request r{.path = req.path, .params = {}};
    for (const auto& [k, v] : req.params) r.params[k] = v;
    const Route* match = nullptr;
    for (const Route& route : *table) {
      if (route.path == req.path ||
          (route.path.size() > 1 && route.path.ends_with('/') && req.path.starts_with(route.path) &&
           (!match || route.path.size() > match->path.size()))) {
        match = &route;
        if (route.path == req.path) break;
      }
    }
    Response out;
    try {
      out = match ? match->handler(r) : NotFound();
    } catch (const std::exception&) {  // a handler's library threw: not the server's end
      out = {500, "text/plain; charset=utf-8", "internal error\n"};
    }
    res.status = out.status;
    res.set_content(std::move(out.body), out.content_type.c_str());
  });
  int port = address->port;
  if (port == 0) {
    port = svr.bind_to_any_port(address->host);
    if (port <= 0) return Fail(Error::Code::kIo, "cannot listen on " + address->host);
  } else if (!svr.bind_to_port(address->host, port)) {
    return Fail(Error::Code::kIo, "cannot listen on " + options.listen + " (in use?)");
  }
  auto server = std::unique_ptr<Server>(new Server());
  server->port_ = port;
  const std::string host =
      address->host.find(':') != std::string::npos && !address->host.starts_with("[")
          ? "[" + address->host + "]"
          : address->host;
  server->url_ = std::string(tls ? "https" : "http") + "://" +
                 (host == "0.0.0.0" ? std::string("127.0.0.1") : host) + ":" + std::to_string(port);
  impl->thread = std::thread([&svr] { svr.listen_after_bind(); });
  // cpp-httplib's stop() does nothing until the listening loop runs: a Server destroyed at once
  // would otherwise wait on that loop for ever. The loop starts within microseconds.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!svr.is_running() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  impl->reaper = std::thread([impl = impl.get(), port, limit = options.max_connection_s] {
    impl->Reap(port, std::chrono::seconds(limit));
  });
  server->impl_ = std::move(impl);
  return server;
}

Server::Connections Server::connections() const {
  std::lock_guard lock(impl_->admission->mu);
  return {.held = impl_->admission->held,
          .high_water = impl_->admission->high_water,
          .full = impl_->admission->full};
}

Server::~Server() {
  if (!impl_) return;
  if (impl_->reaper.joinable()) {
    {
      std::lock_guard lock(impl_->reaper_mu);
      impl_->reaper_stop = true;
    }
    impl_->reaper_wake.notify_all();
    impl_->reaper.join();
  }
  if (impl_->admission) {
    {
      std::lock_guard lock(impl_->admission->mu);
      impl_->admission->stopping = true;
    }
    impl_->admission->room.notify_all();  // a listening thread that waits for room goes on
  }
  if (impl_->server) impl_->server->stop();
  // Every connection still open ends now: a client that trickles a byte at a time must not hold
  // the stop (the library waits for each connection's thread).
  for (const auto& [inode, fd] : ConnectionsOnPort(port_)) EndConnection(fd, inode);
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace medstream::http

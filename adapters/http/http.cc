#include "adapters/http/http.h"

#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

#include "adapters/http/request_head.h"
#include "common/base/address.h"
#include "common/base/log_limit.h"

namespace medstream::http {

namespace {

using Clock = std::chrono::steady_clock;

constexpr char kCookie[] = "medstream_token";
// The TLS handshake and the request head arrive within this (or the connection's whole limit,
// when shorter).
constexpr auto kHeadLimit = std::chrono::seconds(10);

bool SameToken(std::string_view a, std::string_view b) {
  // Constant time in the content (a token is a password); the length may show.
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::string CookieToken(const RequestHead& req) {
  const std::string cookies = req.Field("cookie");
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

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

// A response as sent: the status line, medstream's fixed headers, `extra` (whole lines with their
// CRLF), and the body unless the request was HEAD. Every connection carries one request.
std::string Render(const Response& r, const std::string& extra, bool head_only) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + Reason(r.status) + "\r\n";
  out += "Content-Type: " + r.content_type + "\r\n";
  if (r.status != 204) out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  out +=
      "Connection: close\r\n"
      "Cache-Control: no-store\r\n"
      "X-Content-Type-Options: nosniff\r\n"
      "X-Frame-Options: DENY\r\n"
      "Referrer-Policy: no-referrer\r\n"
      "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self' "
      "'unsafe-inline'; img-src 'self'; connect-src 'self'; frame-ancestors 'none'\r\n";
  out += extra;
  out += "\r\n";
  if (!head_only && r.status != 204) out += r.body;
  return out;
}

Response Text(int status, std::string body) {
  return {status, "text/plain; charset=utf-8", std::move(body)};
}

// One accepted connection, plain or TLS, non-blocking; every wait ends at a deadline or when
// the server stops (`wake` readable).
class Connection {
 public:
  Connection(int fd, int wake, SSL_CTX* tls) : fd_(fd), wake_(wake) {
    if (tls != nullptr) {
      ssl_ = SSL_new(tls);
      if (ssl_ != nullptr) SSL_set_fd(ssl_, fd_);
    }
  }
  ~Connection() {
    if (ssl_ != nullptr) SSL_free(ssl_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  bool tls() const { return ssl_ != nullptr; }

  // The TLS handshake (nothing to do in plain HTTP).
  bool Handshake(Clock::time_point deadline) {
    if (ssl_ == nullptr) return true;
    for (;;) {
      ERR_clear_error();
      const int r = SSL_accept(ssl_);
      if (r == 1) return true;
      if (!WaitFor(SSL_get_error(ssl_, r), deadline)) return false;
    }
  }

  // Up to `n` bytes; 0 at the end of the stream, an error, the deadline or the stop.
  size_t Read(char* buf, size_t n, Clock::time_point deadline) {
    for (;;) {
      if (ssl_ != nullptr) {
        size_t got = 0;
        ERR_clear_error();
        const int r = SSL_read_ex(ssl_, buf, n, &got);
        if (r == 1) return got;
        if (!WaitFor(SSL_get_error(ssl_, r), deadline)) return 0;
      } else {
        const ssize_t got = recv(fd_, buf, n, 0);
        if (got >= 0) return static_cast<size_t>(got);
        if (errno != EAGAIN && errno != EINTR) return 0;
        if (!Wait(POLLIN, deadline)) return 0;
      }
    }
  }

  bool WriteAll(std::string_view data, Clock::time_point deadline) {
    while (!data.empty()) {
      if (ssl_ != nullptr) {
        size_t put = 0;
        ERR_clear_error();
        const int r = SSL_write_ex(ssl_, data.data(), data.size(), &put);
        if (r == 1) {
          data.remove_prefix(put);
          continue;
        }
        if (!WaitFor(SSL_get_error(ssl_, r), deadline)) return false;
      } else {
        const ssize_t put = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
        if (put >= 0) {
          data.remove_prefix(static_cast<size_t>(put));
          continue;
        }
        if (errno != EAGAIN && errno != EINTR) return false;
        if (!Wait(POLLOUT, deadline)) return false;
      }
    }
    if (ssl_ != nullptr) SSL_shutdown(ssl_);  // best effort
    return true;
  }

  // Ends our side, then reads and drops what the client still sends (at most 64 KiB, for 1 s):
  // closed with unread bytes, the connection would be reset, and a client that sent more than was
  // read (a head past the limit, a body) could lose the answer before reading it.
  void Linger(Clock::time_point deadline) {
    shutdown(fd_, SHUT_WR);
    deadline = std::min(deadline, Clock::now() + std::chrono::seconds(1));
    char sink[4096];
    for (size_t dropped = 0; dropped < 64 * 1024;) {
      const ssize_t n = recv(fd_, sink, sizeof(sink), 0);
      if (n == 0) return;
      if (n > 0) {
        dropped += static_cast<size_t>(n);
        continue;
      }
      if ((errno != EAGAIN && errno != EINTR) || !Wait(POLLIN, deadline)) return;
    }
  }

 private:
  bool WaitFor(int ssl_error, Clock::time_point deadline) {
    if (ssl_error == SSL_ERROR_WANT_READ) return Wait(POLLIN, deadline);
    if (ssl_error == SSL_ERROR_WANT_WRITE) return Wait(POLLOUT, deadline);
    return false;  // closed, a protocol error, or a system error
  }

  bool Wait(short events, Clock::time_point deadline) {
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return false;
      pollfd p[2] = {{fd_, events, 0}, {wake_, POLLIN, 0}};
      const int r = poll(p, 2, static_cast<int>(std::min<long long>(left, 60'000)));
      if (r < 0 && errno != EINTR) return false;
      if (r > 0 && p[1].revents != 0) return false;  // the server stops
      if (r > 0 && p[0].revents != 0) return true;   // ready, or an error the next call reports
    }
  }

  const int fd_;
  const int wake_;
  SSL* ssl_ = nullptr;
};

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
  Options options;
  std::vector<Route> routes;
  SSL_CTX* tls = nullptr;
  int listen_fd = -1;
  int wake = -1;  // an eventfd, readable once the server stops
  std::thread acceptor;
  std::vector<std::thread> workers;

  std::mutex mu;
  std::condition_variable work;
  std::deque<int> queue;  // accepted, waiting for a worker
  size_t held = 0;        // accepted and not yet closed (queued or served)
  size_t high_water = 0;
  uint64_t refused = 0;
  bool stopping = false;
  LogLimiter said{std::chrono::minutes(1)};

  ~Impl() {
    if (listen_fd >= 0) close(listen_fd);
    if (wake >= 0) close(wake);
    if (tls != nullptr) SSL_CTX_free(tls);
  }

  void Accept() {
    for (;;) {
      pollfd p[2] = {{listen_fd, POLLIN, 0}, {wake, POLLIN, 0}};
      if (poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (p[1].revents != 0) return;
      const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          // Out of descriptors (for other reasons than ours): the pending connection stays in
          // the backlog and poll would say so at once, for ever. Waited out instead of spun on.
          pollfd w{wake, POLLIN, 0};
          if (poll(&w, 1, 100) > 0) return;
        }
        continue;
      }
      std::unique_lock lock(mu);
      if (held >= options.max_connections) {
        ++refused;
        lock.unlock();
        if (tls == nullptr) {
          // Best effort, never waited on: the client learns why.
          static constexpr std::string_view kBusy =
              "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
          (void)send(fd, kBusy.data(), kBusy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        close(fd);
        if (auto n = said.Admit("full", LogLimiter::Clock::now())) {
          std::fprintf(stderr, "http: %zu connections at once, the limit: refused one%s\n",
                       options.max_connections, HeldBackNote(*n).c_str());
        }
        continue;
      }
      ++held;
      high_water = std::max(high_water, held);
      queue.push_back(fd);
      lock.unlock();
      work.notify_one();
    }
  }

  void Work() {
    // A peer that closes while a TLS record is written would raise SIGPIPE (OpenSSL writes with
    // write(2)); blocked in this thread, the write fails with EPIPE instead.
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    for (;;) {
      int fd;
      {
        std::unique_lock lock(mu);
        work.wait(lock, [&] { return !queue.empty() || stopping; });
        if (queue.empty()) return;
        fd = queue.front();
        queue.pop_front();
        if (stopping) {
          close(fd);
          --held;
          continue;
        }
      }
      Serve(fd);
      close(fd);
      {
        std::lock_guard lock(mu);
        --held;
      }
    }
  }

  void Serve(int fd) {
    const auto start = Clock::now();
    const auto end = start + std::chrono::seconds(options.max_connection_s);
    const auto head_end = std::min(end, start + kHeadLimit);
    Connection c(fd, wake, tls);
    if (tls != nullptr && !c.tls()) return;  // no memory for the TLS state
    if (!c.Handshake(head_end)) return;
    // The head whole, at most kMaxHeadBytes, before a byte of it is parsed.
    std::string head;
    size_t searched = 0;
    char buf[4096];
    for (;;) {
      const size_t found = head.find("\r\n\r\n", searched);
      if (found != std::string::npos) {
        head.resize(found + 4);  // anything after it is ignored: the connection closes
        break;
      }
      searched = head.size() < 3 ? 0 : head.size() - 3;
      if (head.size() >= kMaxHeadBytes) {
        if (c.WriteAll(Render(Text(431, "request head over 16 KiB\n"), "", false), end)) {
          c.Linger(end);
        }
        return;
      }
      const size_t n = c.Read(buf, std::min(sizeof(buf), kMaxHeadBytes - head.size()), head_end);
      if (n == 0) return;  // closed, too slow, or the server stops
      head.append(buf, n);
    }
    std::string extra;
    bool head_only = false;
    const Response r = Answer(head, &extra, &head_only);
    if (c.WriteAll(Render(r, extra, head_only), end)) c.Linger(end);
  }

  Response Answer(std::string_view raw, std::string* extra, bool* head_only) {
    auto parsed = ParseRequestHead(raw);
    if (!parsed) return Text(400, "bad request: " + parsed.error().message() + "\n");
    const RequestHead& req = *parsed;
    if (req.method != "GET" && req.method != "HEAD") {
      *extra = "Allow: GET, HEAD\r\n";
      return Text(405, "only GET\n");
    }
    *head_only = req.method == "HEAD";
    if (!options.token.empty() && req.path != "/healthz") {
      std::string given;
      const std::string auth = req.Field("authorization");
      if (auth.starts_with("Bearer ")) given = auth.substr(7);
      if (given.empty()) given = CookieToken(req);
      const auto query = req.params.find("token");
      const bool from_query = given.empty() && query != req.params.end();
      if (from_query) given = query->second;
      if (!SameToken(given, options.token)) {
        *extra = "WWW-Authenticate: Bearer\r\n";
        return Text(401,
                    "a token is required (Authorization: Bearer TOKEN, or ?token=TOKEN once)\n");
      }
      if (from_query) {
        *extra = std::string("Set-Cookie: ") + kCookie + "=" + options.token +
                 "; Path=/; HttpOnly; SameSite=Strict" + (tls != nullptr ? "; Secure" : "") +
                 "\r\n";
      }
    }
    const Route* match = nullptr;
    for (const Route& route : routes) {
      if (route.path == req.path ||
          (route.path.size() > 1 && route.path.ends_with('/') && req.path.starts_with(route.path) &&
           (!match || route.path.size() > match->path.size()))) {
        match = &route;
        if (route.path == req.path) break;
      }
    }
    if (match == nullptr) return NotFound();
    try {
      return match->handler(Request{.path = req.path, .params = req.params});
    } catch (const std::exception&) {  // a handler's library threw: not the server's end
      return Text(500, "internal error\n");
    }
  }

  void Stop() {
    {
      std::lock_guard lock(mu);
      stopping = true;
    }
    if (wake >= 0) (void)eventfd_write(wake, 1);
    work.notify_all();
    if (acceptor.joinable()) acceptor.join();
    for (std::thread& t : workers) t.join();
    workers.clear();
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
        "an HTTP server needs at least one thread, room for at least as many connections as it "
        "has threads, and a connection time limit above 0");
  }
  if (!IsLoopback(address->host) && !(tls && !options.token.empty())) {
    return InvalidArgument(
        "refusing to serve on " + address->host +
        " (not a loopback address) without TLS and a token: pass a certificate, its key and a "
        "token, or listen on 127.0.0.1");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->routes = std::move(routes);
  if (tls) {
    impl->tls = SSL_CTX_new(TLS_server_method());
    if (impl->tls == nullptr || SSL_CTX_set_min_proto_version(impl->tls, TLS1_2_VERSION) != 1 ||
        SSL_CTX_use_certificate_chain_file(impl->tls, options.tls_cert.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(impl->tls, options.tls_key.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(impl->tls) != 1) {
      ERR_clear_error();
      return InvalidArgument("cannot load the TLS certificate " + options.tls_cert + " or key " +
                             options.tls_key);
    }
    SSL_CTX_set_options(impl->tls, SSL_OP_NO_RENEGOTIATION);
  }
  // Bound to the first address the host resolves to that takes the port.
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port_text = std::to_string(address->port);
  if (getaddrinfo(address->host.c_str(), port_text.c_str(), &hints, &found) != 0 ||
      found == nullptr) {
    return Fail(Error::Code::kIo, "cannot resolve " + address->host);
  }
  for (addrinfo* a = found; a != nullptr && impl->listen_fd < 0; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 64) == 0) {
      impl->listen_fd = fd;
    } else {
      close(fd);
    }
  }
  freeaddrinfo(found);
  if (impl->listen_fd < 0) {
    return Fail(Error::Code::kIo, "cannot listen on " + options.listen + " (in use?)");
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  int port = address->port;
  if (getsockname(impl->listen_fd, reinterpret_cast<sockaddr*>(&bound), &len) == 0) {
    port = bound.ss_family == AF_INET6
               ? ntohs(reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port)
               : ntohs(reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
  }
  impl->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (impl->wake < 0) return Fail(Error::Code::kIo, "cannot create an eventfd");

  auto server = std::unique_ptr<Server>(new Server());
  server->port_ = port;
  const std::string host =
      address->host.find(':') != std::string::npos ? "[" + address->host + "]" : address->host;
  server->url_ = std::string(tls ? "https" : "http") + "://" +
                 (host == "0.0.0.0" || host == "[::]" ? std::string("127.0.0.1") : host) + ":" +
                 std::to_string(port);
  Impl* i = impl.get();
  for (size_t t = 0; t < options.threads; ++t) i->workers.emplace_back([i] { i->Work(); });
  i->acceptor = std::thread([i] { i->Accept(); });
  server->impl_ = std::move(impl);
  return server;
}

Server::Connections Server::connections() const {
  std::lock_guard lock(impl_->mu);
  return {.held = impl_->held, .high_water = impl_->high_water, .refused = impl_->refused};
}

Server::~Server() {
  if (impl_) impl_->Stop();
}

}  // namespace medstream::http

// http: the one HTTP(S) server of medstream's processes (its own, over OpenSSL for TLS): the
// owner's dashboard, and /metrics and /healthz of the gateway, the server and the lake host.
//
// What it promises:
//   - Bound to a loopback address unless told otherwise; a non-loopback (or wildcard) address is
//     refused at start unless TLS (certificate + key) and a bearer token are both configured:
//     whatever it serves may be patient data or reveal activity.
//   - With a token, every request must carry it (Authorization: Bearer T, or the cookie that
//     visiting a page with ?token=T once sets: HttpOnly, SameSite=Strict, Secure under TLS);
//     without it: 401 and nothing else. Compared in constant time. /healthz is open (it says only
//     "ok").
//   - Only GET and HEAD (else 405); every response says no-store, nosniff
//     and a Content-Security-Policy that allows only this origin's scripts and styles.
//   - medstream's own server (not cpp-httplib: Debian's 0.11 bounds neither the header fields of
//     a request nor the time to send them, and one client grew the process by 100 MB a second).
//     One request per connection (Connection: close); its head (request line and fields) is
//     read whole, at most 16 KiB (else 431), and the TLS handshake and the head within 10 s,
//     before a byte of it is parsed (request_head.h); the response is written within the
//     connection's limit, `max_connection_s`, after which the connection ends however it
//     trickles. Request bodies are never read.
//   - Bounded: `threads` serve the connections and at most `max_connections` are held at once
//     (served or waiting for a thread); past it a connection is answered 503 (plain HTTP) and
//     closed at once, said once a minute. A flood of idle or slow connections thus makes the
//     pages slow to answer but cannot take the hosting process's descriptors, memory or threads
//     (the gateway's write-ahead log and spool need descriptors). Stopping ends every wait at
//     once.
//   - Handlers run on the server's threads, concurrently: they must be thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/base/result.h"

namespace medstream::http {

struct Request {
  std::string path;                           // "/user/u1" (decoded)
  std::map<std::string, std::string> params;  // query parameters
};

struct Response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};
Response NotFound();
Response Json(std::string body);

using Handler = std::function<Response(const Request&)>;

struct Route {
  std::string path;  // exact ("/metrics"), or a prefix when it ends with '/' ("/user/")
  Handler handler;
};

// /metrics (the Prometheus text format 0.0.4 that `text` returns at each scrape; none when `text`
// is empty) and /healthz ("ok"): the routes every medstream process serves.
std::vector<Route> MetricsRoutes(std::function<std::string()> text);

struct Options {
  std::string listen = "127.0.0.1:0";  // HOST:PORT; port 0: a free one (see Server::port)
  std::string tls_cert, tls_key;       // PEM files; both or neither
  std::string token;                   // required on every request when set
  size_t threads = 8;                  // serving threads
  size_t max_connections = 64;         // accepted connections held at once (>= threads)
  long max_connection_s = 60;          // a connection ends once open this long
};

// True for 127.0.0.0/8, ::1 and "localhost".
bool IsLoopback(const std::string& host);

class Server {
 public:
  // Listens and serves on a thread of its own. kInvalidArgument for a bad address or a public one
  // without TLS and a token, kIo when the address cannot be bound.
  static Result<std::unique_ptr<Server>> Start(const Options& options, std::vector<Route> routes);
  ~Server();  // stops serving and joins
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const { return port_; }

  // The connections held now and at most so far, and those refused at the bound; thread-safe.
  struct Connections {
    size_t held = 0;
    size_t high_water = 0;
    uint64_t refused = 0;
  };
  Connections connections() const;
  // "http://127.0.0.1:PORT" (https with TLS).
  std::string url() const { return url_; }

 private:
  Server() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
  std::string url_;
};

}  // namespace medstream::http

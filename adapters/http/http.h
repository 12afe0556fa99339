// http: the one HTTP(S) server of medstream's processes (cpp-httplib, Debian's libcpp-httplib): the
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
//   - Only GET and HEAD; request bodies refused past 4 KiB; every response says no-store, nosniff
//     and a Content-Security-Policy that allows only this origin's scripts and styles.
//   - Handlers run on the library's worker threads, concurrently: they must be thread-safe.
#pragma once

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

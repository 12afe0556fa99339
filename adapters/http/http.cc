#include "adapters/http/http.h"

#include <httplib.h>

#include <thread>

#include "common/base/address.h"

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
  std::unique_ptr<httplib::Server> server;
  std::thread thread;
};

Result<std::unique_ptr<Server>> Server::Start(const Options& options, std::vector<Route> routes) {
  auto address = ParseHostPort(options.listen, "--http", {.default_port = -1, .allow_zero = true});
  if (!address) return std::unexpected(address.error());
  const bool tls = !options.tls_cert.empty() || !options.tls_key.empty();
  if (tls && (options.tls_cert.empty() || options.tls_key.empty()))
    return InvalidArgument("TLS needs both a certificate and its key");
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
  svr.set_payload_max_length(kMaxRequestBody);
  svr.set_read_timeout(5);
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
  server->impl_ = std::move(impl);
  return server;
}

Server::~Server() {
  if (impl_ && impl_->server) impl_->server->stop();
  if (impl_ && impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace medstream::http

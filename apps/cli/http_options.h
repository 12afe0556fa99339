// The --http options the gateway, `medstream dashboard` and `medstream demo` share (one
// definition, so they read and fail alike).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "common/base/bytes.h"
#include "common/base/file.h"
#include "owner/dashboard/dashboard.h"

namespace medstream::cli {

struct HttpArgs {
  std::string listen, cert, key, token_file;
  std::string alert_hr = "40..120", alert_sdnn = "20..";
};

inline void AddHttpOptions(CLI::App* cmd, HttpArgs* a, const std::string& what) {
  cmd->add_option("--http", a->listen,
                  "Serve " + what +
                      " on HOST:PORT (127.0.0.1:0 = a free loopback port; another address "
                      "needs --http-cert, --http-key and --http-token-file)");
  cmd->add_option("--http-cert", a->cert, "TLS certificate (PEM) for --http");
  cmd->add_option("--http-key", a->key, "Its private key (PEM)");
  cmd->add_option("--http-token-file", a->token_file,
                  "A file holding the token every request must carry (Authorization: Bearer, "
                  "or ?token= once in a browser); at least 16 characters");
  cmd->add_option("--alert-hr", a->alert_hr, "Dashboard alert: mean HR outside LO..HI bpm")
      ->capture_default_str();
  cmd->add_option("--alert-sdnn", a->alert_sdnn, "Dashboard alert: SDNN outside LO..HI ms")
      ->capture_default_str();
}

// The HTTP server's options from the arguments (the token read from its file: a token on the
// command line would show in `ps`).
inline Result<http::Options> ServerOptions(const HttpArgs& a, const std::string& flag) {
  http::Options o;
  o.listen = a.listen;
  o.tls_cert = a.cert;
  o.tls_key = a.key;
  if (!a.token_file.empty()) {
    MEDSTREAM_TRY(token, ReadFileText(a.token_file, 4096));
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
    if (token.size() < 16)
      return InvalidArgument(flag + "-token-file: the token must have at least 16 characters");
    o.token = token;
  }
  return o;
}

// /metrics and /healthz only (the server, the lake host): --metrics, --metrics-cert, ...
inline void AddMetricsOptions(CLI::App* cmd, HttpArgs* a) {
  cmd->add_option("--metrics", a->listen,
                  "Serve Prometheus /metrics and /healthz on HOST:PORT (loopback, or another "
                  "address with --metrics-cert, --metrics-key and --metrics-token-file)");
  cmd->add_option("--metrics-cert", a->cert, "TLS certificate (PEM) for --metrics");
  cmd->add_option("--metrics-key", a->key, "Its private key (PEM)");
  cmd->add_option("--metrics-token-file", a->token_file,
                  "A file holding the token every scrape must carry (Authorization: Bearer)");
}

// /metrics and /healthz on --metrics (none when it is not given: a null server).
inline Result<std::unique_ptr<http::Server>> StartMetrics(const HttpArgs& a,
                                                          std::function<std::string()> text) {
  if (a.listen.empty()) return std::unique_ptr<http::Server>();
  MEDSTREAM_TRY(options, ServerOptions(a, "--metrics"));
  return http::Server::Start(options, http::MetricsRoutes(std::move(text)));
}

// The dashboard's options from the arguments.
inline Result<dashboard::Options> DashboardOptions(const HttpArgs& a,
                                                   const std::string& results_dir) {
  dashboard::Options o;
  o.results_dir = results_dir;
  MEDSTREAM_TRY(server, ServerOptions(a, "--http"));
  o.http = std::move(server);
  MEDSTREAM_TRY(hr, dashboard::ParseRange(a.alert_hr, "--alert-hr"));
  MEDSTREAM_TRY(sdnn, dashboard::ParseRange(a.alert_sdnn, "--alert-sdnn"));
  o.heart_rate_bpm = hr;
  o.sdnn_ms = sdnn;
  return o;
}

}  // namespace medstream::cli

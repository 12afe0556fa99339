// mqtt: a small RAII client over libmosquitto (Eclipse Mosquitto's C library), for the sensors
// (publish) and the gateway (subscribe). Untrusted transport: payloads are opaque bytes here.
//
// TLS only: every connection verifies the broker's certificate against the given CA (and its name
// against the host connected to) and authenticates with a client certificate; there is no
// plaintext or anonymous mode (owner/broker/broker.h makes the certificates and the broker's
// config). A Client is safe to use from one thread at a time besides its own network thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/base/result.h"

namespace medstream::mqtt {

struct Message {
  std::string topic;
  std::span<const uint8_t> payload;
  bool retained = false;  // the broker's stored copy, sent on subscribing
};

// A client's TLS material: PEM files.
struct Tls {
  std::string ca;    // the broker CA's certificate
  std::string cert;  // this client's certificate (its common name is its identity at the broker)
  std::string key;   // this client's private key
};

class Client {
 public:
  using Handler = std::function<void(const Message&)>;
  struct Subscription {
    std::string pattern;
    int qos = 1;
    Handler handler;
  };

  // Connects to host:port and starts the network thread. With a persistent session
  // (clean_session false) the broker delivers what it queued right after connecting: pass the
  // subscription here, so its handler is in place before the first message (a message arriving
  // without a handler would be acknowledged and lost). It is renewed on every reconnection.
  // Subscriptions: a pattern's handler is also the one for messages on the others (one handler).
  struct Options {
    std::string host;
    int port = 0;
    std::string client_id;
    Tls tls;
    bool clean_session = true;
    std::optional<Subscription> subscription;
    std::vector<std::string> also_subscribe;  // further patterns, same qos and handler
  };
  // kInvalidArgument when the TLS files are missing or unreadable, kNotFound when the broker cannot
  // be reached, kPermissionDenied when it refuses this client (its certificate, its ACL).
  static Result<std::unique_ptr<Client>> Connect(const Options& options);
  ~Client();

  // QoS 1 by default: at least once, acknowledged by the broker.
  Status Publish(const std::string& topic, std::span<const uint8_t> payload, int qos = 1,
                 bool retain = false);
  Status Subscribe(const std::string& pattern, int qos, Handler handler);
  // Subscribes to `pattern` again (with the handler in place): the broker sends its retained
  // messages on it once more. Waits for the broker's confirmation (not when timeout_ms <= 0).
  Status Resubscribe(const std::string& pattern, int timeout_ms);
  // Blocks until every message published so far is acknowledged (QoS >= 1), or the timeout.
  Status Flush(int timeout_ms);
  uint64_t acknowledged() const;

 private:
  Client() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "host:port" (port defaults to 1883).
Result<std::pair<std::string, int>> ParseAddress(const std::string& address);

}  // namespace medstream::mqtt

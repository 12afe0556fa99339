// mqtt: a small RAII client over libmosquitto (Eclipse Mosquitto's C library), for the sensors
// (publish) and the gateway (subscribe). Untrusted transport: payloads are opaque bytes here.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "base/result.h"

namespace medstream::mqtt {

struct Message {
  std::string topic;
  std::span<const uint8_t> payload;
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
  static Result<std::unique_ptr<Client>> Connect(
      const std::string& host, int port, const std::string& client_id, bool clean_session = true,
      std::optional<Subscription> subscription = std::nullopt);
  ~Client();

  // QoS 1 by default: at least once, acknowledged by the broker.
  Status Publish(const std::string& topic, std::span<const uint8_t> payload, int qos = 1);
  Status Subscribe(const std::string& pattern, int qos, Handler handler);
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

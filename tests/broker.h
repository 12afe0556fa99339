// A real Eclipse Mosquitto broker for tests, configured as `medstream broker init` configures one:
// TLS only, client certificates, the ACL. A free port on 127.0.0.1, started on construction and
// stopped on destruction; its CA and every credential live in a temporary folder removed after.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "adapters/mqtt/mqtt.h"
#include "owner/broker/broker.h"

namespace medstream::testing {

class Broker {
 public:
  struct Options {
    bool persistent = false;  // messages and sessions survive a graceful restart
    uint64_t max_queued_messages = 100000;
    uint64_t max_inflight_messages = 1000;
    std::string site = "f";
  };
  Broker() : Broker(Options{}) {}
  explicit Broker(Options options);
  ~Broker();
  // Stop and start again on the same port. SIGTERM is graceful (mosquitto saves its state);
  // SIGKILL is a crash (clients with data in flight see their connection reset).
  bool Restart(int signal = 15 /*SIGTERM*/);
  bool ok() const { return pid_ > 0 && error_.empty(); }
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& error() const { return error_; }
  // The folder `medstream broker init` made (ca.crt, clients/, broker/).
  const std::string& dir() const { return dir_; }
  // NAME's credentials, enrolled on first use (the gateway's exist from the start).
  broker::Credentials Device(const std::string& name);
  broker::Credentials Gateway() const {
    return broker::ClientCredentials(dir_, broker::kGatewayIdentity);
  }
  // Client options for NAME (Device(NAME)) or the gateway.
  mqtt::Client::Options ClientOptions(const std::string& client_id, const broker::Credentials& c);
  // --broker ADDRESS --ca --cert --key for a medstream command line.
  std::string Flags(const broker::Credentials& c) const;

 private:
  bool Launch();
  pid_t pid_ = -1;
  int port_ = 0;
  std::string conf_;
  std::string dir_, error_;
};

}  // namespace medstream::testing

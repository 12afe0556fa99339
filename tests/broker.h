// A real Eclipse Mosquitto broker for tests: generated config, a free port on 127.0.0.1, started
// on construction and stopped on destruction.
#pragma once

#include <sys/types.h>

#include <string>

namespace medstream::testing {

class Broker {
 public:
  // `persistent`: messages and sessions survive a graceful restart (mosquitto persistence).
  explicit Broker(bool persistent = false);
  ~Broker();
  // Graceful stop (SIGTERM: mosquitto saves its state) and start again on the same port.
  bool Restart();
  bool ok() const { return pid_ > 0; }
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& error() const { return error_; }

 private:
  bool Launch();
  pid_t pid_ = -1;
  int port_ = 0;
  std::string conf_;
  std::string dir_, error_;
};

}  // namespace medstream::testing

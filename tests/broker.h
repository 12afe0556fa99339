// A real Eclipse Mosquitto broker for tests: generated config, a free port on 127.0.0.1, started
// on construction and stopped on destruction.
#pragma once

#include <sys/types.h>

#include <string>

namespace medstream::testing {

class Broker {
 public:
  Broker();
  ~Broker();
  bool ok() const { return pid_ > 0; }
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& error() const { return error_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string dir_, error_;
};

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreeLoopbackPort();

}  // namespace medstream::testing

#include "tests/broker.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <thread>

#include "adapters/proc/proc.h"

namespace medstream::testing {

Broker::Broker(Options o) {
  if (access("/usr/sbin/mosquitto", X_OK) != 0) {
    error_ = "mosquitto is not installed (scripts/install-deps.sh installs it)";
    return;
  }
  dir_ = std::filesystem::temp_directory_path() / ("medstream-broker-" + std::to_string(getpid()) +
                                                   "-" + std::to_string(proc::FreeLoopbackPort()));
  std::filesystem::create_directories(dir_ + "/data");
  // As root, mosquitto drops to its own user: let it own its persistence directory.
  if (o.persistent) std::system(("chown mosquitto '" + dir_ + "/data' 2>/dev/null").c_str());
  port_ = proc::FreeLoopbackPort();
  conf_ = broker::ConfigPath(dir_);
  broker::InitOptions bo;
  bo.dir = dir_;
  bo.site = o.site;
  bo.port = port_;
  bo.max_queued_messages = o.max_queued_messages;
  bo.max_inflight_messages = o.max_inflight_messages;
  bo.persistence_dir = o.persistent ? dir_ + "/data" : "";
  bo.log_dest = "none";
  bo.now = time(nullptr);
  auto s = broker::Init(bo);
  if (!s) {
    error_ = s.error().message();
    return;
  }
  Launch();
}

broker::Credentials Broker::Device(const std::string& name) {
  const broker::Credentials c = broker::ClientCredentials(dir_, name);
  if (!std::filesystem::exists(c.cert)) {
    if (auto e = broker::Enroll(dir_, name, time(nullptr)); !e) error_ = e.error().message();
  }
  return c;
}

mqtt::Client::Options Broker::ClientOptions(const std::string& client_id,
                                            const broker::Credentials& c) {
  mqtt::Client::Options o;
  o.host = "127.0.0.1";
  o.port = port_;
  o.client_id = client_id;
  o.tls = {c.ca, c.cert, c.key};
  return o;
}

std::string Broker::Flags(const broker::Credentials& c) const {
  return "--broker " + address() + " --ca " + c.ca + " --cert " + c.cert + " --key " + c.key;
}

bool Broker::Launch() {
  std::fflush(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    execl("/usr/sbin/mosquitto", "/usr/sbin/mosquitto", "-c", conf_.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 300 && !proc::CanConnectLoopback(port_); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!proc::CanConnectLoopback(port_)) {
    error_ = "mosquitto did not start on port " + std::to_string(port_);
    return false;
  }
  return true;
}

bool Broker::Restart(int signal) {
  if (pid_ > 0) {
    kill(pid_, signal);
    waitpid(pid_, nullptr, 0);
  }
  return Launch();
}

Broker::~Broker() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
  if (!dir_.empty()) std::filesystem::remove_all(dir_);
}

}  // namespace medstream::testing

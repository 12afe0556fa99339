#include "tests/broker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "proc/proc.h"

namespace medstream::testing {

namespace {}  // namespace

Broker::Broker(bool persistent) {
  if (access("/usr/sbin/mosquitto", X_OK) != 0) {
    error_ = "mosquitto is not installed (scripts/install-deps.sh installs it)";
    return;
  }
  dir_ = std::filesystem::temp_directory_path() / ("medstream-broker-" + std::to_string(getpid()) +
                                                   "-" + std::to_string(proc::FreeLoopbackPort()));
  std::filesystem::create_directories(dir_);
  // As root, mosquitto drops to its own user: let it own its persistence directory.
  if (persistent) std::system(("chown mosquitto '" + dir_ + "' 2>/dev/null").c_str());
  port_ = proc::FreeLoopbackPort();
  conf_ = dir_ + "/mosquitto.conf";
  std::ofstream(conf_) << "listener " << port_ << " 127.0.0.1\n"
                       << "allow_anonymous true\n"
                       << (persistent ? "persistence true\npersistence_location " + dir_ + "/\n"
                                      : std::string("persistence false\n"))
                       << "max_inflight_messages 1000\nmax_queued_messages 100000\n"
                       << "log_dest none\n";
  Launch();
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

bool Broker::Restart() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
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

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

namespace medstream::testing {

int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(fd);
    return 0;
  }
  const int port = ntohs(a.sin_port);
  close(fd);
  return port;
}

namespace {

bool CanConnect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

}  // namespace

Broker::Broker() {
  const char* exe = "/usr/sbin/mosquitto";
  if (access(exe, X_OK) != 0) {
    error_ = "mosquitto is not installed (scripts/install-deps.sh installs it)";
    return;
  }
  dir_ = std::filesystem::temp_directory_path() / ("medstream-broker-" + std::to_string(getpid()) +
                                                   "-" + std::to_string(FreeLoopbackPort()));
  std::filesystem::create_directories(dir_);
  port_ = FreeLoopbackPort();
  const std::string conf = dir_ + "/mosquitto.conf";
  std::ofstream(conf) << "listener " << port_ << " 127.0.0.1\n"
                      << "allow_anonymous true\npersistence false\n"
                      << "max_inflight_messages 1000\nmax_queued_messages 100000\n"
                      << "log_dest none\n";  // as root it drops to its own user: no file
  std::fflush(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    execl(exe, exe, "-c", conf.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 300 && !CanConnect(port_); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!CanConnect(port_)) error_ = "mosquitto did not start on port " + std::to_string(port_);
}

Broker::~Broker() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
  if (!dir_.empty()) std::filesystem::remove_all(dir_);
}

}  // namespace medstream::testing

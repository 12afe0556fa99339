#include "adapters/sftp/sshd.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "adapters/proc/proc.h"
#include "common/base/bytes.h"
#include "common/base/file.h"

namespace medstream::sftp {

namespace {

Status Keygen(const std::string& path) {
  if (FileExists(path)) return {};
  const std::string cmd = "ssh-keygen -q -t ed25519 -N '' -C medstream -f '" + path + "'";
  if (std::system(cmd.c_str()) != 0) return IoError("ssh-keygen failed for " + path);
  return {};
}

}  // namespace

Result<std::unique_ptr<Sshd>> Sshd::Start(const std::string& config_dir, const std::string& chroot,
                                          int port) {
  if (geteuid() != 0) return Fail(Error::Code::kFailedPrecondition, "sshd must run as root");
  if (access("/usr/sbin/sshd", X_OK) != 0) {
    return NotFound("OpenSSH sshd is not installed (scripts/install-deps.sh installs it)");
  }
  if (auto s = MakeDirs(config_dir, 0700); !s) return std::unexpected(s.error());
  mkdir("/run/sshd", 0755);  // sshd's privilege-separation directory
  const std::string host_key = config_dir + "/ssh_host_ed25519_key";
  const std::string client_key = config_dir + "/gateway_ed25519";
  for (const std::string& k : {host_key, client_key}) {
    if (auto s = Keygen(k); !s) return std::unexpected(s.error());
  }
  MEDSTREAM_TRY(client_pub, ReadFileText(client_key + ".pub"));
  if (auto s = WriteFileAtomic(config_dir + "/authorized_keys", client_pub, 0600); !s) {
    return std::unexpected(s.error());
  }
  const std::string conf = config_dir + "/sshd_config";
  std::ofstream(conf) << "Port " << port << "\nListenAddress 127.0.0.1\n"
                      << "HostKey " << host_key << "\nPidFile " << config_dir << "/sshd.pid\n"
                      << "AuthorizedKeysFile " << config_dir << "/authorized_keys\n"
                      << "PubkeyAuthentication yes\nPasswordAuthentication no\n"
                      << "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
                      << "UsePAM no\nStrictModes no\nPermitTTY no\nX11Forwarding no\n"
                      // OpenSSH permits opening Unix sockets (the enclave relay) only when
                      // local TCP forwarding is allowed too; nothing may listen on the server.
                      << "AllowTcpForwarding local\nAllowAgentForwarding no\n"
                      << "AllowStreamLocalForwarding local\nGatewayPorts no\n"
                      << "Subsystem sftp internal-sftp\nForceCommand internal-sftp\n"
                      << "ChrootDirectory " << chroot << "\nLogLevel ERROR\n";
  std::unique_ptr<Sshd> d(new Sshd);
  d->port_ = port;
  d->client_key_ = client_key;
  d->host_key_pub_ = host_key + ".pub";
  const std::string log = config_dir + "/sshd.log";
  std::fflush(nullptr);
  d->pid_ = fork();
  if (d->pid_ == 0) {
    execl("/usr/sbin/sshd", "/usr/sbin/sshd", "-D", "-f", conf.c_str(), "-E", log.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 300 && !proc::CanConnectLoopback(port); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (waitpid(d->pid_, nullptr, WNOHANG) == d->pid_) {
      d->pid_ = -1;
      return Fail(Error::Code::kInternal,
                  "sshd exited at start: " + ReadFileText(log).value_or("(no log)"));
    }
  }
  if (!proc::CanConnectLoopback(port))
    return Fail(Error::Code::kInternal, "sshd did not start listening");
  return d;
}

void Sshd::DropConnections() {
  if (pid_ <= 0) return;
  const std::string cmd = "pkill -KILL -P " + std::to_string(pid_);
  (void)std::system(cmd.c_str());
}

void Sshd::FreezeConnections(bool frozen) {
  if (pid_ <= 0) return;
  // Each connection is a child of the listener (the privileged monitor) with a child of its own
  // (the session, where internal-sftp runs): every descendant, found through /proc.
  std::vector<pid_t> tree{pid_};
  for (size_t i = 0; i < tree.size(); ++i) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
      const std::string name = e.path().filename().string();
      if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream stat(e.path() / "stat");
      std::string line;
      std::getline(stat, line);
      // pid (comm) state ppid ...: comm may hold spaces and parentheses, so read after the last
      // ')'.
      const size_t close = line.rfind(')');
      if (close == std::string::npos) continue;
      std::istringstream rest(line.substr(close + 1));
      char state = 0;
      pid_t ppid = 0;
      rest >> state >> ppid;
      if (ppid == tree[i]) tree.push_back(static_cast<pid_t>(std::stoi(name)));
    }
  }
  for (size_t i = 1; i < tree.size(); ++i) kill(tree[i], frozen ? SIGSTOP : SIGCONT);
}

Sshd::~Sshd() {
  FreezeConnections(false);  // a stopped process would outlive its listener
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
  }
}

}  // namespace medstream::sftp

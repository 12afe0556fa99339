// Starts OpenSSH's sshd for medstream's SFTP transport, as the demo and the tests need it: a
// generated host key and client key, internal-sftp chrooted to the server directory, key
// authentication only, no shell, only Unix-socket forwarding (to the enclave relay), listening on
// a loopback port. Stopped on destruction.
//
// OpenSSH requires every component of the chroot path to be owned by root and not writable by
// group or others (so not under /tmp); sshd itself must run as root.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "common/base/result.h"

namespace medstream::sftp {

class Sshd {
 public:
  // `config_dir` receives the keys, sshd_config and the log; `chroot` is what SFTP clients see.
  static Result<std::unique_ptr<Sshd>> Start(const std::string& config_dir,
                                             const std::string& chroot, int port);
  ~Sshd();
  int port() const { return port_; }
  const std::string& client_key() const { return client_key_; }      // private key for the gateway
  const std::string& host_key_pub() const { return host_key_pub_; }  // to pin
  // Ends every open SSH connection (their sshd processes, children of the listener), as a server
  // reboot or a network outage would; the listener goes on accepting new ones.
  void DropConnections();
  // Stops (SIGSTOP) or resumes (SIGCONT) every open connection's processes, the listener left
  // running: a server that stops answering in the middle of a connection, as a hung or hostile one
  // does.
  void FreezeConnections(bool frozen);

 private:
  Sshd() = default;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string client_key_, host_key_pub_;
};

}  // namespace medstream::sftp

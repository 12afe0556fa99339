// sftp: the gateway's link to a remote server over SSH (libssh client to OpenSSH's internal-sftp):
// key-based authentication, the server's host key pinned (SHA-256), atomic uploads (temp name,
// then rename) and downloads; plus an edge-call channel to the server's enclave relay socket
// through the same SSH connection (direct-streamlocal forwarding). The server is untrusted: no step
// waits for it longer than Target::timeout_s (kDeadlineExceeded; the client is then dead and a new
// one must connect), and nothing larger than the caller's limit is read. Thread-safe: a client's
// calls take turns (libssh sessions are not thread-safe).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/crypto/crypto.h"
#include "host/server/transport.h"

namespace medstream::sftp {

struct Target {
  std::string host = "127.0.0.1";
  int port = 22;
  std::string user = "root";
  std::string private_key;  // path (OpenSSH format)
  std::string host_key;     // path of the server's public host key to pin
  // The longest one step waits for the server (connecting, each read or write of a transfer, each
  // answer of the relay): a server that stops answering (hung, cut off without a reset, or hostile:
  // it is untrusted) costs a call this long, kDeadlineExceeded, not the caller's thread for ever.
  int timeout_s = 30;
};

class Client {
 public:
  static Result<std::unique_ptr<Client>> Connect(const Target& target);
  ~Client();

  // Writes `dir/.name.part`, then renames it to `dir/name`.
  Status Upload(const std::string& dir, const std::string& name, crypto::ByteView data);
  // NotFound when there is no such file.
  // Refuses (kResourceExhausted) a file larger than `max_bytes`: the server is untrusted.
  Result<crypto::Bytes> Download(const std::string& path, uint64_t max_bytes);
  // Edge calls to the server's relay socket (an absolute path on the server). The transport keeps
  // the connection open while it lives, past this client's end; its calls take turns with the
  // client's.
  Result<std::unique_ptr<host::EnclaveTransport>> OpenRelay(const std::string& socket_path);

 private:
  Client() = default;
  struct Impl;
  std::shared_ptr<Impl> impl_;  // shared with the relay transports (OpenRelay)
};

}  // namespace medstream::sftp

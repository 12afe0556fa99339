#include "adapters/sftp/sftp.h"

#include <fcntl.h>
#include <libssh/libssh.h>
#include <libssh/sftp.h>

#include <cstring>
#include <mutex>

#include "common/abi/edge.h"

namespace medstream::sftp {

namespace {

std::string SshError(ssh_session s) {
  return ssh_get_error(s);
}

Result<std::vector<uint8_t>> KeyHash(ssh_key key) {
  unsigned char* hash = nullptr;
  size_t len = 0;
  if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &len) != 0) {
    return Fail(Error::Code::kInternal, "cannot hash an SSH key");
  }
  std::vector<uint8_t> out(hash, hash + len);
  ssh_clean_pubkey_hash(&hash);
  return out;
}

// Edge frames over an SSH channel to the server's relay socket.
class ChannelTransport : public host::EnclaveTransport {
 public:
  ChannelTransport(ssh_channel channel, std::mutex* mu) : channel_(channel), mu_(mu) {}
  ~ChannelTransport() override {
    std::lock_guard lock(*mu_);
    ssh_channel_send_eof(channel_);
    ssh_channel_close(channel_);
    ssh_channel_free(channel_);
  }
  Result<crypto::Bytes> Call(enclave::Call call, crypto::ByteView request) override {
    std::lock_guard lock(*mu_);
    uint8_t header[enclave::kFrameHeaderSize];
    enclave::EncodeFrameHeader(true, static_cast<uint16_t>(call), request.size(), header);
    if (!Write(header, sizeof header) || !Write(request.data(), request.size()) ||
        !Read(header, sizeof header)) {
      return Fail(Error::Code::kIo, "the SSH channel to the enclave relay closed");
    }
    MEDSTREAM_TRY(h, enclave::DecodeFrameHeader(false, header));
    if (h.length > 256 * 1024) return Corrupt("relay response too large");
    crypto::Bytes payload(h.length);
    if (!Read(payload.data(), payload.size())) {
      return Fail(Error::Code::kIo, "the SSH channel to the enclave relay closed");
    }
    if (h.call_or_status != 0) {
      return std::unexpected(
          enclave::ErrorFromStatus(h.call_or_status, std::string(payload.begin(), payload.end())));
    }
    return payload;
  }
  std::string_view backend() const override { return "relay over ssh"; }

 private:
  bool Write(const uint8_t* p, size_t n) {
    while (n > 0) {
      const int w = ssh_channel_write(channel_, p, static_cast<uint32_t>(n));
      if (w <= 0) return false;
      p += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }
  bool Read(uint8_t* p, size_t n) {
    while (n > 0) {
      const int r = ssh_channel_read(channel_, p, static_cast<uint32_t>(n), 0);
      if (r <= 0) return false;
      p += r;
      n -= static_cast<size_t>(r);
    }
    return true;
  }
  ssh_channel channel_;
  std::mutex* mu_;
};

}  // namespace

struct Client::Impl {
  ssh_session session = nullptr;
  sftp_session sftp = nullptr;
  std::mutex mu;  // libssh sessions are not thread-safe
};

Result<std::unique_ptr<Client>> Client::Connect(const Target& t) {
  std::unique_ptr<Client> c(new Client);
  c->impl_ = std::make_unique<Impl>();
  Impl& i = *c->impl_;
  i.session = ssh_new();
  if (!i.session) return Fail(Error::Code::kInternal, "ssh_new failed");
  const unsigned int port = static_cast<unsigned int>(t.port);
  const int no = 0;
  ssh_options_set(i.session, SSH_OPTIONS_HOST, t.host.c_str());
  ssh_options_set(i.session, SSH_OPTIONS_PORT, &port);
  ssh_options_set(i.session, SSH_OPTIONS_USER, t.user.c_str());
  ssh_options_set(i.session, SSH_OPTIONS_PROCESS_CONFIG, &no);
  if (ssh_connect(i.session) != SSH_OK) {
    return Fail(Error::Code::kNotFound, "cannot connect to the SFTP server " + t.host + ":" +
                                            std::to_string(t.port) + ": " + SshError(i.session));
  }
  // Pin the host key before anything is sent: the expected key comes from the operator.
  ssh_key expected = nullptr;
  if (ssh_pki_import_pubkey_file(t.host_key.c_str(), &expected) != SSH_OK) {
    return InvalidArgument("cannot read the pinned host key " + t.host_key);
  }
  ssh_key offered = nullptr;
  ssh_get_server_publickey(i.session, &offered);
  auto want = KeyHash(expected);
  auto got = offered ? KeyHash(offered) : Result<std::vector<uint8_t>>(Corrupt("no host key"));
  ssh_key_free(expected);
  ssh_key_free(offered);
  if (!want || !got || *want != *got) {
    return Fail(Error::Code::kFailedPrecondition,
                "the SFTP server's host key is not the pinned one (" + t.host_key +
                    "): refusing to connect (possible man in the middle)");
  }
  ssh_key key = nullptr;
  if (ssh_pki_import_privkey_file(t.private_key.c_str(), nullptr, nullptr, nullptr, &key) !=
      SSH_OK) {
    return InvalidArgument("cannot read the SSH private key " + t.private_key);
  }
  const int auth = ssh_userauth_publickey(i.session, nullptr, key);
  ssh_key_free(key);
  if (auth != SSH_AUTH_SUCCESS) {
    return Fail(Error::Code::kFailedPrecondition,
                "SSH key authentication as " + t.user + " refused: " + SshError(i.session));
  }
  i.sftp = sftp_new(i.session);
  if (!i.sftp || sftp_init(i.sftp) != SSH_OK) {
    return Fail(Error::Code::kIo, "SFTP subsystem failed: " + SshError(i.session));
  }
  return c;
}

Client::~Client() {
  if (!impl_) return;
  if (impl_->sftp) sftp_free(impl_->sftp);
  if (impl_->session) {
    ssh_disconnect(impl_->session);
    ssh_free(impl_->session);
  }
}

Status Client::Upload(const std::string& dir, const std::string& name, crypto::ByteView data) {
  std::lock_guard lock(impl_->mu);
  const std::string part = dir + "/." + name + ".part";
  sftp_file f = sftp_open(impl_->sftp, part.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (!f) return IoError("SFTP cannot create " + part + ": " + SshError(impl_->session));
  size_t off = 0;
  while (off < data.size()) {
    const size_t n = std::min<size_t>(data.size() - off, 32 * 1024);
    const ssize_t w = sftp_write(f, data.data() + off, n);
    if (w <= 0) {
      sftp_close(f);
      return IoError("SFTP write to " + part + " failed: " + SshError(impl_->session));
    }
    off += static_cast<size_t>(w);
  }
  if (sftp_close(f) != SSH_OK) return IoError("SFTP close of " + part + " failed");
  const std::string final_path = dir + "/" + name;
  if (sftp_rename(impl_->sftp, part.c_str(), final_path.c_str()) != SSH_OK) {
    return IoError("SFTP rename to " + final_path + " failed: " + SshError(impl_->session));
  }
  return {};
}

Result<crypto::Bytes> Client::Download(const std::string& path, uint64_t max_bytes) {
  std::lock_guard lock(impl_->mu);
  sftp_file f = sftp_open(impl_->sftp, path.c_str(), O_RDONLY, 0);
  if (!f) {
    if (sftp_get_error(impl_->sftp) == SSH_FX_NO_SUCH_FILE) return NotFound(path);
    return IoError("SFTP cannot open " + path + ": " + SshError(impl_->session));
  }
  crypto::Bytes out;
  uint8_t buf[32 * 1024];
  for (;;) {
    const ssize_t n = sftp_read(f, buf, sizeof buf);
    if (n < 0) {
      sftp_close(f);
      return IoError("SFTP read of " + path + " failed");
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      sftp_close(f);
      return ResourceExhausted("SFTP " + path + " is larger than the limit of " +
                               std::to_string(max_bytes) + " bytes");
    }
    out.insert(out.end(), buf, buf + n);
  }
  sftp_close(f);
  return out;
}

Result<std::unique_ptr<host::EnclaveTransport>> Client::OpenRelay(const std::string& socket_path) {
  std::lock_guard lock(impl_->mu);
  ssh_channel ch = ssh_channel_new(impl_->session);
  if (!ch || ssh_channel_open_forward_unix(ch, socket_path.c_str(), "127.0.0.1", 0) != SSH_OK) {
    const std::string why = SshError(impl_->session);
    if (ch) ssh_channel_free(ch);
    return Fail(Error::Code::kNotFound,
                "cannot reach the enclave relay " + socket_path + " over SSH: " + why);
  }
  return std::unique_ptr<host::EnclaveTransport>(
      std::make_unique<ChannelTransport>(ch, &impl_->mu));
}

}  // namespace medstream::sftp

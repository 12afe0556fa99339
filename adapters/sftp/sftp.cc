#include "adapters/sftp/sftp.h"

#include <fcntl.h>
#include <libssh/libssh.h>
#include <libssh/sftp.h>

#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/abi/edge.h"

namespace medstream::sftp {

namespace {

std::string SshError(ssh_session s) {
  return ssh_get_error(s);
}

// Connecting, where libssh gives up itself after SSH_OPTIONS_TIMEOUT: a failure once the timeout
// has passed is the server not answering, kDeadlineExceeded, which a caller can tell from a
// refusal (the link is down, and another try would wait as long). libssh says so only in words.
class Deadline {
 public:
  explicit Deadline(int timeout_s)
      : start_(std::chrono::steady_clock::now()), timeout_(std::chrono::seconds(timeout_s)) {}
  std::unexpected<Error> Failed(Error::Code code, std::string message) const {
    if (std::chrono::steady_clock::now() - start_ >= timeout_) {
      return Fail(Error::Code::kDeadlineExceeded, message + " (no answer from the server within " +
                                                      std::to_string(timeout_.count()) + " s)");
    }
    return Fail(code, std::move(message));
  }

 private:
  std::chrono::steady_clock::time_point start_;
  std::chrono::seconds timeout_;
};

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

// Edge frames over an SSH channel to the server's relay socket. `mu` shares ownership of the
// client's connection (aliasing its Impl): the channel lives in the session, and the gateway's link
// drops its client after a failed call and connects afresh, while a relay opened before may still
// be held. Before, the transport kept a bare pointer to the session's mutex and a channel the
// session freed with it: any call or its destruction after the drop used freed memory. Now the
// session lives until its last transport goes, and a call on a dead one fails with kIo.
class ChannelTransport : public host::EnclaveTransport {
 public:
  ChannelTransport(ssh_channel channel, std::shared_ptr<std::mutex> mu, int timeout_s)
      : channel_(channel), mu_(std::move(mu)), timeout_ms_(timeout_s * 1000) {}
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
      return Fail(timed_out_ ? Error::Code::kDeadlineExceeded : Error::Code::kIo,
                  timed_out_ ? "the enclave relay did not answer over SSH within " +
                                   std::to_string(timeout_ms_ / 1000) + " s"
                             : "the SSH channel to the enclave relay closed");
    }
    MEDSTREAM_TRY(h, enclave::DecodeFrameHeader(false, header));
    if (h.length > 256 * 1024) return Corrupt("relay response too large");
    crypto::Bytes payload(h.length);
    if (!Read(payload.data(), payload.size())) {
      return Fail(timed_out_ ? Error::Code::kDeadlineExceeded : Error::Code::kIo,
                  "the SSH channel to the enclave relay closed or went quiet mid-answer");
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
    timed_out_ = false;
    while (n > 0) {
      // Each read waits at most the timeout; 0 bytes with the channel still open is a timeout.
      const int r = ssh_channel_read_timeout(channel_, p, static_cast<uint32_t>(n), 0, timeout_ms_);
      if (r == 0 && !ssh_channel_is_eof(channel_) && ssh_channel_is_open(channel_)) {
        timed_out_ = true;
        return false;
      }
      if (r <= 0) return false;
      p += r;
      n -= static_cast<size_t>(r);
    }
    return true;
  }
  ssh_channel channel_;
  std::shared_ptr<std::mutex> mu_;  // keeps the session (and so channel_) alive
  const int timeout_ms_;
  bool timed_out_ = false;  // under *mu_: the last Read gave up waiting
};

// Gives up on a server that stops answering in the middle of a transfer. libssh's SFTP calls wait
// for each answer without a limit in blocking mode (SSH_OPTIONS_TIMEOUT covers connecting only),
// so when a step (one request and its answer) passes the timeout, this thread shuts the socket
// down, which ends the blocked call with an error. The connection is dead after that; the caller
// connects again. Thread-safe.
class Watchdog {
 public:
  explicit Watchdog(int timeout_s)
      : timeout_(std::chrono::seconds(timeout_s)), thread_([this] { Run(); }) {}
  ~Watchdog() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  // A step on socket `fd` begins: it has the timeout from now.
  void Arm(int fd) {
    std::lock_guard lock(mu_);
    fd_ = fd;
    deadline_ = std::chrono::steady_clock::now() + timeout_;
    armed_ = true;
    cv_.notify_all();
  }
  void Disarm() {
    std::lock_guard lock(mu_);
    armed_ = false;
  }
  bool fired() const {
    std::lock_guard lock(mu_);
    return fired_;
  }
  int timeout_s() const { return static_cast<int>(timeout_.count()); }

 private:
  void Run() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      if (!armed_) {
        cv_.wait(lock);
        continue;
      }
      cv_.wait_until(lock, deadline_);
      if (armed_ && !stop_ && std::chrono::steady_clock::now() >= deadline_) {
        if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);
        fired_ = true;
        armed_ = false;
      }
    }
  }
  const std::chrono::seconds timeout_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int fd_ = -1;
  std::chrono::steady_clock::time_point deadline_{};
  bool armed_ = false, fired_ = false, stop_ = false;
  std::thread thread_;  // last: started once the members above exist
};

// The error of a step that failed: kDeadlineExceeded if the watchdog gave it up.
std::unexpected<Error> StepFailed(const Watchdog& w, std::string message) {
  if (w.fired()) {
    return Fail(Error::Code::kDeadlineExceeded, message + " (no answer from the server within " +
                                                    std::to_string(w.timeout_s()) +
                                                    " s; the connection is given up)");
  }
  return IoError(std::move(message));
}

}  // namespace

// Shared by the client and the relay transports it opened; the last of them closes the session.
struct Client::Impl {
  ~Impl() {
    if (sftp) sftp_free(sftp);
    if (session) {
      ssh_disconnect(session);
      ssh_free(session);
    }
  }
  ssh_session session = nullptr;
  sftp_session sftp = nullptr;
  int timeout_s = 30;
  std::unique_ptr<Watchdog> watchdog;
  std::mutex mu;  // libssh sessions are not thread-safe
};

Result<std::unique_ptr<Client>> Client::Connect(const Target& t) {
  std::unique_ptr<Client> c(new Client);
  c->impl_ = std::make_shared<Impl>();
  Impl& i = *c->impl_;
  i.session = ssh_new();
  if (!i.session) return Fail(Error::Code::kInternal, "ssh_new failed");
  const unsigned int port = static_cast<unsigned int>(t.port);
  const int no = 0;
  ssh_options_set(i.session, SSH_OPTIONS_HOST, t.host.c_str());
  ssh_options_set(i.session, SSH_OPTIONS_PORT, &port);
  ssh_options_set(i.session, SSH_OPTIONS_USER, t.user.c_str());
  ssh_options_set(i.session, SSH_OPTIONS_PROCESS_CONFIG, &no);
  // libssh's blocking calls (connecting, and every SFTP request's answer) wait this long at most.
  const long timeout = std::max(1, t.timeout_s);
  i.timeout_s = static_cast<int>(timeout);
  ssh_options_set(i.session, SSH_OPTIONS_TIMEOUT, &timeout);
  const Deadline deadline(i.timeout_s);
  if (ssh_connect(i.session) != SSH_OK) {
    return deadline.Failed(Error::Code::kNotFound, "cannot connect to the SFTP server " + t.host +
                                                       ":" + std::to_string(t.port) + ": " +
                                                       SshError(i.session));
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
  i.watchdog = std::make_unique<Watchdog>(i.timeout_s);
  i.sftp = sftp_new(i.session);
  if (!i.sftp || sftp_init(i.sftp) != SSH_OK) {
    return deadline.Failed(Error::Code::kIo, "SFTP subsystem failed: " + SshError(i.session));
  }
  return c;
}

Client::~Client() = default;

Status Client::Upload(const std::string& dir, const std::string& name, crypto::ByteView data) {
  std::lock_guard lock(impl_->mu);
  Watchdog& w = *impl_->watchdog;
  if (w.fired()) return IoError("the SFTP connection was given up after a time-out");
  const int fd = ssh_get_fd(impl_->session);
  const std::string part = dir + "/." + name + ".part";
  w.Arm(fd);
  sftp_file f = sftp_open(impl_->sftp, part.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (!f) {
    w.Disarm();
    return StepFailed(w, "SFTP cannot create " + part + ": " + SshError(impl_->session));
  }
  size_t off = 0;
  while (off < data.size()) {
    const size_t n = std::min<size_t>(data.size() - off, 32 * 1024);
    w.Arm(fd);  // each write waits for its own answer
    const ssize_t w_n = sftp_write(f, data.data() + off, n);
    if (w_n <= 0) {
      w.Disarm();
      // Not sftp_close: it would wait for an answer the server may never give.
      return StepFailed(w, "SFTP write to " + part + " failed: " + SshError(impl_->session));
    }
    off += static_cast<size_t>(w_n);
  }
  w.Arm(fd);
  const bool closed = sftp_close(f) == SSH_OK;
  const std::string final_path = dir + "/" + name;
  const bool renamed =
      closed && (w.Arm(fd), sftp_rename(impl_->sftp, part.c_str(), final_path.c_str()) == SSH_OK);
  w.Disarm();
  if (!closed) return StepFailed(w, "SFTP close of " + part + " failed");
  if (!renamed) {
    return StepFailed(w, "SFTP rename to " + final_path + " failed: " + SshError(impl_->session));
  }
  return {};
}

Result<crypto::Bytes> Client::Download(const std::string& path, uint64_t max_bytes) {
  std::lock_guard lock(impl_->mu);
  Watchdog& w = *impl_->watchdog;
  if (w.fired()) return IoError("the SFTP connection was given up after a time-out");
  const int fd = ssh_get_fd(impl_->session);
  w.Arm(fd);
  sftp_file f = sftp_open(impl_->sftp, path.c_str(), O_RDONLY, 0);
  if (!f) {
    w.Disarm();
    if (sftp_get_error(impl_->sftp) == SSH_FX_NO_SUCH_FILE) return NotFound(path);
    return StepFailed(w, "SFTP cannot open " + path + ": " + SshError(impl_->session));
  }
  crypto::Bytes out;
  uint8_t buf[32 * 1024];
  for (;;) {
    w.Arm(fd);  // each read waits for its own answer
    const ssize_t n = sftp_read(f, buf, sizeof buf);
    if (n < 0) {
      w.Disarm();
      // Not sftp_close: it would wait for an answer the server may never give.
      return StepFailed(w, "SFTP read of " + path + " failed");
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > max_bytes) {
      sftp_close(f);
      w.Disarm();
      return ResourceExhausted("SFTP " + path + " is larger than the limit of " +
                               std::to_string(max_bytes) + " bytes");
    }
    out.insert(out.end(), buf, buf + n);
  }
  sftp_close(f);
  w.Disarm();
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
  return std::unique_ptr<host::EnclaveTransport>(std::make_unique<ChannelTransport>(
      ch, std::shared_ptr<std::mutex>(impl_, &impl_->mu), impl_->timeout_s));
}

}  // namespace medstream::sftp

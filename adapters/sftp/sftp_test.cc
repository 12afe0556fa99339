// The SFTP link against a real OpenSSH sshd: uploads and downloads inside the chroot, the enclave
// relay through the SSH connection, and refusal of an unexpected host key or client key.
#include "adapters/sftp/sftp.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <future>
#include <thread>

#include "adapters/proc/proc.h"
#include "adapters/sftp/sshd.h"
#include "common/abi/edge.h"
#include "common/base/fdio.h"
#include "common/base/file.h"
#include "owner/gateway/gateway.h"
#include "tests/wait.h"

namespace medstream::sftp {
namespace {

namespace fs = std::filesystem;

class SftpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The chroot must be root-owned all the way up: not under /tmp.
    base_ = "/var/lib/medstream-test-" + std::to_string(getpid());
    fs::remove_all(base_);
    ASSERT_TRUE(MakeDirs(base_ + "/server/inbox", 0755));
    ASSERT_TRUE(MakeDirs(base_ + "/server/outbox", 0755));
    auto d = Sshd::Start(base_ + "/ssh", base_ + "/server", proc::FreeLoopbackPort());
    ASSERT_TRUE(d.has_value()) << d.error().message();
    sshd_ = std::move(*d);
  }
  void TearDown() override {
    sshd_.reset();
    fs::remove_all(base_);
  }
  Target Good() const {
    return {.host = "127.0.0.1",
            .port = sshd_->port(),
            .user = "root",
            .private_key = sshd_->client_key(),
            .host_key = sshd_->host_key_pub()};
  }
  std::string base_;
  std::unique_ptr<Sshd> sshd_;
};

TEST_F(SftpTest, AtomicUploadAndDownloadInsideTheChroot) {
  auto c = Client::Connect(Good());
  ASSERT_TRUE(c.has_value()) << c.error().message();
  const crypto::Bytes data(100000, 0x5a);
  ASSERT_TRUE((*c)->Upload("/inbox", "b.batch", data));
  EXPECT_EQ(*ReadFileBytes(base_ + "/server/inbox/b.batch"), data);
  EXPECT_FALSE(FileExists(base_ + "/server/inbox/.b.batch.part"));
  ASSERT_TRUE(WriteFileAtomic(base_ + "/server/outbox/r.result", std::string_view("result")));
  EXPECT_EQ((*c)->Download("/outbox/r.result", 1 << 20)->size(), 6u);
  auto missing = (*c)->Download("/outbox/none.result", 1 << 20);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code(), Error::Code::kNotFound);
  // The server is untrusted: a file over the caller's limit is refused, not read into memory.
  auto big = (*c)->Download("/outbox/r.result", 5);
  ASSERT_FALSE(big.has_value());
  EXPECT_EQ(big.error().code(), Error::Code::kResourceExhausted);
  // The chroot: the server's real paths are not reachable.
  EXPECT_FALSE((*c)->Download("/etc/passwd", 1 << 20).has_value());
}

TEST_F(SftpTest, AnUnexpectedHostKeyOrClientKeyIsRefused) {
  Target wrong_host = Good();
  wrong_host.host_key = base_ + "/ssh/gateway_ed25519.pub";  // some other key
  auto c = Client::Connect(wrong_host);
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().code(), Error::Code::kFailedPrecondition);
  const std::string other = base_ + "/ssh/intruder";
  ASSERT_EQ(std::system(("ssh-keygen -q -t ed25519 -N '' -f " + other).c_str()), 0);
  Target wrong_client = Good();
  wrong_client.private_key = other;
  c = Client::Connect(wrong_client);
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().code(), Error::Code::kFailedPrecondition);
}

// A server that stops answering in the middle of a connection (hung, cut off without a reset, or
// hostile: it is untrusted), or a port that takes connections and never answers: each call gives
// up after the target's timeout with kDeadlineExceeded. libssh without a timeout waited for ever,
// and with it the gateway's tick: every user's cuts, uploads and results.
TEST_F(SftpTest, AServerThatStopsAnsweringCostsACallItsTimeoutNotTheCallersThread) {
  Target t = Good();
  t.timeout_s = 2;
  auto up = Client::Connect(t);
  auto down = Client::Connect(t);
  ASSERT_TRUE(up && down);
  const crypto::Bytes data(100000, 0x5a);
  ASSERT_TRUE((*up)->Upload("/inbox", "a.batch", data));
  ASSERT_TRUE(WriteFileAtomic(base_ + "/server/outbox/r.result", std::string_view("result")));
  sshd_->FreezeConnections(true);
  auto upload =
      std::async(std::launch::async, [&] { return (*up)->Upload("/inbox", "b.batch", data); });
  auto download = std::async(std::launch::async,
                             [&] { return (*down)->Download("/outbox/r.result", 1 << 20); });
  const bool ended = upload.wait_for(std::chrono::seconds(30)) == std::future_status::ready &&
                     download.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  sshd_->FreezeConnections(false);  // a call that never gave up ends now, and the test with it
  ASSERT_TRUE(ended) << "a call waited for a server that does not answer";
  const Status u = upload.get();
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code(), Error::Code::kDeadlineExceeded) << u.error().message();
  const auto d = download.get();
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code(), Error::Code::kDeadlineExceeded) << d.error().message();

  // A port that takes connections (the kernel's backlog) and never says a word.
  const int mute = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(mute, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(mute, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(mute, 4), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(mute, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  t.port = ntohs(addr.sin_port);
  auto connect = std::async(std::launch::async, [&] { return Client::Connect(t); });
  const bool connected_or_not =
      connect.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
  close(mute);  // a connect still waiting sees the end of the stream now
  ASSERT_TRUE(connected_or_not) << "connecting waited for a port that never answers";
  const auto c = connect.get();
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code(), Error::Code::kDeadlineExceeded) << c.error().message();
}

}  // namespace
}  // namespace medstream::sftp

namespace medstream::sftp {
namespace {

// The gateway's SFTP link outlives its connection: after the server drops every SSH connection
// (a reboot, an outage), the call that finds it dead fails (the batch stays spooled) and a later
// one connects again, instead of every upload failing until the gateway restarts.
TEST_F(SftpTest, TheGatewaysLinkReconnectsAfterTheServerDropsIt) {
  auto link = gateway::SftpLink(Good(), "/enclave.sock");
  ASSERT_TRUE(link) << link.error().message();
  const crypto::Bytes data(1000, 0x11);
  ASSERT_TRUE((*link)->Upload("before.batch", data));
  sshd_->DropConnections();
  // The gateway retries a spooled batch on every tick; the link connects again at most every 2 s.
  ASSERT_TRUE(
      testing::WaitFor([&] { return (*link)->Upload("after.batch", data).has_value(); }, 10))
      << "the link did not reconnect within 10 s";
  EXPECT_EQ(*ReadFileBytes(base_ + "/server/inbox/after.batch"), data);
  ASSERT_TRUE(WriteFileAtomic(base_ + "/server/outbox/r.result", std::string_view("result")));
  EXPECT_EQ((*link)->ReadResult("r.result")->size(), 6u);
}

}  // namespace
}  // namespace medstream::sftp

namespace medstream::sftp {
namespace {

// A relay socket on the server's side that answers every request with an empty success, on each
// connection until its peer goes.
class AnsweringRelay {
 public:
  explicit AnsweringRelay(const std::string& path) : listen_fd_(socket(AF_UNIX, SOCK_STREAM, 0)) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    path.copy(a.sun_path, sizeof a.sun_path - 1);
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(listen_fd_, 4), 0);
    accept_ = std::thread([this] {
      for (int fd; (fd = accept(listen_fd_, nullptr, nullptr)) >= 0;) {
        std::lock_guard lock(mu_);
        fds_.push_back(fd);
        peers_.emplace_back([fd] { Answer(fd); });
      }
    });
  }
  ~AnsweringRelay() {
    shutdown(listen_fd_, SHUT_RDWR);  // ends the accept
    accept_.join();
    std::lock_guard lock(mu_);
    for (int fd : fds_) shutdown(fd, SHUT_RDWR);
    for (std::thread& t : peers_) t.join();
    for (int fd : fds_) close(fd);
    close(listen_fd_);
  }

 private:
  static void Answer(int fd) {
    uint8_t header[enclave::kFrameHeaderSize];
    while (ReadFull(fd, header, sizeof header)) {
      auto h = enclave::DecodeFrameHeader(true, header);
      if (!h || h->length > 4096) return;
      std::vector<uint8_t> request(h->length);
      if (!ReadFull(fd, request.data(), request.size())) return;
      enclave::EncodeFrameHeader(false, 0, 0, header);
      if (!WriteFull(fd, header, sizeof header)) return;
    }
  }
  const int listen_fd_;
  std::mutex mu_;
  std::vector<int> fds_;
  std::vector<std::thread> peers_;
  std::thread accept_;
};

// The gateway's link drops its SSH connection after a failed call and connects afresh, while a
// relay transport opened on the old connection may still be held. The transport kept bare
// pointers into the old client's session (its mutex, its channel), which the drop freed: its next
// call, or its destruction, used freed memory (AddressSanitizer: heap-use-after-free). It now
// keeps that connection alive, and its call fails like a call on any dead connection.
TEST_F(SftpTest, ARelayHeldAcrossTheLinksReconnectFailsItsCallsAndFreesNothingTwice) {
  AnsweringRelay relay(base_ + "/server/relay.sock");
  // The relay is named by its path on the server's host, as the gateway names enclave.sock.
  auto link = gateway::SftpLink(Good(), base_ + "/server/relay.sock");
  ASSERT_TRUE(link) << link.error().message();
  auto before = (*link)->Relay();
  ASSERT_TRUE(before) << before.error().message();
  auto answered = (*before)->Call(enclave::Call::kStats, crypto::ByteView());
  ASSERT_TRUE(answered) << answered.error().message();
  EXPECT_TRUE(answered->empty());

  sshd_->DropConnections();
  const crypto::Bytes data(1000, 0x11);
  ASSERT_TRUE(
      testing::WaitFor([&] { return (*link)->Upload("after.batch", data).has_value(); }, 10))
      << "the link did not reconnect within 10 s";
  auto on_dead = (*before)->Call(enclave::Call::kStats, crypto::ByteView());
  ASSERT_FALSE(on_dead);
  EXPECT_EQ(on_dead.error().code(), Error::Code::kIo) << on_dead.error().message();
  before->reset();  // the old connection goes with its last user

  auto after = (*link)->Relay();
  ASSERT_TRUE(after) << after.error().message();
  EXPECT_TRUE((*after)->Call(enclave::Call::kStats, crypto::ByteView()));
}

}  // namespace
}  // namespace medstream::sftp

// The edge transport over a relay's socket (a server's enclave.sock, a lake host's TCP port): the
// peer is an untrusted server, so a call waits for its answer within a budget, not for ever. And
// the relay's serving side (ServeListener): its peers are untrusted too, so what a connection, or
// many, may cost it is bounded.
#include "host/server/transport.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>

#include "common/abi/edge.h"
#include "common/base/fdio.h"
#include "tests/wait.h"

namespace medstream::host {
namespace {

// A relay that reads one request and then answers as `answer` says (or not at all).
class FakeRelay {
 public:
  explicit FakeRelay(std::function<void(int fd)> answer) {
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    client_fd_ = sv[0];
    peer_ = std::thread([fd = sv[1], answer = std::move(answer)] {
      uint8_t header[enclave::kFrameHeaderSize];
      if (ReadFull(fd, header, sizeof header)) {
        auto h = enclave::DecodeFrameHeader(true, header);
        std::vector<uint8_t> request(h ? h->length : 0);
        if (ReadFull(fd, request.data(), request.size())) answer(fd);
      }
      // Held open until the client closes its end: the relay never says goodbye either.
      uint8_t byte;
      while (read(fd, &byte, 1) > 0) {
      }
      close(fd);
    });
  }
  ~FakeRelay() { peer_.join(); }
  int client_fd() const { return client_fd_; }

 private:
  int client_fd_ = -1;
  std::thread peer_;
};

// The call on a transport over `relay`, given 20 s to end: a call that never ends fails the test
// (the transport is then leaked with its thread, on purpose: the test is lost anyway).
Result<crypto::Bytes> CallWithin20s(EnclaveTransport* t) {
  auto call = std::async(std::launch::async,
                         [t] { return t->Call(enclave::Call::kStats, crypto::ByteView()); });
  if (call.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    ADD_FAILURE() << "the call waited for a relay that does not answer";
    std::abort();  // the call's thread still holds the transport: nothing else is safe
  }
  return call.get();
}

// A relay that takes the request and never answers: the call ends with kDeadlineExceeded after
// its budget (here a fixed 1 s). A relay transport had no watchdog: the gateway's attestation, or
// an analyst's lake client, waited for ever on a server that chose not to answer.
TEST(RelayTransport, ARelayThatNeverAnswersCostsACallItsBudget) {
  FakeRelay relay([](int) {});
  auto t = MakeSocketTransport(relay.client_fd(), -1, "relay", 1.0);
  const auto r = CallWithin20s(t.get());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), Error::Code::kDeadlineExceeded) << r.error().message();
  t.reset();  // closes the client's end: the relay's thread ends
}

// A relay that begins an answer and stops midway: the call fails once no byte came for the
// budget, instead of blocking in the middle of the answer for ever.
TEST(RelayTransport, ARelayThatStopsMidAnswerFailsTheCall) {
  FakeRelay relay([](int fd) {
    uint8_t header[enclave::kFrameHeaderSize];
    enclave::EncodeFrameHeader(false, 0, 1000, header);
    const uint8_t some[10] = {};
    WriteFull(fd, header, sizeof header);
    WriteFull(fd, some, sizeof some);
  });
  auto t = MakeSocketTransport(relay.client_fd(), -1, "relay", 1.0);
  const auto r = CallWithin20s(t.get());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().code(), Error::Code::kResourceExhausted) << "the request itself went";
  t.reset();
}

// A relay's serving side on a loopback port, answering each request with its own bytes.
class Listener {
 public:
  explicit Listener(const ServeLimits& limits)
      : fd_(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(listen(fd_, 64), 0);
    EXPECT_EQ(getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len), 0);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this, limits] {
      ServeListener(
          fd_, "test relay", limits,
          [this](uint16_t, crypto::ByteView r) -> Result<crypto::Bytes> {
            ++served_;
            return crypto::Bytes(r.begin(), r.end());
          },
          stop_);
    });
  }
  ~Listener() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  // A connected socket (-1 if connecting failed).
  int Connect() const {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port_));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      close(fd);
      return -1;
    }
    const timeval tv{.tv_sec = 10, .tv_usec = 0};  // no read in these tests waits longer
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
  }
  int served() const { return served_; }

 private:
  const int fd_;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> served_{0};
  std::thread thread_;
};

// Whether a request on `fd` is answered with its own bytes.
bool Answered(int fd) {
  const uint8_t body[3] = {1, 2, 3};
  uint8_t header[enclave::kFrameHeaderSize];
  enclave::EncodeFrameHeader(true, 1, sizeof body, header);
  if (!SendFull(fd, header, sizeof header) || !SendFull(fd, body, sizeof body)) return false;
  if (!ReadFull(fd, header, sizeof header)) return false;
  auto h = enclave::DecodeFrameHeader(false, header);
  uint8_t back[3] = {};
  return h && h->call_or_status == 0 && h->length == 3 && ReadFull(fd, back, 3) && back[2] == 3;
}

// Whether a connection made now is served (and then closed).
bool NewConnectionAnswered(const Listener& relay) {
  const int fd = relay.Connect();
  const bool ok = Answered(fd);
  close(fd);
  return ok;
}

// Whether the peer closed `fd` (read sees the end, or a reset), within the socket's 10 s.
bool ClosedByPeer(int fd) {
  uint8_t byte;
  const ssize_t n = read(fd, &byte, 1);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

size_t OpenDescriptors() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

size_t ResidentMiB() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("VmRSS:")) return std::stoul(line.substr(6)) / 1024;
  }
  return 0;
}

// Connections past the limit are closed at once, unserved, and one that ends gives its place (its
// thread joined, its descriptor closed) at once. The lake host's listener (`medstream lake serve`,
// open to the network) kept every connection's thread and descriptor until it stopped, without a
// limit: a thousand connections, over a day or at once, and every accept failed (EMFILE) while
// poll said a connection waited, a loop spinning a core and serving no one.
TEST(RelayServer, ConnectionsPastTheLimitAreRefusedAndEndedOnesGiveTheirPlaceBack) {
  Listener relay({.max_request = 1024, .max_connections = 2});
  const int a = relay.Connect(), b = relay.Connect();
  ASSERT_TRUE(Answered(a));
  ASSERT_TRUE(Answered(b));
  const int c = relay.Connect();
  ASSERT_GE(c, 0);
  EXPECT_TRUE(ClosedByPeer(c)) << "a third connection was served past the limit of 2";
  close(c);
  close(a);
  ASSERT_TRUE(testing::WaitFor([&] { return NewConnectionAnswered(relay); }, 10))
      << "the place of a connection that ended was not given back";
  // Connections that come and go cost nothing that stays. (One may find the place of the one
  // before not yet given back: the server sees its end a moment later. It then tries again.)
  const size_t before = OpenDescriptors();
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(testing::WaitFor([&] { return NewConnectionAnswered(relay); }, 10));
  }
  EXPECT_TRUE(testing::WaitFor([&] { return OpenDescriptors() <= before; }, 10))
      << OpenDescriptors() << " descriptors open after 200 connections came and went, " << before
      << " before";
  close(b);
}

// A request's buffer grows with the bytes that arrive. Each connection allocated the length its
// header claimed (up to 64 MiB on the lake host) before a byte of the request came, zeroed and so
// resident: 8 connections that claim 64 MiB and send 10 bytes held 512 MiB. And a connection that
// stops sending, or never sends, is closed after the limits instead of holding its place for ever.
TEST(RelayServer, ARequestThatClaimsMuchAndSendsLittleCostsWhatArrivedAndIsClosed) {
  Listener relay({.max_request = 64u << 20, .max_connections = 16, .idle_s = 1, .stall_s = 5});
  const size_t before = ResidentMiB();
  std::vector<int> fds;
  for (int i = 0; i < 8; ++i) {
    const int fd = relay.Connect();
    uint8_t header[enclave::kFrameHeaderSize];
    enclave::EncodeFrameHeader(true, 1, 64u << 20, header);
    const uint8_t some[10] = {};
    ASSERT_TRUE(SendFull(fd, header, sizeof header) && SendFull(fd, some, sizeof some));
    fds.push_back(fd);
  }
  // Says nothing: closed after the idle limit (1 s), by when the 8 requests before it have been
  // read as far as they go, and are still waited for (5 s).
  const int quiet = relay.Connect();
  EXPECT_TRUE(ClosedByPeer(quiet)) << "an idle connection was not closed";
  close(quiet);
  const size_t now = ResidentMiB();
  EXPECT_LT(now - std::min(before, now), 64u)
      << "8 requests of 10 bytes that claim 64 MiB each made this process " << now - before
      << " MiB larger";
  for (int fd : fds) {
    EXPECT_TRUE(ClosedByPeer(fd)) << "a request that stopped arriving was not given up";
    close(fd);
  }
  EXPECT_EQ(relay.served(), 0);
}

}  // namespace
}  // namespace medstream::host

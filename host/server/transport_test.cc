// The edge transport over a relay's socket (a server's enclave.sock, a lake host's TCP port): the
// peer is an untrusted server, so a call waits for its answer within a budget, not for ever.
#include "host/server/transport.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <thread>

#include "common/abi/edge.h"
#include "common/base/fdio.h"

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

}  // namespace
}  // namespace medstream::host

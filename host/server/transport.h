// host: the untrusted side's way into an enclave.
//
// An EnclaveTransport carries the calls of common/abi/edge.h and nothing else. Two backends:
//   inproc   the trusted core in this process, called through the same allow-list and caps
//            (host/inproc, linked only by the programs that choose it);
//   process  medstream-enclave, a separate hardened executable, over a socketpair.
// (Vanilla mode has no enclave: see host/server/vanilla.h.) The host only ever moves ciphertext,
// evidence and sealed blobs through here.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "common/abi/edge.h"
#include "common/base/file.h"
#include "common/crypto/crypto.h"

namespace medstream::host {

class EnclaveTransport {
 public:
  virtual ~EnclaveTransport() = default;
  virtual Result<crypto::Bytes> Call(enclave::Call call, crypto::ByteView request) = 0;
  // Call without copies for large payloads. RequestBuffer: memory a request can be built in and
  // sent from in place (the process backend's shared region, untrusted like the socket: the
  // enclave copies what it reads), or empty when the transport has none; valid until the next
  // call. CallView: Call's answer as a view valid until the next call (the shared region's
  // response area, or a buffer of the transport's).
  virtual std::span<uint8_t> RequestBuffer() { return {}; }
  virtual Result<crypto::ByteView> CallView(enclave::Call call, crypto::ByteView request) {
    MEDSTREAM_TRY(answer, Call(call, request));
    answer_ = std::move(answer);
    return crypto::ByteView(answer_);
  }
  // A call whose request is read into the shared region while the enclave already works on it (a
  // batch file: the read overlaps the enclave's wake-up and decryption; edge.h, SharedProgress).
  // `fill` writes the request into the span it is given, calling progress.sized(size) before the
  // first byte (the call is sent then; its error, e.g. a request over the call's cap, stops the
  // fill) and progress.arrived(n) whenever the first n bytes are in place. A fill that fails after
  // sizing is reported to the enclave, whose answer is awaited before fill's error is returned.
  // Only where RequestBuffer() is not empty; kFailedPrecondition elsewhere, without calling fill.
  using Filler = std::function<Status(std::span<uint8_t> dest, const ReadProgress& progress)>;
  virtual Result<crypto::ByteView> CallFilled(enclave::Call call, const Filler& fill) {
    (void)call;
    (void)fill;
    return Fail(Error::Code::kFailedPrecondition, "this enclave transport has no shared region");
  }
  virtual std::string_view backend() const = 0;
  // The enclave's process id (process backend), or -1.
  virtual int pid() const { return -1; }

 private:
  crypto::Bytes answer_;  // CallView's, by default
};

struct EnclaveLaunch;
// Starts the inproc backend (host/inproc: LaunchInproc). Injected by the programs that may run the
// trusted core in their own process, so that the untrusted host itself never links it.
using InprocFactory =
    std::function<Result<std::unique_ptr<EnclaveTransport>>(const EnclaveLaunch&)>;

struct EnclaveLaunch {
  std::string backend = "process";  // "process" or "inproc"
  std::string platform_dir;
  std::string enclave_path;  // process backend; default: medstream-enclave beside this program
  bool debug = false;
  enclave::SealPolicy seal_policy = enclave::SealPolicy::kMrEnclave;
  // Process backend: every call's time budget in seconds; 0 = each call's own (edge.h). Past it the
  // enclave process is killed and the call fails with kDeadlineExceeded. The inproc backend
  // cannot be stopped from outside and has no watchdog.
  double call_budget_s = 0;
  InprocFactory inproc = nullptr;  // the inproc backend, when this program links it
};

// A call's time budget in seconds: `fixed_budget_s` if > 0, else the call's own (edge.h), or 30 s
// for an id that is not a call. The process backend's watchdog ends a call by then.
double CallBudgetS(enclave::Call call, uint64_t request_bytes, double fixed_budget_s = 0);

// "process": medstream-enclave as a child process. "inproc": launch.inproc (kFailedPrecondition
// when this program was not given it).
Result<std::unique_ptr<EnclaveTransport>> LaunchEnclave(const EnclaveLaunch& launch);

// A transport speaking the edge frames over a connected socket (the process backend's socketpair,
// or a server's relay socket). `pid` > 0: the enclave process to reap when the transport closes,
// killed past a call's budget. Otherwise the peer is a relay, an untrusted server: an answer that
// does not begin within the call's budget (edge.h) and kRelaySlackS closes the connection
// (kDeadlineExceeded), and one that stops arriving midway fails after kRelayStallS without
// progress. `fixed_budget_s` > 0 replaces both (tests).
inline constexpr double kRelaySlackS = 10;
inline constexpr double kRelayStallS = 30;
std::unique_ptr<EnclaveTransport> MakeSocketTransport(int fd, int pid, std::string backend,
                                                      double fixed_budget_s = 0);

// The serving side of a relay (a server's enclave.sock, `medstream lake serve`). Its peers are
// untrusted (whoever reaches the socket), so what one connection may cost is bounded.
struct ServeLimits {
  uint64_t max_request = 64 * 1024;  // a larger request closes its connection
  // Served at once; one more is accepted and closed at once, unserved, so that no number of
  // connections exhausts the process's descriptors or threads (the server's batches need them).
  size_t max_connections = 16;
  double idle_s = 300;            // between requests: then the connection is closed
  double stall_s = kRelayStallS;  // without progress inside a request or its answer: closed
};
// Reads request frames from `fd` and answers each with `handler`, until the peer closes, breaks
// a limit or `fd` is shut down. The frames are those of the process backend (edge.h). A request's
// buffer grows with the bytes that arrive, not with the length its header claims.
using FrameHandler = std::function<Result<crypto::Bytes>(uint16_t call, crypto::ByteView request)>;
void ServeFrames(int fd, const ServeLimits& limits, const FrameHandler& handler);
// Accepts on the listening socket `listen_fd` and serves each connection (ServeFrames) on a thread
// of its own, `handler` called from several at once; a connection's thread is joined and its
// descriptor closed as soon as it ends. Returns once `stop` is set (seen within 200 ms) or
// `listen_fd` is shut down, with every connection closed. Says on stderr, at most every 10 s, that
// connections were refused for being over the limit; `name` names the relay in that line.
void ServeListener(int listen_fd, std::string_view name, const ServeLimits& limits,
                   const FrameHandler& handler, const std::atomic<bool>& stop);
// A transport to a relay listening on TCP (`medstream lake serve`).
Result<std::unique_ptr<EnclaveTransport>> ConnectTcp(const std::string& host, int port);

// The default location of medstream-enclave: beside the running executable.
std::string DefaultEnclavePath();

// Typed wrappers over the raw calls.
Result<enclave::EnclaveInfo> GetInfo(EnclaveTransport& t);
Result<enclave::EnclaveStats> GetStats(EnclaveTransport& t);
// The enclave's checkpoint, part by part in order (edge.h, CheckpointPart): `take` is given each
// sealed part (valid during the call) and may refuse it. The version to commit once every part is
// stored durably.
Result<uint64_t> CheckpointEnclave(EnclaveTransport& t,
                                   const std::function<Status(crypto::ByteView sealed)>& take);
// One part of a stored checkpoint, in order: true once it was the last (the state restored).
Result<bool> RestorePart(EnclaveTransport& t, crypto::ByteView sealed);

}  // namespace medstream::host

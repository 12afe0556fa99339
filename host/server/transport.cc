#include "host/server/transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <list>
#include <optional>
#include <system_error>
#include <thread>

#include <fmt/format.h>

#include "common/base/fdio.h"
#include "common/base/file.h"
#include "common/base/log_limit.h"
#include "common/base/memory.h"

namespace medstream::host {

namespace {

// Reads and writes on `fd` give up (EAGAIN) after `stall_s` without progress.
void SetStallTimeouts(int fd, double stall_s) {
  const timeval tv{.tv_sec = static_cast<time_t>(stall_s),
                   .tv_usec = static_cast<suseconds_t>((stall_s - std::floor(stall_s)) * 1e6)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

class SocketTransport : public EnclaveTransport {
 public:
  SocketTransport(pid_t pid, int fd, std::string backend, uint8_t* shared = nullptr,
                  double fixed_budget_s = 0)
      : pid_(pid),
        fd_(fd),
        backend_(std::move(backend)),
        shared_(shared),
        fixed_budget_s_(fixed_budget_s) {}
  ~SocketTransport() override {
    if (fd_ >= 0 && pid_ > 0) {
      uint8_t header[enclave::kFrameHeaderSize];
      enclave::EncodeFrameHeader(true, static_cast<uint16_t>(enclave::Call::kShutdown), 0, header);
      SendFull(fd_, header, sizeof header);
    }
    if (fd_ >= 0) close(fd_);
    Reap(std::chrono::seconds(2));
    if (shared_) munmap(shared_, enclave::kSharedSize);
  }

  Result<crypto::Bytes> Call(enclave::Call call, crypto::ByteView request) override {
    MEDSTREAM_TRY(answer, CallView(call, request));
    return crypto::Bytes(answer.begin(), answer.end());
  }
  std::span<uint8_t> RequestBuffer() override {
    if (!shared_) return {};
    return {shared_, enclave::kSharedResponseOffset};
  }
  Result<crypto::ByteView> CallView(enclave::Call call, crypto::ByteView request) override {
    if (fd_ < 0) return Dead();
    if (auto s = WithinCap(call, request.size()); !s) return std::unexpected(s.error());
    uint8_t header[enclave::kFrameHeaderSize];
    const bool via_shared = shared_ && request.size() >= enclave::kSharedThreshold &&
                            request.size() <= enclave::kSharedResponseOffset;
    // A request built in RequestBuffer() is there already.
    if (via_shared && request.data() != shared_) {
      std::memcpy(shared_, request.data(), request.size());
    }
    if (via_shared) {
      enclave::SharedProgress(shared_).store(request.size(), std::memory_order_release);
    }
    enclave::EncodeFrameHeader(
        true, static_cast<uint16_t>(call) | (via_shared ? enclave::kSharedPayloadFlag : 0),
        request.size(), header);
    if (!SendFull(fd_, header, sizeof header) ||
        (!via_shared && !SendFull(fd_, request.data(), request.size()))) {
      return Dead();
    }
    return Answer(call, request.size(), request.data() == shared_ || via_shared);
  }
  Result<crypto::ByteView> CallFilled(enclave::Call call, const Filler& fill) override {
    if (fd_ < 0) return Dead();
    if (!shared_) return EnclaveTransport::CallFilled(call, fill);
    const std::atomic_ref<uint64_t> delivered = enclave::SharedProgress(shared_);
    const std::span<uint8_t> area(shared_, enclave::kSharedResponseOffset);
    std::optional<uint64_t> sent;  // the request's size, once its frame is on its way
    bool dead = false;
    const ReadProgress progress{
        .sized = [&](uint64_t size) -> Status {
          if (auto s = WithinCap(call, size); !s) return s;
          if (size > area.size()) return ResourceExhausted("request larger than the shared region");
          delivered.store(0, std::memory_order_release);
          uint8_t header[enclave::kFrameHeaderSize];
          enclave::EncodeFrameHeader(
              true, static_cast<uint16_t>(call) | enclave::kSharedPayloadFlag, size, header);
          if (!SendFull(fd_, header, sizeof header)) {
            dead = true;
            return Fail(Error::Code::kInternal, "the enclave is gone");
          }
          sent = size;
          return {};
        },
        .arrived = [&](size_t n) { delivered.store(n, std::memory_order_release); }};
    const Status filled = fill(area, progress);
    if (dead) return Dead();
    if (!sent) {
      if (!filled) return std::unexpected(filled.error());
      return Fail(Error::Code::kInternal, "the request was filled without its size");
    }
    // The enclave may still be reading the region: it is told, and answered, before the caller's
    // error (and the region's next use).
    if (!filled) delivered.store(enclave::kSharedFillFailed, std::memory_order_release);
    auto answer = Answer(call, *sent, /*request_in_shared=*/true);
    if (!filled) return std::unexpected(filled.error());
    return answer;
  }
  std::string_view backend() const override { return backend_; }
  int pid() const override { return pid_; }

 private:
  // The host keeps the caps too: an oversized request never reaches (or kills) the enclave.
  static Status WithinCap(enclave::Call call, uint64_t request_bytes) {
    const enclave::CallSpec* spec = enclave::FindCall(static_cast<uint16_t>(call));
    if (!spec || request_bytes <= spec->max_request) return {};
    return ResourceExhausted(fmt::format("{}: request of {} bytes exceeds the cap of {}",
                                         spec->name, request_bytes, spec->max_request));
  }
  // The enclave's answer to the call just sent (`request_bytes` of it in the shared region when
  // `request_in_shared`), within the call's time budget.
  Result<crypto::ByteView> Answer(enclave::Call call, size_t request_bytes,
                                  bool request_in_shared) {
    uint8_t header[enclave::kFrameHeaderSize];
    if (auto s = Watch(call, request_bytes); !s) return std::unexpected(s.error());
    if (!ReadFull(fd_, header, sizeof header)) return Dead();
    auto h = enclave::DecodeFrameHeader(false, header);
    if (!h) return std::unexpected(h.error());
    const size_t shared_request = request_in_shared ? request_bytes : 0;
    if (h->call_or_status & enclave::kSharedPayloadFlag) {
      if (!shared_ || h->length > enclave::kSharedProgressOffset - enclave::kSharedResponseOffset) {
        return Corrupt("enclave response in shared memory is out of bounds");
      }
      TrimShared(shared_request, h->length);
      return crypto::ByteView(shared_ + enclave::kSharedResponseOffset, h->length);
    }
    TrimShared(shared_request, 0);
    // An error reply (e.g. to a call outside the interface) is a short message.
    const enclave::CallSpec* spec = enclave::FindCall(static_cast<uint16_t>(call));
    const uint64_t cap = (spec && h->call_or_status == 0) ? spec->max_response : 64 * 1024;
    if (h->length > cap) return Corrupt("enclave response exceeds its cap");
    answer_.resize(h->length);
    if (!ReadFull(fd_, answer_.data(), answer_.size())) return Dead();
    if (h->call_or_status != 0) {
      return std::unexpected(
          enclave::ErrorFromStatus(h->call_or_status, std::string(answer_.begin(), answer_.end())));
    }
    return crypto::ByteView(answer_);
  }

  std::unexpected<Error> Dead() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    const std::string how = Reap(std::chrono::milliseconds(500));
    return Fail(Error::Code::kInternal, pid_ > 0 || how != "unknown"
                                            ? "the enclave process is gone (" + how + ")"
                                            : "the connection to the enclave is gone");
  }

  // Memory sized to the work: the shared region's pages stay resident (in both processes) once
  // touched. When the last kRecentCalls calls needed a quarter or less of what an area has held,
  // the rest of the area is given back (MADV_REMOVE frees a memfd's pages for every mapping). Only
  // bytes past this call's request and response are released, so its answer stays readable.
  void TrimShared(size_t request_bytes, size_t response_bytes) {
    struct Area {
      size_t offset, size, used;
      RecentPeak* recent;
      size_t* held;
    };
    const Area areas[] = {
        {0, enclave::kSharedResponseOffset, request_bytes, &recent_request_, &request_held_},
        {enclave::kSharedResponseOffset,
         enclave::kSharedProgressOffset - enclave::kSharedResponseOffset, response_bytes,
         &recent_response_, &response_held_}};
    for (const Area& a : areas) {
      a.recent->Add(a.used);
      *a.held = std::max(*a.held, a.used);
      if (!WorthReleasing(*a.held, a.recent->value())) continue;
      const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
      const size_t keep = (a.recent->value() + page - 1) / page * page;
      // Best effort: should the kernel refuse, the pages merely stay.
      if (madvise(shared_ + a.offset + keep, a.size - keep, MADV_REMOVE) == 0) *a.held = keep;
    }
  }

  // The watchdog: waits for the enclave's answer within the call's budget (edge.h), or the fixed
  // one; past it the enclave process is killed, so one input cannot stall every other stream. A
  // relay (the untrusted server's socket, or a lake host's) has no process to kill: past the
  // budget and kRelaySlackS its connection is closed, and the caller hears kDeadlineExceeded
  // instead of waiting for ever on a server that chose not to answer.
  Status Watch(enclave::Call call, size_t request_bytes) {
    const enclave::CallSpec* spec = enclave::FindCall(static_cast<uint16_t>(call));
    const double budget_s = CallBudgetS(call, request_bytes, fixed_budget_s_) +
                            (fixed_budget_s_ <= 0 && spec && pid_ <= 0 ? kRelaySlackS : 0);
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(budget_s));
    if (SpinUntilReadable(fd_, enclave::kChannelSpinMicros)) return {};
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd_, POLLIN, 0};
      const int r = poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1 << 30)));
      if (r > 0 || (r < 0 && errno != EINTR)) return {};  // an answer, or an error ReadFull sees
    }
    if (pid_ <= 0) {
      close(fd_);
      fd_ = -1;
      return Fail(
          Error::Code::kDeadlineExceeded,
          fmt::format("no answer to {} through the {} connection within {:.3g} s "
                      "(request of {} bytes); the connection is closed",
                      spec ? spec->name : "an unknown call", backend_, budget_s, request_bytes));
    }
    kill(pid_, SIGKILL);
    close(fd_);
    fd_ = -1;
    Reap(std::chrono::milliseconds(2000));
    return Fail(Error::Code::kDeadlineExceeded,
                fmt::format("the enclave ran past its {:.3g} s budget for {} (request of {} bytes) "
                            "and was stopped",
                            budget_s, spec ? spec->name : "an unknown call", request_bytes));
  }

  std::string Reap(std::chrono::milliseconds grace) {
    if (pid_ <= 0) return exit_description_;
    const auto until = std::chrono::steady_clock::now() + grace;
    int status = 0;
    pid_t r;
    while ((r = waitpid(pid_, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (r == 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
    pid_ = -1;
    if (WIFEXITED(status)) {
      exit_description_ = "exited with status " + std::to_string(WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
      exit_description_ = std::string("killed by signal ") + strsignal(WTERMSIG(status)) +
                          (WTERMSIG(status) == SIGSYS ? ": a system call outside the seccomp "
                                                        "allow-list"
                                                      : "");
    }
    return exit_description_;
  }

  pid_t pid_;
  int fd_;
  std::string backend_;
  uint8_t* shared_;
  crypto::Bytes answer_;  // a socket answer, until the next call
  double fixed_budget_s_;
  RecentPeak recent_request_, recent_response_;  // bytes of the shared region's two areas
  size_t request_held_ = 0, response_held_ = 0;  // bytes touched since their last release
  std::string exit_description_ = "unknown";
};

Result<std::unique_ptr<EnclaveTransport>> LaunchProcess(const EnclaveLaunch& l) {
  const std::string path = l.enclave_path.empty() ? DefaultEnclavePath() : l.enclave_path;
  if (access(path.c_str(), X_OK) != 0) {
    return NotFound("enclave executable " + path + " not found or not executable");
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return IoError(std::string("socketpair: ") + std::strerror(errno));
  }
  // Large batches: bigger socket buffers mean fewer context switches per MB.
  const int buf = 4 << 20;
  for (int fd : sv) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  }
  // The shared payload region: sparse, so only what large batches touch is ever allocated.
  const int shm = memfd_create("medstream-edge", MFD_CLOEXEC);
  if (shm < 0 || ftruncate(shm, static_cast<off_t>(enclave::kSharedSize)) != 0) {
    return IoError(std::string("memfd: ") + std::strerror(errno));
  }
  void* shared = mmap(nullptr, enclave::kSharedSize, PROT_READ | PROT_WRITE, MAP_SHARED, shm, 0);
  if (shared == MAP_FAILED) {
    close(shm);
    return IoError(std::string("mmap: ") + std::strerror(errno));
  }
  std::vector<std::string> args = {
      path, "--platform", l.platform_dir, "--seal-policy",
      l.seal_policy == enclave::SealPolicy::kMrSigner ? "mrsigner" : "mrenclave"};
  if (l.debug) args.push_back("--debug");
  const pid_t pid = fork();
  if (pid < 0) return IoError(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // Child: the socket becomes fd 3; everything else of the host is closed by CLOEXEC. (The
    // enclave exits when the host's end closes, even mid-call: its guard thread, main.cc. Not
    // PR_SET_PDEATHSIG: that fires when the forking *thread* exits, e.g. a lake client's.)
    if (dup2(sv[1], 3) < 0 || dup2(shm, 4) < 0) _exit(126);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(path.c_str(), argv.data());
    _exit(127);
  }
  close(sv[1]);
  close(shm);
  auto t = std::make_unique<SocketTransport>(pid, sv[0], "process", static_cast<uint8_t*>(shared),
                                             l.call_budget_s);
  // The first call proves the enclave started (it refuses to if its signature does not match).
  auto info = t->Call(enclave::Call::kInfo, {});
  if (!info) {
    return Fail(Error::Code::kFailedPrecondition,
                "the enclave did not start: " + info.error().message() +
                    " (its reason is on stderr above)");
  }
  return std::unique_ptr<EnclaveTransport>(std::move(t));
}

}  // namespace

double CallBudgetS(enclave::Call call, uint64_t request_bytes, double fixed_budget_s) {
  if (fixed_budget_s > 0) return fixed_budget_s;
  const enclave::CallSpec* spec = enclave::FindCall(static_cast<uint16_t>(call));
  return spec ? enclave::CallBudgetSeconds(*spec, request_bytes) : 30.0;
}

std::unique_ptr<EnclaveTransport> MakeSocketTransport(int fd, int pid, std::string backend,
                                                      double fixed_budget_s) {
  if (pid <= 0) {
    // A relay's answer that stops arriving midway (or a request it stops reading) fails after
    // this long without progress, instead of blocking the caller for ever.
    SetStallTimeouts(fd, fixed_budget_s > 0 ? fixed_budget_s : kRelayStallS);
  }
  return std::make_unique<SocketTransport>(pid, fd, std::move(backend), nullptr, fixed_budget_s);
}

std::string DefaultEnclavePath() {
  auto self = SelfPath();
  if (!self) return "medstream-enclave";
  const size_t slash = self->rfind('/');
  return (slash == std::string::npos ? std::string(".") : self->substr(0, slash)) +
         "/medstream-enclave";
}

Result<std::unique_ptr<EnclaveTransport>> LaunchEnclave(const EnclaveLaunch& l) {
  if (l.backend == "process") return LaunchProcess(l);
  if (l.backend != "inproc") {
    return InvalidArgument("unknown enclave backend '" + l.backend + "': inproc or process");
  }
  if (!l.inproc) {
    return Fail(Error::Code::kFailedPrecondition,
                "this program does not include the inproc backend: use the process backend");
  }
  return l.inproc(l);
}

Result<enclave::EnclaveInfo> GetInfo(EnclaveTransport& t) {
  MEDSTREAM_TRY(b, t.Call(enclave::Call::kInfo, {}));
  return enclave::EnclaveInfo::Decode(b);
}

Result<enclave::EnclaveStats> GetStats(EnclaveTransport& t) {
  MEDSTREAM_TRY(b, t.Call(enclave::Call::kStats, {}));
  return enclave::EnclaveStats::Decode(b);
}

Result<uint64_t> CheckpointEnclave(EnclaveTransport& t,
                                   const std::function<Status(crypto::ByteView sealed)>& take) {
  uint64_t version = 0;
  for (uint32_t part = 0;; ++part) {
    if (part == enclave::kMaxCheckpointParts) {
      return Fail(Error::Code::kResourceExhausted,
                  "the enclave's checkpoint has more than " + std::to_string(part) + " parts");
    }
    MEDSTREAM_TRY(answer,
                  t.Call(enclave::Call::kCheckpoint, enclave::CheckpointRequest{part}.Encode()));
    MEDSTREAM_TRY(p, enclave::CheckpointPart::Decode(answer));
    if (part > 0 && p.version != version) {
      return Corrupt("checkpoint part " + std::to_string(part) + " has version " +
                     std::to_string(p.version) + ", part 0 " + std::to_string(version));
    }
    version = p.version;
    if (auto s = take(p.sealed); !s) return std::unexpected(s.error());
    if (p.last) return version;
  }
}

Result<bool> RestorePart(EnclaveTransport& t, crypto::ByteView sealed) {
  MEDSTREAM_TRY(answer, t.Call(enclave::Call::kRestore, sealed));
  MEDSTREAM_TRY(progress, enclave::RestoreProgress::Decode(answer));
  return progress.complete;
}

void ServeFrames(int fd, const ServeLimits& limits, const FrameHandler& handler) {
  // Reads and writes give up after stall_s without progress (a peer that stops midway); the wait
  // for the next request after idle_s.
  SetStallTimeouts(fd, limits.stall_s);
  const int idle_ms = static_cast<int>(std::min(limits.idle_s * 1000, 2e9));
  crypto::Bytes request;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, idle_ms) <= 0) return;
    uint8_t raw[enclave::kFrameHeaderSize];
    if (!ReadFull(fd, raw, sizeof raw)) return;
    auto header = enclave::DecodeFrameHeader(true, raw);
    if (!header || header->length > limits.max_request) return;
    // Grown with what arrives: a header that claims 64 MiB and is followed by nothing held
    // 64 MiB (zeroed, so resident) per connection.
    request.clear();
    while (request.size() < header->length) {
      const size_t at = request.size();
      const size_t n = static_cast<size_t>(std::min<uint64_t>(header->length - at, 1 << 20));
      request.resize(at + n);
      if (!ReadFull(fd, request.data() + at, n)) return;
    }
    Result<crypto::Bytes> reply = handler(header->call_or_status, request);
    const std::string message = reply ? "" : reply.error().message();
    const crypto::ByteView payload = reply ? crypto::ByteView(*reply) : crypto::AsBytes(message);
    uint8_t out[enclave::kFrameHeaderSize];
    enclave::EncodeFrameHeader(false, reply ? 0 : enclave::StatusFromError(reply.error()),
                               payload.size(), out);
    if (!SendFull(fd, out, sizeof out) || !SendFull(fd, payload.data(), payload.size())) return;
  }
}

void ServeListener(int listen_fd, std::string_view name, const ServeLimits& limits,
                   const FrameHandler& handler, const std::atomic<bool>& stop) {
  struct Connection {
    int fd = -1;
    std::atomic<bool> done{false};
    std::thread thread;
  };
  std::list<Connection> connections;
  LogLimiter said(std::chrono::seconds(10));
  const auto reap = [&](bool all) {
    for (auto it = connections.begin(); it != connections.end();) {
      if (!all && !it->done) {
        ++it;
        continue;
      }
      if (all) shutdown(it->fd, SHUT_RDWR);  // ends its reads and its idle wait
      it->thread.join();
      close(it->fd);  // here only, once its thread is done with it
      it = connections.erase(it);
    }
  };
  while (!stop) {
    reap(false);
    pollfd p{listen_fd, POLLIN, 0};
    const int ready = poll(&p, 1, 200);
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    if ((p.revents & (POLLHUP | POLLERR | POLLNVAL)) != 0) break;  // shut down
    const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINVAL || errno == EBADF) break;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors (for other reasons than ours): the pending connection stays in the
        // backlog, and poll would say so at once, for ever. Waited out instead of spun on.
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      continue;
    }
    reap(false);  // one that ended while this one was accepted gives its place
    if (connections.size() >= limits.max_connections) {
      close(fd);
      if (auto held = said.Admit("full", LogLimiter::Clock::now())) {
        std::fprintf(stderr, "%.*s: %zu connections at once, the limit: refused one%s\n",
                     static_cast<int>(name.size()), name.data(), limits.max_connections,
                     HeldBackNote(*held).c_str());
      }
      continue;
    }
    Connection& c = connections.emplace_back();
    c.fd = fd;
    try {
      c.thread = std::thread([&c, &limits, &handler] {
        ServeFrames(c.fd, limits, handler);
        c.done = true;
      });
    } catch (const std::system_error&) {  // no thread to be had: this connection goes unserved
      close(fd);
      connections.pop_back();
    }
  }
  reap(true);
}

Result<std::unique_ptr<EnclaveTransport>> ConnectTcp(const std::string& host, int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (port <= 0 || port > 65535 || inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return InvalidArgument("'" + host + ":" + std::to_string(port) +
                           "' is not an IPv4 address and port");
  }
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const std::string why = std::strerror(errno);
    if (fd >= 0) close(fd);
    return Fail(Error::Code::kNotFound, "cannot reach " + host + ":" + std::to_string(port) + ": " +
                                            why + " (is 'medstream lake serve' running?)");
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return MakeSocketTransport(fd, -1, "tcp");
}

}  // namespace medstream::host

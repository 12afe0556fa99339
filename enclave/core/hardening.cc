#include "enclave/core/hardening.h"

#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace medstream::enclave {

namespace {
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif
}  // namespace

Result<std::string> HardenProcess() {
  std::string applied;
  struct rlimit no_core = {0, 0};
  if (setrlimit(RLIMIT_CORE, &no_core) != 0) return IoError("cannot disable core dumps");
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return IoError("cannot set PR_SET_DUMPABLE 0");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return IoError("cannot set no_new_privs");
  applied = "no core dumps, not ptrace-able, no new privileges";
  // Locking future allocations fails them once RLIMIT_MEMLOCK is reached, so lock everything
  // only when the limit cannot bite (root, or an unlimited limit); otherwise say so.
  struct rlimit memlock {};
  getrlimit(RLIMIT_MEMLOCK, &memlock);
  if (kSanitized) {
    // AddressSanitizer reserves terabytes of shadow memory: locking it would exhaust the machine.
    applied += ", memory NOT locked (sanitizer build)";
  } else if (geteuid() == 0 || memlock.rlim_cur == RLIM_INFINITY) {
    // MCL_ONFAULT: each page is locked when first touched, not populated up front. Everything
    // the enclave holds in plaintext is touched before it holds it, so nothing of it can reach
    // swap; but the host's sparse shared region (ciphertext in, ciphertext out, 208 MB of address
    // space) costs only the pages a batch uses instead of all of it, from the first second.
    if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) == 0) {
      applied += ", memory locked as touched (no swap)";
    } else {
      applied += std::string(", memory NOT locked (") + std::strerror(errno) + ")";
    }
  } else {
    applied += ", memory NOT locked (RLIMIT_MEMLOCK too low; run as root or raise it)";
  }
  return applied;
}

Status InstallSyscallFilter(int channel_fd) {
  const char* log = std::getenv("MEDSTREAM_SECCOMP_LOG");
  const uint32_t deny = (log && std::strcmp(log, "1") == 0) ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS;
  scmp_filter_ctx ctx = seccomp_init(deny);
  if (!ctx) return IoError("seccomp_init failed");
  // What the serving loop, malloc, OpenSSL's RNG and the counter file need; nothing that opens a
  // file, creates a socket or starts a process.
  const int allowed[] = {
      SCMP_SYS(read),
      SCMP_SYS(write),
      SCMP_SYS(close),
      SCMP_SYS(exit),
      SCMP_SYS(exit_group),
      SCMP_SYS(futex),
      SCMP_SYS(brk),
      SCMP_SYS(mmap),
      SCMP_SYS(munmap),
      SCMP_SYS(mremap),
      SCMP_SYS(madvise),
      SCMP_SYS(mprotect),
      SCMP_SYS(rt_sigreturn),
      SCMP_SYS(rt_sigprocmask),
      SCMP_SYS(clock_gettime),
      SCMP_SYS(gettimeofday),
      SCMP_SYS(getrandom),
      SCMP_SYS(pread64),
      SCMP_SYS(pwrite64),
      SCMP_SYS(fdatasync),
      SCMP_SYS(fstat),
      SCMP_SYS(newfstatat),
      SCMP_SYS(lseek),
      SCMP_SYS(getpid),
      SCMP_SYS(gettid),
      SCMP_SYS(tgkill),
      SCMP_SYS(sched_yield),
      SCMP_SYS(clock_nanosleep),
      SCMP_SYS(nanosleep),
      // The guard thread (main.cc) waits for the host's end of the channel to close.
      SCMP_SYS(poll),
      SCMP_SYS(ppoll),
  };
  // Every thread, not only the caller: the worker and guard threads exist already, and the
  // worker handles untrusted batch segments.
  int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
  for (int sc : allowed) rc |= seccomp_rule_add(ctx, SCMP_ACT_ALLOW, sc, 0);
  if (kSanitized) {
    // Sanitizer builds only (scripts/sanitize.sh): AddressSanitizer's runtime sets up alternate
    // signal stacks per thread, probes memory through a pipe and sets process attributes
    // (prctl). Release builds never allow these.
    for (int sc : {SCMP_SYS(sigaltstack), SCMP_SYS(pipe2), SCMP_SYS(prctl)}) {
      rc |= seccomp_rule_add(ctx, SCMP_ACT_ALLOW, sc, 0);
    }
  }
  (void)channel_fd;
  if (rc != 0 || seccomp_load(ctx) != 0) {
    seccomp_release(ctx);
    return IoError("cannot install the seccomp filter");
  }
  seccomp_release(ctx);
  return {};
}

}  // namespace medstream::enclave

// Process hardening for the `process` backend's simulated TEE boundary. Linked only into
// medstream-enclave.
//
// Before any secret is loaded: no core dumps and not ptrace-able by the host's uid
// (PR_SET_DUMPABLE 0, RLIMIT_CORE 0), no new privileges, memory locked out of swap when the
// process may lock it. After everything is loaded: a seccomp allow-list of the few system calls
// the serving loop needs; anything else kills the process.
#pragma once

#include <string>

#include "common/base/result.h"

namespace medstream::enclave {

// Returns a one-line description of what was applied (and what could not be).
Result<std::string> HardenProcess();
// MEDSTREAM_SECCOMP_LOG=1 logs violations instead of killing (for diagnosing a new syscall).
Status InstallSyscallFilter(int channel_fd);

}  // namespace medstream::enclave

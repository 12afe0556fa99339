// proc: starting and stopping helper processes (mosquitto, sshd, medstream itself) on loopback
// ports, for the demo and the tests. Untrusted tooling; the enclave links none of it.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace medstream::proc {

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreeLoopbackPort();
bool CanConnectLoopback(int port);
// Waits until something listens on the port (true) or the timeout passes.
bool WaitForListener(int port, int timeout_ms);

// fork + execv(args[0], args); stdout and stderr appended to `log` unless it is empty. The child
// is killed when the calling thread ends (PR_SET_PDEATHSIG): call it from the main thread.
pid_t Spawn(const std::vector<std::string>& args, const std::string& log);
// SIGTERM, then SIGKILL after `grace_ms`; reaps the process.
void Stop(pid_t pid, int grace_ms = 5000);

}  // namespace medstream::proc

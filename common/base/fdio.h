// Whole-buffer reads and writes on a file descriptor, retrying short transfers and EINTR.
#pragma once

#include <cstddef>
#include <cstdint>

namespace medstream {

// False on EOF or error before n bytes.
bool ReadFull(int fd, uint8_t* p, size_t n);
// write(2): what the enclave uses (its seccomp filter allows write, not sendto).
bool WriteFull(int fd, const uint8_t* p, size_t n);
// pwrite(2) at `offset`: threads may write disjoint parts of one file at once.
bool PwriteFull(int fd, const uint8_t* p, size_t n, uint64_t offset);
// send(MSG_NOSIGNAL) on a socket: a vanished peer is an error, not a SIGPIPE (the host side).
bool SendFull(int fd, const uint8_t* p, size_t n);
// Polls `fd` without sleeping for up to `spin_us` microseconds: true as soon as it is readable
// (or hung up, or in error: the read that follows sees why). A call and its answer on the process
// backend's socket are microseconds apart when both sides are awake; a side that blocks at once
// lets its CPU halt, and on a VM waking a halted vCPU costs tens of microseconds per message
// (measured: BM_CallOverhead). Bounded, so an idle side still blocks after the spin. It yields
// the CPU between polls: the other side, woken by this side's message, is often queued on this
// very CPU, and a plain spin kept it off it for the whole spin (measured: the enclave started on a
// 1 MB batch 128 us after the host sent it, 30 us with the yield).
bool SpinUntilReadable(int fd, int spin_us);

}  // namespace medstream

// Whole-buffer reads and writes on a file descriptor, retrying short transfers and EINTR.
#pragma once

#include <cstddef>
#include <cstdint>

namespace medstream {

// False on EOF or error before n bytes.
bool ReadFull(int fd, uint8_t* p, size_t n);
// write(2): what the enclave uses (its seccomp filter allows write, not sendto).
bool WriteFull(int fd, const uint8_t* p, size_t n);
// send(MSG_NOSIGNAL) on a socket: a vanished peer is an error, not a SIGPIPE (the host side).
bool SendFull(int fd, const uint8_t* p, size_t n);

}  // namespace medstream

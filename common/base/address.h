// base/address: the one parser of "HOST:PORT" for every command-line option and configuration
// value that names a peer (broker, SFTP server, lake server, listen address).
//
// Strict, since the text comes from a user or a file: the port is 1-65535 in decimal digits only
// (0 too where a caller allows "any free port"), the host is 1-253 printable characters without
// spaces; anything else is kInvalidArgument naming what was expected. No exceptions, no partial
// parses (std::stoi once aborted a command on "host:x"; atoi once took "host:x" for port 0).
// Thread-safe (pure).
#pragma once

#include <string>
#include <string_view>

#include "common/base/result.h"

namespace medstream {

struct HostPort {
  std::string host;
  int port = 0;
};

struct HostPortOptions {
  int default_port = -1;    // used when the text has no ":PORT"; -1: a port is required
  bool allow_zero = false;  // port 0 = any free port (a listen address)
};

// `what` names the option in the error ("--sftp").
Result<HostPort> ParseHostPort(std::string_view text, std::string_view what,
                               const HostPortOptions& options = {});

}  // namespace medstream

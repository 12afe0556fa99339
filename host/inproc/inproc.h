// inproc: the enclave backend that runs the trusted core inside the calling process, through the
// same edge allow-list and size caps as the process backend (EnclaveCore::Handle). It protects
// nothing from the host process (it is that process): it exists for tests, benchmarks (the
// original research's "inproc" mode) and debugging. It is the one host-side module that links the
// trusted core; programs that allow `--mode inproc` pass LaunchInproc as EnclaveLaunch::inproc
// (or ServerOptions::inproc / HostOptions::inproc), everything else never links the core.
// Thread-safety: as the core (one call at a time; the server serialises its calls).
#pragma once

#include <memory>

#include "host/server/transport.h"

namespace medstream::host {

// The core measured as this executable (its identity and signature beside it, as
// medstream-enclave's are), with launch's platform, seal policy and debug flag.
Result<std::unique_ptr<EnclaveTransport>> LaunchInproc(const EnclaveLaunch& launch);

// The inproc core is measured as the executable that hosts it, which must be signed as an enclave
// build is (NAME.sig beside it). Tests and benchmarks sign themselves with a throw-away key.
Status SignThisExecutableForInproc();

}  // namespace medstream::host

// edge_relay: the edge calls a relay may forward (attestation, provisioning: edge.h's
// kServerRelay bits), carried as NATS request/reply between a gateway and a cluster worker's
// enclave instead of over the server's relay socket. The checks are the socket relay's: the
// allow-list and caps of common/abi/edge.h, enforced by the serving worker before its enclave sees
// a byte, and again by the enclave.
//
//   request:  call id u16 | payload          response: status u16 | payload
// status 0 is success; otherwise 1 + Error::Code and the payload is the message (edge.h).
//
// Thread-safety: the served handler runs on the NATS connection's delivery thread and calls the
// enclave through `call` (which must serialise itself); a client transport is for one thread.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "adapters/nats/nats.h"
#include "host/server/transport.h"

namespace medstream::host {

// Serves `subject` until the returned handle is destroyed, forwarding permitted calls to `call`.
using EdgeCall = std::function<Result<crypto::Bytes>(enclave::Call, crypto::ByteView)>;
Result<std::unique_ptr<nats::Connection::Service>> ServeEdgeOverNats(nats::Connection& connection,
                                                                     const std::string& subject,
                                                                     EdgeCall call);

// A transport whose calls are requests on `subject` (each bounded by `timeout_s`). The connection
// must outlive it.
std::unique_ptr<EnclaveTransport> NatsEdgeTransport(nats::Connection& connection,
                                                    std::string subject, double timeout_s = 30);

}  // namespace medstream::host

#include "host/worker/edge_relay.h"

#include "common/base/bytes.h"

namespace medstream::host {

namespace {

crypto::Bytes Reply(uint16_t status, crypto::ByteView payload) {
  crypto::Bytes out;
  ByteWriter w(&out);
  w.U16(status);
  w.Bytes(payload);
  return out;
}

crypto::Bytes ReplyError(const Error& e) {
  return Reply(enclave::StatusFromError(e), crypto::AsBytes(e.message()));
}

class NatsTransport : public EnclaveTransport {
 public:
  NatsTransport(nats::Connection& c, std::string subject, double timeout_s)
      : c_(c), subject_(std::move(subject)), timeout_s_(timeout_s) {}
  Result<crypto::Bytes> Call(enclave::Call call, crypto::ByteView request) override {
    const enclave::CallSpec* spec = enclave::FindCall(static_cast<uint16_t>(call));
    if (!spec || request.size() > spec->max_request) {
      return Fail(Error::Code::kResourceExhausted, "request over the call's cap");
    }
    crypto::Bytes frame;
    ByteWriter w(&frame);
    w.U16(static_cast<uint16_t>(call));
    w.Bytes(request);
    MEDSTREAM_TRY(reply, c_.Request(subject_, frame, timeout_s_));
    ByteReader r(reply);
    MEDSTREAM_TRY(status, r.U16("edge reply status"));
    if (r.remaining() > spec->max_response + 4096) {
      return Fail(Error::Code::kResourceExhausted, "reply over the call's cap");
    }
    MEDSTREAM_TRY(payload, r.Bytes(r.remaining(), "edge reply"));
    if (status != 0) {
      return std::unexpected(enclave::ErrorFromStatus(
          status, std::string_view(reinterpret_cast<const char*>(payload.data()), payload.size())));
    }
    return crypto::Bytes(payload.begin(), payload.end());
  }
  std::string_view backend() const override { return "nats-relay"; }

 private:
  nats::Connection& c_;
  std::string subject_;
  double timeout_s_;
};

}  // namespace

Result<std::unique_ptr<nats::Connection::Service>> ServeEdgeOverNats(nats::Connection& connection,
                                                                     const std::string& subject,
                                                                     EdgeCall call) {
  return connection.Serve(subject, [call = std::move(call)](nats::ByteView request) {
    ByteReader r(request);
    auto id = r.U16("edge call id");
    if (!id) return ReplyError(id.error());
    // The same permission as the server's relay socket: never batches, checkpoints, state
    // exports or imports, or shutdown from outside.
    if (!enclave::RelayMayForward(enclave::kServerRelay, *id)) {
      return ReplyError(
          Error(Error::Code::kPermissionDenied, "call " + std::to_string(*id) + " is not relayed"));
    }
    const enclave::CallSpec* spec = enclave::FindCall(*id);
    if (r.remaining() > spec->max_request) {
      return ReplyError(Error(Error::Code::kResourceExhausted, "request over the call's cap"));
    }
    auto payload = r.Bytes(r.remaining(), "edge call payload");
    auto result = call(static_cast<enclave::Call>(*id), *payload);
    if (!result) return ReplyError(result.error());
    return Reply(0, *result);
  });
}

std::unique_ptr<EnclaveTransport> NatsEdgeTransport(nats::Connection& connection,
                                                    std::string subject, double timeout_s) {
  return std::make_unique<NatsTransport>(connection, std::move(subject), timeout_s);
}

}  // namespace medstream::host

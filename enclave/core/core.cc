#include "enclave/core/core.h"

#include <utility>

namespace medstream::enclave {

namespace {

std::unexpected<Error> Refuse(std::string why) {
  return Fail(Error::Code::kFailedPrecondition, std::move(why));
}

}  // namespace

std::string HonestNote(std::string_view backend, bool debug) {
  std::string note =
      backend == "process"
          ? "software-simulated TEE: a separate hardened process (no ptrace, no core dumps, "
            "seccomp, locked memory); protects against the untrusted host process, not against "
            "root or a hypervisor"
          : "in-process simulation: same address space as the host; the protocol and crypto are "
            "real but nothing isolates the enclave from the host";
  if (debug) note += "; DEBUG enclave: hardening disabled, memory readable";
  return note;
}

Result<std::unique_ptr<EnclaveCore>> EnclaveCore::Create(const CoreOptions& options) {
  const crypto::Digest& counter_owner = options.seal_policy == SealPolicy::kMrEnclave
                                            ? options.identity.mr_enclave
                                            : options.identity.mr_signer;
  MEDSTREAM_TRY(platform, OpenSimulatedPlatform(options.platform_dir, counter_owner));
  return std::unique_ptr<EnclaveCore>(new EnclaveCore(options, std::move(platform)));
}

EnclaveCore::EnclaveCore(CoreOptions options, std::unique_ptr<Platform> platform)
    : options_(std::move(options)),
      platform_(std::move(platform)),
      streams_(platform_.get(), Self(), options_.seal_policy, options_.analysis_threads),
      lake_(platform_.get(), &sessions_, Self(), options_.seal_policy) {}

SealIdentity EnclaveCore::Self() const {
  return {options_.identity.mr_enclave, options_.identity.mr_signer, options_.identity.isv_prod_id,
          options_.identity.isv_svn};
}

Result<crypto::Bytes> EnclaveCore::Handle(uint16_t call_id, crypto::ByteView request) {
  const CallSpec* spec = FindCall(call_id);
  if (!spec)
    return InvalidArgument("call " + std::to_string(call_id) + " is not in the edge interface");
  if (request.size() > spec->max_request) {
    return ResourceExhausted(std::string(spec->name) + ": request of " +
                             std::to_string(request.size()) + " bytes exceeds the cap of " +
                             std::to_string(spec->max_request));
  }
  Result<crypto::Bytes> out = [&]() -> Result<crypto::Bytes> {
    switch (spec->call) {
      case Call::kInfo:
        return Info();
      case Call::kHandshake:
        return Handshake(request);
      case Call::kChannel:
        return Channel(request);
      case Call::kProcessBatch:
        return streams_.ProcessBatch(request);
      case Call::kCheckpoint:
        return streams_.Checkpoint(request);
      case Call::kCommit:
        return streams_.Commit(request);
      case Call::kRestore:
        return streams_.Restore(request);
      case Call::kStats: {
        EnclaveStats s = streams_.Stats();
        s.sessions = sessions_.size();
        return s.Encode();
      }
      case Call::kShutdown:
        shutdown_ = true;
        return crypto::Bytes{};
      case Call::kLakeLoad:
        return lake_.Load(request);
      case Call::kLakeRequest:
        return lake_.Request(request);
      case Call::kLakeCommit:
        return lake_.Commit(request);
      case Call::kExportStreams:
        return streams_.ExportStreams(request);
      case Call::kImportStreams:
        return streams_.ImportStreams(request);
    }
    return InvalidArgument("unhandled call");
  }();
  if (out && out->size() > spec->max_response) {
    return Fail(Error::Code::kInternal, std::string(spec->name) + ": response exceeds its cap");
  }
  return out;
}

Result<crypto::Bytes> EnclaveCore::Info() const {
  EnclaveInfo info;
  info.backend = options_.backend;
  info.simulated = true;
  info.debug = options_.debug;
  info.mr_enclave = options_.identity.mr_enclave;
  info.mr_signer = options_.identity.mr_signer;
  info.isv_prod_id = options_.identity.isv_prod_id;
  info.isv_svn = options_.identity.isv_svn;
  info.note = HonestNote(options_.backend, options_.debug);
  if (!options_.hardening.empty()) info.note += " [" + options_.hardening + "]";
  return info.Encode();
}

Result<crypto::Bytes> EnclaveCore::Handshake(crypto::ByteView request) {
  auto quote = [this](const channel::ReportData& rd) -> Result<crypto::Bytes> {
    attest::ReportBody body;
    body.attributes_flags =
        attest::kAttrInit | attest::kAttrMode64 | (options_.debug ? attest::kAttrDebug : 0);
    body.attributes_xfrm = 0x3;
    body.mr_enclave = options_.identity.mr_enclave;
    body.mr_signer = options_.identity.mr_signer;
    body.isv_prod_id = options_.identity.isv_prod_id;
    body.isv_svn = options_.identity.isv_svn;
    body.report_data = rd;
    return platform_->Quote(body);
  };
  return sessions_.Open(request, quote);
}

Result<crypto::Bytes> EnclaveCore::Channel(crypto::ByteView request) {
  MEDSTREAM_TRY(in, SessionRecord::Decode(request));
  const uint64_t id = in.session;
  channel::ServerHandshake* found = sessions_.Find(id);
  if (!found) return Refuse("unknown or expired session " + std::to_string(id));
  channel::ServerHandshake& hs = *found;
  const crypto::ByteView record = in.record;
  if (!hs.ready()) {
    auto fin = hs.OnClientFinished(record);
    if (!fin) sessions_.Erase(id);
    return fin;
  }
  auto message = hs.records().Open(record, channel::RecordType::kApplication);
  if (!message) {
    sessions_.Erase(id);  // a channel that saw a bad record is not trusted again
    return std::unexpected(message.error());
  }
  // The one application message of a stream session: a provisioned key.
  auto reply = streams_.Provision(*message);
  crypto::Wipe(*message);
  crypto::Bytes plain;
  if (reply) {
    plain = *reply;
  } else {
    ByteWriter w(&plain);
    w.U8(static_cast<uint8_t>(ChannelMessage::kError));
    w.String(reply.error().message());
  }
  return hs.records().Seal(channel::RecordType::kApplication, plain);
}

Result<crypto::Bytes> EnclaveCore::HandleSharedBatch(const uint8_t* shared, size_t size,
                                                     std::atomic_ref<uint64_t> delivered) {
  const CallSpec* spec = FindCall(static_cast<uint16_t>(Call::kProcessBatch));
  if (size > spec->max_request) {
    return InvalidArgument("process_batch: request exceeds its cap");
  }
  return streams_.ProcessSharedBatch(shared, size, delivered);
}

}  // namespace medstream::enclave

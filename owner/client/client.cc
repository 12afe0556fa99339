#include "owner/client/client.h"

#include "common/attest/identity.h"
#include "common/base/file.h"

#include <ctime>

namespace medstream::client {

Result<Session> Attest(host::EnclaveTransport& enclave, const AttestOptions& options) {
  if (!options.root) return InvalidArgument("no root certificate to verify the enclave against");
  MEDSTREAM_TRY(handshake, channel::ClientHandshake::Start());
  MEDSTREAM_TRY(reply, enclave.Call(enclave::Call::kHandshake, handshake.hello()));
  attest::Claims claims;
  const int64_t at = options.at ? options.at : static_cast<int64_t>(std::time(nullptr));
  auto verify = [&](crypto::ByteView evidence) -> Result<channel::ReportData> {
    MEDSTREAM_TRY(c, attest::VerifyQuote(evidence, {.root = options.root, .at = at}));
    if (auto s = attest::CheckPolicy(c, options.policy); !s) return std::unexpected(s.error());
    claims = c;
    return c.report_data;
  };
  MEDSTREAM_TRY(finished, handshake.OnServerHello(reply, verify));
  const crypto::Bytes request = enclave::SessionRecord{handshake.session_id(), finished}.Encode();
  MEDSTREAM_TRY(server_finished, enclave.Call(enclave::Call::kChannel, request));
  MEDSTREAM_TRY(records, handshake.OnServerFinished(server_finished));
  return Session{handshake.session_id(), std::move(records), claims};
}

Status Provision(host::EnclaveTransport& enclave, Session& session,
                 const enclave::ProvisionKey& key) {
  crypto::Bytes message = key.Encode();
  auto record = session.records.Seal(channel::RecordType::kApplication, message);
  crypto::Wipe(message);
  if (!record) return std::unexpected(record.error());
  const crypto::Bytes request = enclave::SessionRecord{session.id, *record}.Encode();
  MEDSTREAM_TRY(reply_record, enclave.Call(enclave::Call::kChannel, request));
  MEDSTREAM_TRY(reply, session.records.Open(reply_record, channel::RecordType::kApplication));
  if (reply.size() == 1 && reply[0] == static_cast<uint8_t>(enclave::ChannelMessage::kOk)) {
    return {};
  }
  ByteReader r(reply);
  (void)r.U8("type");
  auto why = r.String("error", 4096);
  return Fail(Error::Code::kFailedPrecondition,
              "enclave refused the key: " + (why ? *why : std::string("(no reason)")));
}

Result<StreamSealer> StreamSealer::Create(const crypto::Key256& data_key, uint32_t key_id,
                                          const wire::StreamId& stream) {
  MEDSTREAM_TRY(key, wire::StreamKey(data_key, stream));
  MEDSTREAM_TRY(gcm, crypto::AesGcm::Create(key));
  MEDSTREAM_TRY(second, crypto::AesGcm::Create(key));
  return StreamSealer(std::move(gcm), std::move(second), key_id, stream);
}

Result<crypto::Bytes> StreamSealer::SealBatch(uint64_t seq, std::span<const hrv::Beat> beats) {
  wire::Header h;
  h.key_id = key_id_;
  h.stream = stream_;
  h.seq = seq;
  wire::ThreadHelper two(&second_);
  return wire::MakeBatchFile(h, beats, &gcm_, two.get());
}

Status StreamSealer::SealBatchTo(uint64_t seq, std::span<const hrv::Beat> beats,
                                 const FileSink& sink) {
  wire::Header h;
  h.key_id = key_id_;
  h.stream = stream_;
  h.seq = seq;
  wire::ThreadHelper two(&second_);
  return wire::WriteBatchFileTo(h, beats, &gcm_, two.get(), sink);
}

Result<std::vector<hrv::Beat>> StreamSealer::OpenBatch(crypto::ByteView file) {
  std::vector<hrv::Beat> beats;
  MEDSTREAM_TRY(header, wire::OpenBatchInto(file, &gcm_, &beats));
  if (header.stream != stream_ || header.key_id != key_id_) {
    return Corrupt("batch belongs to another stream or key");
  }
  return beats;
}

Result<wire::BatchResult> StreamSealer::OpenResult(crypto::ByteView file, uint64_t* seq) {
  wire::ThreadHelper two(&second_);
  MEDSTREAM_TRY(opened, wire::OpenFile(file, wire::Kind::kResult, &gcm_, two.get()));
  if (opened.header.stream != stream_ || opened.header.key_id != key_id_) {
    return Corrupt("result belongs to another stream or key");
  }
  if (seq) *seq = opened.header.seq;
  return wire::DecodeResult(opened.payload);
}

Result<attest::Policy> PolicyForThisBuild(const std::string& mode,
                                          const std::string& enclave_path) {
  std::string exe = enclave_path.empty() ? host::DefaultEnclavePath() : enclave_path;
  if (mode == "inproc") {
    MEDSTREAM_TRY(self, SelfPath());
    exe = self;
  }
  MEDSTREAM_TRY(id, attest::LoadIdentity(exe));
  attest::Policy policy;
  policy.mr_enclave = {id.mr_enclave};
  policy.mr_signer = {id.mr_signer};
  policy.allow_simulated = true;
  return policy;
}

}  // namespace medstream::client

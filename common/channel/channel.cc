#include "common/channel/channel.h"

#include <algorithm>
#include <cstring>

#include "common/base/bytes.h"

namespace medstream::channel {

namespace {

constexpr char kTranscriptLabel[] = "medstream attested channel v1 transcript";
constexpr char kReportDataLabel[] = "medstream attested channel v1";
constexpr char kClientFinished[] = "client finished";
constexpr char kServerFinished[] = "enclave finished";
constexpr size_t kMaxList = 16;
constexpr size_t kMaxEvidence = 64 * 1024;

struct Keys {
  crypto::Key256 client_to_enclave;
  crypto::Key256 enclave_to_client;
};

Result<Keys> DeriveKeys(const crypto::Key256& shared, const Digest& transcript) {
  Keys k;
  if (auto s = crypto::HkdfSha256(shared.span(), transcript,
                                  crypto::AsBytes("medstream v1 client->enclave key"),
                                  k.client_to_enclave.span());
      !s) {
    return std::unexpected(s.error());
  }
  if (auto s = crypto::HkdfSha256(shared.span(), transcript,
                                  crypto::AsBytes("medstream v1 enclave->client key"),
                                  k.enclave_to_client.span());
      !s) {
    return std::unexpected(s.error());
  }
  return k;
}

Bytes FinishedPayload(const char* label, const Digest& transcript) {
  Bytes out(label, label + std::strlen(label));
  out.insert(out.end(), transcript.begin(), transcript.end());
  return out;
}

std::unexpected<Error> Refuse(std::string why) {
  return Fail(Error::Code::kFailedPrecondition, std::move(why));
}

}  // namespace

Bytes ClientHello::Encode() const {
  Bytes out;
  ByteWriter w(&out);
  w.Raw("MSCH", 4);
  w.U8(static_cast<uint8_t>(versions.size()));
  for (uint16_t v : versions) w.U16(v);
  w.U8(static_cast<uint8_t>(suites.size()));
  for (uint16_t s : suites) w.U16(s);
  w.Bytes(nonce);
  w.Bytes(public_key);
  return out;
}

Result<ClientHello> ClientHello::Decode(ByteView b) {
  ByteReader r(b);
  MEDSTREAM_TRY(magic, r.Bytes(4, "client hello magic"));
  if (std::memcmp(magic.data(), "MSCH", 4) != 0) return Corrupt("not a client hello");
  ClientHello h;
  for (auto* list : {&h.versions, &h.suites}) {
    MEDSTREAM_TRY(n, r.U8("list length"));
    if (n == 0 || n > kMaxList) return Corrupt("client hello: empty or oversized list");
    for (int i = 0; i < n; ++i) {
      MEDSTREAM_TRY(v, r.U16("list entry"));
      list->push_back(v);
    }
  }
  MEDSTREAM_TRY(nonce, r.Bytes(32, "client nonce"));
  std::memcpy(h.nonce.data(), nonce.data(), 32);
  MEDSTREAM_TRY(key, r.Bytes(32, "client key"));
  std::memcpy(h.public_key.data(), key.data(), 32);
  if (auto s = r.ExpectDone("client hello"); !s) return std::unexpected(s.error());
  return h;
}

Bytes ServerHello::EncodeCore() const {
  Bytes out;
  ByteWriter w(&out);
  w.Raw("MSSH", 4);
  w.U16(version);
  w.U16(suite);
  w.U64(session_id);
  w.Bytes(public_key);
  return out;
}

Bytes ServerHello::Encode() const {
  Bytes out = EncodeCore();
  ByteWriter w(&out);
  w.Blob(evidence);
  return out;
}

Result<ServerHello> ServerHello::Decode(ByteView b) {
  ByteReader r(b);
  MEDSTREAM_TRY(magic, r.Bytes(4, "server hello magic"));
  if (std::memcmp(magic.data(), "MSSH", 4) != 0) return Corrupt("not a server hello");
  ServerHello h;
  MEDSTREAM_TRY(version, r.U16("version"));
  MEDSTREAM_TRY(suite, r.U16("suite"));
  MEDSTREAM_TRY(session, r.U64("session id"));
  h.version = version;
  h.suite = suite;
  h.session_id = session;
  MEDSTREAM_TRY(key, r.Bytes(32, "enclave key"));
  std::memcpy(h.public_key.data(), key.data(), 32);
  MEDSTREAM_TRY(evidence, r.Blob("evidence", kMaxEvidence));
  h.evidence.assign(evidence.begin(), evidence.end());
  if (auto s = r.ExpectDone("server hello"); !s) return std::unexpected(s.error());
  return h;
}

Digest Transcript(ByteView client_hello, ByteView server_hello_core) {
  crypto::Sha256Hasher h;
  h.Update(crypto::AsBytes(kTranscriptLabel));
  Bytes lengths;
  ByteWriter w(&lengths);
  w.U32(static_cast<uint32_t>(client_hello.size()));
  w.U32(static_cast<uint32_t>(server_hello_core.size()));
  h.Update(lengths);
  h.Update(client_hello);
  h.Update(server_hello_core);
  return h.Peek();
}

ReportData ReportDataFor(const Digest& transcript) {
  ReportData rd{};
  std::memcpy(rd.data(), transcript.data(), 32);
  const Digest label = crypto::Sha256(crypto::AsBytes(kReportDataLabel));
  std::memcpy(rd.data() + 32, label.data(), 32);
  return rd;
}

Result<RecordLayer> RecordLayer::Create(const crypto::Key256& send_key,
                                        const crypto::Key256& receive_key) {
  MEDSTREAM_TRY(send, crypto::AesGcm::Create(send_key));
  MEDSTREAM_TRY(receive, crypto::AesGcm::Create(receive_key));
  return RecordLayer(std::move(send), std::move(receive));
}

namespace {

std::array<uint8_t, 12> RecordNonce(uint64_t seq) {
  std::array<uint8_t, 12> n{};
  for (int i = 0; i < 8; ++i) n[4 + i] = static_cast<uint8_t>(seq >> (56 - 8 * i));
  return n;
}

}  // namespace

Result<Bytes> RecordLayer::Seal(RecordType type, ByteView plaintext) {
  Bytes out;
  ByteWriter w(&out);
  w.U8(static_cast<uint8_t>(type));
  w.U64(send_seq_);
  out.resize(kHeaderSize + plaintext.size() + crypto::AesGcm::kTagSize);
  const auto nonce = RecordNonce(send_seq_);
  if (auto s = send_.Seal(nonce, std::span(out).first(kHeaderSize), plaintext,
                          std::span(out).subspan(kHeaderSize));
      !s) {
    return std::unexpected(s.error());
  }
  ++send_seq_;
  return out;
}

Result<Bytes> RecordLayer::Open(ByteView record, RecordType expected_type) {
  if (record.size() < kHeaderSize + crypto::AesGcm::kTagSize) {
    return Corrupt("truncated record (" + std::to_string(record.size()) + " bytes)");
  }
  ByteReader r(record);
  const uint8_t type = *r.U8("record type");
  const uint64_t seq = *r.U64("record sequence");
  if (seq != receive_seq_) {
    return Corrupt("replayed, reordered or lost record: expected sequence " +
                   std::to_string(receive_seq_) + ", got " + std::to_string(seq));
  }
  const auto nonce = RecordNonce(seq);
  auto plain = receive_.Open(nonce, record.first(kHeaderSize), record.subspan(kHeaderSize));
  if (!plain) return Corrupt("record authentication failed: " + plain.error().message());
  if (type != static_cast<uint8_t>(expected_type)) {
    return Corrupt("unexpected record type " + std::to_string(type));
  }
  ++receive_seq_;
  return plain;
}

Result<ClientHandshake> ClientHandshake::Start(std::vector<uint16_t> versions,
                                               std::vector<uint16_t> suites) {
  ClientHandshake c;
  MEDSTREAM_TRY(pair, crypto::X25519Generate());
  c.private_key_ = pair.private_key;
  c.sent_.versions = std::move(versions);
  c.sent_.suites = std::move(suites);
  c.sent_.public_key = pair.public_key;
  if (auto s = crypto::RandomBytes(c.sent_.nonce); !s) return std::unexpected(s.error());
  c.hello_ = c.sent_.Encode();
  return c;
}

Result<Bytes> ClientHandshake::OnServerHello(ByteView server_hello,
                                             const EvidenceVerifier& verify) {
  MEDSTREAM_TRY(sh, ServerHello::Decode(server_hello));
  if (std::find(sent_.versions.begin(), sent_.versions.end(), sh.version) == sent_.versions.end()) {
    return Refuse("enclave chose protocol version " + std::to_string(sh.version) +
                  ", which this client did not offer");
  }
  if (std::find(sent_.suites.begin(), sent_.suites.end(), sh.suite) == sent_.suites.end()) {
    return Refuse("enclave chose cipher suite " + std::to_string(sh.suite) +
                  ", which this client did not offer");
  }
  transcript_ = Transcript(hello_, sh.EncodeCore());
  auto report_data = verify(sh.evidence);
  if (!report_data) return std::unexpected(std::move(report_data.error()).With("attestation"));
  if (*report_data != ReportDataFor(transcript_)) {
    return Refuse(
        "REPORTDATA does not match this handshake: the evidence is stale or replayed (another "
        "nonce), or a hello was modified in transit (possible downgrade or man in the middle)");
  }
  MEDSTREAM_TRY(shared, crypto::X25519(private_key_, sh.public_key));
  MEDSTREAM_TRY(keys, DeriveKeys(shared, transcript_));
  MEDSTREAM_TRY(records, RecordLayer::Create(keys.client_to_enclave, keys.enclave_to_client));
  records_.emplace(std::move(records));
  session_id_ = sh.session_id;
  return records_->Seal(RecordType::kFinished, FinishedPayload(kClientFinished, transcript_));
}

Result<RecordLayer> ClientHandshake::OnServerFinished(ByteView record) {
  if (!records_) return Fail(Error::Code::kFailedPrecondition, "handshake not started");
  MEDSTREAM_TRY(payload, records_->Open(record, RecordType::kFinished));
  if (payload != FinishedPayload(kServerFinished, transcript_)) {
    return Refuse("enclave key confirmation failed: its Finished message does not match");
  }
  RecordLayer ready = std::move(*records_);
  records_.reset();
  return ready;
}

Result<ServerHandshake> ServerHandshake::Respond(ByteView client_hello, uint64_t session_id,
                                                 const Quoter& quote) {
  MEDSTREAM_TRY(ch, ClientHello::Decode(client_hello));
  ServerHello sh;
  // The highest version and the client's first suite that this side supports.
  for (uint16_t v : ch.versions) {
    if (v == kVersion1) sh.version = std::max(sh.version, v);
  }
  for (uint16_t s : ch.suites) {
    if (s == kSuiteX25519Aes256GcmSha256 && sh.suite == 0) sh.suite = s;
  }
  if (sh.version == 0) return Refuse("no protocol version in common (this enclave speaks 1)");
  if (sh.suite == 0) return Refuse("no cipher suite in common (this enclave offers 0x0001)");
  MEDSTREAM_TRY(pair, crypto::X25519Generate());
  sh.public_key = pair.public_key;
  sh.session_id = session_id;
  ServerHandshake s;
  s.transcript_ = Transcript(client_hello, sh.EncodeCore());
  MEDSTREAM_TRY(evidence, quote(ReportDataFor(s.transcript_)));
  sh.evidence = std::move(evidence);
  MEDSTREAM_TRY(shared, crypto::X25519(pair.private_key, ch.public_key));
  MEDSTREAM_TRY(keys, DeriveKeys(shared, s.transcript_));
  MEDSTREAM_TRY(records, RecordLayer::Create(keys.enclave_to_client, keys.client_to_enclave));
  s.records_.emplace(std::move(records));
  s.reply_ = sh.Encode();
  return s;
}

Result<Bytes> ServerHandshake::OnClientFinished(ByteView record) {
  if (ready_) return Refuse("handshake already finished");
  MEDSTREAM_TRY(payload, records_->Open(record, RecordType::kFinished));
  if (payload != FinishedPayload(kClientFinished, transcript_)) {
    return Refuse("client key confirmation failed: its Finished message does not match");
  }
  ready_ = true;
  return records_->Seal(RecordType::kFinished, FinishedPayload(kServerFinished, transcript_));
}

}  // namespace medstream::channel

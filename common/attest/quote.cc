#include "common/attest/quote.h"

#include <algorithm>

#include "common/base/bytes.h"

namespace medstream::attest {

namespace {

template <size_t N>
void Take(ByteView b, size_t at, std::array<uint8_t, N>* out) {
  std::copy_n(b.begin() + static_cast<std::ptrdiff_t>(at), N, out->begin());
}

// Copies a span that the reader already sized to N (memcpy: GCC 12 misreads std::copy here).
template <size_t N>
void Fill(std::array<uint8_t, N>* out, ByteView in) {
  std::memcpy(out->data(), in.data(), std::min(N, in.size()));
}

template <class T>
T Le(ByteView b, size_t at) {
  T v;
  std::memcpy(&v, b.data() + at, sizeof v);
  return v;
}

std::string Quoted(const std::string& s) {
  return "'" + s + "'";
}

}  // namespace

Digest AttestationKeyBinding(ByteView attestation_key, ByteView auth_data) {
  crypto::Sha256Hasher h;
  h.Update(attestation_key);
  h.Update(auth_data);
  return h.Peek();
}

Result<ReportBody> ReportBody::Parse(ByteView b) {
  if (b.size() != kReportBodySize) {
    return Corrupt("report body must be 384 bytes, got " + std::to_string(b.size()));
  }
  ReportBody r;
  Take(b, 0, &r.cpu_svn);
  r.misc_select = Le<uint32_t>(b, 16);
  Take(b, 32, &r.isv_ext_prod_id);
  r.attributes_flags = Le<uint64_t>(b, 48);
  r.attributes_xfrm = Le<uint64_t>(b, 56);
  Take(b, 64, &r.mr_enclave);
  Take(b, 128, &r.mr_signer);
  Take(b, 192, &r.config_id);
  r.isv_prod_id = Le<uint16_t>(b, 256);
  r.isv_svn = Le<uint16_t>(b, 258);
  r.config_svn = Le<uint16_t>(b, 260);
  Take(b, 304, &r.isv_family_id);
  Take(b, 320, &r.report_data);
  return r;
}

void ReportBody::AppendTo(Bytes* out) const {
  const size_t base = out->size();
  out->resize(base + kReportBodySize, 0);
  uint8_t* p = out->data() + base;
  auto put = [&](size_t at, const void* v, size_t n) { std::memcpy(p + at, v, n); };
  put(0, cpu_svn.data(), 16);
  put(16, &misc_select, 4);
  put(32, isv_ext_prod_id.data(), 16);
  put(48, &attributes_flags, 8);
  put(56, &attributes_xfrm, 8);
  put(64, mr_enclave.data(), 32);
  put(128, mr_signer.data(), 32);
  put(192, config_id.data(), 64);
  put(256, &isv_prod_id, 2);
  put(258, &isv_svn, 2);
  put(260, &config_svn, 2);
  put(304, isv_family_id.data(), 16);
  put(320, report_data.data(), 64);
}

Result<Quote> ParseQuote(ByteView raw) {
  constexpr size_t kFixed = kQuoteSignedSize + 4 + 64 + 64 + kReportBodySize + 64 + 2;
  if (raw.size() < kFixed) {
    return Corrupt("quote too short: " + std::to_string(raw.size()) +
                   " bytes, a v3 quote has at least " + std::to_string(kFixed));
  }
  Quote q;
  q.version = Le<uint16_t>(raw, 0);
  q.att_key_type = Le<uint16_t>(raw, 2);
  q.tee_type = Le<uint32_t>(raw, 4);
  if (q.version != kQuoteVersion) {
    return Corrupt("unsupported quote version " + std::to_string(q.version) +
                   " (this verifier reads SGX DCAP quote v3)");
  }
  if (q.att_key_type != kAttKeyEcdsaP256) {
    return Corrupt("unsupported attestation key type " + std::to_string(q.att_key_type) +
                   " (expected 2, ECDSA-256-with-P-256)");
  }
  if (q.tee_type != 0) return Corrupt("quote v3 with a non-SGX TEE type");
  q.qe_svn = Le<uint16_t>(raw, 8);
  q.pce_svn = Le<uint16_t>(raw, 10);
  Take(raw, 12, &q.qe_vendor_id);
  Take(raw, 28, &q.user_data);
  MEDSTREAM_TRY(report, ReportBody::Parse(raw.subspan(kQuoteHeaderSize, kReportBodySize)));
  q.report = report;
  q.signed_bytes = raw.first(kQuoteSignedSize);
  const uint32_t sig_len = Le<uint32_t>(raw, kQuoteSignedSize);
  if (sig_len > raw.size() - kQuoteSignedSize - 4) {
    return Corrupt("signature data length " + std::to_string(sig_len) +
                   " runs past the end of the " + std::to_string(raw.size()) + "-byte quote");
  }
  ByteReader r(raw.subspan(kQuoteSignedSize + 4, sig_len));
  MEDSTREAM_TRY(sig, r.Bytes(64, "quote signature"));
  Fill(&q.signature, sig);
  MEDSTREAM_TRY(ak, r.Bytes(64, "attestation key"));
  Fill(&q.attestation_key, ak);
  MEDSTREAM_TRY(qe_report, r.Bytes(kReportBodySize, "QE report"));
  q.qe_report_bytes = qe_report;
  MEDSTREAM_TRY(qe_body, ReportBody::Parse(qe_report));
  q.qe_report = qe_body;
  MEDSTREAM_TRY(qe_sig, r.Bytes(64, "QE report signature"));
  Fill(&q.qe_report_signature, qe_sig);
  MEDSTREAM_TRY(auth_len, r.U16("QE auth data size"));
  MEDSTREAM_TRY(auth, r.Bytes(auth_len, "QE auth data"));
  q.qe_auth_data.assign(auth.begin(), auth.end());
  MEDSTREAM_TRY(cert_type, r.U16("certification data type"));
  q.cert_type = cert_type;
  MEDSTREAM_TRY(cert_len, r.U32("certification data size"));
  MEDSTREAM_TRY(cert, r.Bytes(cert_len, "certification data"));
  q.cert_data.assign(cert.begin(), cert.end());
  return q;
}

Result<Bytes> BuildQuote(const ReportBody& report, const crypto::EcKey& attestation_key,
                         const QeCertification& certification, const QuoteHeaderFields& header) {
  Bytes out;
  ByteWriter w(&out);
  w.U16(kQuoteVersion);
  w.U16(kAttKeyEcdsaP256);
  w.U32(0);  // SGX
  w.U16(header.qe_svn);
  w.U16(header.pce_svn);
  w.Bytes(header.qe_vendor_id);
  w.Bytes(header.user_data);
  report.AppendTo(&out);
  auto sig = attestation_key.Sign(std::span(out).first(kQuoteSignedSize));
  if (!sig) return std::unexpected(sig.error());
  Bytes sig_data;
  ByteWriter s(&sig_data);
  s.Bytes(*sig);
  s.Bytes(attestation_key.RawPublic());
  s.Bytes(certification.qe_report);
  s.Bytes(certification.qe_report_signature);
  s.U16(static_cast<uint16_t>(certification.auth_data.size()));
  s.Bytes(certification.auth_data);
  s.U16(kCertTypePckChain);
  s.String(certification.pck_chain_pem);
  w.U32(static_cast<uint32_t>(sig_data.size()));
  w.Bytes(sig_data);
  return out;
}

Result<Claims> VerifyQuote(ByteView raw, const VerifyOptions& options) {
  if (!options.root) return InvalidArgument("no root certificate configured");
  MEDSTREAM_TRY(q, ParseQuote(raw));
  // 1. The quote body is signed by the attestation key.
  auto ak_result = crypto::EcKey::FromRawPublic(q.attestation_key);
  if (!ak_result) {
    return Corrupt("quote signature check failed: the attestation key in the quote is invalid (" +
                   ak_result.error().message() + ")");
  }
  const crypto::EcKey& ak = *ak_result;
  if (auto s = ak.Verify(q.signed_bytes, q.signature); !s) {
    return Corrupt(
        "quote signature check failed: the header or report body (MRENCLAVE, "
        "MRSIGNER, REPORTDATA, ...) was modified, or the attestation key is wrong");
  }
  // 2. The attestation key is the one the QE certified.
  const Digest expect = AttestationKeyBinding(q.attestation_key, q.qe_auth_data);
  const auto& rd = q.qe_report.report_data;
  if (!std::equal(expect.begin(), expect.end(), rd.begin()) ||
      !std::all_of(rd.begin() + 32, rd.end(), [](uint8_t b) { return b == 0; })) {
    return Corrupt(
        "attestation key binding failed: the QE report does not certify this "
        "attestation key");
  }
  // 3. The PCK chain leads to the configured root.
  if (q.cert_type != kCertTypePckChain) {
    return Corrupt("certification data type " + std::to_string(q.cert_type) +
                   " is not supported (expected 5, PCK certificate chain)");
  }
  auto chain_result = crypto::Certificate::ChainFromPem(q.cert_data);
  if (!chain_result) {
    return Corrupt("PCK certificate chain in the quote is unreadable: " +
                   chain_result.error().message());
  }
  const std::vector<crypto::Certificate>& chain = *chain_result;
  const crypto::Certificate& pck = chain.front();
  std::vector<crypto::Certificate> rest(chain.begin() + 1, chain.end());
  if (auto s = crypto::VerifyChain(pck, rest, *options.root, options.at, options.crls); !s) {
    return Corrupt("PCK certificate chain check failed: " + s.error().message());
  }
  // 4. The QE report is signed by the PCK leaf.
  MEDSTREAM_TRY(pck_key, pck.PublicKey());
  if (auto s = pck_key.Verify(q.qe_report_bytes, q.qe_report_signature); !s) {
    return Corrupt("QE report signature check failed: not signed by the PCK certificate " +
                   Quoted(pck.Subject()));
  }
  Claims c;
  c.mr_enclave = q.report.mr_enclave;
  c.mr_signer = q.report.mr_signer;
  c.isv_prod_id = q.report.isv_prod_id;
  c.isv_svn = q.report.isv_svn;
  c.debug = q.report.debug();
  c.report_data = q.report.report_data;
  c.qe_svn = q.qe_svn;
  c.pce_svn = q.pce_svn;
  c.qe_mr_enclave = q.qe_report.mr_enclave;
  c.qe_mr_signer = q.qe_report.mr_signer;
  c.qe_isv_prod_id = q.qe_report.isv_prod_id;
  c.qe_isv_svn = q.qe_report.isv_svn;
  c.pck_subject = pck.Subject();
  c.root_subject = options.root->Subject();
  // Simulated evidence says so twice: the QE vendor id, and a root that names itself simulation.
  c.simulated =
      q.qe_vendor_id == kSimQeVendorId || c.root_subject.find("SIMULATION") != std::string::npos;
  return c;
}

}  // namespace medstream::attest

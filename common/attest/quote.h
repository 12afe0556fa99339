// attest: remote attestation evidence in the Intel SGX DCAP quote v3 format, and its verification.
//
// One verifier for every quote v3: real ones made by SGX hardware (anchored on Intel's SGX root
// CA) and the ones medstream's simulated platform makes (anchored on a per-deployment simulation
// root CA whose certificate says SIMULATION ONLY). Layout and checks follow Intel's
// sgx_quote_3.h and QVL; offsets are in docs/attestation.md. The verifier anchors only on the
// root it is given, never on the copy a quote carries.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/base/result.h"
#include "common/crypto/crypto.h"

namespace medstream::attest {

using crypto::Bytes;
using crypto::ByteView;
using crypto::Digest;

inline constexpr size_t kQuoteHeaderSize = 48;
inline constexpr size_t kReportBodySize = 384;
inline constexpr size_t kQuoteSignedSize = kQuoteHeaderSize + kReportBodySize;  // 432
inline constexpr uint16_t kQuoteVersion = 3;
inline constexpr uint16_t kAttKeyEcdsaP256 = 2;
inline constexpr uint16_t kCertTypePckChain = 5;
inline constexpr uint64_t kAttrInit = 1, kAttrDebug = 2, kAttrMode64 = 4;

// Intel's quoting enclave vendor id, and the one medstream's simulated quoting enclave uses (the
// ASCII of "MEDSTREAM-SIM-QE"), so simulated evidence can never pass for Intel's.
inline constexpr std::array<uint8_t, 16> kIntelQeVendorId = {
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07};
inline constexpr std::array<uint8_t, 16> kSimQeVendorId = {'M', 'E', 'D', 'S', 'T', 'R', 'E', 'A',
                                                           'M', '-', 'S', 'I', 'M', '-', 'Q', 'E'};

// sgx_report_body_t (384 bytes).
struct ReportBody {
  std::array<uint8_t, 16> cpu_svn{};
  uint32_t misc_select = 0;
  std::array<uint8_t, 16> isv_ext_prod_id{};
  uint64_t attributes_flags = 0;
  uint64_t attributes_xfrm = 0;
  Digest mr_enclave{};
  Digest mr_signer{};
  std::array<uint8_t, 64> config_id{};
  uint16_t isv_prod_id = 0;
  uint16_t isv_svn = 0;
  uint16_t config_svn = 0;
  std::array<uint8_t, 16> isv_family_id{};
  std::array<uint8_t, 64> report_data{};

  bool debug() const { return attributes_flags & kAttrDebug; }
  static Result<ReportBody> Parse(ByteView b);  // exactly 384 bytes
  void AppendTo(Bytes* out) const;
};

struct Quote {
  uint16_t version = 0;
  uint16_t att_key_type = 0;
  uint32_t tee_type = 0;
  uint16_t qe_svn = 0;
  uint16_t pce_svn = 0;
  std::array<uint8_t, 16> qe_vendor_id{};
  std::array<uint8_t, 20> user_data{};
  ReportBody report;
  ByteView signed_bytes;  // bytes 0..431 of the input, which the quote signature covers
  std::array<uint8_t, 64> signature{};
  std::array<uint8_t, 64> attestation_key{};
  ReportBody qe_report;
  ByteView qe_report_bytes;  // the 384 bytes the PCK key signed
  std::array<uint8_t, 64> qe_report_signature{};
  Bytes qe_auth_data;
  uint16_t cert_type = 0;
  std::string cert_data;  // PEM chain for type 5 (may end in NUL, as real quotes do)
};

// What a QE report's REPORTDATA[0..32) must hold for the attestation key it certifies.
Digest AttestationKeyBinding(ByteView attestation_key, ByteView auth_data);

// Parses a quote v3 (SGX). The result refers into `raw`, which must outlive it. Bytes after the
// signature data (quote-buffer padding seen on real platforms) are ignored.
Result<Quote> ParseQuote(ByteView raw);

// What the quoting enclave certified once for its attestation key: the QE report binding the key,
// the PCK signature over it, and the PCK certificate chain.
struct QeCertification {
  Bytes qe_report;  // 384 bytes
  std::array<uint8_t, 64> qe_report_signature{};
  Bytes auth_data;
  std::string pck_chain_pem;
};
struct QuoteHeaderFields {
  uint16_t qe_svn = 0;
  uint16_t pce_svn = 0;
  std::array<uint8_t, 16> qe_vendor_id = kSimQeVendorId;
  std::array<uint8_t, 20> user_data{};
};
// Builds and signs a quote v3 over `report` with the attestation key.
Result<Bytes> BuildQuote(const ReportBody& report, const crypto::EcKey& attestation_key,
                         const QeCertification& certification, const QuoteHeaderFields& header);

// The claims of a quote that passed every check.
struct Claims {
  Digest mr_enclave{};
  Digest mr_signer{};
  uint16_t isv_prod_id = 0;
  uint16_t isv_svn = 0;
  bool debug = false;
  std::array<uint8_t, 64> report_data{};
  bool simulated = false;  // made by medstream's simulated platform, not by SGX hardware
  uint16_t qe_svn = 0, pce_svn = 0;
  Digest qe_mr_enclave{}, qe_mr_signer{};
  uint16_t qe_isv_prod_id = 0, qe_isv_svn = 0;
  std::string pck_subject;
  std::string root_subject;
};

struct VerifyOptions {
  const crypto::Certificate* root = nullptr;  // the one trust anchor
  int64_t at = 0;                             // verification time, Unix seconds
  std::vector<Bytes> crls = {};               // optional CRLs (DER) for the PCK chain
};

// Checks, in order: structure; the quote signature by the attestation key; the attestation key's
// binding in the QE report (SHA-256(key || auth data), then zeros); the PCK chain up to the
// configured root at the given time (and CRLs); the QE report signature by the PCK leaf. Each
// failure names the check that failed.
Result<Claims> VerifyQuote(ByteView raw, const VerifyOptions& options);

}  // namespace medstream::attest

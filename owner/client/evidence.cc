#include "owner/client/evidence.h"

#include <cctype>
#include <ctime>
#include <filesystem>

#include "common/attest/policy.h"
#include "common/base/bytes.h"
#include "common/base/file.h"

namespace medstream::client {

Result<crypto::Certificate> LoadRootCertificate(const std::string& path) {
  MEDSTREAM_TRY(pem, ReadFileText(path));
  auto der_or_pem = crypto::Certificate::FromPem(pem);
  if (der_or_pem) return der_or_pem;
  MEDSTREAM_TRY(bytes, ReadFileBytes(path));
  return crypto::Certificate::FromDer(bytes);
}

Result<int64_t> ParseTimeArgument(const std::string& s) {
  if (s.empty()) return static_cast<int64_t>(std::time(nullptr));
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (end && *end == '\0') return static_cast<int64_t>(v);
  struct tm tm = {};
  const char* rest = strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!rest || (*rest != '\0' && std::string(rest) != "Z")) {
    return InvalidArgument("time '" + s + "': give Unix seconds or YYYY-MM-DDTHH:MM:SSZ");
  }
  return static_cast<int64_t>(timegm(&tm));
}

Result<VerifiedEvidence> VerifyEvidenceFiles(const EvidenceFiles& f) {
  MEDSTREAM_TRY(root, LoadRootCertificate(f.root));
  MEDSTREAM_TRY(raw, ReadFileBytes(f.quote));
  crypto::Bytes quote = raw;
  if (f.hex) {
    std::string text(raw.begin(), raw.end());
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
    MEDSTREAM_TRY(bytes, crypto::FromHex(text));
    quote = std::move(bytes);
  }
  std::vector<crypto::Bytes> crls;
  for (const std::string& path : f.crls) {
    MEDSTREAM_TRY(crl, ReadFileBytes(path));
    crls.push_back(std::move(crl));
  }
  VerifiedEvidence out;
  MEDSTREAM_TRY(claims, attest::VerifyQuote(quote, {.root = &root, .at = f.at, .crls = crls}));
  out.claims = std::move(claims);
  if (!f.policy.empty()) {
    auto p = attest::LoadPolicy(f.policy);
    auto ok = p ? attest::CheckPolicy(out.claims, *p) : Status(std::unexpected(p.error()));
    if (!ok) return std::unexpected(std::move(ok.error()).With("policy"));
  }
  if (!f.collateral.empty()) {
    const std::string file = std::filesystem::is_directory(f.collateral)
                                 ? f.collateral + "/collateral.json"
                                 : f.collateral;
    auto text = ReadFileText(file);
    auto tcb = text ? attest::EvaluateTcb(quote, root, f.at, *text)
                    : Result<attest::TcbResult>(std::unexpected(text.error()));
    if (!tcb) return std::unexpected(std::move(tcb.error()).With("collateral"));
    out.tcb = std::move(*tcb);
  }
  return out;
}

}  // namespace medstream::client

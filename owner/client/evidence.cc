#include "owner/client/evidence.h"

#include <cctype>
#include <charconv>
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
  // Unix seconds up to the end of year 9999, the last time an X.509 certificate can name (strtoll
  // took 1e30's digits as the largest long long without a word, and "12abc" as 12).
  constexpr int64_t kLastX509Second = 253402300799;  // 9999-12-31T23:59:59Z
  if (s.find_first_not_of("0123456789") == std::string::npos) {
    int64_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || v > kLastX509Second)
      return InvalidArgument("time '" + Printable(s, 40) +
                             "': Unix seconds must be from 0 to 253402300799 (year 9999)");
    return v;
  }
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

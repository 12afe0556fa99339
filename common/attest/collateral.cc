#include "common/attest/collateral.h"

#include <algorithm>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>

#include "common/base/bytes.h"

namespace medstream::attest {

namespace {

using nlohmann::json;

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// A minimal DER reader: one TLV at a time (the SGX extension uses only short structures).
struct Tlv {
  uint8_t tag = 0;
  ByteView value;
};
Result<Tlv> ReadTlv(ByteView* in) {
  if (in->size() < 2) return Corrupt("SGX extension: truncated DER");
  Tlv t;
  t.tag = (*in)[0];
  size_t len = (*in)[1];
  size_t pos = 2;
  if (len & 0x80) {
    const size_t n = len & 0x7f;
    if (n == 0 || n > 4 || in->size() < 2 + n) return Corrupt("SGX extension: bad DER length");
    len = 0;
    for (size_t i = 0; i < n; ++i) len = len << 8 | (*in)[2 + i];
    pos += n;
  }
  if (in->size() < pos + len) return Corrupt("SGX extension: DER runs past its end");
  t.value = in->subspan(pos, len);
  *in = in->subspan(pos + len);
  return t;
}

// The content bytes of OID 1.2.840.113741.1.13.1.
constexpr uint8_t kSgxOid[] = {0x2A, 0x86, 0x48, 0x86, 0xF8, 0x4D, 0x01, 0x0D, 0x01};

// The OID suffix after the SGX prefix (e.g. {2, 17} for PCESVN), or empty if not under it.
std::vector<uint8_t> SgxSuffix(ByteView oid) {
  if (oid.size() < sizeof kSgxOid || std::memcmp(oid.data(), kSgxOid, sizeof kSgxOid) != 0) {
    return {};
  }
  return {oid.begin() + sizeof kSgxOid, oid.end()};
}

uint64_t DerInteger(ByteView v) {
  uint64_t x = 0;
  for (uint8_t b : v) x = x << 8 | b;
  return x;
}

// "2025-06-19T10:56:11Z" -> Unix seconds.
Result<int64_t> IsoTime(const std::string& s) {
  struct tm tm = {};
  const char* rest = strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!rest) return Corrupt("collateral: bad time '" + s + "'");
  return static_cast<int64_t>(timegm(&tm));
}

// Verifies a signed collateral item: signature over the exact JSON bytes by the first certificate
// of `chain_pem`, whose chain must end at `root`; validity window around `at`.
Result<json> CheckSignedItem(const std::string& what, const std::string& body,
                             const std::string& signature_hex, const std::string& chain_pem,
                             const crypto::Certificate& root, int64_t at,
                             const std::vector<crypto::Bytes>& root_crl) {
  MEDSTREAM_TRY(chain, crypto::Certificate::ChainFromPem(chain_pem));
  std::vector<crypto::Certificate> rest(chain.begin() + 1, chain.end());
  if (auto s = crypto::VerifyChain(chain.front(), rest, root, at, root_crl); !s) {
    return Corrupt(what + ": signing certificate chain: " + s.error().message());
  }
  MEDSTREAM_TRY(sig, crypto::FromHex(signature_hex));
  MEDSTREAM_TRY(key, chain.front().PublicKey());
  if (auto s = key.Verify(crypto::AsBytes(body), sig); !s) {
    return Corrupt(what + ": signature does not verify (modified collateral)");
  }
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    return Corrupt(what + ": not JSON: " + e.what());
  }
  MEDSTREAM_TRY(issued, IsoTime(j.value("issueDate", "")));
  MEDSTREAM_TRY(next, IsoTime(j.value("nextUpdate", "")));
  if (at < issued || at > next) {
    return Corrupt(what + " is not valid at the verification time (valid " +
                   j.value("issueDate", "") + " .. " + j.value("nextUpdate", "") +
                   "; fetch fresh collateral or pass --at)");
  }
  return j;
}

bool MaskedEqual(const std::string& value_hex, const std::string& expect_hex,
                 const std::string& mask_hex) {
  auto v = crypto::FromHex(value_hex), e = crypto::FromHex(expect_hex),
       m = crypto::FromHex(mask_hex);
  if (!v || !e || !m || v->size() != e->size() || v->size() != m->size()) return false;
  for (size_t i = 0; i < v->size(); ++i) {
    if (((*v)[i] & (*m)[i]) != ((*e)[i] & (*m)[i])) return false;
  }
  return true;
}

// An SVN or product ID from the collateral. nlohmann's get<int>() would convert a fraction, wrap a
// large integer and hit undefined behaviour on a huge float, so only a JSON whole number is read
// (anything else throws json::type_error, which EvaluateTcb turns into an error); above 65535,
// more than any 16-bit field holds, it reads as 65536, which orders and compares as the value
// would: no SVN or ID in a quote reaches it.
int Svn(const json& v) {
  const uint64_t n = v.get_ref<const json::number_unsigned_t&>();
  return static_cast<int>(std::min<uint64_t>(n, 65536));
}

}  // namespace

Result<PckExtension> ParsePckExtension(const crypto::Certificate& pck) {
  auto extension = pck.ExtensionValue("1.2.840.113741.1.13.1");
  if (!extension) return Corrupt("the PCK certificate has no SGX extension");
  ByteView der(*extension);
  MEDSTREAM_TRY(outer, ReadTlv(&der));
  PckExtension ext;
  int found = 0;
  ByteView items = outer.value;
  while (!items.empty()) {
    MEDSTREAM_TRY(item, ReadTlv(&items));
    ByteView fields = item.value;
    MEDSTREAM_TRY(oid_tlv, ReadTlv(&fields));
    MEDSTREAM_TRY(value, ReadTlv(&fields));
    const auto suffix = SgxSuffix(oid_tlv.value);
    if (suffix == std::vector<uint8_t>{3}) {
      ext.pce_id = Upper(crypto::ToHex(value.value));
      ++found;
    } else if (suffix == std::vector<uint8_t>{4}) {
      ext.fmspc = Upper(crypto::ToHex(value.value));
      ++found;
    } else if (suffix == std::vector<uint8_t>{2}) {
      ByteView comps = value.value;
      while (!comps.empty()) {
        MEDSTREAM_TRY(comp, ReadTlv(&comps));
        ByteView cf = comp.value;
        MEDSTREAM_TRY(coid, ReadTlv(&cf));
        MEDSTREAM_TRY(cval, ReadTlv(&cf));
        const auto s = SgxSuffix(coid.value);
        if (s.size() != 2 || s[0] != 2) continue;
        if (s[1] >= 1 && s[1] <= 16) {
          ext.comp_svn[s[1] - 1] = static_cast<uint8_t>(DerInteger(cval.value));
        } else if (s[1] == 17) {
          ext.pce_svn = static_cast<uint16_t>(DerInteger(cval.value));
        } else if (s[1] == 18 && cval.value.size() == 16) {
          std::memcpy(ext.cpu_svn.data(), cval.value.data(), 16);
        }
      }
      ++found;
    }
  }
  if (found < 3) return Corrupt("the PCK certificate's SGX extension lacks TCB, PCE-ID or FMSPC");
  return ext;
}

Result<TcbResult> EvaluateTcb(ByteView raw, const crypto::Certificate& root, int64_t at,
                              std::string_view collateral_json) {
  json c;
  try {
    c = json::parse(collateral_json);
  } catch (const json::exception& e) {
    return InvalidArgument(std::string("collateral is not JSON: ") + e.what());
  }
  for (const char* key :
       {"tcb_info", "tcb_info_signature", "tcb_info_issuer_chain", "qe_identity",
        "qe_identity_signature", "qe_identity_issuer_chain", "root_ca_crl", "pck_crl"}) {
    if (!c.contains(key) || !c[key].is_string()) {
      return InvalidArgument(std::string("collateral lacks '") + key + "'");
    }
  }
  MEDSTREAM_TRY(root_crl, crypto::FromHex(c["root_ca_crl"].get<std::string>()));
  MEDSTREAM_TRY(pck_crl, crypto::FromHex(c["pck_crl"].get<std::string>()));
  // The quote itself, now with both CRLs.
  MEDSTREAM_TRY(claims, VerifyQuote(raw, {.root = &root, .at = at, .crls = {root_crl, pck_crl}}));
  MEDSTREAM_TRY(tcb, CheckSignedItem("TCB info", c["tcb_info"], c["tcb_info_signature"],
                                     c["tcb_info_issuer_chain"], root, at, {root_crl}));
  MEDSTREAM_TRY(qe, CheckSignedItem("QE identity", c["qe_identity"], c["qe_identity_signature"],
                                    c["qe_identity_issuer_chain"], root, at, {root_crl}));
  MEDSTREAM_TRY(q, ParseQuote(raw));
  MEDSTREAM_TRY(chain, crypto::Certificate::ChainFromPem(q.cert_data));
  MEDSTREAM_TRY(ext, ParsePckExtension(chain.front()));
  TcbResult r;
  r.fmspc = ext.fmspc;
  try {
    if (Upper(tcb.at("fmspc").get<std::string>()) != ext.fmspc) {
      return Corrupt("TCB info is for FMSPC " + tcb.at("fmspc").get<std::string>() +
                     ", the PCK certificate says " + ext.fmspc);
    }
    if (Upper(tcb.at("pceId").get<std::string>()) != ext.pce_id) {
      return Corrupt("TCB info PCE-ID does not match the PCK certificate");
    }
    for (const json& level : tcb.at("tcbLevels")) {
      const json& comps = level.at("tcb").at("sgxtcbcomponents");
      bool meets = comps.size() == 16;
      for (size_t i = 0; meets && i < 16; ++i) meets = ext.comp_svn[i] >= Svn(comps[i].at("svn"));
      meets = meets && ext.pce_svn >= Svn(level.at("tcb").at("pcesvn"));
      if (!meets) continue;
      r.platform_status = level.at("tcbStatus").get<std::string>();
      r.tcb_date = level.value("tcbDate", "");
      if (level.contains("advisoryIDs"))
        r.advisories = level["advisoryIDs"].get<std::vector<std::string>>();
      break;
    }
    if (r.platform_status.empty()) r.platform_status = "Revoked";  // below every known level
    // The QE must be Intel's quoting enclave as described by the identity.
    const ReportBody& qr = q.qe_report;
    if (Upper(qe.at("mrsigner").get<std::string>()) != Upper(crypto::ToHex(qr.mr_signer)) ||
        Svn(qe.at("isvprodid")) != qr.isv_prod_id) {
      return Corrupt("QE identity mismatch: the quoting enclave is not the one Intel describes");
    }
    uint32_t misc = qr.misc_select;
    uint8_t misc_be[4] = {uint8_t(misc >> 24), uint8_t(misc >> 16), uint8_t(misc >> 8),
                          uint8_t(misc)};
    if (!MaskedEqual(crypto::ToHex(misc_be), qe.at("miscselect"), qe.at("miscselectMask"))) {
      return Corrupt("QE identity mismatch: MISCSELECT");
    }
    crypto::Bytes attrs;
    ByteWriter w(&attrs);
    w.U64(qr.attributes_flags);
    w.U64(qr.attributes_xfrm);
    if (!MaskedEqual(crypto::ToHex(attrs), qe.at("attributes"), qe.at("attributesMask"))) {
      return Corrupt("QE identity mismatch: ATTRIBUTES");
    }
    for (const json& level : qe.at("tcbLevels")) {
      if (qr.isv_svn >= Svn(level.at("tcb").at("isvsvn"))) {
        r.qe_status = level.at("tcbStatus").get<std::string>();
        break;
      }
    }
    if (r.qe_status.empty()) r.qe_status = "Revoked";
  } catch (const json::exception& e) {
    return Corrupt(std::string("collateral: unexpected structure: ") + e.what());
  }
  // Converge the two as Intel's QVL does.
  r.status = r.platform_status;
  if (r.qe_status == "Revoked") {
    r.status = "Revoked";
  } else if (r.qe_status == "OutOfDate" && r.status != "Revoked") {
    r.status =
        (r.status == "ConfigurationNeeded" || r.status == "ConfigurationAndSWHardeningNeeded")
            ? "OutOfDateConfigurationNeeded"
            : (r.status == "OutOfDateConfigurationNeeded" ? r.status : "OutOfDate");
  }
  (void)claims;
  return r;
}

}  // namespace medstream::attest

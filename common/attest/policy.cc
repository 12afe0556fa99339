#include "common/attest/policy.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace medstream::attest {

namespace {

Result<Digest> ParseDigest(const std::string& hex, const char* field) {
  auto b = crypto::FromHex(hex);
  if (!b || b->size() != 32) {
    return InvalidArgument(std::string("policy: ") + field + " entry '" + hex +
                           "' is not 64 hex digits");
  }
  Digest d;
  std::copy(b->begin(), b->end(), d.begin());
  return d;
}

// A 16-bit field (ISVPRODID, ISVSVN): a JSON integer from 0 to 65535. nlohmann's get<uint16_t>()
// would wrap a larger value (a minimum SVN of 65537 would become 1, a weaker policy than written)
// and convert a fraction or a huge number (undefined behaviour), so anything else is refused.
Result<uint16_t> U16Field(const nlohmann::json& j, const char* field) {
  const nlohmann::json& v = j.at(field);
  if (v.is_number_unsigned() && v.get<uint64_t>() <= 0xFFFF) {
    return static_cast<uint16_t>(v.get<uint64_t>());
  }
  std::string shown = v.dump();
  if (shown.size() > 40) shown = shown.substr(0, 40) + "...";
  return InvalidArgument(std::string("policy: ") + field +
                         " must be a whole number from 0 to 65535, not " + shown);
}

}  // namespace

Result<Policy> ParsePolicy(std::string_view text) {
  // nlohmann throws; this is the edge where that becomes an Error.
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgument(std::string("policy is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) return InvalidArgument("policy must be a JSON object");
  static const char* kKnown[] = {"mrenclave",   "mrsigner",    "isv_prod_id",
                                 "min_isv_svn", "allow_debug", "allow_simulated"};
  for (const auto& [key, value] : j.items()) {
    if (std::find_if(std::begin(kKnown), std::end(kKnown),
                     [&](const char* k) { return key == k; }) == std::end(kKnown)) {
      return InvalidArgument("policy: unknown field '" + key + "'");
    }
  }
  Policy p;
  try {
    for (const char* field : {"mrenclave", "mrsigner"}) {
      if (!j.contains(field)) continue;
      const auto& list = j[field];
      if (!list.is_array())
        return InvalidArgument(std::string("policy: ") + field + " must be a list");
      for (const auto& e : list) {
        auto d = ParseDigest(e.get<std::string>(), field);
        if (!d) return std::unexpected(d.error());
        (std::string_view(field) == "mrenclave" ? p.mr_enclave : p.mr_signer).push_back(*d);
      }
    }
    if (j.contains("isv_prod_id")) {
      auto id = U16Field(j, "isv_prod_id");
      if (!id) return std::unexpected(id.error());
      p.isv_prod_id = *id;
    }
    if (j.contains("min_isv_svn")) {
      auto svn = U16Field(j, "min_isv_svn");
      if (!svn) return std::unexpected(svn.error());
      p.min_isv_svn = *svn;
    }
    p.allow_debug = j.value("allow_debug", false);
    p.allow_simulated = j.value("allow_simulated", false);
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgument(std::string("policy: wrong type: ") + e.what());
  }
  if (p.mr_enclave.empty() && p.mr_signer.empty()) {
    return InvalidArgument("policy pins nothing: give mrenclave and/or mrsigner");
  }
  return p;
}

Result<Policy> LoadPolicy(const std::string& path) {
  std::ifstream in(path);
  if (!in) return IoError("cannot open policy file " + path);
  std::stringstream s;
  s << in.rdbuf();
  auto p = ParsePolicy(s.str());
  if (!p) return std::unexpected(std::move(p.error()).With(path));
  return p;
}

std::string PolicyToJson(const Policy& p) {
  nlohmann::ordered_json j;
  auto list = [](const std::vector<Digest>& ds) {
    std::vector<std::string> out;
    for (const Digest& d : ds) out.push_back(crypto::ToHex(d));
    return out;
  };
  if (!p.mr_enclave.empty()) j["mrenclave"] = list(p.mr_enclave);
  if (!p.mr_signer.empty()) j["mrsigner"] = list(p.mr_signer);
  if (p.isv_prod_id) j["isv_prod_id"] = *p.isv_prod_id;
  j["min_isv_svn"] = p.min_isv_svn;
  j["allow_debug"] = p.allow_debug;
  j["allow_simulated"] = p.allow_simulated;
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

Status CheckPolicy(const Claims& c, const Policy& p) {
  auto refuse = [](std::string why) {
    return Fail(Error::Code::kFailedPrecondition, std::move(why));
  };
  if (c.simulated && !p.allow_simulated) {
    return refuse(
        "simulated enclave refused: the evidence comes from a software-simulated TEE "
        "and the policy does not allow simulated enclaves");
  }
  if (c.debug && !p.allow_debug) {
    return refuse(
        "debug enclave refused: the DEBUG attribute is set (its memory can be read by "
        "the host) and the policy does not allow debug enclaves");
  }
  if (!p.mr_enclave.empty() &&
      std::find(p.mr_enclave.begin(), p.mr_enclave.end(), c.mr_enclave) == p.mr_enclave.end()) {
    return refuse("measurement mismatch: MRENCLAVE " + crypto::ToHex(c.mr_enclave) +
                  " is not one the policy allows (modified or unknown enclave code)");
  }
  if (!p.mr_signer.empty() &&
      std::find(p.mr_signer.begin(), p.mr_signer.end(), c.mr_signer) == p.mr_signer.end()) {
    return refuse("wrong signer: MRSIGNER " + crypto::ToHex(c.mr_signer) +
                  " is not a signer the policy trusts");
  }
  if (p.isv_prod_id && c.isv_prod_id != *p.isv_prod_id) {
    return refuse("wrong product: ISVPRODID " + std::to_string(c.isv_prod_id) + ", policy wants " +
                  std::to_string(*p.isv_prod_id));
  }
  if (c.isv_svn < p.min_isv_svn) {
    return refuse("enclave too old: ISVSVN " + std::to_string(c.isv_svn) + " < policy minimum " +
                  std::to_string(p.min_isv_svn));
  }
  return {};
}

}  // namespace medstream::attest

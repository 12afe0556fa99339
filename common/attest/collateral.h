// TCB status of a verified SGX quote from Intel's collateral (TCB info, QE identity, CRLs).
//
// Collateral is a JSON file in the layout of dcap-qvl's QuoteCollateralV3 (what an Intel PCS/PCCS
// fetch yields): tcb_info and qe_identity as the exact signed JSON strings, their hex signatures
// and PEM issuer chains, and the root CA and PCK CRLs as hex DER. The checks follow Intel's QVL:
// both signatures verify under the TCB Signing certificate, whose chain ends at the configured
// root (with the root CRL); both are valid at the verification time; the quote's PCK chain passes
// with both CRLs; FMSPC and PCE-ID match the PCK certificate's SGX extension; the platform's TCB
// level is the first whose 16 component SVNs and PCESVN the PCK certificate meets; the QE report
// matches the QE identity (MRSIGNER, ISVPRODID, MISCSELECT and ATTRIBUTES under their masks) and
// its ISVSVN gives the QE's level; the two combine into one status.
#pragma once

#include <string>
#include <vector>

#include "common/attest/quote.h"

namespace medstream::attest {

struct TcbResult {
  std::string status;  // UpToDate, SWHardeningNeeded, ConfigurationNeeded, OutOfDate, Revoked, ...
  std::string platform_status;
  std::string qe_status;
  std::string tcb_date;
  std::vector<std::string> advisories;
  std::string fmspc;  // hex, upper case
};

// The PCK certificate's SGX extension (OID 1.2.840.113741.1.13.1).
struct PckExtension {
  std::array<uint8_t, 16> comp_svn{};
  uint16_t pce_svn = 0;
  std::array<uint8_t, 16> cpu_svn{};
  std::string fmspc;   // hex, upper case
  std::string pce_id;  // hex, upper case
};
Result<PckExtension> ParsePckExtension(const crypto::Certificate& pck);

// Verifies `raw` (a quote v3) against `root` at `at`, then its TCB status from the collateral.
Result<TcbResult> EvaluateTcb(ByteView raw, const crypto::Certificate& root, int64_t at,
                              std::string_view collateral_json);

}  // namespace medstream::attest

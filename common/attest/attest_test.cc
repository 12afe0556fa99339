// Quote verification against real SGX hardware quotes and the simulated platform's quotes.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/attest/collateral.h"
#include "common/attest/policy.h"
#include "common/attest/quote.h"
#include "common/attest/sim_platform.h"
#include "common/base/file.h"
#include "tests/test_data.h"

namespace medstream::attest {
namespace {

using crypto::ToHex;

constexpr int64_t kPhalaTime = 1751624924;     // 2025-07-04T10:28:44Z
constexpr int64_t kAutomataTime = 1755236700;  // 2025-08-15T05:45:00Z
constexpr int64_t kDebugQuoteTime = 1747699200;

Bytes Load(const std::string& rel) {
  auto b = ReadFileBytes(testing::TestDataPath("attestation/" + rel));
  EXPECT_TRUE(b.has_value()) << rel;
  if (rel.ends_with(".hex")) {
    std::string text(b->begin(), b->end());
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
    return crypto::FromHex(text).value();
  }
  return *b;
}

crypto::Certificate IntelRoot() {
  return crypto::Certificate::FromPem(
             *ReadFileText(testing::TestDataPath("attestation/Intel_SGX_Root_CA.pem")))
      .value();
}

TEST(RealQuotes, PhalaQuoteVerifiesAgainstIntelRoot) {
  const Bytes quote = Load("phala_sgx_quote.bin");
  const crypto::Certificate root = IntelRoot();
  auto claims = VerifyQuote(quote, {.root = &root, .at = kPhalaTime});
  ASSERT_TRUE(claims.has_value()) << claims.error().message();
  EXPECT_EQ(ToHex(claims->mr_enclave),
            "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb");
  EXPECT_EQ(ToHex(claims->mr_signer),
            "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6");
  EXPECT_EQ(std::string(claims->report_data.begin(), claims->report_data.begin() + 13),
            "Hello, world!");
  EXPECT_FALSE(claims->debug);
  EXPECT_FALSE(claims->simulated);
  EXPECT_EQ(claims->qe_isv_svn, 10);
  EXPECT_EQ(ToHex(claims->qe_mr_signer),
            "8c4f5775d796503e96137f77c68a829a0056ac8ded70140b081b094490c57bff");
  EXPECT_NE(claims->pck_subject.find("Intel SGX PCK Certificate"), std::string::npos);
  // With the collateral's CRLs too.
  auto with_crls = VerifyQuote(
      quote, {.root = &root,
              .at = kPhalaTime,
              .crls = {Load("intel_root_ca_crl.der"), Load("phala_pck_processor_crl.der")}});
  EXPECT_TRUE(with_crls.has_value()) << with_crls.error().message();
}

TEST(RealQuotes, AutomataQuotesVerify) {
  const crypto::Certificate root = IntelRoot();
  auto claims = VerifyQuote(
      Load("automata_quotev3.hex"),
      {.root = &root,
       .at = kAutomataTime,
       .crls = {Load("intel_root_ca_crl.der"), Load("automata_0825_pck_platform_crl.der")}});
  ASSERT_TRUE(claims.has_value()) << claims.error().message();
  EXPECT_EQ(ToHex(claims->mr_enclave),
            "a4f45c39dac622cb1dd32ddb35a52ec92db41d0fa88a1c911c49e59c534f61cd");
  // A Platform-CA CRL does not cover a Processor-CA PCK: CRL checking must then fail.
  auto wrong_crl = VerifyQuote(
      Load("phala_sgx_quote.bin"),
      {.root = &root,
       .at = kPhalaTime,
       .crls = {Load("intel_root_ca_crl.der"), Load("automata_0825_pck_platform_crl.der")}});
  EXPECT_FALSE(wrong_crl.has_value());

  auto debug =
      VerifyQuote(Load("automata_quote_sgx_debug.bin"), {.root = &root, .at = kDebugQuoteTime});
  ASSERT_TRUE(debug.has_value()) << debug.error().message();
  EXPECT_TRUE(debug->debug);
  Policy policy;
  policy.mr_enclave = {debug->mr_enclave};
  auto refused = CheckPolicy(*debug, policy);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), Error::Code::kFailedPrecondition);
  policy.allow_debug = true;
  EXPECT_TRUE(CheckPolicy(*debug, policy));
}

TEST(RealQuotes, AnyFlippedByteIsRefusedByTheRightCheck) {
  const Bytes quote = Load("phala_sgx_quote.bin");
  const crypto::Certificate root = IntelRoot();
  struct Flip {
    size_t offset;
    const char* expect;  // the check that refuses it (for the reader)
  };
  const Flip flips[] = {
      {8, "quote signature"},             // header: qe_svn
      {112, "quote signature"},           // MRENCLAVE
      {176, "quote signature"},           // MRSIGNER
      {368, "quote signature"},           // REPORTDATA
      {436 + 10, "quote signature"},      // the signature itself
      {500 + 5, "quote signature"},       // attestation key (no longer matches the signature)
      {564 + 320, "binding"},             // QE report's REPORTDATA
      {564 + 64, "QE report signature"},  // QE report's MRENCLAVE
      {948 + 3, "QE report signature"},   // QE report signature
      {1052 + 200, "PCK"},                // inside the PEM chain
  };
  for (const Flip& f : flips) {
    Bytes bad = quote;
    bad[f.offset] ^= 0x01;
    auto r = VerifyQuote(bad, {.root = &root, .at = kPhalaTime});
    ASSERT_FALSE(r.has_value()) << "flip at " << f.offset << " verified";
    EXPECT_EQ(r.error().code(), Error::Code::kCorrupt)
        << "flip at " << f.offset << " (" << f.expect << "): " << r.error().message();
  }
}

TEST(RealQuotes, AnotherRootOrExpiredTimeIsRefused) {
  const Bytes quote = Load("phala_sgx_quote.bin");
  // A self-signed impostor with Intel's subject but another key.
  auto key = crypto::EcKey::Generate().value();
  auto fake = crypto::Certificate::Issue({"Intel SGX Root CA", "Intel Corporation"}, key, nullptr,
                                         key, true, 0, 4102444800, 1)
                  .value();
  auto r = VerifyQuote(quote, {.root = &fake, .at = kPhalaTime});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Error::Code::kCorrupt);
  const crypto::Certificate root = IntelRoot();
  EXPECT_FALSE(VerifyQuote(quote, {.root = &root, .at = 4102444800}).has_value());  // 2100
}

TEST(RealQuotes, TruncatedOrGarbageQuotesFailCleanly) {
  const Bytes quote = Load("phala_sgx_quote.bin");
  const crypto::Certificate root = IntelRoot();
  for (size_t n = 0; n < quote.size(); n += 7) {
    auto r = VerifyQuote(std::span(quote).first(n), {.root = &root, .at = kPhalaTime});
    ASSERT_FALSE(r.has_value()) << n;
  }
  Bytes v4 = quote;
  v4[0] = 4;
  auto r = VerifyQuote(v4, {.root = &root, .at = kPhalaTime});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Error::Code::kCorrupt);
  // Trailing padding after the signature data is tolerated (real quote buffers have it).
  Bytes padded = quote;
  padded.resize(quote.size() + 70, 0);
  EXPECT_TRUE(VerifyQuote(padded, {.root = &root, .at = kPhalaTime}).has_value());
}

class SimPlatformTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("medstream-platform-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    ASSERT_TRUE(InitPlatform({.dir = dir_.string(), .now = 1'800'000'000}));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(SimPlatformTest, SimulatedQuotesVerifyWithTheSameCodeAndSaySo) {
  auto platform = SimPlatform::Load(dir_.string()).value();
  ReportBody report;
  report.attributes_flags = kAttrInit | kAttrMode64;
  report.mr_enclave = crypto::Sha256(crypto::AsBytes("enclave code"));
  report.mr_signer = crypto::Sha256(crypto::AsBytes("release key"));
  report.isv_prod_id = 7;
  report.isv_svn = 3;
  report.report_data[0] = 0xAB;
  const Bytes quote = platform.Quote(report).value();
  auto claims = VerifyQuote(quote, {.root = &platform.root(), .at = 1'800'000'100});
  ASSERT_TRUE(claims.has_value()) << claims.error().message();
  EXPECT_TRUE(claims->simulated);
  EXPECT_EQ(claims->mr_enclave, report.mr_enclave);
  EXPECT_EQ(claims->isv_svn, 3);
  EXPECT_EQ(claims->report_data[0], 0xAB);
  EXPECT_NE(claims->root_subject.find("SIMULATION ONLY"), std::string::npos);
  // Against Intel's root it is refused; a second platform's root refuses it too.
  const crypto::Certificate intel = IntelRoot();
  EXPECT_FALSE(VerifyQuote(quote, {.root = &intel, .at = 1'800'000'100}).has_value());
  const auto other_dir = dir_.string() + "-other";
  ASSERT_TRUE(InitPlatform({.dir = other_dir, .now = 1'800'000'000}));
  auto other = SimPlatform::Load(other_dir).value();
  EXPECT_FALSE(VerifyQuote(quote, {.root = &other.root(), .at = 1'800'000'100}).has_value());
  std::filesystem::remove_all(other_dir);
  // Existing platforms are not overwritten by accident.
  auto again = InitPlatform({.dir = dir_.string(), .now = 1'800'000'000});
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code(), Error::Code::kFailedPrecondition);
}

TEST(Policy, EveryRuleNamesItsReason) {
  Claims c;
  c.mr_enclave = crypto::Sha256(crypto::AsBytes("a"));
  c.mr_signer = crypto::Sha256(crypto::AsBytes("s"));
  c.isv_prod_id = 1;
  c.isv_svn = 2;
  auto base = ParsePolicy(R"({"mrenclave": [")" + ToHex(c.mr_enclave) + R"("], "mrsigner": [")" +
                          ToHex(c.mr_signer) + R"("], "isv_prod_id": 1, "min_isv_svn": 2})")
                  .value();
  EXPECT_TRUE(CheckPolicy(c, base));
  auto expect_refusal = [&](Claims claims, Policy p, const std::string& reason) {
    auto r = CheckPolicy(claims, p);
    ASSERT_FALSE(r.has_value()) << reason;
    EXPECT_EQ(r.error().code(), Error::Code::kFailedPrecondition) << r.error().message();
  };
  Claims other = c;
  other.mr_enclave[0] ^= 1;
  expect_refusal(other, base, "measurement mismatch");
  other = c;
  other.mr_signer[0] ^= 1;
  expect_refusal(other, base, "wrong signer");
  other = c;
  other.isv_prod_id = 2;
  expect_refusal(other, base, "wrong product");
  other = c;
  other.isv_svn = 1;
  expect_refusal(other, base, "too old");
  other = c;
  other.simulated = true;
  expect_refusal(other, base, "simulated enclave refused");
  other = c;
  other.debug = true;
  expect_refusal(other, base, "debug enclave refused");
  // Policy files are checked too.
  EXPECT_FALSE(ParsePolicy("{}").has_value());
  EXPECT_FALSE(ParsePolicy(R"({"mrenclave": ["abc"]})").has_value());
  EXPECT_FALSE(ParsePolicy(R"({"mrenclave": [], "mrsignr": []})").has_value());
  EXPECT_FALSE(ParsePolicy("not json").has_value());
  auto round = ParsePolicy(PolicyToJson(base)).value();
  EXPECT_EQ(round.mr_enclave, base.mr_enclave);
  EXPECT_EQ(round.min_isv_svn, 2);
}

// Regression (found by the policy fuzzer): a number that does not fit a 16-bit field was converted
// (a huge one: undefined behaviour; 65537 wrapped to 1, a weaker minimum than the file says).
// Such a policy is refused, naming the field; the limits themselves are accepted.
TEST(Policy, NumbersOutsideSixteenBitsAreRefusedNotWrapped) {
  const std::string pin = R"({"mrenclave": [")" + std::string(64, 'a') + R"("], )";
  for (const char* field : {"isv_prod_id", "min_isv_svn"}) {
    for (const char* bad : {"65536", "65537", "-1", "1.5", "1e30", "7777777777777777777777777773",
                            "\"2\"", "true", "null", "[1]"}) {
      auto p = ParsePolicy(pin + "\"" + field + "\": " + bad + "}");
      ASSERT_FALSE(p.has_value()) << field << " = " << bad;
      EXPECT_EQ(p.error().code(), Error::Code::kInvalidArgument) << p.error().message();
    }
    for (const auto& [text, value] : {std::pair{"0", 0}, std::pair{"65535", 65535}}) {
      auto p = ParsePolicy(pin + "\"" + field + "\": " + text + "}");
      ASSERT_TRUE(p.has_value()) << p.error().message();
      EXPECT_EQ(std::string_view(field) == "min_isv_svn" ? p->min_isv_svn : p->isv_prod_id.value(),
                value);
    }
  }
}

}  // namespace
}  // namespace medstream::attest

namespace medstream::attest {
namespace {

TEST(Collateral, PhalaQuoteTcbStatusMatchesDcapQvl) {
  const Bytes quote = Load("phala_sgx_quote.bin");
  const std::string collateral =
      *ReadFileText(testing::TestDataPath("attestation/phala_collateral.json"));
  const crypto::Certificate root = IntelRoot();
  auto r = EvaluateTcb(quote, root, kPhalaTime, collateral);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  // What dcap-qvl's own test asserts for this quote and collateral.
  EXPECT_EQ(r->status, "ConfigurationAndSWHardeningNeeded");
  EXPECT_EQ(r->advisories, (std::vector<std::string>{"INTEL-SA-00289", "INTEL-SA-00615"}));
  EXPECT_EQ(r->qe_status, "UpToDate");
  EXPECT_EQ(r->fmspc, "00A067110000");
  EXPECT_EQ(r->tcb_date, "2024-03-13T00:00:00Z");
  // The PCK extension as decoded by the shared data's README.
  auto chain = crypto::Certificate::ChainFromPem(ParseQuote(quote)->cert_data).value();
  auto ext = ParsePckExtension(chain.front()).value();
  EXPECT_EQ(ext.pce_svn, 13);
  EXPECT_EQ(ext.comp_svn[0], 11);
  EXPECT_EQ(ext.comp_svn[4], 255);
  EXPECT_EQ(ext.pce_id, "0000");
}

TEST(Collateral, ExpiredModifiedOrMismatchedCollateralIsRefused) {
  const Bytes quote = Load("phala_sgx_quote.bin");
  const std::string collateral =
      *ReadFileText(testing::TestDataPath("attestation/phala_collateral.json"));
  const crypto::Certificate root = IntelRoot();
  // A month later the collateral has expired (the PCK CRL and the TCB info expire together).
  auto late = EvaluateTcb(quote, root, kPhalaTime + 40 * 86400, collateral);
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error().code(), Error::Code::kCorrupt) << late.error().message();
  // Promoting the platform's TCB level breaks the signature over the exact JSON bytes.
  std::string forged = collateral;
  const std::string level = "ConfigurationAndSWHardeningNeeded";
  const size_t at = forged.find(level);
  ASSERT_NE(at, std::string::npos);
  forged.replace(at, level.size(), "UpToDate");
  auto r = EvaluateTcb(quote, root, kPhalaTime, forged);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Error::Code::kCorrupt) << r.error().message();
  // Collateral for another quote's platform: the automata quote has another FMSPC.
  auto other = EvaluateTcb(Load("automata_quotev3.hex"), root, kPhalaTime, collateral);
  EXPECT_FALSE(other.has_value());
}

}  // namespace
}  // namespace medstream::attest

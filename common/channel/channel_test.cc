// The attested channel end to end with simulated-platform evidence, and its refusals.
#include "common/channel/channel.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "common/attest/quote.h"
#include "common/attest/sim_platform.h"
#include "common/base/bytes.h"

namespace medstream::channel {
namespace {

class ChannelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(std::filesystem::temp_directory_path() /
                           ("medstream-channel-" + std::to_string(::getpid())));
    ASSERT_TRUE(attest::InitPlatform({.dir = *dir_, .force = true, .now = time(nullptr)}));
    platform_ = new attest::SimPlatform(attest::SimPlatform::Load(*dir_).value());
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete platform_;
    delete dir_;
  }

  // The enclave's quoter: a simulated quote over the REPORTDATA (optionally corrupted).
  static Quoter MakeQuoter(bool corrupt_report_data = false) {
    return [corrupt_report_data](const ReportData& rd) {
      attest::ReportBody body;
      body.attributes_flags = attest::kAttrInit | attest::kAttrMode64;
      body.report_data = rd;
      if (corrupt_report_data) body.report_data[63] ^= 1;
      return platform_->Quote(body);
    };
  }
  static EvidenceVerifier Verifier() {
    return [](ByteView evidence) -> Result<ReportData> {
      MEDSTREAM_TRY(
          claims, attest::VerifyQuote(evidence, {.root = &platform_->root(), .at = time(nullptr)}));
      return claims.report_data;
    };
  }

  struct Pair {
    RecordLayer client;
    RecordLayer enclave;
  };
  static Pair Connect() {
    auto client = ClientHandshake::Start().value();
    auto server = ServerHandshake::Respond(client.hello(), 7, MakeQuoter()).value();
    auto fin = client.OnServerHello(server.reply(), Verifier());
    EXPECT_TRUE(fin.has_value()) << fin.error().message();
    auto server_fin = server.OnClientFinished(*fin).value();
    auto records = client.OnServerFinished(server_fin).value();
    EXPECT_EQ(client.session_id(), 7u);
    return {std::move(records), std::move(server.records())};
  }

  static std::string* dir_;
  static attest::SimPlatform* platform_;
};
std::string* ChannelTest::dir_;
attest::SimPlatform* ChannelTest::platform_;

TEST_F(ChannelTest, HandshakeThenRecordsBothWays) {
  Pair p = Connect();
  const Bytes msg = {1, 2, 3, 4, 5};
  auto rec = p.client.Seal(RecordType::kApplication, msg).value();
  EXPECT_EQ(p.enclave.Open(rec, RecordType::kApplication).value(), msg);
  auto back = p.enclave.Seal(RecordType::kApplication, Bytes{9}).value();
  EXPECT_EQ(p.client.Open(back, RecordType::kApplication).value(), Bytes{9});
}

TEST_F(ChannelTest, ModifiedReportDataIsRefused) {
  auto client = ClientHandshake::Start().value();
  auto server = ServerHandshake::Respond(client.hello(), 1, MakeQuoter(true)).value();
  auto r = client.OnServerHello(server.reply(), Verifier());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Error::Code::kFailedPrecondition);
}

TEST_F(ChannelTest, StaleEvidenceFromAnEarlierHandshakeIsRefused) {
  auto old_client = ClientHandshake::Start().value();
  auto old_server = ServerHandshake::Respond(old_client.hello(), 1, MakeQuoter()).value();
  auto client = ClientHandshake::Start().value();  // a new nonce and key
  auto r = client.OnServerHello(old_server.reply(), Verifier());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Error::Code::kFailedPrecondition);
}

TEST_F(ChannelTest, DowngradeByAManInTheMiddleIsDetected) {
  // The client offers a future version 2 and version 1; an attacker strips version 2 so that
  // the enclave answers with 1. The transcript differs, so REPORTDATA does not match.
  auto client = ClientHandshake::Start({2, kVersion1}).value();
  auto hello = ClientHello::Decode(client.hello()).value();
  hello.versions = {kVersion1};
  auto server = ServerHandshake::Respond(hello.Encode(), 1, MakeQuoter()).value();
  auto r = client.OnServerHello(server.reply(), Verifier());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Error::Code::kFailedPrecondition);
  // An enclave that picks something the client never offered is refused outright.
  auto client2 = ClientHandshake::Start().value();
  auto reply = ServerHello::Decode(
                   ServerHandshake::Respond(client2.hello(), 1, MakeQuoter()).value().reply())
                   .value();
  reply.version = 9;
  auto r2 = client2.OnServerHello(reply.Encode(), Verifier());
  ASSERT_FALSE(r2.has_value());
  EXPECT_EQ(r2.error().code(), Error::Code::kFailedPrecondition);
  // No common suite: the enclave refuses to answer.
  auto weak = ClientHandshake::Start({kVersion1}, {0x9999}).value();
  EXPECT_FALSE(ServerHandshake::Respond(weak.hello(), 1, MakeQuoter()).has_value());
}

TEST_F(ChannelTest, TamperedReplayedReorderedTruncatedRecordsAreRefused) {
  Pair p = Connect();
  auto r0 = p.client.Seal(RecordType::kApplication, Bytes(100, 7)).value();
  auto r1 = p.client.Seal(RecordType::kApplication, Bytes(100, 8)).value();
  // Reordered: r1 before r0.
  auto e = p.enclave.Open(r1, RecordType::kApplication);
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error().code(), Error::Code::kCorrupt);
  // Tampered ciphertext, header (AAD), tag.
  for (size_t at : {size_t{0}, size_t{20}, r0.size() - 1}) {
    Bytes bad = r0;
    bad[at] ^= 0x40;
    EXPECT_FALSE(p.enclave.Open(bad, RecordType::kApplication).has_value()) << at;
  }
  // Truncated.
  EXPECT_FALSE(p.enclave.Open(std::span(r0).first(r0.size() - 5), RecordType::kApplication));
  EXPECT_FALSE(p.enclave.Open(std::span(r0).first(8), RecordType::kApplication));
  // The genuine record still opens, once; its replay is refused.
  EXPECT_TRUE(p.enclave.Open(r0, RecordType::kApplication).has_value());
  auto replay = p.enclave.Open(r0, RecordType::kApplication);
  ASSERT_FALSE(replay.has_value());
  EXPECT_EQ(replay.error().code(), Error::Code::kCorrupt);
  EXPECT_TRUE(p.enclave.Open(r1, RecordType::kApplication).has_value());
}

TEST_F(ChannelTest, WrongFinishedIsRefused) {
  auto client = ClientHandshake::Start().value();
  auto server = ServerHandshake::Respond(client.hello(), 1, MakeQuoter()).value();
  auto fin = client.OnServerHello(server.reply(), Verifier()).value();
  fin[fin.size() - 3] ^= 1;
  EXPECT_FALSE(server.OnClientFinished(fin).has_value());
}

}  // namespace
}  // namespace medstream::channel

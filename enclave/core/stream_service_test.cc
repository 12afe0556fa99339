// The enclave's stream service alone, on an in-memory platform: no enclave process, no files.
// Keys provisioned, batches analysed, and the checkpoint's rules: committed versions only, a
// restore continues exactly where the checkpoint was, an older checkpoint is a rollback (by code).
#include <gtest/gtest.h>

#include <vector>

#include "enclave/core/platform.h"
#include "enclave/core/stream_service.h"
#include "owner/client/client.h"

namespace medstream::enclave {
namespace {

constexpr wire::StreamId kStream = {0x51, 0x7e};

std::vector<hrv::Beat> Beats(uint64_t seq) {
  std::vector<hrv::Beat> out;
  for (int i = 0; i < 400; ++i) {
    const double t = static_cast<double>((seq - 1) * 400 + i) * 0.8;
    out.push_back({t, 800.0 + 40.0 * ((i * 7) % 5)});
  }
  return out;
}

class StreamServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(crypto::RandomBytes(data_key_.span()));
    crypto::Key256 root;
    ASSERT_TRUE(crypto::RandomBytes(root.span()));
    platform_ = std::make_unique<MemoryPlatform>(root);
  }
  std::unique_ptr<StreamService> Fresh() {
    return std::make_unique<StreamService>(platform_.get(), SealIdentity{.isv_svn = 1},
                                           SealPolicy::kMrEnclave);
  }
  void ProvisionOn(StreamService& s) {
    ProvisionKey p;
    p.key_id = 1;
    p.key = data_key_;
    auto ok = s.Provision(p.Encode());
    ASSERT_TRUE(ok) << ok.error().message();
  }
  Result<crypto::Bytes> Process(StreamService& s, uint64_t seq) {
    auto sealer = client::StreamSealer::Create(data_key_, 1, kStream).value();
    auto file = sealer.SealBatch(seq, Beats(seq)).value();
    return s.ProcessBatch(file, nullptr);
  }
  wire::BatchResult Open(const crypto::Bytes& result) {
    auto sealer = client::StreamSealer::Create(data_key_, 1, kStream).value();
    uint64_t seq = 0;
    return sealer.OpenResult(result, &seq).value();
  }
  Result<uint64_t> CheckpointAndCommit(StreamService& s, crypto::Bytes* blob) {
    MEDSTREAM_TRY(sealed, s.Checkpoint());
    *blob = sealed;
    const uint64_t version = platform_->counter(CounterId::kCheckpoint) + 1;
    MEDSTREAM_TRY(ok, s.Commit(CommitVersion{version}.Encode()));
    (void)ok;
    return version;
  }

  crypto::Key256 data_key_;
  std::unique_ptr<MemoryPlatform> platform_;
};

TEST_F(StreamServiceTest, ARestoredServiceContinuesExactlyAndAnOlderCheckpointIsARollback) {
  // The reference: one service, batches 1..4 in a row.
  auto reference = Fresh();
  ProvisionOn(*reference);
  std::vector<crypto::Bytes> expected;
  for (uint64_t seq = 1; seq <= 4; ++seq) {
    auto r = Process(*reference, seq);
    ASSERT_TRUE(r) << r.error().message();
    expected.push_back(*r);
  }
  // Without a key: refused, by code.
  auto keyless = Fresh();
  auto refused = Process(*keyless, 1);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), Error::Code::kFailedPrecondition);

  crypto::Key256 root;
  ASSERT_TRUE(crypto::RandomBytes(root.span()));
  platform_ = std::make_unique<MemoryPlatform>(root);
  auto first = Fresh();
  ProvisionOn(*first);
  crypto::Bytes old_blob, blob;
  ASSERT_TRUE(CheckpointAndCommit(*first, &old_blob));
  ASSERT_TRUE(Process(*first, 1));
  ASSERT_TRUE(Process(*first, 2));
  auto v = CheckpointAndCommit(*first, &blob);
  ASSERT_TRUE(v) << v.error().message();
  // A replayed batch is refused as a replay, the code the host branches on.
  auto replay = Process(*first, 2);
  ASSERT_FALSE(replay);
  EXPECT_EQ(replay.error().code(), Error::Code::kAlreadyExists);
  // A commit of a version never produced is refused.
  EXPECT_FALSE(first->Commit(CommitVersion{*v + 5}.Encode()));

  // A new service (the enclave restarted) restores the checkpoint and continues with 3 and 4;
  // once decrypted, the same windows as the service that never stopped.
  auto second = Fresh();
  auto restored = second->Restore(blob);
  ASSERT_TRUE(restored) << restored.error().message();
  for (uint64_t seq = 3; seq <= 4; ++seq) {
    auto r = Process(*second, seq);
    ASSERT_TRUE(r) << r.error().message();
    const wire::BatchResult got = Open(*r), want = Open(expected[seq - 1]);
    ASSERT_EQ(got.jobs.size(), want.jobs.size());
    ASSERT_EQ(got.jobs[0].second.windows.size(), want.jobs[0].second.windows.size());
    ASSERT_FALSE(got.jobs[0].second.windows.empty()) << "batch " << seq << " closes windows";
    for (size_t w = 0; w < got.jobs[0].second.windows.size(); ++w) {
      EXPECT_EQ(got.jobs[0].second.windows[w].metrics.sdnn_ms,
                want.jobs[0].second.windows[w].metrics.sdnn_ms);
    }
  }
  EXPECT_EQ(second->Stats().checkpoint_version, *v);
  // The older checkpoint is a rollback now that a newer one was committed.
  auto third = Fresh();
  auto rolled = third->Restore(old_blob);
  ASSERT_FALSE(rolled);
  EXPECT_EQ(rolled.error().code(), Error::Code::kRolledBack);
  // A blob sealed on another platform (another sealing root) does not open.
  crypto::Key256 other;
  ASSERT_TRUE(crypto::RandomBytes(other.span()));
  MemoryPlatform elsewhere(other);
  StreamService stranger(&elsewhere, SealIdentity{.isv_svn = 1}, SealPolicy::kMrEnclave);
  EXPECT_FALSE(stranger.Restore(blob));
}

TEST(MemoryPlatformTest, CountersNeverGoBackAndItCannotQuote) {
  MemoryPlatform p(crypto::Key256{});
  EXPECT_TRUE(p.AdvanceCounter(CounterId::kLake, 3));
  EXPECT_EQ(p.counter(CounterId::kLake), 3u);
  EXPECT_EQ(p.counter(CounterId::kCheckpoint), 0u);
  EXPECT_FALSE(p.AdvanceCounter(CounterId::kLake, 2));
  auto q = p.Quote({});
  ASSERT_FALSE(q);
  EXPECT_EQ(q.error().code(), Error::Code::kFailedPrecondition);
}

}  // namespace
}  // namespace medstream::enclave

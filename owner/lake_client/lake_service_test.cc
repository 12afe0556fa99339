// The data lake in this process: LakeHost with the inproc enclave (the SQLite store is a file under
// a temporary folder), clients talking to it through its transport. Roles, refusals by error code,
// the audit chain and small-group suppression, with no external process (unit tests; the
// `medstream lake` command line and the process backend are tested in lake_test.cc, integration).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "common/attest/identity.h"
#include "common/attest/sim_platform.h"
#include "common/base/file.h"
#include "host/inproc/inproc.h"
#include "host/lake_host/lake_host.h"
#include "owner/lake_client/lake_client.h"

namespace medstream::lakesvc {
namespace {

namespace fs = std::filesystem;

class LakeService : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() /
            ("lake-service-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ASSERT_TRUE(attest::InitPlatform({.dir = dir_ + "/platform", .now = time(nullptr)}));
    self_ = SelfPath().value();
    ASSERT_TRUE(host::SignThisExecutableForInproc());
    root_ = std::make_unique<crypto::Certificate>(
        crypto::Certificate::FromPem(
            *ReadFileText(attest::SimPlatform::RootPath(dir_ + "/platform")))
            .value());
    // The store in memory: nothing of the lake is written to disk by the host here.
    auto h =
        LakeHost::Start({.dir = dir_,
                         .store = []() -> Result<std::unique_ptr<Store>> { return MemoryStore(); },
                         .mode = "inproc",
                         .platform_dir = dir_ + "/platform",
                         .enclave_path = MEDSTREAM_ENCLAVE_BINARY,
                         .inproc = host::LaunchInproc});
    ASSERT_TRUE(h) << h.error().message();
    host_ = std::move(*h);
    csv_ = dir_ + "/admissions.csv";
    ASSERT_TRUE(WriteFileAtomic(csv_, SynthesizeAdmissions(3000, 4)));
  }
  void TearDown() override {
    EXPECT_FALSE(fs::exists(dir_ + "/lake.db"));  // the memory store was used
    host_.reset();
    fs::remove_all(dir_);
  }
  std::unique_ptr<LakeClient> Connect(const crypto::EcKey& who) {
    client::AttestOptions attest;
    attest.root = root_.get();
    attest.policy.mr_enclave = {attest::LoadIdentity(self_)->mr_enclave};
    attest.policy.allow_simulated = true;
    auto c = LakeClient::Connect(host_->transport(), attest, who);
    EXPECT_TRUE(c) << c.error().message();
    return c ? std::move(*c) : nullptr;
  }
  std::string dir_, csv_, self_;
  std::unique_ptr<crypto::Certificate> root_;
  std::unique_ptr<LakeHost> host_;
  crypto::EcKey admin_ = crypto::EcKey::Generate().value();
  crypto::EcKey hospital_ = crypto::EcKey::Generate().value();
  crypto::EcKey analyst_ = crypto::EcKey::Generate().value();
  crypto::EcKey stranger_ = crypto::EcKey::Generate().value();
};

TEST_F(LakeService, RolesAreEnforcedWithCodesToBranchOn) {
  auto admin = Connect(admin_);
  ASSERT_TRUE(admin);
  ASSERT_TRUE(admin->Init("admin"));
  EXPECT_EQ(admin->Init("again").error().code(), Error::Code::kAlreadyExists);
  ASSERT_TRUE(admin->Grant(hospital_.RawPublic(), "st-mary", "owner", {}));
  ASSERT_TRUE(admin->Grant(analyst_.RawPublic(), "eve", "analyst", {"admissions"}));

  auto hospital = Connect(hospital_);
  ASSERT_TRUE(hospital);
  auto in = hospital->Ingest("admissions", csv_, "", 10, nullptr);
  ASSERT_TRUE(in) << in.error().message();
  EXPECT_EQ(in->stored, 3000u);
  // Only the admin registers identities.
  EXPECT_EQ(hospital->Grant(stranger_.RawPublic(), "x", "analyst", {}).error().code(),
            Error::Code::kPermissionDenied);

  auto analyst = Connect(analyst_);
  ASSERT_TRUE(analyst);
  EXPECT_EQ(analyst->role(), "analyst");
  // An analyst does not upload, delete or read the audit log.
  EXPECT_EQ(analyst->Ingest("mine", csv_, "", 10, nullptr).error().code(),
            Error::Code::kPermissionDenied);
  EXPECT_EQ(analyst->Delete("admissions").error().code(), Error::Code::kPermissionDenied);
  EXPECT_EQ(analyst->Audit().error().code(), Error::Code::kPermissionDenied);
  // An aggregate is answered; the owner sees the same total.
  auto count = analyst->Query("SELECT COUNT(*) FROM admissions");
  ASSERT_TRUE(count) << count.error().message();
  auto owners = hospital->Query("SELECT COUNT(*) FROM admissions");
  ASSERT_TRUE(owners) << owners.error().message();
  ASSERT_EQ(owners->rows.size(), 1u);

  // A key nobody registered gets in as nobody: every operation is refused.
  auto stranger = Connect(stranger_);
  ASSERT_TRUE(stranger);
  EXPECT_EQ(stranger->Query("SELECT COUNT(*) FROM admissions").error().code(),
            Error::Code::kPermissionDenied);
}

// The query's limit (64 KiB) holds at its edge: a query of exactly 64 KiB is answered, one byte
// more is refused by the client with the limit named, and the session goes on.
TEST_F(LakeService, AQueryAtItsLimitIsAnsweredAndOneByteMoreIsRefusedByTheClient) {
  auto admin = Connect(admin_);
  ASSERT_TRUE(admin);
  ASSERT_TRUE(admin->Init("admin"));
  ASSERT_TRUE(admin->Grant(hospital_.RawPublic(), "st-mary", "owner", {}));
  auto hospital = Connect(hospital_);
  ASSERT_TRUE(hospital);
  ASSERT_TRUE(hospital->Ingest("admissions", csv_, "", 10, nullptr));
  const std::string sql = "SELECT COUNT(*) FROM admissions";
  const std::string at_limit = std::string(lake::kMaxQueryBytes - sql.size(), ' ') + sql;
  ASSERT_EQ(at_limit.size(), lake::kMaxQueryBytes);
  auto answered = hospital->Query(at_limit);
  ASSERT_TRUE(answered) << answered.error().message();
  EXPECT_EQ(std::get<double>(answered->rows.at(0).at(0)), 3000);
  auto refused = hospital->Query(" " + at_limit);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), Error::Code::kInvalidArgument);
  auto again = hospital->Query(sql);
  ASSERT_TRUE(again) << again.error().message();
}

TEST_F(LakeService, SmallGroupsAreSuppressedForAnalystsAndEveryQueryIsAudited) {
  auto admin = Connect(admin_);
  ASSERT_TRUE(admin && admin->Init("admin"));
  ASSERT_TRUE(admin->Grant(hospital_.RawPublic(), "st-mary", "owner", {}));
  ASSERT_TRUE(admin->Grant(analyst_.RawPublic(), "eve", "analyst", {"admissions"}));
  auto hospital = Connect(hospital_);
  LakeClient::IngestOptions exact;
  exact.policy.privacy = lake::Privacy::kExact;
  ASSERT_TRUE(hospital->Ingest("admissions", csv_, "", 10, nullptr, exact));
  // Grouped by diagnosis and age, most groups hold fewer than k = 10 patients.
  const std::string sql = "SELECT diagnosis, age, COUNT(*) FROM admissions GROUP BY diagnosis, age";
  auto mine = hospital->Query(sql);
  ASSERT_TRUE(mine) << mine.error().message();
  EXPECT_GT(mine->suppressed_groups, 0u);  // the owner is told how many groups were dropped
  auto analyst = Connect(analyst_);
  auto theirs = analyst->Query(sql);
  ASSERT_TRUE(theirs) << theirs.error().message();
  // An exact dataset never tells an analyst how many groups were dropped (that count is itself an
  // answer), and shows the same groups, each of at least k patients.
  EXPECT_EQ(theirs->suppressed_groups, 0u);
  EXPECT_EQ(theirs->rows.size(), mine->rows.size());
  for (const auto& row : theirs->rows) {
    EXPECT_GE(std::get<double>(row[2]), 10) << "a group under k was shown";
  }
  // The audit chain holds both queries, linked by hash, and the admin sees all of it.
  auto audit = admin->Audit();
  ASSERT_TRUE(audit) << audit.error().message();
  EXPECT_TRUE(audit->whole);
  size_t queries = 0;
  for (size_t i = 0; i < audit->entries.size(); ++i) {
    queries += audit->entries[i].op == "query";
    EXPECT_EQ(audit->entries[i].hash, audit->entries[i].ComputeHash()) << i;
    if (i > 0) {
      EXPECT_EQ(audit->entries[i].prev, audit->entries[i - 1].hash) << i;
    }
  }
  EXPECT_GE(queries, 2u);
}

}  // namespace
}  // namespace medstream::lakesvc

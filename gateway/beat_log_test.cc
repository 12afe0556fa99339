// The write-ahead log on its own: what a crash can leave behind, and what it must refuse.
#include "gateway/beat_log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "base/file.h"

namespace medstream::gateway {
namespace {

namespace fs = std::filesystem;

class BeatLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("beatlog-" + std::to_string(getpid()))).string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = dir_ + "/user-0001.wal";
    crypto::Key256 data;
    ASSERT_TRUE(crypto::RandomBytes(data.span()));
    key_ = BeatLogKey(data).value();
  }
  void TearDown() override { fs::remove_all(dir_); }
  static std::vector<hrv::Beat> Beats(int from, int n) {
    std::vector<hrv::Beat> b;
    for (int i = from; i < from + n; ++i) b.push_back({1.7e9 + i * 0.8, 800.0 + i});
    return b;
  }
  std::vector<uint8_t> Bytes() { return ReadFileBytes(path_).value(); }
  void Write(const std::vector<uint8_t>& b) {
    std::ofstream(path_, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  }

  std::string dir_, path_;
  crypto::Key256 key_;
};

TEST_F(BeatLogTest, RecoversWhatWasAppendedAndStartsAfreshAfterReset) {
  {
    auto log = BeatLog::Open(path_, key_, "user-0001").value();
    EXPECT_TRUE(log.TakeRecovered().empty());
    ASSERT_TRUE(log.Append(Beats(0, 3)));
    ASSERT_TRUE(log.Append(Beats(3, 1)));
    ASSERT_TRUE(log.Sync());
  }
  {
    auto log = BeatLog::Open(path_, key_, "user-0001").value();
    EXPECT_EQ(log.TakeRecovered(), Beats(0, 4));
    ASSERT_TRUE(log.Reset());
    ASSERT_TRUE(log.Append(Beats(10, 2)));
  }
  auto log = BeatLog::Open(path_, key_, "user-0001").value();
  EXPECT_EQ(log.TakeRecovered(), Beats(10, 2));
  EXPECT_TRUE(log.note().empty());
}

TEST_F(BeatLogTest, NoBeatValueIsStoredInTheClear) {
  auto log = BeatLog::Open(path_, key_, "user-0001").value();
  ASSERT_TRUE(log.Append(Beats(0, 50)));
  const auto bytes = Bytes();
  const double t = Beats(0, 50)[7].t_s;
  const auto* p = reinterpret_cast<const uint8_t*>(&t);
  EXPECT_EQ(std::search(bytes.begin(), bytes.end(), p, p + sizeof t), bytes.end());
}

TEST_F(BeatLogTest, ATornLastRecordIsCutOffAndTheRestKept) {
  {
    auto log = BeatLog::Open(path_, key_, "user-0001").value();
    ASSERT_TRUE(log.Append(Beats(0, 5)));
    ASSERT_TRUE(log.Append(Beats(5, 5)));
  }
  auto bytes = Bytes();
  const size_t whole = bytes.size();
  for (size_t cut : {whole - 1, whole - 40, whole / 2 + 3}) {
    Write(std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<long>(cut)));
    auto log = BeatLog::Open(path_, key_, "user-0001").value();
    EXPECT_EQ(log.TakeRecovered(), Beats(0, 5)) << "cut at " << cut;
    EXPECT_EQ(fs::file_size(path_), whole / 2) << "the torn record is gone";
    ASSERT_TRUE(log.Append(Beats(20, 1)));  // appends continue after the intact records
    EXPECT_EQ(BeatLog::Open(path_, key_, "user-0001").value().TakeRecovered().size(), 6u);
  }
}

TEST_F(BeatLogTest, DamageBeforeTheEndIsRefusedNotSkipped) {
  {
    auto log = BeatLog::Open(path_, key_, "user-0001").value();
    ASSERT_TRUE(log.Append(Beats(0, 5)));
    ASSERT_TRUE(log.Append(Beats(5, 5)));
  }
  auto bytes = Bytes();
  bytes[30] ^= 1;
  Write(bytes);
  auto log = BeatLog::Open(path_, key_, "user-0001");
  ASSERT_FALSE(log);
  EXPECT_NE(log.error().message().find("damaged at byte 0"), std::string::npos)
      << log.error().message();
  EXPECT_EQ(Bytes(), bytes) << "a refused log is left as it was";
  // Another user's log, or another key, does not open either.
  std::vector<uint8_t> good = bytes;
  good[30] ^= 1;
  Write(good);
  EXPECT_FALSE(BeatLog::Open(path_, key_, "user-0002"));
  crypto::Key256 other;
  EXPECT_FALSE(BeatLog::Open(path_, other, "user-0001"));
}

TEST_F(BeatLogTest, AWholeButUnreadableLastRecordIsKeptAside) {
  {
    auto log = BeatLog::Open(path_, key_, "user-0001").value();
    ASSERT_TRUE(log.Append(Beats(0, 5)));
    ASSERT_TRUE(log.Append(Beats(5, 5)));
  }
  auto bytes = Bytes();
  bytes[bytes.size() - 3] ^= 0x80;
  Write(bytes);
  auto log = BeatLog::Open(path_, key_, "user-0001").value();
  EXPECT_EQ(log.TakeRecovered(), Beats(0, 5));
  ASSERT_FALSE(log.note().empty());
  const std::string aside = log.note().substr(log.note().rfind(' ') + 1);
  EXPECT_EQ(fs::file_size(aside), bytes.size() / 2);
}

}  // namespace
}  // namespace medstream::gateway

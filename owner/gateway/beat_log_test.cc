// The write-ahead log on its own: what a crash can leave behind, and what it must refuse.
#include "owner/gateway/beat_log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <fstream>

#include "common/base/file.h"
#include "common/wire/wire.h"

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

// Issue 12: each record keeps its message's sequence, so a restart replays the device's message
// numbers too; a log of the first format (beats only) is still read.
TEST_F(BeatLogTest, RecordsKeepTheirMessageSequenceAndTheFirstFormatIsStillRead) {
  {
    auto log = BeatLog::Open(path_, key_, "user-0001").value();
    ASSERT_TRUE(log.Append(Beats(0, 3), sensor::Sequence{.session = 5, .seq = 0, .first_beat = 0}));
    ASSERT_TRUE(log.Append(Beats(3, 2)));  // a version 1 message: no sequence
    ASSERT_TRUE(log.Append(Beats(5, 1), sensor::Sequence{.session = 5, .seq = 2, .first_beat = 5}));
  }
  {
    auto records = BeatLog::Open(path_, key_, "user-0001").value().TakeRecoveredRecords();
    ASSERT_EQ(records.size(), 3u);
    ASSERT_TRUE(records[0].sequence.has_value());
    EXPECT_EQ(records[0].sequence->session, 5u);
    EXPECT_EQ(records[0].beats, Beats(0, 3));
    EXPECT_FALSE(records[1].sequence.has_value());
    EXPECT_EQ(records[1].beats, Beats(3, 2));
    EXPECT_EQ(records[2].sequence->seq, 2u);
    EXPECT_EQ(records[2].sequence->first_beat, 5u);
  }
  // A record as the first format wrote it: AAD "MSW1" + user, the beats alone.
  crypto::Bytes plain;
  wire::EncodeBeats(Beats(7, 4), &plain);
  std::array<uint8_t, crypto::AesGcm::kNonceSize> nonce{};
  nonce[0] = 9;
  auto gcm = crypto::AesGcm::Create(key_).value();
  const auto sealed = gcm.Seal(nonce, crypto::AsBytes(std::string("MSW1user-0001")), plain).value();
  const uint32_t len = static_cast<uint32_t>(sealed.size());
  std::ofstream(path_, std::ios::binary | std::ios::app)
      .write(reinterpret_cast<const char*>(&len), 4)
      .write(reinterpret_cast<const char*>(nonce.data()), nonce.size())
      .write(reinterpret_cast<const char*>(sealed.data()),
             static_cast<std::streamsize>(sealed.size()));
  auto log = BeatLog::Open(path_, key_, "user-0001").value();
  EXPECT_TRUE(log.note().empty()) << log.note();
  const auto records = log.TakeRecoveredRecords();
  ASSERT_EQ(records.size(), 4u);
  EXPECT_FALSE(records[3].sequence.has_value());
  EXPECT_EQ(records[3].beats, Beats(7, 4));
}

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

// Damage before the end (power loss, a failing disk) is not a crash artefact. It used to stop the
// gateway for every user on every start; a length no writer writes was taken for a torn last
// record and everything after it was cut off without a word. Now the file as it was is kept
// aside, the readable records go on, and the bytes that could not be read are counted.
TEST_F(BeatLogTest, DamageBeforeTheEndIsSetAsideAndTheReadableRecordsGoOn) {
  std::vector<size_t> ends;
  {
    auto log = BeatLog::Open(path_, key_, "user-0001").value();
    for (int r = 0; r < 3; ++r) {
      ASSERT_TRUE(log.Append(Beats(5 * r, 5), sensor::Sequence{7, uint64_t(r + 1), 5u * r}));
      ends.push_back(fs::file_size(path_));
    }
  }
  const std::vector<uint8_t> good = Bytes();
  auto aside_of = [](const BeatLog& log) { return log.note().substr(log.note().rfind(' ') + 1); };

  // The middle record does not authenticate: the first and the last go on.
  std::vector<uint8_t> bytes = good;
  bytes[ends[0] + 30] ^= 1;
  Write(bytes);
  {
    auto log = BeatLog::Open(path_, key_, "user-0001");
    ASSERT_TRUE(log) << log.error().message();
    EXPECT_EQ(log->damaged_bytes(), ends[1] - ends[0]);
    EXPECT_EQ(ReadFileBytes(aside_of(*log)).value(), bytes) << "the file as it was, aside";
    auto records = log->TakeRecoveredRecords();
    ASSERT_EQ(records.size(), 2u);
    EXPECT_EQ(records[0].sequence->seq, 1u);
    EXPECT_EQ(records[1].sequence->seq, 3u);  // message 2 is a gap the tracker counts
    EXPECT_EQ(records[1].beats, Beats(10, 5));
    ASSERT_TRUE(log->Append(Beats(15, 5), sensor::Sequence{7, 4, 15}));
  }
  {
    // Said once: the log is now its readable records and what came after.
    auto log = BeatLog::Open(path_, key_, "user-0001");
    ASSERT_TRUE(log) << log.error().message();
    EXPECT_TRUE(log->note().empty()) << log->note();
    EXPECT_EQ(log->damaged_bytes(), 0u);
    EXPECT_EQ(log->TakeRecoveredRecords().size(), 3u);
    ASSERT_TRUE(log->Reset());
  }

  // The middle record's length is one no writer writes: nothing after it can be framed.
  fs::remove_all(dir_);
  fs::create_directories(dir_);
  bytes = good;
  const uint32_t absurd = 0xfffffff0;
  std::memcpy(bytes.data() + ends[0], &absurd, 4);
  Write(bytes);
  auto log = BeatLog::Open(path_, key_, "user-0001");
  ASSERT_TRUE(log) << log.error().message();
  EXPECT_EQ(log->damaged_bytes(), good.size() - ends[0]);
  EXPECT_FALSE(log->note().empty());
  EXPECT_EQ(log->TakeRecovered(), Beats(0, 5));
  EXPECT_EQ(fs::file_size(path_), ends[0]);
}

// The largest record a writer writes (one message of kMaxBeatsPerMessage beats) reads back; a
// larger one is refused at writing, so that a length past it is known for damage on reading.
TEST_F(BeatLogTest, TheLargestMessageIsLoggedAndOneBeatMoreIsRefused) {
  {
    auto log = BeatLog::Open(path_, key_, "user-0001").value();
    const auto most = Beats(0, static_cast<int>(sensor::kMaxBeatsPerMessage));
    ASSERT_TRUE(log.Append(most, sensor::Sequence{1, 1, 0}));
    const auto more = Beats(0, static_cast<int>(sensor::kMaxBeatsPerMessage) + 1);
    auto refused = log.Append(more);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code(), Error::Code::kInvalidArgument);
  }
  auto log = BeatLog::Open(path_, key_, "user-0001");
  ASSERT_TRUE(log) << log.error().message();
  EXPECT_TRUE(log->note().empty()) << log->note();
  EXPECT_EQ(log->TakeRecovered().size(), sensor::kMaxBeatsPerMessage);
}

// Wherever one byte of a log is damaged, every byte is accounted for (readable, damaged or torn),
// and a damaged byte outside the length fields costs exactly its own record.
TEST_F(BeatLogTest, EveryByteIsAccountedForWhereverALogIsDamaged) {
  std::vector<size_t> starts;
  {
    auto log = BeatLog::Open(path_, key_, "user-0001").value();
    for (int r = 0; r < 3; ++r) {
      starts.push_back(fs::exists(path_) ? fs::file_size(path_) : 0);
      ASSERT_TRUE(log.Append(Beats(4 * r, 4), sensor::Sequence{2, uint64_t(r), 4u * r}));
    }
  }
  const std::vector<uint8_t> good = Bytes();
  auto gcm = crypto::AesGcm::Create(key_).value();
  for (size_t i = 0; i < good.size(); ++i) {
    std::vector<uint8_t> bytes = good;
    bytes[i] ^= 0x80;
    const LogScan scan = ScanLog(bytes, gcm, "user-0001");
    ASSERT_EQ(scan.readable.size() + scan.damaged_bytes + scan.torn_bytes, bytes.size()) << i;
    // Every record is whole: whatever byte is damaged, nothing is taken for a torn record (which
    // is cut off silently), and the damaged bytes bound the beats they can have held.
    EXPECT_EQ(scan.torn_bytes, 0u) << i;
    EXPECT_GE(scan.damaged_beats_at_most, 4u) << i;
    EXPECT_LE(scan.damaged_beats_at_most * 16, scan.damaged_bytes) << i;
    const bool in_length = std::ranges::any_of(starts, [&](size_t s) { return i - s < 4; });
    if (!in_length) {
      EXPECT_EQ(scan.recovered.size(), 2u) << i;
      EXPECT_EQ(scan.unreadable_records, 1u) << i;
      EXPECT_FALSE(scan.foreign()) << i;
    }
  }
  // The first record's length damaged: nothing can be framed, which is damage (kept aside), not
  // a foreign log (refused).
  std::vector<uint8_t> bytes = good;
  bytes[1] ^= 0x40;
  Write(bytes);
  auto log = BeatLog::Open(path_, key_, "user-0001");
  ASSERT_TRUE(log) << log.error().message();
  EXPECT_EQ(log->damaged_bytes(), bytes.size());
  EXPECT_TRUE(log->TakeRecovered().empty());
}

// The last record's length damaged so that it points past the end of the file used to read as a
// torn last record, cut off without a word although its message had been acknowledged. The length
// field now carries its own check: every flip of any of its 32 bits is damage, counted and kept
// aside, and the records before it go on.
TEST_F(BeatLogTest, ADamagedLengthOfTheLastRecordIsDamageNotATornRecord) {
  size_t last = 0;
  {
    auto log = BeatLog::Open(path_, key_, "user-0001").value();
    ASSERT_TRUE(log.Append(Beats(0, 5), sensor::Sequence{3, 1, 0}));
    ASSERT_TRUE(log.Append(Beats(5, 5), sensor::Sequence{3, 2, 5}));
    last = fs::file_size(path_);
    ASSERT_TRUE(log.Append(Beats(10, 5), sensor::Sequence{3, 3, 10}));
  }
  const std::vector<uint8_t> good = Bytes();
  auto gcm = crypto::AesGcm::Create(key_).value();
  for (size_t bit = 0; bit < 32; ++bit) {
    std::vector<uint8_t> bytes = good;
    bytes[last + bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    const LogScan scan = ScanLog(bytes, gcm, "user-0001");
    EXPECT_EQ(scan.torn_bytes, 0u) << "bit " << bit;
    EXPECT_EQ(scan.damaged_bytes, good.size() - last) << "bit " << bit;
    EXPECT_EQ(scan.recovered.size(), 2u) << "bit " << bit;
  }
  // And through Open: set aside and said, the first two messages kept.
  std::vector<uint8_t> bytes = good;
  bytes[last] ^= 0x80;  // the length 128 bytes longer: past the end of the file
  Write(bytes);
  auto log = BeatLog::Open(path_, key_, "user-0001");
  ASSERT_TRUE(log) << log.error().message();
  EXPECT_EQ(log->damaged_bytes(), good.size() - last);
  EXPECT_FALSE(log->note().empty());
  EXPECT_EQ(log->TakeRecovered(), Beats(0, 10));
}

// A log of which nothing is readable is another key's or another user's: refused, left as it was
// (a gateway started over the wrong keys must not set every user's log aside).
TEST_F(BeatLogTest, ALogNothingOfWhichIsReadableIsRefusedAndLeftAsItWas) {
  {
    auto log = BeatLog::Open(path_, key_, "user-0001").value();
    ASSERT_TRUE(log.Append(Beats(0, 5)));
    ASSERT_TRUE(log.Append(Beats(5, 5)));
  }
  const std::vector<uint8_t> bytes = Bytes();
  auto other_user = BeatLog::Open(path_, key_, "user-0002");
  ASSERT_FALSE(other_user);
  EXPECT_EQ(other_user.error().code(), Error::Code::kCorrupt);
  crypto::Key256 other;
  ASSERT_TRUE(crypto::RandomBytes(other.span()));
  auto other_key = BeatLog::Open(path_, other, "user-0001");
  ASSERT_FALSE(other_key);
  EXPECT_EQ(other_key.error().code(), Error::Code::kCorrupt);
  EXPECT_EQ(Bytes(), bytes);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
  EXPECT_EQ(BeatLog::Open(path_, key_, "user-0001")->TakeRecovered(), Beats(0, 10));
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
  EXPECT_EQ(log.damaged_bytes(), bytes.size() / 2);
  const std::string aside = log.note().substr(log.note().rfind(' ') + 1);
  EXPECT_EQ(ReadFileBytes(aside).value(), bytes);
  EXPECT_EQ(fs::file_size(path_), bytes.size() / 2);
}

}  // namespace
}  // namespace medstream::gateway

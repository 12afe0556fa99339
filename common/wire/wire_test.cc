// The segmented file format on its own: a file sealed on two threads is the file sealed on one, and
// tampering in either half is caught when opening on two threads.
#include "common/wire/wire.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>

namespace medstream::wire {
namespace {

class WireTest : public ::testing::Test {
 protected:
  void SetUp() override {
    crypto::Key256 data;
    ASSERT_TRUE(crypto::RandomBytes(data.span()));
    const auto key = StreamKey(data, {1, 2, 3}).value();
    gcm_.emplace(crypto::AesGcm::Create(key).value());
    second_.emplace(crypto::AesGcm::Create(key).value());
    payload_.resize(5 * kSegmentBytes + 1000);  // 6 segments, the last one short
    for (size_t i = 0; i < payload_.size(); ++i) payload_[i] = static_cast<uint8_t>(i * 7 + 3);
    header_.kind = Kind::kResult;
    header_.stream = {1, 2, 3};
    header_.seq = 42;
  }
  std::optional<crypto::AesGcm> gcm_, second_;
  Bytes payload_;
  Header header_;
};

TEST_F(WireTest, TwoThreadsSealTheSameFileAsOne) {
  const Bytes one = MakeFile(header_, payload_, &*gcm_).value();
  ThreadHelper t(&*second_);
  const Bytes two = MakeFile(header_, payload_, &*gcm_, t.get()).value();
  EXPECT_EQ(one, two);
  ThreadHelper t2(&*second_);
  const Opened o = OpenFile(two, Kind::kResult, &*gcm_, t2.get()).value();
  EXPECT_EQ(o.payload, payload_);
  EXPECT_EQ(o.header.seq, 42u);
}

// The process has one shared helper thread: while it works on one file, another file is sealed and
// opened by its caller alone (no waiting for the busy thread), with the same bytes.
TEST_F(WireTest, AFileIsSealedAloneWhileTheSharedHelperIsBusy) {
  const Bytes one = MakeFile(header_, payload_, &*gcm_).value();
  std::mutex mu;
  std::condition_variable cv;
  bool started = false, release = false;
  ThreadHelper busy(&*second_);
  busy.get()->start([&] {
    std::unique_lock lock(mu);
    started = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
  });
  {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return started; });
  }
  ThreadHelper other(&*second_);
  const Bytes two = MakeFile(header_, payload_, &*gcm_, other.get()).value();
  EXPECT_EQ(two, one);
  EXPECT_EQ(OpenFile(two, Kind::kResult, &*gcm_, other.get()).value().payload, payload_);
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  busy.get()->wait();
  // Free again: the next file may use it.
  EXPECT_EQ(MakeFile(header_, payload_, &*gcm_, other.get()).value(), one);
}

// The enclave seals its results in the encoded result's own buffer: the same file as MakeFile's,
// whatever the size (empty, one byte, segment edges, several segments, on one or two threads), and
// in the capacity SealedFileSize gives (no reallocation, so no second copy).
TEST_F(WireTest, SealingInPlaceMakesTheSameFileWithoutASecondBuffer) {
  for (size_t n : {size_t{0}, size_t{1}, kSegmentBytes - 1, kSegmentBytes, kSegmentBytes + 1,
                   3 * kSegmentBytes + 5, payload_.size()}) {
    for (bool two : {false, true}) {
      const ByteView payload = ByteView(payload_).first(n);
      ThreadHelper t(&*second_);
      const Bytes expected = MakeFile(header_, payload, &*gcm_).value();
      Bytes buffer;
      buffer.reserve(SealedFileSize(n));
      buffer.assign(payload.begin(), payload.end());
      const uint8_t* before = buffer.data();
      ASSERT_TRUE(SealFileInPlace(header_, &buffer, &*gcm_, two ? t.get() : nullptr)) << n;
      EXPECT_EQ(buffer.size(), SealedFileSize(n)) << n;
      EXPECT_EQ(buffer.data(), before) << n << ": reallocated";
      EXPECT_EQ(buffer, expected) << n << (two ? " on two threads" : "");
    }
  }
}

// The gateway writes its spool file while sealing (WriteFileTo): the parts it is given, put at
// their offsets, are MakeFile's file byte for byte, sealed or plain, whatever the size (empty,
// segment edges, more than one chunk of 16 segments) and on one or two threads; no part is
// written twice and none overlaps.
TEST_F(WireTest, WritingWhileSealingGivesMakeFilesBytes) {
  Bytes big(17 * kSegmentBytes + 333);  // two chunks, the second one short
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 13 + 1);
  for (size_t n : {size_t{0}, size_t{1}, kSegmentBytes, kSegmentBytes + 1, 3 * kSegmentBytes + 5,
                   16 * kSegmentBytes, big.size()}) {
    for (bool sealed : {false, true}) {
      for (bool two : {false, true}) {
        const ByteView payload = ByteView(big).first(n);
        crypto::AesGcm* gcm = sealed ? &*gcm_ : nullptr;
        const Bytes expected = MakeFile(header_, payload, gcm).value();
        Bytes got(expected.size() + 64, 0xee);  // room past the end: a part too long shows
        std::vector<uint8_t> written(got.size(), 0);
        ThreadHelper t(&*second_);
        ASSERT_TRUE(WriteFileTo(header_, payload, gcm, two ? t.get() : nullptr,
                                [&](uint64_t offset, ByteView part) -> Status {
                                  if (offset + part.size() > got.size()) {
                                    return InvalidArgument("a part past the end");
                                  }
                                  for (size_t k = 0; k < part.size(); ++k) {
                                    ++written[offset + k];
                                    got[offset + k] = part[k];
                                  }
                                  return {};
                                }))
            << n;
        got.resize(expected.size());
        EXPECT_EQ(got, expected) << n << (sealed ? " sealed" : " plain") << (two ? ", two" : "");
        EXPECT_EQ(std::count(written.begin(), written.begin() + expected.size(), 1),
                  static_cast<long>(expected.size()))
            << n;
      }
    }
  }
}

// A sink that fails (a full disk) stops the writing: its error comes back as it is, nothing more is
// written after it, and the helper's thread has finished.
TEST_F(WireTest, ASinkThatFailsStopsTheWriting) {
  Bytes big(40 * kSegmentBytes);  // three chunks
  size_t calls = 0;
  ThreadHelper t(&*second_);
  const Status s = WriteFileTo(header_, big, &*gcm_, t.get(), [&](uint64_t, ByteView) -> Status {
    if (++calls == 2) return Fail(Error::Code::kResourceExhausted, "disk full");
    return {};
  });
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), Error::Code::kResourceExhausted);
  EXPECT_EQ(calls, 2u);  // the header, then the first chunk, which failed
}

TEST_F(WireTest, TamperingInEitherHalfFailsOnTwoThreads) {
  const Bytes file = MakeFile(header_, payload_, &*gcm_).value();
  for (size_t at : {kHeaderSize + 10, kHeaderSize + kSegmentBytes + 5, file.size() - 3,
                    kHeaderSize + 4 * (kSegmentBytes + 16) + 1}) {
    Bytes bad = file;
    bad[at] ^= 0x20;
    ThreadHelper t(&*second_);
    auto o = OpenFile(bad, Kind::kResult, &*gcm_, t.get());
    ASSERT_FALSE(o) << "tampered byte " << at;
    EXPECT_EQ(o.error().code(), Error::Code::kCorrupt);
  }
  // A truncated file (the last segment dropped) fails too.
  Bytes cut(file.begin(), file.end() - 1000 - 16);
  ThreadHelper t(&*second_);
  EXPECT_FALSE(OpenFile(cut, Kind::kResult, &*gcm_, t.get()));
}

}  // namespace
}  // namespace medstream::wire

namespace medstream::wire {
namespace {

TEST(Partition, IsTheIdsHeadModuloAndFillsEvenly) {
  StreamId id{};
  id[0] = 0x00;
  id[1] = 0x00;
  id[2] = 0x01;
  id[3] = 0x02;  // 258
  EXPECT_EQ(PartitionOf(id, 16), 258u % 16);
  EXPECT_EQ(PartitionOf(id, 1), 0u);
  EXPECT_EQ(PartitionOf(id, 0), 0u);
  id[0] = 0xff;  // the top byte counts (no sign trouble)
  EXPECT_EQ(PartitionOf(id, 7), 0xff000102u % 7);
  // Pseudonyms (HMAC outputs) spread over 16 partitions: 16 000 ids, each partition within 20 %
  // of its 1 000.
  std::vector<int> count(16);
  for (int i = 0; i < 16000; ++i) {
    auto d = crypto::Sha256(crypto::ByteView(reinterpret_cast<const uint8_t*>(&i), sizeof i));
    std::copy_n(d.begin(), 16, id.begin());
    ++count[PartitionOf(id, 16)];
  }
  for (int c : count) {
    EXPECT_GT(c, 800);
    EXPECT_LT(c, 1200);
  }
}

}  // namespace
}  // namespace medstream::wire

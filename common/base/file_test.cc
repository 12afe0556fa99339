// ReadFileBytes and ReadFileInto: whole files read straight into their buffer, with the same
// refusals (missing, not a regular file, over the limit) for both. WriteFileAtomicFrom: a file
// written in parts, in any order, and nothing left behind when its maker fails.
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "common/base/file.h"

namespace medstream {
namespace {

namespace fs = std::filesystem;

class FileReadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("medstream-file-test-" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Write(const std::string& name, const std::vector<uint8_t>& bytes) {
    const std::string path = dir_ / name;
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
    return path;
  }
  fs::path dir_;
};

std::vector<uint8_t> Pattern(size_t n) {
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>((i * 131 + i / 251) & 0xff);
  return out;
}

TEST_F(FileReadTest, WholeFilesOfEverySizeAreReadStraightIntoTheirBuffer) {
  for (size_t n :
       {size_t{0}, size_t{1}, size_t{65535}, size_t{65536}, size_t{65537}, size_t{300001}}) {
    const auto bytes = Pattern(n);
    const std::string path = Write("f" + std::to_string(n), bytes);
    auto whole = ReadFileBytes(path, 1 << 20);
    ASSERT_TRUE(whole) << whole.error().message();
    EXPECT_EQ(*whole, bytes) << n;

    std::vector<uint8_t> dest(n + 7, 0xee);
    size_t got = 99;
    auto fit = ReadFileInto(path, 1 << 20, dest, &got);
    ASSERT_TRUE(fit) << fit.error().message();
    EXPECT_TRUE(*fit);
    EXPECT_EQ(got, n);
    EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), dest.begin())) << n;
    auto exact = ReadFileInto(path, 1 << 20, std::span(dest).first(n), &got);
    ASSERT_TRUE(exact);
    EXPECT_TRUE(*exact);
    EXPECT_EQ(got, n);
    if (n > 0) {
      auto too_small = ReadFileInto(path, 1 << 20, std::span(dest).first(n - 1), &got);
      ASSERT_TRUE(too_small);
      EXPECT_FALSE(*too_small) << "a file one byte too big for its buffer does not fit";
    }
  }
}

// A reader that uses the bytes as they arrive (the server's batch, read while the enclave works
// on it): told the size before any byte, then each growing prefix, ending at the whole file. A
// refusal of the size stops the read before anything is read.
TEST_F(FileReadTest, AReadWithProgressAnnouncesTheSizeAndThenEachPrefix) {
  for (size_t n : {size_t{0}, size_t{1}, kReadPiece, kReadPiece + 1, 3 * kReadPiece + 17}) {
    const auto bytes = Pattern(n);
    const std::string path = Write("p" + std::to_string(n), bytes);
    std::vector<uint8_t> dest(n + kReadPiece, 0xee);
    std::vector<std::string> events;
    size_t last = 0;
    const ReadProgress progress{
        .sized = [&](uint64_t size) -> Status {
          events.push_back("size " + std::to_string(size));
          return {};
        },
        .arrived =
            [&](size_t k) {
              // Every byte announced is in place.
              EXPECT_TRUE(std::equal(bytes.begin(), bytes.begin() + k, dest.begin()));
              EXPECT_GT(k, last);
              last = k;
            }};
    size_t got = 0;
    auto fit = ReadFileInto(path, 1 << 22, dest, &got, &progress);
    ASSERT_TRUE(fit) << fit.error().message();
    EXPECT_TRUE(*fit);
    EXPECT_EQ(got, n);
    EXPECT_EQ(events, std::vector<std::string>{"size " + std::to_string(n)});
    EXPECT_EQ(last, n);
  }
  const std::string path = Write("refused", Pattern(1000));
  std::vector<uint8_t> dest(2000, 0xee);
  bool arrived = false;
  const ReadProgress refuse{.sized = [](uint64_t) -> Status { return ResourceExhausted("no"); },
                            .arrived = [&](size_t) { arrived = true; }};
  size_t got = 0;
  auto refused = ReadFileInto(path, 1 << 20, dest, &got, &refuse);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), Error::Code::kResourceExhausted);
  EXPECT_FALSE(arrived);
  EXPECT_EQ(dest[0], 0xee) << "nothing read after the size was refused";
}

TEST_F(FileReadTest, BothRefuseMissingFilesNonFilesAndFilesOverTheLimit) {
  const std::string big = Write("big", Pattern(5000));
  std::vector<uint8_t> dest(10000);
  size_t got = 0;
  auto over = ReadFileBytes(big, 4999);
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code(), Error::Code::kResourceExhausted);
  auto over_into = ReadFileInto(big, 4999, dest, &got);
  ASSERT_FALSE(over_into);
  EXPECT_EQ(over_into.error().code(), Error::Code::kResourceExhausted);
  ASSERT_TRUE(ReadFileBytes(big, 5000));

  auto missing = ReadFileInto((dir_ / "nothing").string(), 100, dest, &got);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), Error::Code::kNotFound);
  auto directory = ReadFileInto(dir_.string(), 100, dest, &got);
  ASSERT_FALSE(directory);
  EXPECT_EQ(directory.error().code(), Error::Code::kInvalidArgument);
  // A FIFO planted where a file is expected: refused at once, not waited on.
  const std::string fifo = dir_ / "fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  auto planted = ReadFileInto(fifo, 100, dest, &got);
  ASSERT_FALSE(planted);
  EXPECT_EQ(planted.error().code(), Error::Code::kInvalidArgument);
  auto planted_bytes = ReadFileBytes(fifo, 100);
  ASSERT_FALSE(planted_bytes);
  EXPECT_EQ(planted_bytes.error().code(), Error::Code::kInvalidArgument);
}

TEST_F(FileReadTest, AFileWrittenInPartsInAnyOrderIsWholeAndAFailedOneIsNotThere) {
  const std::vector<uint8_t> bytes = Pattern(300000);
  const std::string path = dir_ / "parts";
  ASSERT_TRUE(WriteFileAtomicFrom(path, 0600, [&](const FileSink& write) -> Status {
    const auto all = std::span(bytes);
    if (auto s = write(200000, all.subspan(200000)); !s) return s;  // the end first
    if (auto s = write(0, all.first(1000)); !s) return s;
    return write(1000, all.subspan(1000, 199000));
  }));
  EXPECT_EQ(ReadFileBytes(path).value(), bytes);
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // The maker fails after writing a part: its error, as it is, and no file, not even a temporary.
  const std::string failed = dir_ / "failed";
  const Status s = WriteFileAtomicFrom(failed, 0600, [&](const FileSink& write) -> Status {
    if (auto w = write(0, std::span(bytes).first(5000)); !w) return w;
    return Fail(Error::Code::kResourceExhausted, "no more room");
  });
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), Error::Code::kResourceExhausted);
  EXPECT_FALSE(fs::exists(failed));
  size_t left = 0;
  for (const auto& e : fs::directory_iterator(dir_)) left += e.path().filename() != "parts";
  EXPECT_EQ(left, 0u);
}

// A short write (here the file-size limit standing in for a full disk: the first bytes go in, the
// rest fail) used to leave part of the data, which the retry then followed with the whole: one
// line of the server's journal glued to the next, two names in one, and the replay missed that
// batch. A failed append now leaves the file as it was.
TEST_F(FileReadTest, AFailedAppendLeavesTheFileAsItWas) {
  const std::string path = dir_ / "journal";
  ASSERT_TRUE(AppendToFile(path, "first.batch\n", 0600, /*sync=*/true));
  const auto before = fs::file_size(path);
  struct rlimit old {};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  const auto previous = std::signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of the signal
  struct rlimit tight = old;
  tight.rlim_cur = before + 4;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &tight), 0);
  auto journal = AppendToFile(path, "second.batch\n", 0600, /*sync=*/true);
  auto results = AppendPrivateFile(path, "a longer line of results\n");
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
  std::signal(SIGXFSZ, previous);
  ASSERT_FALSE(journal);
  EXPECT_EQ(journal.error().code(), Error::Code::kIo);
  ASSERT_FALSE(results);
  EXPECT_EQ(fs::file_size(path), before) << "part of a failed append was left";
  ASSERT_TRUE(AppendToFile(path, "second.batch\n", 0600, /*sync=*/true));
  std::ifstream in(path);
  std::string a, b;
  std::getline(in, a);
  std::getline(in, b);
  EXPECT_EQ(a, "first.batch");
  EXPECT_EQ(b, "second.batch");
}

}  // namespace
}  // namespace medstream

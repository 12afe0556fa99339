// Where a result file stands after a crash (owner/gateway/result_files.h): whatever byte an append
// was torn at, what is kept plus the results read again is the file as it would have been.
#include "owner/gateway/result_files.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "common/base/file.h"

namespace medstream::gateway {
namespace {

namespace fs = std::filesystem;

// Result blocks as the gateway writes them, result 1 first: windows and a marker, a result
// without windows, a quarantined one.
std::vector<std::string> JsonBlocks() {
  return {
      "{\"seq\":1,\"job\":\"sdnn\",\"t_start\":0.0,\"sdnn\":41.5}\n"
      "{\"seq\":1,\"job\":\"sdnn\",\"t_start\":30.0,\"sdnn\":40.25}\n"
      "{\"seq\":1,\"windows\":2,\"end\":true}\n",
      "{\"seq\":2,\"windows\":0,\"end\":true}\n",
      "{\"seq\":3,\"windows\":0,\"quarantined\":\"refused\",\"end\":true}\n",
      "{\"seq\":4,\"job\":\"sdnn\",\"t_start\":60.0,\"sdnn\":38.0}\n"
      "{\"seq\":4,\"job\":\"hrv-bands\",\"t_start\":60.0,\"lf\":null}\n"
      "{\"seq\":4,\"job\":\"sdnn\",\"t_start\":90.0,\"sdnn\":39.0}\n"
      "{\"seq\":4,\"windows\":3,\"end\":true}\n",
  };
}
// A job's CSV: a header, then rows of the results that had windows for it (not 2 nor 3).
const std::string kHeader = "seq,t_start,t_end,coverage,sdnn,lost_beats,start_utc,end_utc\n";
std::vector<std::string> CsvBlocks() {
  return {"1,0,300,1,41.5,0,x,y\n1,30,330,1,40.25,0,x,y\n", "", "",
          "4,60,360,0.98,38,2,x,y\n4,90,390,1,39,0,x,y\n"};
}

std::string Join(const std::vector<std::string>& blocks, size_t from = 0) {
  std::string s;
  for (size_t i = from; i < blocks.size(); ++i) s += blocks[i];
  return s;
}

// SettleResultFile's reading, without the file: tails growing from `window` bytes.
ResultTail Scan(std::string_view file, ResultFileKind kind, size_t window,
                uint64_t max_seq = ~uint64_t{0}) {
  for (size_t w = window;; w *= 4) {
    const size_t n = std::min(w, file.size());
    const ResultTail r =
        ScanResultTail(file.substr(file.size() - n), n == file.size(), kind, max_seq);
    if (!r.need_more) {
      ResultTail whole = r;
      whole.keep += file.size() - n;  // as an offset into the file
      return whole;
    }
    EXPECT_LT(n, file.size()) << "more asked of the whole file";
  }
}

TEST(ResultFiles, AJsonFileTornAtAnyByteKeepsWholeResultsAndReadsTheRestAgain) {
  const std::vector<std::string> blocks = JsonBlocks();
  const std::string full = Join(blocks);
  for (size_t window : {size_t{8}, size_t{64} << 10}) {
    for (size_t cut = 0; cut <= full.size(); ++cut) {
      const std::string file = full.substr(0, cut);
      const ResultTail r = Scan(file, ResultFileKind::kJsonLines, window);
      ASSERT_LE(r.keep, file.size()) << cut;
      ASSERT_LE(r.last_seq, blocks.size()) << cut;
      // Kept, then every result after the last one kept, as the gateway reads them again.
      EXPECT_EQ(file.substr(0, r.keep) + Join(blocks, r.last_seq), full)
          << "torn at " << cut << " (window " << window << ")";
    }
  }
}

TEST(ResultFiles, ACsvFileTornInsideALineKeepsWholeResultsAndReadsTheRestAgain) {
  const std::vector<std::string> blocks = CsvBlocks();
  const std::string full = kHeader + Join(blocks);
  for (size_t window : {size_t{8}, size_t{64} << 10}) {
    for (size_t cut = 0; cut <= full.size(); ++cut) {
      const std::string file = full.substr(0, cut);
      const ResultTail r = Scan(file, ResultFileKind::kCsv, window);
      const bool on_a_line = cut == 0 || full[cut - 1] == '\n';
      if (on_a_line && cut > kHeader.size()) {
        // A tear exactly at a line boundary is not seen in a CSV file (result_files.h).
        EXPECT_EQ(r.keep, cut) << cut;
        continue;
      }
      const std::string kept = file.substr(0, r.keep);
      // The header is written again when nothing of it is left whole (AppendBlock).
      const std::string rebuilt = (kept.empty() ? kHeader : kept) + Join(blocks, r.last_seq);
      EXPECT_EQ(rebuilt, full) << "torn at " << cut << " (window " << window << ")";
    }
  }
}

// The crash between a result's CSV append and its jsonl append: the CSV's rows of results the
// jsonl lacks go (the result is read again for both).
TEST(ResultFiles, CsvRowsOfResultsTheJsonFileLacksGo) {
  const std::vector<std::string> blocks = CsvBlocks();
  const std::string full = kHeader + Join(blocks);
  const ResultTail r = Scan(full, ResultFileKind::kCsv, 64 << 10, /*max_seq=*/3);
  EXPECT_EQ(r.keep, kHeader.size() + blocks[0].size());
  EXPECT_EQ(r.last_seq, 1u);  // 2 and 3 had no rows
  EXPECT_FALSE(r.cut_newest);
  const ResultTail none = Scan(full, ResultFileKind::kCsv, 64 << 10, /*max_seq=*/0);
  EXPECT_EQ(none.keep, kHeader.size());
  EXPECT_EQ(none.last_seq, 0u);
}

// Before, a damaged last line read as "no result yet" and every result was appended again.
TEST(ResultFiles, ADamagedLastLineGoesAndTheWholeResultsBeforeItStay) {
  const std::string full = Join(JsonBlocks());
  for (const char* damage : {"{\"seq\":-1}\n", "{\"seq\":1e30}\n", "\x01\x02garbage\n"}) {
    const ResultTail r = Scan(full + damage, ResultFileKind::kJsonLines, 64 << 10);
    EXPECT_EQ(r.keep, full.size()) << damage;
    EXPECT_EQ(r.last_seq, 4u) << damage;
  }
  // A file of which no line reads is left as it is: nothing says it is a tear.
  const ResultTail r = Scan("not json\nnor this\n", ResultFileKind::kJsonLines, 64 << 10);
  EXPECT_EQ(r.keep, 18u);
  EXPECT_EQ(r.last_seq, 0u);
}

// A jsonl written before the markers: its newest block is taken whole, as it was read then.
TEST(ResultFiles, AFileOfBeforeTheMarkersIsReadAsItWas) {
  const std::string old =
      "{\"seq\":1,\"job\":\"sdnn\",\"t_start\":0.0}\n"
      "{\"seq\":2,\"windows\":0}\n"
      "{\"seq\":3,\"job\":\"sdnn\",\"t_start\":30.0}\n"
      "{\"seq\":3,\"job\":\"sdnn\",\"t_start\":60.0}\n";
  const ResultTail r = Scan(old, ResultFileKind::kJsonLines, 8);
  EXPECT_EQ(r.keep, old.size());
  EXPECT_EQ(r.last_seq, 3u);
  EXPECT_FALSE(r.cut_newest);
  // Blocks written after it carry markers, and a torn one among them is seen. (The first block
  // written after it is taken whole, as the old blocks are: the one tear that cannot be seen.)
  const std::string upgraded = old +
                               "{\"seq\":4,\"job\":\"sdnn\",\"t_start\":90.0}\n"
                               "{\"seq\":4,\"windows\":1,\"end\":true}\n";
  const std::string torn =
      upgraded + "{\"seq\":5,\"job\":\"sdnn\",\"t_start\":120.0}\n{\"seq\":5,\"wi";
  const ResultTail t = Scan(torn, ResultFileKind::kJsonLines, 8);
  EXPECT_EQ(t.keep, upgraded.size());
  EXPECT_EQ(t.last_seq, 4u);
  EXPECT_TRUE(t.cut_newest);
}

TEST(ResultFiles, SettlingCutsTheFileDurablyAndReadsOnlyItsEnd) {
  const std::string dir = (fs::temp_directory_path() / ("rf-" + std::to_string(getpid()))).string();
  fs::create_directories(dir);
  const std::string path = dir + "/u.jsonl";
  // Many results, then a torn one: only the end is read, the torn block goes.
  std::string text;
  for (int seq = 1; seq <= 5000; ++seq) {
    text += "{\"seq\":" + std::to_string(seq) + ",\"job\":\"sdnn\",\"t_start\":1.0}\n";
    text += "{\"seq\":" + std::to_string(seq) + ",\"windows\":1,\"end\":true}\n";
  }
  const size_t whole = text.size();
  text += "{\"seq\":5001,\"job\":\"sdnn\",\"t_start\":1.0}\n{\"seq\":50";
  ASSERT_TRUE(WriteFileAtomic(path, text, 0600));
  uint64_t cut = 0;
  auto r = SettleResultFile(path, ResultFileKind::kJsonLines, ~uint64_t{0}, &cut);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->last_seq, 5000u);
  EXPECT_TRUE(r->cut_newest);
  EXPECT_EQ(cut, text.size() - whole);
  EXPECT_EQ(fs::file_size(path), whole);
  // Absent: no result yet, nothing made.
  auto absent = SettleResultFile(dir + "/none.jsonl", ResultFileKind::kJsonLines);
  ASSERT_TRUE(absent);
  EXPECT_EQ(absent->last_seq, 0u);
  EXPECT_FALSE(fs::exists(dir + "/none.jsonl"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace medstream::gateway

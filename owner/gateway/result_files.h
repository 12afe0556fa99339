// result_files: where a user's result files stand when the gateway starts, so that each result's
// lines are in them exactly once.
//
// The gateway appends each result to RESULTS/<user>.<job>.csv (one per job with windows) and then
// to RESULTS/<user>.jsonl, one write per file and result. Every line starts with the result's
// sequence number, and a result's JSON block ends with its marker {"seq":N,"windows":W,"end":true}.
// A crash or a power loss can leave a file ending inside a result's block (a torn append), or stop
// between the two files. Before, a torn or damaged last line of the jsonl read as "no result yet",
// and every result still in the server's outbox was appended again after it. Now, at start:
//   - lines after the newest line that reads go (a torn line, damage);
//   - if that line does not end its result's block (a JSON line that is not the marker, a CSV row
//     a torn line followed), the block's lines go too and the result is read again;
//   - CSV rows of results the jsonl does not have go (written again with it);
//   - a result a file holds already is not appended to it again.
// Only the file's end is read (64 KiB, longer only while no boundary is found). A tear exactly at
// a line boundary inside a CSV block cannot be seen (the jsonl, with its markers, can). A jsonl
// written before the markers (a block's last line without "end", the one before it too) is read as
// it was: its newest block taken whole.
// ScanResultTail is pure; SettleResultFile reads and cuts the file. Thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/base/result.h"

namespace medstream::gateway {

enum class ResultFileKind { kJsonLines, kCsv };

// What the end of a result file says. `tail` is the file's last bytes; `whole`: it is the whole
// file. Rows of results after `max_seq` go (a CSV's rows of results its jsonl does not have: the
// crash between the two appends; they are written again).
struct ResultTail {
  bool need_more = false;   // the answer lies before `tail`: scan a longer tail
  uint64_t last_seq = 0;    // the newest result the file holds whole (0: none)
  size_t keep = 0;          // bytes of `tail` to keep; the rest goes
  bool cut_newest = false;  // the lines of result last_seq + 1 were cut short: it is read again
};
ResultTail ScanResultTail(std::string_view tail, bool whole, ResultFileKind kind,
                          uint64_t max_seq = ~uint64_t{0});

// ScanResultTail on `path`'s end, and what it says goes cut off (durably); `cut` (optional): how
// many bytes. An absent file holds no result.
Result<ResultTail> SettleResultFile(const std::string& path, ResultFileKind kind,
                                    uint64_t max_seq = ~uint64_t{0}, uint64_t* cut = nullptr);

}  // namespace medstream::gateway

// Where a gateway's results file stands at start (owner/gateway/result_files.h, ScanResultTail):
// whatever the file's end holds (a torn append, damage), the answer read from a growing tail, as
// SettleResultFile reads it, is the answer from the whole file, and only bytes of it go.
#include "fuzz/fuzz.h"
#include "owner/gateway/result_files.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace medstream;
  if (size < 2) return 0;
  const auto kind =
      data[0] & 1 ? gateway::ResultFileKind::kCsv : gateway::ResultFileKind::kJsonLines;
  const uint64_t max_seq = data[1] == 0xff ? ~uint64_t{0} : data[1];
  const std::string_view file = fuzz::Text(data + 2, size - 2);
  const gateway::ResultTail whole = gateway::ScanResultTail(file, true, kind, max_seq);
  MEDSTREAM_FUZZ_CHECK(!whole.need_more);
  MEDSTREAM_FUZZ_CHECK(whole.keep <= file.size());
  for (size_t w = 1;; w *= 2) {
    const size_t n = std::min(w, file.size());
    const gateway::ResultTail r =
        gateway::ScanResultTail(file.substr(file.size() - n), n == file.size(), kind, max_seq);
    if (r.need_more) {
      MEDSTREAM_FUZZ_CHECK(n < file.size());
      continue;
    }
    MEDSTREAM_FUZZ_CHECK(file.size() - n + r.keep == whole.keep);
    MEDSTREAM_FUZZ_CHECK(r.last_seq == whole.last_seq && r.cut_newest == whole.cut_newest);
    break;
  }
  return 0;
}

// lake_abi/csv: RFC 4180 records (quoted fields, "" inside quotes, CRLF or LF), for the hospital's
// client (schema inference, chunking on record boundaries) and the enclave (row parsing).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/lake_abi/schema.h"

namespace medstream::lake {

// The record starting at `*pos` in `text`: fields into `fields` (views into `text`, or into
// `scratch` for fields with escaped quotes), `*pos` moved past its line end. False at the end.
// A record whose quotes never close is returned whole with `*unterminated` set.
bool NextRecord(std::string_view text, size_t* pos, std::vector<std::string_view>* fields,
                std::vector<std::string>* scratch, bool* unterminated);

// Where the last complete record of `text` ends (0 if none): chunks are cut there.
size_t CompleteRecordsEnd(std::string_view text);

// Ingest limits, kept by the client (which cuts chunks at record ends and refuses a longer record
// with its line number) and again by the enclave (which refuses a larger chunk).
inline constexpr size_t kMaxRecordBytes = 1 << 20;       // one CSV record
inline constexpr size_t kMaxIngestChunkBytes = 8 << 20;  // one encrypted ingest chunk

// Column types from a header and sample rows: integer if every value parses as one, else real,
// else date (YYYY-MM-DD), else categorical when few distinct values repeat, else text.
Schema InferSchema(const std::vector<std::string>& header,
                   const std::vector<std::vector<std::string>>& rows);

}  // namespace medstream::lake

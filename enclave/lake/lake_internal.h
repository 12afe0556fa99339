// lake/lake_internal: what lake.cc (requests) and lake_store.cc (the sealed manifest, pages and
// query histories) share: the formats' constants, the in-enclave dataset and session state, and
// small helpers. Internal to the lake module; not thread-safe (the Lake is driven by one caller).
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/lake_abi/csv.h"
#include "enclave/lake/lake.h"

namespace medstream::lake::internal {

inline constexpr char kManifestMagic[] = "MSLM";   // before privacy policies
inline constexpr char kManifestMagic2[] = "MSL2";  // datasets carry their policy and spent budgets
inline constexpr char kManifestMagic3[] = "MSL3";  // the audit log's older entries in segments
inline constexpr char kPageMagic[] = "MSLP";
inline constexpr char kAuditSegmentMagic[] = "MSLA";
// The audit log is sealed in segments of this many entries ("audit/<n>"), the manifest keeping
// fewer: with entries of at most ~2.5 KiB (kMaxAuditTextBytes) a segment is under 1 MiB, so each
// request seals under 1 MiB of log however long it grows (the whole log once went into every
// manifest: 1 100 queries of 64 KiB, even from an unregistered identity, made it pass the 64 MiB
// a lake_load may carry, and the lake could never be loaded again).
inline constexpr size_t kAuditSegmentEntries = 256;
// 64 Mi entries: the segments' list stays under 15 MiB of the manifest (past it, requests are
// refused: the log is full).
inline constexpr size_t kMaxAuditSegments = size_t{1} << 18;
// An audit entry keeps a query or an outcome up to this size whole; a longer one keeps its start
// and the SHA-256 of the whole (which proves what was asked to whoever has the text). The
// datasets an entry names (a grant's list) are kept up to kMaxAuditDatasetsBytes alike.
inline constexpr size_t kMaxAuditTextBytes = 1024;
inline constexpr size_t kMaxAuditDatasetsBytes = 16 * 1024;
std::string AuditSegmentKey(uint64_t n);
// An entry's largest encoded size: who (a 256-byte name and its fingerprint), op, datasets, the
// two texts, and the fixed fields, with room to spare.
inline constexpr size_t kMaxAuditEntryBytes =
    1024 + 64 + kMaxAuditDatasetsBytes + 2 * kMaxAuditTextBytes + 200;
static_assert(kAuditSegmentEntries * kMaxAuditEntryBytes + 1024 <= kMaxStoredBlobBytes);
// A page holds at most this much of its rows' fixed-size values (8 bytes a number, 4 a text's
// code); its strings, at most 2.5 times their CSV's bytes (a length and the text, for a separator
// and the text), come on top: a page stays within what one lake_load carries.
inline constexpr size_t kPageFixedBytes = size_t{16} << 20;
static_assert(kPageFixedBytes + 3 * kMaxIngestChunkBytes + 1024 * 1024 <= kMaxStoredBlobBytes);
inline constexpr char kHistoryMagic[] = "MSLO";
// One remembered query's rows, one bit each: datasets up to kMaxDatasetRows.
inline constexpr size_t kMaxHistoryBytes = size_t{32} << 20;
inline constexpr uint64_t kMaxDatasetRows = uint64_t{kMaxHistoryBytes} * 8;
// All of one analyst's remembered queries on a dataset: older ones are forgotten past this. With
// the sets' lengths and the blob's header the history stays a blob the host can hand back in one
// lake_load (at 64 MiB, 64 sets of 1 MiB, from a dataset of 2^23 rows, made one that could not be:
// the lake would not have loaded again).
inline constexpr size_t kMaxHistoryTotalBytes = size_t{60} << 20;
static_assert(kMaxHistoryBytes <= kMaxHistoryTotalBytes);
static_assert(kMaxHistoryTotalBytes + kOverlapHistory * 4 + 1024 <= kMaxStoredBlobBytes);

// One bit a row, from one byte a row.
std::vector<uint8_t> PackBits(const std::vector<uint8_t>& rows);
// Rows in one set and not the other (a shorter set has no rows past its end).
uint64_t Differ(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b);
std::unexpected<Error> Denied(std::string why);
std::string Fingerprint(const PublicKey& k);
Result<PublicKey> ReadKey(ByteReader* r);
std::string PageKey(const std::string& dataset_id, uint32_t n);

}  // namespace medstream::lake::internal

namespace medstream::lake {

struct Lake::Identity {
  std::string name;
  Role role = Role::kNone;
  std::vector<std::string> datasets;  // analysts: granted dataset names
};

struct Lake::Dataset {
  std::string id;  // opaque, names the pages
  std::string name;
  PublicKey owner{};
  uint32_t k = 5;
  PrivacyPolicy policy;
  std::map<PublicKey, double> spent;  // dp: each analyst's epsilon so far (persisted)
  // exact: each analyst's last answered queries' selected rows, one bit a row, in a sealed blob of
  // its own whose hash the manifest pins (so a restart or a rolled-back blob cannot clear it).
  struct History {
    std::string key;
    crypto::Digest hash{};
    bool loaded = false;
    std::deque<std::vector<uint8_t>> sets;
  };
  std::map<PublicKey, History> recent;
  struct Page {
    std::string key;
    crypto::Digest hash{};
    uint64_t rows = 0;
    bool loaded = false;
  };
  std::vector<Page> pages;
  uint32_t next_page = 0;
  std::unique_ptr<Table> table;
};

struct Lake::Session {
  crypto::Bytes nonce;
  PublicKey key{};
  bool hello = false;
  bool proven = false;
  struct IngestState {
    std::string dataset;
    std::string id;
    bool fresh = false;
    Schema schema;
    uint32_t k = 5;
    PrivacyPolicy policy;
    std::unique_ptr<Table> staging;
    std::vector<Dataset::Page> pages;
    uint32_t next_page = 0;
    uint64_t bad = 0;
    std::vector<BadRow> bad_rows;
  };
  std::unique_ptr<IngestState> ingest;
};

}  // namespace medstream::lake

// lake/lake_internal: what lake.cc (requests) and lake_store.cc (the sealed manifest, pages and
// query histories) share: the formats' constants, the in-enclave dataset and session state, and
// small helpers. Internal to the lake module; not thread-safe (the Lake is driven by one caller).
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

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
inline constexpr size_t kMaxAuditSegments = size_t{1} << 20;
// An audit entry keeps a query or an outcome up to this size whole; a longer one keeps its start
// and the SHA-256 of the whole (which proves what was asked to whoever has the text).
inline constexpr size_t kMaxAuditTextBytes = 1024;
std::string AuditSegmentKey(uint64_t n);
inline constexpr char kHistoryMagic[] = "MSLO";
// One remembered query's rows, one bit each: datasets up to 2^30 rows.
inline constexpr size_t kMaxHistoryBytes = size_t{1} << 27;
// All of one analyst's remembered queries on a dataset: older ones are forgotten past this.
inline constexpr size_t kMaxHistoryTotalBytes = size_t{64} << 20;

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

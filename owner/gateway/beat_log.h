// beat_log: the gateway's write-ahead log of beats received but not yet cut into a sealed batch.
//
// libmosquitto (2.0, threaded loop) acknowledges a QoS 1 message to the broker only after the
// message callback has returned. The gateway appends every message to this log inside that
// callback, so a message is either in the log or still unacknowledged (and sent again by the broker
// to the gateway's persistent session): a gateway killed at any moment loses no beat. After a batch
// is sealed into the spool the log starts afresh.
//
// One file per user, STATE/wal/<user>.wal, a sequence of records
//   length u32 | nonce (12) | AES-256-GCM(message) with tag, AAD = "MSW2" | user name,
//   message = has_sequence u8 | session u64 | seq u64 | first_beat u64 | beats (wire::EncodeBeats)
// so that replaying the log also replays the device's message sequence (owner/gateway/sequence.h).
// The length field holds the length (< 2^16) in its low half and that half's complement in its
// high half, so that a damaged length is told from a torn last record. Records written before
// that check (a high half of 0) and records of the first format (AAD "MSW1", the beats alone) are
// still read.
// A record is written with one write(2): a process crash leaves at most a torn last record (a
// length field cut short, or a whole one whose record the file ends inside), which is dropped on
// opening (its message was not acknowledged). Anything else unreadable is damage (power loss, a
// failing disk): a record that does not authenticate, or a length field that fails its check or
// holds a length no writer writes (after which nothing can be framed). Opening then keeps the file
// as it was in <path>.damaged-<time>, goes on with the readable records, and says so in note() and
// damaged_bytes(): one damaged log never stops the gateway's other users. A log of two or more
// whole records none of which is readable is refused instead: that is another key's or another
// user's log, and the gateway must not start over it.
// Appends reach the page cache (enough for a process crash); Sync() makes them durable and the
// gateway calls it at most once a second. A failed Sync is said once by the kernel: the pages it
// could not write may be dropped and the next Sync succeed without them, so the caller must not
// take the log as durable again on the strength of a later Sync (the gateway waits for the cut).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "algo/hrv/types.h"
#include "common/base/result.h"
#include "common/crypto/crypto.h"
#include "owner/sensor/sensor.h"

namespace medstream::gateway {

class BeatLog {
 public:
  // How Sync() flushes the file: fdatasync(2) unless a test injects failures.
  using SyncFn = std::function<int(int fd)>;
  // Opens (or creates) `path`; the beats of its intact records are in recovered().
  static Result<BeatLog> Open(const std::string& path, const crypto::Key256& key,
                              const std::string& user, SyncFn sync = nullptr);
  BeatLog(BeatLog&&) noexcept;
  BeatLog& operator=(BeatLog&&) noexcept;
  ~BeatLog();

  // One logged message: its sequence when it carried one (payload version 2).
  struct Record {
    std::optional<sensor::Sequence> sequence;
    std::vector<hrv::Beat> beats;
  };

  // At most sensor::kMaxBeatsPerMessage beats (one message's), else kInvalidArgument.
  Status Append(std::span<const hrv::Beat> beats,
                const std::optional<sensor::Sequence>& sequence = std::nullopt);
  Status Sync();   // fdatasync when something was appended (or read back at opening) since the last
  Status Reset();  // empty the log (its beats are now in a sealed batch)
  // The recovered records (TakeRecovered: their beats only). Either empties them.
  std::vector<Record> TakeRecoveredRecords() { return std::move(recovered_); }
  std::vector<hrv::Beat> TakeRecovered();
  bool dirty() const { return dirty_; }
  const std::string& note() const { return note_; }  // what opening had to set aside, if anything
  size_t damaged_bytes() const { return damaged_bytes_; }  // how many bytes it could not read

 private:
  BeatLog(int fd, crypto::AesGcm gcm, std::string user, std::string path)
      : fd_(fd), gcm_(std::move(gcm)), aad_("MSW2" + user), path_(std::move(path)) {}
  int fd_ = -1;
  crypto::AesGcm gcm_;
  std::string aad_;
  std::string path_;
  SyncFn sync_;
  bool dirty_ = false;
  std::vector<Record> recovered_;
  std::string note_;
  size_t damaged_bytes_ = 0;
};

// What a log's bytes hold, without I/O (BeatLog::Open acts on it; fuzzed): every record whose
// frame holds, read or counted as unreadable; where a frame does not hold (a length no writer
// writes), the rest cannot be framed. Every byte is in exactly one of readable, damaged_bytes and
// torn_bytes.
struct LogScan {
  std::vector<BeatLog::Record> recovered;
  crypto::Bytes readable;  // the readable records' bytes, as they were
  size_t unreadable_records = 0;
  bool unframed = false;        // bytes follow that cannot be framed
  size_t first_unreadable = 0;  // where the first unreadable byte is (the size when none)
  size_t damaged_bytes = 0;     // the unreadable records' bytes and the unframed rest
  size_t torn_bytes = 0;        // a torn last record (a crash mid-write), not damage
  // How many beats the damaged bytes can have held (16 bytes a beat): a bound, not a count, since
  // what they held cannot be read.
  size_t damaged_beats_at_most = 0;
  bool damaged() const { return damaged_bytes > 0; }
  // Two or more records framed whole and none readable: not damage but another key's or another
  // user's log.
  bool foreign() const;
};
LogScan ScanLog(crypto::ByteView bytes, crypto::AesGcm& gcm, const std::string& user);

// The log key: HKDF-SHA256 of the gateway's data key, its own label (never a batch key).
Result<crypto::Key256> BeatLogKey(const crypto::Key256& data_key);

}  // namespace medstream::gateway

#include "owner/gateway/beat_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <optional>
#include <utility>

#include <fmt/format.h>

#include "common/base/file.h"
#include "common/wire/wire.h"

namespace medstream::gateway {

namespace {

constexpr size_t kLengthSize = 4;
constexpr size_t kRecordOverhead =
    kLengthSize + crypto::AesGcm::kNonceSize + crypto::AesGcm::kTagSize;

std::unexpected<Error> SysError(const std::string& what, const std::string& path) {
  return IoError(what + " " + path + ": " + std::strerror(errno));
}

constexpr size_t kSequenceSize = 1 + 3 * 8;
// The largest record a writer writes: one MQTT message's beats (Append refuses more), so that a
// length past it is known for damage rather than taken for a torn last record.
constexpr uint32_t kMaxRecordCipher =
    kSequenceSize + 4 + 16 * sensor::kMaxBeatsPerMessage + crypto::AesGcm::kTagSize;
constexpr size_t kBeatBytes = 16;  // wire::EncodeBeats: a count (4 bytes), then 16 bytes a beat

// A record's length field holds the length in its low half and the low half's complement in its
// high half, so that a damaged length is known for damage. Before, a damaged length that pointed
// past the end of the file read exactly like a torn last record and was cut off without a word,
// with beats already acknowledged to the broker in it. Records written before the check have a
// high half of 0 (every length is below 2^16; a checked one's high half never is 0) and are still
// read, unchecked.
static_assert(kMaxRecordCipher < (1u << 16));
constexpr uint32_t LengthField(uint32_t len) {
  return len | ((~len & 0xffffu) << 16);
}
enum class Length { kChecked, kUnchecked, kDamaged };
Length ReadLengthField(uint32_t field, uint32_t* len) {
  *len = field & 0xffffu;
  const uint32_t high = field >> 16;
  if (high == (~*len & 0xffffu)) return Length::kChecked;
  return high == 0 ? Length::kUnchecked : Length::kDamaged;
}

std::optional<BeatLog::Record> DecodeRecord(crypto::ByteView plain) {
  if (plain.size() < kSequenceSize || plain[0] > 1) return std::nullopt;
  BeatLog::Record r;
  if (plain[0] == 1) {
    sensor::Sequence sq;
    std::memcpy(&sq.session, plain.data() + 1, 8);
    std::memcpy(&sq.seq, plain.data() + 9, 8);
    std::memcpy(&sq.first_beat, plain.data() + 17, 8);
    r.sequence = sq;
  }
  auto beats = wire::DecodeBeats(plain.subspan(kSequenceSize));
  if (!beats) return std::nullopt;
  r.beats = std::move(*beats);
  return r;
}

}  // namespace

std::vector<hrv::Beat> BeatLog::TakeRecovered() {
  std::vector<hrv::Beat> out;
  for (const Record& r : recovered_) out.insert(out.end(), r.beats.begin(), r.beats.end());
  recovered_.clear();
  return out;
}

Result<crypto::Key256> BeatLogKey(const crypto::Key256& data_key) {
  crypto::Key256 k;
  if (auto s = crypto::HkdfSha256(
          data_key.span(), {}, crypto::AsBytes("medstream v1 gateway write-ahead log"), k.span());
      !s) {
    return std::unexpected(s.error());
  }
  return k;
}

LogScan ScanLog(crypto::ByteView bytes, crypto::AesGcm& gcm, const std::string& user) {
  const std::string aad_v2 = "MSW2" + user;
  const std::string aad_v1 = "MSW1" + user;
  LogScan scan;
  scan.first_unreadable = bytes.size();
  size_t off = 0;
  bool torn = false;  // the file ends inside a record whose length is one a writer writes
  while (off < bytes.size()) {
    const size_t left = bytes.size() - off;
    if (left < kLengthSize) {
      torn = true;
      break;
    }
    uint32_t field = 0;
    uint32_t len = 0;
    std::memcpy(&field, bytes.data() + off, kLengthSize);
    if (ReadLengthField(field, &len) == Length::kDamaged) break;
    if (len < crypto::AesGcm::kTagSize || len > kMaxRecordCipher) break;  // not a length
    if (left < kLengthSize + crypto::AesGcm::kNonceSize + len) {
      torn = true;  // a checked length is the writer's: the file ends inside its record
      break;
    }
    const size_t end = off + kLengthSize + crypto::AesGcm::kNonceSize + len;
    const crypto::ByteView nonce = bytes.subspan(off + kLengthSize, crypto::AesGcm::kNonceSize);
    const crypto::ByteView cipher =
        bytes.subspan(off + kLengthSize + crypto::AesGcm::kNonceSize, len);
    std::optional<BeatLog::Record> record;
    if (auto plain = gcm.Open(nonce, crypto::AsBytes(aad_v2), cipher)) {
      record = DecodeRecord(*plain);
    } else if (auto old = gcm.Open(nonce, crypto::AsBytes(aad_v1), cipher)) {
      if (auto b = wire::DecodeBeats(*old)) record = BeatLog::Record{std::nullopt, std::move(*b)};
    }
    if (record) {
      scan.recovered.push_back(std::move(*record));
      const crypto::ByteView whole = bytes.subspan(off, end - off);
      scan.readable.insert(scan.readable.end(), whole.begin(), whole.end());
    } else {
      ++scan.unreadable_records;
      scan.first_unreadable = std::min(scan.first_unreadable, off);
      scan.damaged_beats_at_most += (len - crypto::AesGcm::kTagSize) / kBeatBytes;
    }
    off = end;
  }
  // `off`: where framing stopped. What follows is a torn last record, or cannot be framed.
  scan.torn_bytes = torn ? bytes.size() - off : 0;
  const size_t unframed = torn ? 0 : bytes.size() - off;
  if (unframed > 0) {
    scan.unframed = true;
    scan.first_unreadable = std::min(scan.first_unreadable, off);
    scan.damaged_beats_at_most += unframed / kBeatBytes;
  }
  scan.damaged_bytes = unframed + (off - scan.readable.size());
  return scan;
}

bool LogScan::foreign() const {
  // Lengths are not encrypted: records framed whole, none of which authenticates.
  return recovered.empty() && unreadable_records >= 2;
}

Result<BeatLog> BeatLog::Open(const std::string& path, const crypto::Key256& key,
                              const std::string& user, SyncFn sync) {
  MEDSTREAM_TRY(gcm, crypto::AesGcm::Create(key));
  std::vector<uint8_t> bytes;
  if (FileExists(path)) {
    MEDSTREAM_TRY(b, ReadFileBytes(path));
    bytes = std::move(b);
  }
  LogScan scan = ScanLog(bytes, gcm, user);
  // A torn last record (a crash mid-write: its message was not acknowledged, so the broker sends
  // it again) is cut off silently; anything else unreadable is damage.
  size_t keep = bytes.size() - scan.torn_bytes;
  std::string note;
  if (scan.foreign()) {
    // Not damage but another key or another user's log. Refused, so that a gateway started with
    // the wrong keys destroys nothing.
    return Corrupt("no record of the gateway's write-ahead log " + path +
                   " can be read with this gateway's keys (" + std::to_string(bytes.size()) +
                   " bytes): was the gateway's state folder restored without its keys? Restore "
                   "them, or move the file away to start " +
                   user + " afresh (its beats not yet sealed are then lost)");
  }
  if (scan.damaged()) {
    // Damage (power loss, a failing disk): the file as it was is kept aside, the readable records
    // go on, and the bytes that could not be read are said and counted.
    const std::string aside = path + ".damaged-" + std::to_string(time(nullptr));
    if (auto st = WriteFileAtomic(aside, bytes, 0600); !st) return std::unexpected(st.error());
    if (auto st = WriteFileAtomic(path, scan.readable, 0600); !st) {
      return std::unexpected(st.error());
    }
    note = fmt::format(
        "{} bytes of {} could not be read ({} unreadable record(s){}, from byte {}; at most {} "
        "beats); {} readable record(s) kept; the file as it was is in {}",
        scan.damaged_bytes, path, scan.unreadable_records,
        scan.unframed ? " and an unframed rest" : "", scan.first_unreadable,
        scan.damaged_beats_at_most, scan.recovered.size(), aside);
    keep = scan.readable.size();
  }
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return SysError("cannot open the write-ahead log", path);
  BeatLog log(fd, std::move(gcm), user, path);
  log.sync_ = std::move(sync);
  log.recovered_ = std::move(scan.recovered);
  log.damaged_bytes_ = scan.damaged_bytes;
  log.note_ = std::move(note);
  // What was read back may be in the page cache only (after a process crash): the next Sync
  // makes it durable.
  log.dirty_ = keep > 0;
  if (scan.torn_bytes > 0 && !scan.damaged() && ftruncate(fd, static_cast<off_t>(keep)) != 0) {
    return SysError("cannot cut the torn record off", path);
  }
  if (lseek(fd, static_cast<off_t>(keep), SEEK_SET) < 0) return SysError("cannot seek in", path);
  return log;
}

BeatLog::BeatLog(BeatLog&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)),
      gcm_(std::move(o.gcm_)),
      aad_(std::move(o.aad_)),
      path_(std::move(o.path_)),
      sync_(std::move(o.sync_)),
      dirty_(o.dirty_),
      recovered_(std::move(o.recovered_)),
      note_(std::move(o.note_)),
      damaged_bytes_(o.damaged_bytes_) {}

BeatLog& BeatLog::operator=(BeatLog&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(o.fd_, -1);
    gcm_ = std::move(o.gcm_);
    aad_ = std::move(o.aad_);
    path_ = std::move(o.path_);
    sync_ = std::move(o.sync_);
    dirty_ = o.dirty_;
    recovered_ = std::move(o.recovered_);
    note_ = std::move(o.note_);
    damaged_bytes_ = o.damaged_bytes_;
  }
  return *this;
}

BeatLog::~BeatLog() {
  if (fd_ >= 0) close(fd_);
}

Status BeatLog::Append(std::span<const hrv::Beat> beats,
                       const std::optional<sensor::Sequence>& sequence) {
  if (beats.size() > sensor::kMaxBeatsPerMessage) {
    return InvalidArgument(fmt::format("{} beats in one write-ahead log record: at most {}",
                                       beats.size(), sensor::kMaxBeatsPerMessage));
  }
  crypto::Bytes plain(kSequenceSize, 0);
  if (sequence) {
    plain[0] = 1;
    std::memcpy(plain.data() + 1, &sequence->session, 8);
    std::memcpy(plain.data() + 9, &sequence->seq, 8);
    std::memcpy(plain.data() + 17, &sequence->first_beat, 8);
  }
  {
    crypto::Bytes encoded;
    wire::EncodeBeats(beats, &encoded);
    plain.insert(plain.end(), encoded.begin(), encoded.end());
    crypto::Wipe(encoded);
  }
  crypto::Bytes record(kRecordOverhead + plain.size());
  const uint32_t field =
      LengthField(static_cast<uint32_t>(plain.size() + crypto::AesGcm::kTagSize));
  std::memcpy(record.data(), &field, kLengthSize);
  const std::span<uint8_t> nonce(record.data() + kLengthSize, crypto::AesGcm::kNonceSize);
  // A random nonce per record: records of one key stay far below the 2^32 bound for random nonces.
  if (auto s = crypto::RandomBytes(nonce); !s) return s;
  if (auto s = gcm_.Seal(nonce, crypto::AsBytes(aad_), plain,
                         std::span(record).subspan(kLengthSize + crypto::AesGcm::kNonceSize));
      !s) {
    return s;
  }
  crypto::Wipe(plain);
  // One write: a crash leaves this record whole or torn, never interleaved with another.
  const ssize_t n = write(fd_, record.data(), record.size());
  if (n != static_cast<ssize_t>(record.size())) {
    // A short write (disk full) would leave a torn record in the middle: cut it off again.
    const off_t at = lseek(fd_, 0, SEEK_CUR) - (n > 0 ? n : 0);
    if (n > 0 && ftruncate(fd_, at) == 0) lseek(fd_, at, SEEK_SET);
    return SysError("cannot append to the write-ahead log", path_);
  }
  dirty_ = true;
  return {};
}

Status BeatLog::Sync() {
  if (!dirty_) return {};
  if ((sync_ ? sync_(fd_) : fdatasync(fd_)) != 0) {
    return SysError("cannot flush the write-ahead log", path_);
  }
  dirty_ = false;
  return {};
}

Status BeatLog::Reset() {
  if (ftruncate(fd_, 0) != 0 || lseek(fd_, 0, SEEK_SET) != 0) {
    return SysError("cannot empty the write-ahead log", path_);
  }
  dirty_ = true;  // the truncation itself is made durable by the next Sync
  return {};
}

}  // namespace medstream::gateway

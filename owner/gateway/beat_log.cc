#include "owner/gateway/beat_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <optional>
#include <utility>

#include "common/base/file.h"
#include "common/wire/wire.h"

namespace medstream::gateway {

namespace {

constexpr size_t kLengthSize = 4;
constexpr size_t kRecordOverhead =
    kLengthSize + crypto::AesGcm::kNonceSize + crypto::AesGcm::kTagSize;
// One MQTT message's beats at most (sensor::kMaxBeatsPerMessage) with ample room.
constexpr uint32_t kMaxRecordCipher = 1u << 20;

std::unexpected<Error> SysError(const std::string& what, const std::string& path) {
  return IoError(what + " " + path + ": " + std::strerror(errno));
}

constexpr size_t kSequenceSize = 1 + 3 * 8;

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

Result<BeatLog> BeatLog::Open(const std::string& path, const crypto::Key256& key,
                              const std::string& user) {
  MEDSTREAM_TRY(gcm, crypto::AesGcm::Create(key));
  std::vector<uint8_t> bytes;
  if (FileExists(path)) {
    MEDSTREAM_TRY(b, ReadFileBytes(path));
    bytes = std::move(b);
  }
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return SysError("cannot open the write-ahead log", path);
  BeatLog log(fd, std::move(gcm), user, path);
  const std::string aad_v1 = "MSW1" + user;
  // Replay the intact records; a torn last one (the crash came mid-write) is cut off.
  size_t off = 0;
  while (off < bytes.size()) {
    const size_t left = bytes.size() - off;
    uint32_t len = 0;
    if (left >= kLengthSize) std::memcpy(&len, bytes.data() + off, kLengthSize);
    const bool complete = left >= kRecordOverhead && len >= crypto::AesGcm::kTagSize &&
                          len <= kMaxRecordCipher &&
                          left >= kLengthSize + crypto::AesGcm::kNonceSize + len;
    const size_t end = complete ? off + kLengthSize + crypto::AesGcm::kNonceSize + len : 0;
    std::optional<Record> record;
    if (complete) {
      const crypto::ByteView nonce(bytes.data() + off + kLengthSize, crypto::AesGcm::kNonceSize);
      const crypto::ByteView cipher(bytes.data() + off + kLengthSize + crypto::AesGcm::kNonceSize,
                                    len);
      if (auto plain = log.gcm_.Open(nonce, crypto::AsBytes(log.aad_), cipher)) {
        record = DecodeRecord(*plain);
      } else if (auto old = log.gcm_.Open(nonce, crypto::AsBytes(aad_v1), cipher)) {
        if (auto b = wire::DecodeBeats(*old)) record = Record{std::nullopt, std::move(*b)};
      }
    }
    if (!record) {
      if (complete && end < bytes.size()) {
        return Corrupt("the gateway's write-ahead log " + path + " is damaged at byte " +
                       std::to_string(off) + " (not a torn last record: more records follow)");
      }
      if (complete) {
        // Whole but unreadable: not what a process crash leaves (power loss can). Keep it aside.
        const std::string aside = path + ".damaged-" + std::to_string(time(nullptr));
        if (auto s = WriteFileAtomic(aside, crypto::ByteView(bytes).subspan(off), 0600); !s) {
          return std::unexpected(s.error());
        }
        log.note_ = "the last record of " + path + " was unreadable; kept in " + aside;
      }
      if (ftruncate(fd, static_cast<off_t>(off)) != 0) {
        return SysError("cannot cut the torn record off", path);
      }
      break;
    }
    log.recovered_.push_back(std::move(*record));
    off = end;
  }
  if (lseek(fd, static_cast<off_t>(off), SEEK_SET) < 0) return SysError("cannot seek in", path);
  return log;
}

BeatLog::BeatLog(BeatLog&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)),
      gcm_(std::move(o.gcm_)),
      aad_(std::move(o.aad_)),
      path_(std::move(o.path_)),
      dirty_(o.dirty_),
      recovered_(std::move(o.recovered_)),
      note_(std::move(o.note_)) {}

BeatLog& BeatLog::operator=(BeatLog&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(o.fd_, -1);
    gcm_ = std::move(o.gcm_);
    aad_ = std::move(o.aad_);
    path_ = std::move(o.path_);
    dirty_ = o.dirty_;
    recovered_ = std::move(o.recovered_);
    note_ = std::move(o.note_);
  }
  return *this;
}

BeatLog::~BeatLog() {
  if (fd_ >= 0) close(fd_);
}

Status BeatLog::Append(std::span<const hrv::Beat> beats,
                       const std::optional<sensor::Sequence>& sequence) {
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
  const uint32_t len = static_cast<uint32_t>(plain.size() + crypto::AesGcm::kTagSize);
  std::memcpy(record.data(), &len, kLengthSize);
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
  if (fdatasync(fd_) != 0) return SysError("cannot flush the write-ahead log", path_);
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

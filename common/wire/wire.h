// wire: the byte formats that cross the untrusted host.
//
// A micro-batch is one stream's beats for one sequence number:
//   header (40 bytes, authenticated as AES-GCM AAD when encrypted)
//     magic "MSB1" | version u16 | flags u16 | key id u32 | stream id (16) | seq u64 | payload u32
//   payload: the beats as packed (f64 time s, f64 RR ms) pairs, count = payload bytes / 16,
//   AES-256-GCM encrypted (ciphertext || tag) unless it is a vanilla-mode plaintext batch. With no
//   count field, the enclave decrypts straight into its beat array: no copy of a large batch.
// A result file has the same header with magic "MSR1" and carries the jobs' outputs.
// Each stream gets its own key, HKDF(data key, salt = stream id). An encrypted payload is a
// sequence of segments of up to 256 KiB of plaintext, each AES-256-GCM with its own tag (the STREAM
// construction of Hoang, Reyhanitabar, Rogaway and Vizar): nonce = direction | segment index (24
// bits) | sequence number, AAD = header | segment index | last-segment flag. Segments can be
// authenticated and used one at a time (the enclave overlaps decryption with analysis), while
// reordering, dropping or truncating segments still fails authentication. (key, nonce) never
// repeats as long as sequence numbers do not.
// The stream id is a pseudonym chosen by the data owner: the host learns which batches belong
// together, not whose they are.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "algo/hrv/jobs.h"
#include "common/base/bytes.h"
#include "common/base/file.h"
#include "common/crypto/crypto.h"

namespace medstream::wire {

using crypto::Bytes;
using crypto::ByteView;
using StreamId = std::array<uint8_t, 16>;

inline constexpr uint16_t kWireVersion = 1;
inline constexpr uint16_t kFlagEncrypted = 1;
inline constexpr size_t kHeaderSize = 40;
inline constexpr size_t kMaxBatchBytes = size_t{64} << 20;  // 64 MiB of payload

enum class Kind { kBatch, kResult };

struct Header {
  Kind kind = Kind::kBatch;
  uint16_t version = kWireVersion;
  uint16_t flags = kFlagEncrypted;
  uint32_t key_id = 0;
  StreamId stream{};
  uint64_t seq = 0;
  uint32_t payload_size = 0;
  bool encrypted() const { return flags & kFlagEncrypted; }
  void Encode(Bytes* out) const;
  static Result<Header> Decode(ByteView b);  // reads the first kHeaderSize bytes
  // The same checks on a header read apart from its file (`head`: at least kHeaderSize bytes)
  // of `file_size` bytes in all.
  static Result<Header> Decode(ByteView head, uint64_t file_size);
};

std::string StreamName(const StreamId& id);  // hex, for file names and logs (a pseudonym)
// The outbox name of a batch's result: how the server writes it and the gateway finds it.
std::string ResultFileName(const StreamId& id, uint64_t seq);
// The inbox name of a batch: zero-padded sequence, so that name order is sequence order.
std::string BatchFileName(const StreamId& id, uint64_t seq);
Result<StreamId> ParseStreamName(std::string_view hex);

// The cluster partition of a stream (docs/scale-out.md): the stream id's first four bytes,
// big-endian, modulo `partitions`. The id is an HMAC (a pseudonym), so partitions fill evenly;
// gateway and workers compute the same number with no table. `partitions` must be > 0.
uint32_t PartitionOf(const StreamId& id, uint32_t partitions);

// The per-stream key derived from a provisioned data key.
Result<crypto::Key256> StreamKey(const crypto::Key256& data_key, const StreamId& stream);
inline constexpr size_t kSegmentBytes = size_t{256} << 10;  // plaintext per segment (whole beats)

// Where each segment of an encrypted payload lies.
struct SegmentLayout {
  size_t count = 0;       // segments (at least 1)
  size_t plain_size = 0;  // total plaintext bytes
  size_t PlainOffset(size_t i) const { return i * kSegmentBytes; }
  size_t PlainSize(size_t i) const {
    return i + 1 < count ? kSegmentBytes : plain_size - (count - 1) * kSegmentBytes;
  }
  size_t CipherOffset(size_t i) const { return i * (kSegmentBytes + crypto::AesGcm::kTagSize); }
};
Result<SegmentLayout> Segments(const Header& header);
// Authenticates and decrypts segment i of `file` into `out` (PlainSize(i) bytes).
Status OpenSegment(ByteView file, const Header& header, const SegmentLayout& layout, size_t i,
                   crypto::AesGcm* gcm, std::span<uint8_t> out);
// Where segment i's ciphertext and tag lie in its file (in bounds of a file whose header and
// layout were checked).
struct ByteRange {
  size_t offset = 0;
  size_t size = 0;
};
ByteRange SegmentRange(const SegmentLayout& layout, size_t i);
// OpenSegment for a reader that holds the file's pieces apart: `head` is the file's first
// kHeaderSize bytes, `cipher` the bytes of SegmentRange(layout, i).
Status OpenSegmentPiece(ByteView head, const Header& header, const SegmentLayout& layout, size_t i,
                        ByteView cipher, crypto::AesGcm* gcm, std::span<uint8_t> out);

void EncodeBeats(std::span<const hrv::Beat> beats, Bytes* out);
Result<std::vector<hrv::Beat>> DecodeBeats(ByteView b);

// What one batch produced, per job, plus sequence bookkeeping.
struct BatchResult {
  uint64_t beats = 0;           // beats in the batch
  uint64_t missing_before = 0;  // sequence numbers skipped before this batch (a reported gap)
  std::vector<std::pair<hrv::JobKind, hrv::JobOutput>> jobs;
};
void EncodeResult(const BatchResult& r, Bytes* out);
// At least the bytes EncodeResult appends for `r` (it reserves this much).
size_t EncodedResultBound(const BatchResult& r);
Result<BatchResult> DecodeResult(ByteView b);

// A second thread for the segments of a large file: start(task) offers task to it, wait() returns
// once the task has finished or will never run. Both threads claim segments one at a time, so a
// helper that starts late or not at all only costs speed. `gcm` is the cipher it uses (any
// AesGcm under the same key: its Seal and Open may run on several threads at once).
struct Helper {
  crypto::AesGcm* gcm = nullptr;
  std::function<void(std::function<void()>)> start;
  std::function<void()> wait;
};
// A Helper on the process's one shared helper thread, started on first use and kept: waking it
// costs microseconds where a thread started per file cost tens (the gateway seals a batch and
// opens a result this way). While it works on one file, another file offered to it is sealed or
// opened by its caller alone. The enclave uses its own worker (its seccomp filter allows no new
// threads). One ThreadHelper serves one file at a time; different ones may be used at once.
class ThreadHelper {
 public:
  explicit ThreadHelper(crypto::AesGcm* gcm);
  ThreadHelper(const ThreadHelper&) = delete;
  ThreadHelper& operator=(const ThreadHelper&) = delete;
  const Helper* get() const { return &helper_; }

 private:
  Helper helper_;
  uint64_t ticket_ = 0;  // the shared thread's ticket for the task offered by start()
};

// Batch files: the header and the beats, sealed with the stream key (plain when `gcm` is null).
Result<Bytes> MakeBatchFile(Header header, std::span<const hrv::Beat> beats, crypto::AesGcm* gcm,
                            const Helper* helper = nullptr);
// Checks and opens a batch file into `beats` (its capacity is reused).
Result<Header> OpenBatchInto(ByteView file, crypto::AesGcm* gcm, std::vector<hrv::Beat>* beats);
// Checks a batch header and sizes `beats` for its payload, without decrypting (the enclave then
// opens the segments itself, see OpenSegment).
Result<Header> PrepareBatch(ByteView file, std::vector<hrv::Beat>* beats, SegmentLayout* layout);
// The same from the file's first kHeaderSize bytes and its size.
Result<Header> PrepareBatch(ByteView head, uint64_t file_size, std::vector<hrv::Beat>* beats,
                            SegmentLayout* layout);
// The same, giving the number of beats for a buffer the caller sizes.
Result<Header> PrepareBatch(ByteView head, uint64_t file_size, size_t* beat_count,
                            SegmentLayout* layout);

// Whole files: header + payload, sealed with the stream key (or plain when `gcm` is null).
Result<Bytes> MakeFile(Header header, ByteView payload, crypto::AesGcm* gcm,
                       const Helper* helper = nullptr);
// MakeFile's file handed to `sink` part by part instead of returned, from this thread: the header,
// then the segments a chunk (4 MiB) at a time as they are sealed, on both threads from 2 segments
// when there is a helper. Plain when `gcm` is null: the header, then `payload` itself, not copied.
// No sealed copy of a large file is made, only of a chunk (a gateway spooling a 32 MB batch). The
// sink is never given plaintext when `gcm` is set. On failure (sealing, or the sink's own error,
// returned as it is) the sink has been given part of the file; the helper has finished either way.
Status WriteFileTo(Header header, ByteView payload, crypto::AesGcm* gcm, const Helper* helper,
                   const FileSink& sink);
// MakeBatchFile's file, the same way.
Status WriteBatchFileTo(Header header, std::span<const hrv::Beat> beats, crypto::AesGcm* gcm,
                        const Helper* helper, const FileSink& sink);
// The size of the sealed file MakeFile makes of a payload of this many bytes.
size_t SealedFileSize(size_t payload_size);
// MakeFile's sealed file, made in the payload's own buffer: `*buffer` holds the payload on entry
// and the file, byte for byte what MakeFile makes, on success (on failure, its contents are
// undefined and may be plaintext: wipe them). No second buffer of the file's size: give `*buffer`
// a capacity of SealedFileSize(size) and it is not reallocated either.
Status SealFileInPlace(Header header, Bytes* buffer, crypto::AesGcm* gcm,
                       const Helper* helper = nullptr);
// Checks the header and opens the payload (authenticating the header as AAD).
struct Opened {
  Header header;
  Bytes payload;
};
Result<Opened> OpenFile(ByteView file, Kind expected, crypto::AesGcm* gcm,
                        const Helper* helper = nullptr);

}  // namespace medstream::wire

#include "common/wire/wire.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>

#include "common/wire/cluster.h"

namespace medstream::wire {

namespace {

const char* Magic(Kind k) {
  return k == Kind::kBatch ? "MSB1" : "MSR1";
}

}  // namespace

void Header::Encode(Bytes* out) const {
  ByteWriter w(out);
  w.Raw(Magic(kind), 4);
  w.U16(version);
  w.U16(flags);
  w.U32(key_id);
  w.Bytes(stream);
  w.U64(seq);
  w.U32(payload_size);
}

Result<Header> Header::Decode(ByteView b) {
  return Decode(b, b.size());
}

Result<Header> Header::Decode(ByteView head, uint64_t file_size) {
  if (head.size() < kHeaderSize || file_size < kHeaderSize) {
    return Corrupt("file too short for a medstream header (" +
                   std::to_string(std::min<uint64_t>(head.size(), file_size)) + " bytes)");
  }
  const ByteView b = head;
  ByteReader r(b.first(kHeaderSize));
  Header h;
  auto magic = *r.Bytes(4, "magic");
  if (std::memcmp(magic.data(), "MSB1", 4) == 0) {
    h.kind = Kind::kBatch;
  } else if (std::memcmp(magic.data(), "MSR1", 4) == 0) {
    h.kind = Kind::kResult;
  } else {
    return Corrupt("not a medstream batch or result (bad magic)");
  }
  h.version = *r.U16("version");
  if (h.version != kWireVersion) {
    return Corrupt("unsupported format version " + std::to_string(h.version));
  }
  h.flags = *r.U16("flags");
  h.key_id = *r.U32("key id");
  auto stream = *r.Bytes(16, "stream id");
  std::memcpy(h.stream.data(), stream.data(), 16);
  h.seq = *r.U64("sequence number");
  h.payload_size = *r.U32("payload size");
  if (h.payload_size > kMaxBatchBytes) {
    return Corrupt("payload of " + std::to_string(h.payload_size) + " bytes exceeds the limit");
  }
  if (file_size != kHeaderSize + h.payload_size) {
    return Corrupt("header says " + std::to_string(h.payload_size) + " payload bytes, file has " +
                   std::to_string(file_size - kHeaderSize) + " (truncated or padded)");
  }
  return h;
}

bool cluster::ValidWorkerName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
  }
  return true;
}

uint32_t PartitionOf(const StreamId& id, uint32_t partitions) {
  const uint32_t head =
      (uint32_t{id[0]} << 24) | (uint32_t{id[1]} << 16) | (uint32_t{id[2]} << 8) | uint32_t{id[3]};
  return partitions == 0 ? 0 : head % partitions;
}

std::string StreamName(const StreamId& id) {
  return crypto::ToHex(id);
}

std::string ResultFileName(const StreamId& id, uint64_t seq) {
  return StreamName(id) + "-" + std::to_string(seq) + ".result";
}

std::string BatchFileName(const StreamId& id, uint64_t seq) {
  std::string digits = std::to_string(seq);
  return StreamName(id) + "-" + std::string(20 - std::min<size_t>(20, digits.size()), '0') +
         digits + ".batch";
}

Result<StreamId> ParseStreamName(std::string_view hex) {
  auto b = crypto::FromHex(hex);
  if (!b || b->size() != 16) return InvalidArgument("stream id must be 32 hex digits");
  StreamId id;
  std::memcpy(id.data(), b->data(), 16);
  return id;
}

Result<crypto::Key256> StreamKey(const crypto::Key256& data_key, const StreamId& stream) {
  crypto::Key256 k;
  if (auto s = crypto::HkdfSha256(data_key.span(), stream,
                                  crypto::AsBytes("medstream v1 stream key"), k.span());
      !s) {
    return std::unexpected(s.error());
  }
  return k;
}

namespace {

std::array<uint8_t, 12> SegmentNonce(Kind kind, uint64_t seq, size_t segment) {
  std::array<uint8_t, 12> n{};
  n[0] = kind == Kind::kBatch ? 1 : 2;
  n[1] = static_cast<uint8_t>(segment >> 16);
  n[2] = static_cast<uint8_t>(segment >> 8);
  n[3] = static_cast<uint8_t>(segment);
  for (int i = 0; i < 8; ++i) n[4 + i] = static_cast<uint8_t>(seq >> (56 - 8 * i));
  return n;
}

std::array<uint8_t, kHeaderSize + 5> SegmentAad(ByteView header, size_t segment, bool last) {
  std::array<uint8_t, kHeaderSize + 5> aad{};
  std::memcpy(aad.data(), header.data(), kHeaderSize);
  const auto idx = static_cast<uint32_t>(segment);
  std::memcpy(aad.data() + kHeaderSize, &idx, 4);
  aad[kHeaderSize + 4] = last ? 1 : 0;
  return aad;
}

constexpr size_t kMaxSegments = size_t{1} << 24;
// Below this many segments (1 MiB) a second thread costs more than it saves.
constexpr size_t kParallelSegments = 4;

// Segments of a sealed payload of this many bytes (an empty one still has one, for its tag).
size_t SegmentCount(size_t plain) {
  return std::max<size_t>(1, (plain + kSegmentBytes - 1) / kSegmentBytes);
}

// Runs fn(i, cipher) for every segment, from `parallel_from` segments on this thread and the
// helper's at once: each claims the next segment not yet claimed, so the work is shared however
// late the helper starts (or whether it runs at all: a shared helper busy with another file never
// starts this one, and this thread does every segment). After a failure no thread claims more; the
// failure of the lowest segment is returned.
// `ready`, when given, is called on this thread with k, the number of leading segments done, each
// time k grows and at last with `count` (on one thread: once, at the end), so their output can be
// used (written) while the helper works on the rest; its failure stops the work too.
using ReadyFn = std::function<Status(size_t)>;
Status ForSegments(size_t count, crypto::AesGcm* gcm, const Helper* helper,
                   const std::function<Status(size_t, crypto::AesGcm*)>& fn,
                   size_t parallel_from = kParallelSegments, const ReadyFn& ready = nullptr) {
  if (!helper || !helper->gcm || count < parallel_from) {
    for (size_t i = 0; i < count; ++i) {
      if (auto s = fn(i, gcm); !s) return s;
    }
    return ready ? ready(count) : Status{};
  }
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::vector<std::atomic<uint8_t>> done(count);  // value-initialised: 0
  std::mutex mu;
  // Where the failure is: a segment's index, or for `ready`'s, the segments done before it (which
  // can be `count`).
  size_t lowest_failed = SIZE_MAX;
  Status failure;
  auto fail = [&](size_t i, Status s) {
    std::lock_guard lock(mu);
    if (i < lowest_failed) {
      lowest_failed = i;
      failure = std::move(s);
    }
    failed = true;
  };
  // Claims segments until none is left or one failed; `after` runs after each one done here.
  auto run = [&](crypto::AesGcm* cipher, const std::function<void()>& after) {
    while (!failed.load(std::memory_order_relaxed)) {
      const size_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= count) return;
      if (Status s = fn(i, cipher); !s) {
        fail(i, std::move(s));
        return;
      }
      done[i].store(1, std::memory_order_release);
      if (after) after();
    }
  };
  size_t prefix = 0;  // leading segments done and given to `ready`
  auto advance = [&] {
    size_t k = prefix;
    while (k < count && done[k].load(std::memory_order_acquire)) ++k;
    if (k == prefix) return;
    prefix = k;
    if (Status s = ready(k); !s) fail(k, std::move(s));
  };
  helper->start([&] { run(helper->gcm, nullptr); });
  run(gcm, ready ? std::function<void()>(advance) : nullptr);
  helper->wait();
  if (ready && !failed) advance();
  return failure;
}

// The process's one helper thread for ThreadHelper, started on first use and never stopped (a
// thread still running at exit is harmless; joining one from a static destructor is not). It takes
// one file's task at a time: a second file offered while it is busy is not queued (its caller
// does all of that file's segments itself, which is sooner than waiting).
class SharedHelperThread {
 public:
  static SharedHelperThread& Get() {
    static auto* const helper = new SharedHelperThread();
    return *helper;
  }
  // The ticket to Wait() on, or 0 when the thread is busy and `task` will not run.
  uint64_t TryStart(std::function<void()> task) {
    uint64_t ticket = 0;
    {
      std::lock_guard lock(mu_);
      if (owner_ != 0) return 0;
      ticket = owner_ = ++tickets_;
      task_ = std::move(task);
    }
    cv_.notify_all();
    return ticket;  // not owner_: the thread may have run the task and cleared it already
  }
  // Returns once the ticket's task has run, or has been withdrawn before it started.
  void Wait(uint64_t ticket) {
    std::unique_lock lock(mu_);
    if (owner_ != ticket) return;
    if (!running_) {
      owner_ = 0;
      task_ = nullptr;
      return;
    }
    cv_.wait(lock, [&] { return owner_ != ticket; });
  }

 private:
  SharedHelperThread() {
    std::thread([this] { Loop(); }).detach();
  }
  void Loop() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return owner_ != 0 && !running_; });
      running_ = true;
      auto task = std::move(task_);
      task_ = nullptr;
      lock.unlock();
      task();
      lock.lock();
      running_ = false;
      owner_ = 0;
      cv_.notify_all();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t tickets_ = 0;
  uint64_t owner_ = 0;  // the ticket whose task is waiting or running; 0: idle
  bool running_ = false;
  std::function<void()> task_;
};

}  // namespace

ThreadHelper::ThreadHelper(crypto::AesGcm* gcm) {
  helper_.gcm = gcm;
  helper_.start = [this](std::function<void()> task) {
    ticket_ = SharedHelperThread::Get().TryStart(std::move(task));
  };
  helper_.wait = [this] {
    if (ticket_ != 0) SharedHelperThread::Get().Wait(ticket_);
    ticket_ = 0;
  };
}

Result<SegmentLayout> Segments(const Header& header) {
  constexpr size_t kStride = kSegmentBytes + crypto::AesGcm::kTagSize;
  SegmentLayout l;
  l.count = std::max<size_t>(1, (header.payload_size + kStride - 1) / kStride);
  if (header.payload_size < l.count * crypto::AesGcm::kTagSize || l.count > kMaxSegments) {
    return Corrupt("encrypted payload of " + std::to_string(header.payload_size) +
                   " bytes is too short for its segment tags (truncated)");
  }
  l.plain_size = header.payload_size - l.count * crypto::AesGcm::kTagSize;
  return l;
}

ByteRange SegmentRange(const SegmentLayout& layout, size_t i) {
  return {kHeaderSize + layout.CipherOffset(i), layout.PlainSize(i) + crypto::AesGcm::kTagSize};
}

Status OpenSegment(ByteView file, const Header& header, const SegmentLayout& layout, size_t i,
                   crypto::AesGcm* gcm, std::span<uint8_t> out) {
  const ByteRange range = SegmentRange(layout, i);
  return OpenSegmentPiece(file.first(kHeaderSize), header, layout, i,
                          file.subspan(range.offset, range.size), gcm, out);
}

Status OpenSegmentPiece(ByteView head, const Header& header, const SegmentLayout& layout, size_t i,
                        ByteView cipher, crypto::AesGcm* gcm, std::span<uint8_t> out) {
  if (cipher.size() != SegmentRange(layout, i).size || out.size() != layout.PlainSize(i)) {
    return InvalidArgument("segment " + std::to_string(i) + " given the wrong number of bytes");
  }
  const auto aad = SegmentAad(head.first(kHeaderSize), i, i + 1 == layout.count);
  if (auto s = gcm->Open(SegmentNonce(header.kind, header.seq, i), aad, cipher, out); !s) {
    return Corrupt("authentication failed (segment " + std::to_string(i) +
                   "): the file was tampered with, truncated, or encrypted under another key");
  }
  return {};
}

void EncodeBeats(std::span<const hrv::Beat> beats, Bytes* out) {
  ByteWriter w(out);
  w.U32(static_cast<uint32_t>(beats.size()));
  const size_t at = out->size();
  out->resize(at + beats.size() * 16);
  uint8_t* p = out->data() + at;
  for (const hrv::Beat& b : beats) {
    std::memcpy(p, &b.t_s, 8);
    std::memcpy(p + 8, &b.rr_ms, 8);
    p += 16;
  }
}

Result<std::vector<hrv::Beat>> DecodeBeats(ByteView b) {
  ByteReader r(b);
  MEDSTREAM_TRY(n, r.U32("beat count"));
  if (r.remaining() != size_t{n} * 16) {
    return Corrupt("beat count " + std::to_string(n) + " does not match the payload size");
  }
  std::vector<hrv::Beat> beats(n);
  if (n > 0) std::memcpy(beats.data(), b.data() + 4, size_t{n} * 16);  // no buffer when empty
  return beats;
}

namespace {

static_assert(sizeof(hrv::Beat) == 16 && std::is_trivially_copyable_v<hrv::Beat>,
              "batch payloads are the beat array's bytes");

ByteView BeatBytes(std::span<const hrv::Beat> beats) {
  return {reinterpret_cast<const uint8_t*>(beats.data()), beats.size() * sizeof(hrv::Beat)};
}

}  // namespace

Result<Bytes> MakeBatchFile(Header header, std::span<const hrv::Beat> beats, crypto::AesGcm* gcm,
                            const Helper* helper) {
  header.kind = Kind::kBatch;
  return MakeFile(header, BeatBytes(beats), gcm, helper);
}

Result<Header> PrepareBatch(ByteView file, std::vector<hrv::Beat>* beats, SegmentLayout* layout) {
  return PrepareBatch(file, file.size(), beats, layout);
}

Result<Header> PrepareBatch(ByteView head, uint64_t file_size, std::vector<hrv::Beat>* beats,
                            SegmentLayout* layout) {
  size_t count = 0;
  MEDSTREAM_TRY(header, PrepareBatch(head, file_size, &count, layout));
  beats->resize(count);
  return header;
}

Result<Header> PrepareBatch(ByteView head, uint64_t file_size, size_t* beat_count,
                            SegmentLayout* layout) {
  MEDSTREAM_TRY(header, Header::Decode(head, file_size));
  if (header.kind != Kind::kBatch) return Corrupt("expected a batch, got a result file");
  size_t plain = header.payload_size;
  if (header.encrypted()) {
    MEDSTREAM_TRY(l, Segments(header));
    *layout = l;
    plain = l.plain_size;
  }
  if (plain % sizeof(hrv::Beat) != 0) {
    return Corrupt("batch payload of " + std::to_string(plain) + " bytes is not whole beats");
  }
  *beat_count = plain / sizeof(hrv::Beat);
  return header;
}

Result<Header> OpenBatchInto(ByteView file, crypto::AesGcm* gcm, std::vector<hrv::Beat>* beats) {
  SegmentLayout layout;
  MEDSTREAM_TRY(header, PrepareBatch(file, beats, &layout));
  auto* out = reinterpret_cast<uint8_t*>(beats->data());
  if (!header.encrypted()) {
    if (gcm) return Corrupt("plaintext file where an encrypted one is required");
    // An empty batch has no buffer to copy into (memcpy to null is undefined even for 0 bytes).
    if (header.payload_size > 0) std::memcpy(out, file.data() + kHeaderSize, header.payload_size);
    return header;
  }
  if (!gcm) return Corrupt("encrypted file but no key to open it");
  for (size_t i = 0; i < layout.count; ++i) {
    if (auto s = OpenSegment(file, header, layout, i, gcm,
                             {out + layout.PlainOffset(i), layout.PlainSize(i)});
        !s) {
      beats->clear();
      return std::unexpected(s.error());
    }
  }
  return header;
}

size_t EncodedResultBound(const BatchResult& r) {
  size_t bound = 17;
  for (const auto& [kind, output] : r.jobs) {
    bound += 17 + output.windows.size() * (32 + 8 * hrv::JobMetrics(kind).size());
  }
  return bound;
}

void EncodeResult(const BatchResult& r, Bytes* out) {
  out->reserve(out->size() + EncodedResultBound(r));
  ByteWriter w(out);
  w.U64(r.beats);
  w.U64(r.missing_before);
  w.U8(static_cast<uint8_t>(r.jobs.size()));
  for (const auto& [kind, output] : r.jobs) {
    w.U8(static_cast<uint8_t>(kind));
    if (kind == hrv::JobKind::kIdentity) {
      w.U64(output.beats.count);
      w.U64(output.beats.digest);
      continue;
    }
    const auto metrics = hrv::JobMetrics(kind);
    w.U32(static_cast<uint32_t>(output.windows.size()));
    for (const hrv::WindowResult& win : output.windows) {
      w.I64(win.index);
      w.F64(win.t_start);
      w.F64(win.t_end);
      w.F64(win.coverage);
      for (const hrv::MetricInfo* m : metrics) w.F64(win.metrics.*(m->field));
    }
  }
}

Result<BatchResult> DecodeResult(ByteView b) {
  ByteReader r(b);
  BatchResult out;
  MEDSTREAM_TRY(beats, r.U64("beat count"));
  MEDSTREAM_TRY(missing, r.U64("gap"));
  MEDSTREAM_TRY(njobs, r.U8("job count"));
  out.beats = beats;
  out.missing_before = missing;
  for (int j = 0; j < njobs; ++j) {
    MEDSTREAM_TRY(kind_byte, r.U8("job kind"));
    if (kind_byte > static_cast<uint8_t>(hrv::JobKind::kHrvFull)) return Corrupt("unknown job");
    const auto kind = static_cast<hrv::JobKind>(kind_byte);
    hrv::JobOutput output;
    if (kind == hrv::JobKind::kIdentity) {
      MEDSTREAM_TRY(count, r.U64("identity beat count"));
      MEDSTREAM_TRY(digest, r.U64("identity digest"));
      output.beats = {.count = count, .digest = digest};
    } else {
      const auto metrics = hrv::JobMetrics(kind);
      MEDSTREAM_TRY(n, r.U32("window count"));
      if (r.remaining() < size_t{n} * (32 + 8 * metrics.size())) {
        return Corrupt("truncated window output");
      }
      output.windows.resize(n);
      for (auto& win : output.windows) {
        win.index = *r.I64("index");
        win.t_start = *r.F64("t_start");
        win.t_end = *r.F64("t_end");
        win.coverage = *r.F64("coverage");
        for (const hrv::MetricInfo* m : metrics) win.metrics.*(m->field) = *r.F64("metric");
      }
    }
    out.jobs.emplace_back(kind, std::move(output));
  }
  if (auto s = r.ExpectDone("result"); !s) return std::unexpected(s.error());
  return out;
}

namespace {

// A file being sealed: the header, where its segments lie, and how to seal one.
struct Sealing {
  Header header;
  ByteView payload;
  SegmentLayout layout;
  Bytes out;  // the header, then (MakeFile) room for every segment
  Status Seal(size_t i, crypto::AesGcm* cipher, std::span<uint8_t> to) const {
    const size_t n = layout.PlainSize(i);
    const auto aad = SegmentAad(std::span(out).first(kHeaderSize), i, i + 1 == layout.count);
    return cipher->Seal(SegmentNonce(header.kind, header.seq, i), aad,
                        payload.subspan(layout.PlainOffset(i), n),
                        to.first(n + crypto::AesGcm::kTagSize));
  }
};

// Sets the header's flags and size for `payload` and encodes it.
Result<Sealing> StartFile(Header header, ByteView payload, crypto::AesGcm* gcm) {
  header.flags = gcm ? kFlagEncrypted : 0;
  const size_t segments = SegmentCount(payload.size());
  const size_t size = payload.size() + (gcm ? segments * crypto::AesGcm::kTagSize : 0);
  if (size > kMaxBatchBytes) return InvalidArgument("batch too large for one file");
  header.payload_size = static_cast<uint32_t>(size);
  Sealing f{.header = header, .payload = payload, .layout = {segments, payload.size()}, .out = {}};
  header.Encode(&f.out);
  return f;
}

}  // namespace

Result<Bytes> MakeFile(Header header, ByteView payload, crypto::AesGcm* gcm, const Helper* helper) {
  MEDSTREAM_TRY(f, StartFile(header, payload, gcm));
  f.out.reserve(kHeaderSize + f.header.payload_size);
  if (!gcm) {
    f.out.insert(f.out.end(), payload.begin(), payload.end());
    return std::move(f.out);
  }
  f.out.resize(kHeaderSize + f.header.payload_size);
  const Status sealed = ForSegments(f.layout.count, gcm, helper, [&](size_t i, crypto::AesGcm* c) {
    return f.Seal(i, c, std::span(f.out).subspan(kHeaderSize + f.layout.CipherOffset(i)));
  });
  if (!sealed) return std::unexpected(sealed.error());
  return std::move(f.out);
}

Status WriteFileTo(Header header, ByteView payload, crypto::AesGcm* gcm, const Helper* helper,
                   const FileSink& sink) {
  MEDSTREAM_TRY(f, StartFile(header, payload, gcm));
  if (auto s = sink(0, f.out); !s) return s;
  if (!gcm) return payload.empty() ? Status{} : sink(kHeaderSize, payload);
  // Sealed a chunk of segments at a time, the segments written in order as they are sealed (while
  // the helper seals the next ones). A batch larger than a chunk needs no sealed copy of its own
  // size, whose fresh pages cost more than the sealing (BM_SpoolBatch: 32 MB in 63 ms that way,
  // 31 ms this way), only the chunk, used again. Both threads seal from 2 segments (0.5 MiB), not
  // kParallelSegments: the spool write waits for the sealing.
  constexpr size_t kChunkSegments = 16;  // 4 MiB
  const size_t count = f.layout.count;
  const size_t sealed_size = f.header.payload_size;
  auto chunk_end = [&](size_t first, size_t n) {
    return first + n == count ? sealed_size : f.layout.CipherOffset(first + n);
  };
  // Not zero-filled: every byte is sealed over before it is written (the first chunk is the
  // largest).
  const size_t capacity = chunk_end(0, std::min(kChunkSegments, count));
  const auto chunk = std::make_unique_for_overwrite<uint8_t[]>(capacity);
  for (size_t first = 0; first < count; first += kChunkSegments) {
    const size_t n = std::min(kChunkSegments, count - first);
    const size_t begin = f.layout.CipherOffset(first);
    const std::span<uint8_t> sealed(chunk.get(), chunk_end(first, n) - begin);
    auto seal = [&](size_t j, crypto::AesGcm* c) {
      const size_t i = first + j;
      return f.Seal(i, c, sealed.subspan(f.layout.CipherOffset(i) - begin));
    };
    // The sealed segments are written in order as they are done, while the helper seals on.
    size_t written = 0;  // bytes of this chunk
    auto write = [&](size_t k) {
      const size_t upto = chunk_end(first, k) - begin;
      const Status s = sink(kHeaderSize + begin + written, sealed.subspan(written, upto - written));
      written = upto;
      return s;
    };
    if (auto s = ForSegments(n, gcm, helper, seal, /*parallel_from=*/2, write); !s) return s;
  }
  return {};
}

Status WriteBatchFileTo(Header header, std::span<const hrv::Beat> beats, crypto::AesGcm* gcm,
                        const Helper* helper, const FileSink& sink) {
  header.kind = Kind::kBatch;
  return WriteFileTo(header, BeatBytes(beats), gcm, helper, sink);
}

size_t SealedFileSize(size_t payload_size) {
  return kHeaderSize + payload_size + SegmentCount(payload_size) * crypto::AesGcm::kTagSize;
}

Status SealFileInPlace(Header header, Bytes* buffer, crypto::AesGcm* gcm, const Helper* helper) {
  const size_t plain = buffer->size();
  const size_t segments = SegmentCount(plain);
  const size_t size = plain + segments * crypto::AesGcm::kTagSize;
  if (size > kMaxBatchBytes) return InvalidArgument("batch too large for one file");
  header.flags = kFlagEncrypted;
  header.payload_size = static_cast<uint32_t>(size);
  buffer->resize(kHeaderSize + size);
  uint8_t* p = buffer->data();
  const SegmentLayout layout{segments, plain};
  // Each segment moves up to where the file has it (past the header and the earlier segments'
  // tags); the last one first, so no segment is overwritten before it has moved. Every byte of the
  // plaintext's old place is then header, ciphertext or tag once sealed.
  for (size_t i = segments; i-- > 0;) {
    std::memmove(p + kHeaderSize + layout.CipherOffset(i), p + layout.PlainOffset(i),
                 layout.PlainSize(i));
  }
  Bytes head;
  header.Encode(&head);
  std::memcpy(p, head.data(), kHeaderSize);
  // In place: OpenSSL encrypts with the output exactly over the input.
  return ForSegments(segments, gcm, helper, [&](size_t i, crypto::AesGcm* cipher) -> Status {
    const size_t n = layout.PlainSize(i);
    uint8_t* at = p + kHeaderSize + layout.CipherOffset(i);
    const auto aad = SegmentAad(std::span(p, kHeaderSize), i, i + 1 == segments);
    return cipher->Seal(SegmentNonce(header.kind, header.seq, i), aad, ByteView(at, n),
                        std::span(at, n + crypto::AesGcm::kTagSize));
  });
}

Result<Opened> OpenFile(ByteView file, Kind expected, crypto::AesGcm* gcm, const Helper* helper) {
  MEDSTREAM_TRY(header, Header::Decode(file));
  if (header.kind != expected) {
    return Corrupt(expected == Kind::kBatch ? "expected a batch, got a result file"
                                            : "expected a result, got a batch file");
  }
  Opened o;
  o.header = header;
  const ByteView body = file.subspan(kHeaderSize);
  if (!header.encrypted()) {
    if (gcm) return Corrupt("plaintext file where an encrypted one is required");
    o.payload.assign(body.begin(), body.end());
    return o;
  }
  if (!gcm) return Corrupt("encrypted file but no key to open it");
  MEDSTREAM_TRY(layout, Segments(header));
  o.payload.resize(layout.plain_size);
  const Status opened =
      ForSegments(layout.count, gcm, helper, [&](size_t i, crypto::AesGcm* cipher) {
        return OpenSegment(
            file, header, layout, i, cipher,
            std::span(o.payload).subspan(layout.PlainOffset(i), layout.PlainSize(i)));
      });
  if (!opened) return std::unexpected(opened.error());
  return o;
}

}  // namespace medstream::wire

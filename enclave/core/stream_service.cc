#include "enclave/core/stream_service.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>

namespace medstream::enclave {

namespace {

std::unexpected<Error> Refuse(std::string why) {
  return Fail(Error::Code::kFailedPrecondition, std::move(why));
}

}  // namespace

Result<crypto::Bytes> StreamService::Provision(crypto::ByteView message) {
  MEDSTREAM_TRY(p, ProvisionKey::Decode(message));
  auto it = keys_.find(p.key_id);
  if (it != keys_.end()) {
    if (!std::equal(it->second.key.span().begin(), it->second.key.span().end(),
                    p.key.span().begin())) {
      return Refuse("key id " + std::to_string(p.key_id) +
                    " is already provisioned with another key");
    }
  } else {
    KeyEntry& e = keys_[p.key_id];
    e.key = p.key;
    e.config = p.config;
  }
  return crypto::Bytes{static_cast<uint8_t>(ChannelMessage::kOk)};
}

EnclaveStats StreamService::Stats() const {
  EnclaveStats s = stats_;
  s.streams = streams_.size();
  s.keys = keys_.size();
  s.checkpoint_version = platform_->counter(CounterId::kCheckpoint);
  return s;
}

Result<crypto::AesGcm*> StreamService::StreamCipher(uint32_t key_id, const wire::StreamId& stream,
                                                    bool for_worker) {
  auto it = keys_.find(key_id);
  if (it == keys_.end()) {
    return Refuse("no key provisioned for key id " + std::to_string(key_id) +
                  " (the data owner must attest this enclave and provision its key first)");
  }
  auto& slot = (for_worker ? it->second.worker_ciphers : it->second.ciphers)[stream];
  if (!slot) {
    MEDSTREAM_TRY(key, wire::StreamKey(it->second.key, stream));
    MEDSTREAM_TRY(gcm, crypto::AesGcm::Create(key));
    slot = std::make_unique<crypto::AesGcm>(std::move(gcm));
  }
  return slot.get();
}

// Memory sized to the work: one 32 MB batch must not leave the enclave 23 MB larger for good.
void StreamService::TrimToRecentWork(size_t batch_bytes) {
  recent_batch_bytes_.Add(batch_bytes);  // a sealed batch is its beats plus 0.01 % of tags
  if (WorthReleasing(beats_.capacity_bytes(), recent_batch_bytes_.value())) beats_.Release();
}

Result<crypto::Bytes> StreamService::ProcessBatch(crypto::ByteView request) {
  return ProcessBatchFrom(
      request.size(),
      [request](size_t offset, size_t n, crypto::Bytes*) -> Result<crypto::ByteView> {
        return request.subspan(offset, n);
      });
}

namespace {

// Waits until the host has put the request's first `end` bytes in place. The host is reading them
// on another CPU at page-cache speed, so this spins (yielding) rather than sleeps; it gives up
// when the host reports a failed read or has not delivered them by `deadline`.
Status AwaitDelivery(std::atomic_ref<uint64_t> progress, uint64_t end,
                     std::chrono::steady_clock::time_point deadline) {
  for (uint32_t spins = 0;; ++spins) {
    const uint64_t have = progress.load(std::memory_order_acquire);
    if (have == kSharedFillFailed) {
      return Fail(Error::Code::kIo, "the host could not deliver the whole batch");
    }
    if (have >= end) return {};
    // The clock is read only once delivery is slow: the common wait is a few microseconds.
    if (spins >= 64 && std::chrono::steady_clock::now() > deadline) {
      return Fail(Error::Code::kDeadlineExceeded,
                  "the host delivered " + std::to_string(have) + " of the " + std::to_string(end) +
                      " bytes needed within the call's time budget");
    }
    if (spins >= 64) sched_yield();
  }
}

}  // namespace

Result<crypto::Bytes> StreamService::ProcessSharedBatch(const uint8_t* shared, size_t size,
                                                        std::atomic_ref<uint64_t> delivered) {
  // One budget for the whole call, however many pieces it waits for.
  const auto deadline =
      std::chrono::steady_clock::now() +
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(
          CallBudgetSeconds(*FindCall(static_cast<uint16_t>(Call::kProcessBatch)), size)));
  return ProcessBatchFrom(
      size,
      [shared, delivered, deadline](size_t offset, size_t n,
                                    crypto::Bytes* staging) -> Result<crypto::ByteView> {
        if (auto s = AwaitDelivery(delivered, offset + n, deadline); !s) {
          return std::unexpected(s.error());
        }
        staging->resize(n);  // at most a segment: the capacity is reused from batch to batch
        std::memcpy(staging->data(), shared + offset, n);
        return crypto::ByteView(*staging);
      });
}

// Decrypts and analyses one batch. Segment 0 is authenticated first (it authenticates the header
// before any stream state is touched); the worker then authenticates the remaining segments while
// this thread analyses the beats of those already authenticated, and opens segments itself when it
// has caught up. Should a later segment fail, the stream is put back as it was and nothing from
// this batch is released.
Result<crypto::Bytes> StreamService::ProcessBatchFrom(size_t size, const Reader& read) {
  ++generation_;  // a checkpoint in progress must start again
  auto result = [&]() -> Result<crypto::Bytes> {
    if (size < wire::kHeaderSize) {
      return Fail(Error::Code::kCorrupt,
                  "file too short for a medstream header (" + std::to_string(size) + " bytes)");
    }
    MEDSTREAM_TRY(head, read(0, wire::kHeaderSize, &head_));
    wire::SegmentLayout layout;
    size_t count = 0;
    MEDSTREAM_TRY(header, wire::PrepareBatch(head, size, &count, &layout));
    if (!beats_.Resize(count)) {
      return Fail(Error::Code::kResourceExhausted,
                  "no memory for a batch of " + std::to_string(count) + " beats");
    }
    if (!header.encrypted()) {
      return Refuse("plaintext batch refused: the enclave takes only encrypted batches");
    }
    MEDSTREAM_TRY(gcm, StreamCipher(header.key_id, header.stream));
    // Each thread opens segments with its own context (a GCM context holds one message's state).
    MEDSTREAM_TRY(worker_gcm, StreamCipher(header.key_id, header.stream, /*for_worker=*/true));
    auto* plain = reinterpret_cast<uint8_t*>(beats_.data());
    // This thread stages into staging_[0], the worker into staging_[1].
    auto open = [&](size_t i, crypto::AesGcm* cipher_gcm, crypto::Bytes* staging) -> Status {
      const wire::ByteRange range = wire::SegmentRange(layout, i);
      MEDSTREAM_TRY(cipher, read(range.offset, range.size, staging));
      return wire::OpenSegmentPiece(head, header, layout, i, cipher, cipher_gcm,
                                    {plain + layout.PlainOffset(i), layout.PlainSize(i)});
    };
    if (auto s = open(0, gcm, &staging_[0]); !s) return std::unexpected(s.error());
    const StreamConfig& config = keys_.at(header.key_id).config;
    MEDSTREAM_TRY(batch, streams_.Begin(header.stream, header.seq, header.key_id, config));
    constexpr size_t kBeatsPerSegment = wire::kSegmentBytes / sizeof(hrv::Beat);
    // Segments are claimed in order by whichever thread is free: the worker, and this thread
    // whenever the next segment to analyse is not open yet (a cheap job, such as identity or
    // sdnn, would otherwise wait on one thread's AES). Only the opened prefix is analysed.
    std::mutex mu;
    std::condition_variable cv;
    size_t claimed = 1;        // segments handed out
    size_t authenticated = 1;  // the prefix of segments opened
    std::vector<uint8_t> opened(layout.count, 0);
    opened[0] = 1;
    std::optional<Error> failure;
    constexpr size_t kNone = ~size_t{0};
    auto claim = [&] {
      std::lock_guard lock(mu);
      return failure || claimed == layout.count ? kNone : claimed++;
    };
    auto finish = [&](size_t i, const Status& s) {
      {
        std::lock_guard lock(mu);
        if (!s) {
          if (!failure) failure = s.error();
        } else {
          opened[i] = 1;
          while (authenticated < layout.count && opened[authenticated]) ++authenticated;
        }
      }
      cv.notify_all();
    };
    if (layout.count > 1) {
      worker_.Start([&] {
        for (size_t i = claim(); i != kNone; i = claim()) {
          const Status s = open(i, worker_gcm, &staging_[1]);
          finish(i, s);
          if (!s) break;
        }
      });
    }
    size_t done = 0;  // segments analysed
    while (done < layout.count) {
      size_t ready;
      {
        std::lock_guard lock(mu);
        if (failure) break;
        ready = authenticated;
      }
      if (ready > done) {
        const size_t from = done * kBeatsPerSegment;
        const size_t to = std::min(beats_.size(), ready * kBeatsPerSegment);
        streams_.Push(batch, beats_.span().subspan(from, to - from));
        done = ready;
        continue;
      }
      if (const size_t i = claim(); i != kNone) {
        finish(i, open(i, gcm, &staging_[0]));
        continue;
      }
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return authenticated > done || failure; });
    }
    if (layout.count > 1) worker_.Wait();
    if (failure) {
      streams_.Abort(batch);
      return std::unexpected(*failure);
    }
    uint64_t beats = 0;
    // The result is encoded and then sealed in one buffer of the sealed file's size: no second
    // buffer of the result's size in the enclave.
    crypto::Bytes file;
    {
      // Gone once encoded: the windows (14 MB for hrv-full over 32 MB) need not stay beside the
      // sealed file.
      const wire::BatchResult r = streams_.Commit(batch);
      beats = r.beats;
      file.reserve(wire::SealedFileSize(wire::EncodedResultBound(r)));
      wire::EncodeResult(r, &file);
    }
    wire::Header out = header;
    out.kind = wire::Kind::kResult;
    // A large result (many windows) is sealed on both threads.
    const wire::Helper helper{
        .gcm = worker_gcm,
        .start = [this](std::function<void()> task) { worker_.Start(std::move(task)); },
        .wait = [this] { worker_.Wait(); }};
    if (auto s = wire::SealFileInPlace(out, &file, gcm, &helper); !s) {
      crypto::Wipe(file);  // the encoded results, in part in plaintext
      return std::unexpected(s.error());
    }
    stats_.beats += beats;
    return file;
  }();
  ++(result ? stats_.batches_ok : stats_.batches_refused);
  TrimToRecentWork(size);
  return result;
}

namespace {

// A checkpoint part's plaintext: kPartMagic | index u32 | SHA-256 of the sealed part before it
// (zeros for part 0) | last u8 | body. Part 0's body: the keys, the counts and how many streams
// the parts after it hold; the others': a count and that many StreamTable::SaveStream records.
// A checkpoint from before parts is one sealed blob whose plaintext is the body of part 0 with
// every stream (StreamTable::Save) before the counts; it does not start with the magic (it starts
// with a key count, far below 2^30).
constexpr char kPartMagic[4] = {'M', 'S', 'C', 'P'};
constexpr size_t kPartHeaderBytes = 4 + 4 + 32 + 1;
// Part 0's body is the keys and counts (a few bytes a key); a stream part's, streams until it
// passes kCheckpointPartBytes, so its last stream can take it past that by one stream at most.
constexpr uint64_t kMaxPartPlaintext =
    kPartHeaderBytes + 4 + kCheckpointPartBytes + streams::StreamTable::kMaxSavedStreamBytes;
static_assert(kMaxPartPlaintext + kSealOverhead + 9 <= MaxResponse(Call::kCheckpoint),
              "a checkpoint part must fit the checkpoint call's answer");
static_assert(kMaxPartPlaintext + kSealOverhead <= MaxRequest(Call::kRestore),
              "a checkpoint part must fit the restore call's request");

}  // namespace

void StreamService::WriteKeys(ByteWriter* w) const {
  w->U32(static_cast<uint32_t>(keys_.size()));
  for (const auto& [id, e] : keys_) {
    w->U32(id);
    w->Bytes(e.key.span());
    e.config.Encode(w);
  }
}

Status StreamService::ReadKeys(ByteReader* r, std::map<uint32_t, KeyEntry>* keys) {
  MEDSTREAM_TRY(nkeys, r->U32("key count"));
  for (uint32_t i = 0; i < nkeys; ++i) {
    MEDSTREAM_TRY(id, r->U32("key id"));
    MEDSTREAM_TRY(key, r->Bytes(32, "key"));
    MEDSTREAM_TRY(config, StreamConfig::Decode(r));
    KeyEntry& e = (*keys)[id];
    e.key = crypto::Key256(key);
    e.config = std::move(config);
  }
  return {};
}

Result<crypto::Bytes> StreamService::Checkpoint(crypto::ByteView request) {
  MEDSTREAM_TRY(req, CheckpointRequest::Decode(request));
  if (req.part == 0) {
    pending_checkpoint_ = 0;
    checkpoint_ = CheckpointCursor{.version = platform_->counter(CounterId::kCheckpoint) + 1,
                                   .generation = generation_,
                                   .ids = streams_.Ids()};
  } else if (!checkpoint_ || req.part != checkpoint_->next_part) {
    return Refuse("checkpoint part " + std::to_string(req.part) + " asked for, but " +
                  (checkpoint_ ? "part " + std::to_string(checkpoint_->next_part) + " comes next"
                               : std::string("no checkpoint is in progress")) +
                  ": start again at part 0");
  } else if (checkpoint_->generation != generation_) {
    // Its parts would mix the streams of two moments.
    checkpoint_.reset();
    return Refuse("the streams changed since part 0 of this checkpoint: start again at part 0");
  }
  CheckpointCursor& c = *checkpoint_;
  crypto::Bytes state;
  ByteWriter w(&state);
  w.Raw(kPartMagic, sizeof kPartMagic);
  w.U32(req.part);
  w.Bytes(c.prev);
  const size_t last_at = state.size();
  w.U8(0);
  if (req.part == 0) {
    WriteKeys(&w);
    w.U64(stats_.batches_ok);
    w.U64(stats_.batches_refused);
    w.U64(stats_.beats);
    w.U64(c.ids.size());
  } else {
    const size_t count_at = state.size();
    w.U32(0);
    uint32_t n = 0;
    for (; c.next_stream < c.ids.size() && (n == 0 || state.size() < part_bytes_); ++n) {
      // Present: the streams have not changed since part 0 (generation_).
      if (auto s = streams_.SaveStream(c.ids[c.next_stream++], &w); !s) {
        crypto::Wipe(state);
        checkpoint_.reset();
        return Fail(Error::Code::kInternal, "checkpoint: " + s.error().message());
      }
    }
    std::memcpy(state.data() + count_at, &n, sizeof n);
  }
  const bool last = c.next_stream == c.ids.size();
  state[last_at] = last ? 1 : 0;
  if (state.size() > kMaxPartPlaintext) {  // the bounds above are wrong: never send it
    crypto::Wipe(state);
    checkpoint_.reset();
    return Fail(Error::Code::kInternal, "checkpoint part of " + std::to_string(state.size()) +
                                            " bytes, past its bound " +
                                            std::to_string(kMaxPartPlaintext));
  }
  auto sealed = SealData(state, platform_->sealing_root(), self_, policy_, c.version);
  crypto::Wipe(state);
  if (!sealed) {
    checkpoint_.reset();
    return std::unexpected(sealed.error());
  }
  const uint64_t version = c.version;
  c.prev = crypto::Sha256(*sealed);
  ++c.next_part;
  if (last) {
    checkpoint_.reset();
    pending_checkpoint_ = version;
  }
  return CheckpointPart{.last = last, .version = version, .sealed = *sealed}.Encode();
}

Result<crypto::Bytes> StreamService::Commit(crypto::ByteView request) {
  MEDSTREAM_TRY(commit, CommitVersion::Decode(request));
  const uint64_t version = commit.version;
  if (version != pending_checkpoint_ || version == 0) {
    return Refuse("commit of checkpoint " + std::to_string(version) +
                  ", but the pending checkpoint is " + std::to_string(pending_checkpoint_));
  }
  if (auto s = platform_->AdvanceCounter(CounterId::kCheckpoint, version); !s)
    return std::unexpected(s.error());
  pending_checkpoint_ = 0;
  return crypto::Bytes{};
}

Result<crypto::Bytes> StreamService::Restore(crypto::ByteView request) {
  // Whatever goes wrong, a restore in progress is dropped: the host starts again at part 0.
  auto progress = RestorePart(request);
  if (!progress) restore_.reset();
  if (!progress) return std::unexpected(progress.error());
  return RestoreProgress{*progress}.Encode();
}

Result<bool> StreamService::RestorePart(crypto::ByteView request) {
  if (!keys_.empty() || streams_.size() > 0) {
    return Refuse("restore must come before any key is provisioned or batch processed");
  }
  MEDSTREAM_TRY(u, UnsealData(request, platform_->sealing_root(), self_));
  struct WipeOnExit {
    crypto::Bytes& b;
    ~WipeOnExit() { crypto::Wipe(b); }
  } wipe{u.data};
  const uint64_t committed = platform_->counter(CounterId::kCheckpoint);
  if (u.version < committed) {
    return Fail(Error::Code::kRolledBack,
                "rollback refused: sealed state version " + std::to_string(u.version) +
                    " is older than the last committed checkpoint " + std::to_string(committed));
  }
  if (u.version > committed + 1) {
    return Refuse("sealed state version " + std::to_string(u.version) +
                  " is ahead of the platform counter " + std::to_string(committed) +
                  " (counter store lost or replaced?)");
  }
  ByteReader r(u.data);
  const bool parted = u.data.size() >= sizeof kPartMagic &&
                      std::memcmp(u.data.data(), kPartMagic, sizeof kPartMagic) == 0;
  if (!parted) {
    if (restore_) return Corrupt("a whole checkpoint given in the middle of one in parts");
    restore_ = std::make_unique<RestoreCursor>();
    RestoreCursor& c = *restore_;
    if (auto s = ReadKeys(&r, &c.keys); !s) return std::unexpected(s.error());
    if (auto s = c.streams.Load(&r, c.ConfigOf()); !s) return std::unexpected(s.error());
    MEDSTREAM_TRY(ok, r.U64("stats"));
    MEDSTREAM_TRY(refused, r.U64("stats"));
    MEDSTREAM_TRY(beats, r.U64("stats"));
    c.stats = {ok, refused, beats};
    c.version = u.version;
    c.streams_expected = c.streams.size();
  } else {
    (void)*r.Bytes(sizeof kPartMagic, "magic");
    MEDSTREAM_TRY(index, r.U32("part index"));
    MEDSTREAM_TRY(prev, r.Bytes(32, "previous part's digest"));
    MEDSTREAM_TRY(last, r.U8("last-part flag"));
    if (index == 0) {
      if (std::any_of(prev.begin(), prev.end(), [](uint8_t b) { return b != 0; }))
        return Corrupt("checkpoint part 0 names a part before it");
      restore_ = std::make_unique<RestoreCursor>();
      restore_->version = u.version;
      if (auto s = ReadKeys(&r, &restore_->keys); !s) return std::unexpected(s.error());
      MEDSTREAM_TRY(ok, r.U64("stats"));
      MEDSTREAM_TRY(refused, r.U64("stats"));
      MEDSTREAM_TRY(beats, r.U64("stats"));
      MEDSTREAM_TRY(expected, r.U64("stream count"));
      restore_->stats = {ok, refused, beats};
      restore_->streams_expected = expected;
    } else {
      if (!restore_ || index != restore_->next_part || u.version != restore_->version ||
          !std::equal(prev.begin(), prev.end(), restore_->prev.begin())) {
        return Corrupt("checkpoint part " + std::to_string(index) +
                       " does not follow the part before it: parts missing, out of order or "
                       "from another checkpoint");
      }
      MEDSTREAM_TRY(n, r.U32("stream count"));
      for (uint32_t i = 0; i < n; ++i) {
        MEDSTREAM_TRY(saved, restore_->streams.LoadStream(&r, restore_->ConfigOf()));
        restore_->streams.Put(std::move(saved));
      }
    }
    if (r.remaining() != 0) {
      return Corrupt("checkpoint part " + std::to_string(index) + ": " +
                     std::to_string(r.remaining()) + " bytes after its end");
    }
    restore_->prev = crypto::Sha256(request);
    ++restore_->next_part;
    if (last == 0) return false;
    if (restore_->streams.size() != restore_->streams_expected) {
      return Corrupt("checkpoint holds " + std::to_string(restore_->streams.size()) +
                     " streams, but its part 0 says " + std::to_string(restore_->streams_expected));
    }
  }
  // Complete: the state becomes this checkpoint's, and its version the counter's.
  RestoreCursor& c = *restore_;
  if (c.version == committed + 1) {
    if (auto s = platform_->AdvanceCounter(CounterId::kCheckpoint, c.version); !s)
      return std::unexpected(s.error());
  }
  keys_ = std::move(c.keys);
  streams_ = std::move(c.streams);
  streams_.set_parallel(&pool_);
  stats_.batches_ok = c.stats[0];
  stats_.batches_refused = c.stats[1];
  stats_.beats = c.stats[2];
  restore_.reset();
  ++generation_;
  return true;
}

}  // namespace medstream::enclave

#include "host/worker/worker.h"

#include <algorithm>
#include <cstdio>
#include <thread>

#include "common/base/bytes.h"
#include "common/wire/cluster.h"
#include "common/wire/wire.h"
#include "host/worker/edge_relay.h"

namespace medstream::host {

namespace cl = wire::cluster;

namespace {

// The state entry: next batch stream sequence u64 | suspect batch sequence u64 | its tries u32 |
// in-flight batch sequence u64 | clean u8 | the reading consumer's name | the enclave's portable
// state of the partition (opaque here; empty: nothing yet). "Suspect": the batch enclaves died or
// hung on, and how many times (kMaxBatchAttempts bounds it). "In flight": the batch a careful
// owner handed its enclave last (0: none); if the owner dies, the next one counts it as a try on
// that batch. "Clean": the owner handed the partition back (Release, rebalancing) rather than died.
struct StateEntry {
  uint64_t next_seq = 1;
  uint64_t suspect_seq = 0;
  uint32_t suspect_tries = 0;
  uint64_t inflight_seq = 0;
  bool clean = false;
  std::string consumer;
  crypto::Bytes portable;
  crypto::Bytes Encode() const {
    crypto::Bytes out;
    ByteWriter w(&out);
    w.U64(next_seq);
    w.U64(suspect_seq);
    w.U32(suspect_tries);
    w.U64(inflight_seq);
    w.U8(clean ? 1 : 0);
    w.Blob(crypto::AsBytes(consumer));
    w.Bytes(portable);
    return out;
  }
  static Result<StateEntry> Decode(crypto::ByteView b) {
    ByteReader r(b);
    StateEntry e;
    MEDSTREAM_TRY(next, r.U64("next sequence"));
    MEDSTREAM_TRY(suspect, r.U64("suspect sequence"));
    MEDSTREAM_TRY(tries, r.U32("suspect tries"));
    MEDSTREAM_TRY(inflight, r.U64("in-flight sequence"));
    MEDSTREAM_TRY(clean, r.U8("clean flag"));
    MEDSTREAM_TRY(consumer, r.Blob("consumer", 256));
    MEDSTREAM_TRY(rest, r.Bytes(r.remaining(), "portable state"));
    e.next_seq = next;
    e.suspect_seq = suspect;
    e.suspect_tries = tries;
    e.inflight_seq = inflight;
    e.clean = clean == 1;
    // Counts what an owner that died left in flight as a try on that batch.
    if (e.inflight_seq != 0) {
      e.suspect_tries = e.suspect_seq == e.inflight_seq ? e.suspect_tries + 1 : 1;
      e.suspect_seq = e.inflight_seq;
      e.inflight_seq = 0;
    }
    e.consumer.assign(consumer.begin(), consumer.end());
    e.portable.assign(rest.begin(), rest.end());
    return e;
  }
};

// A partition's portable state that does not fit one message of the cluster (the nodes'
// max_payload, 8 MiB by default: a few hundred users' windows, or a few dozen sensors sending beats
// as densely as allowed; every checkpoint of such a partition failed) is stored in chunks beside
// the state entry, which holds their manifest instead:
//   "MSPC" | writer (the worker instance, 8 bytes) | slot u8 | chunk count u32 | bytes u64 |
//   SHA-256 of the state
// Chunk i is key "<partition key>.s.<writer hex>.<slot>.<i>". Only its writer writes a key, and
// a checkpoint writes the slot the entry does not name, before the entry (compare-and-set) names
// it: an entry never names chunks incomplete or being rewritten, even by an owner that was fenced
// and does not know it yet. The keys are reused (the bucket keeps one value a key), so chunks take
// two states' room per owner at most; a new owner deletes what the entry does not name
// (SweepChunks). A portable state starts with "MSPS", never with this magic.
constexpr char kChunkedMagic[4] = {'M', 'S', 'P', 'C'};
// What one import call carries, less its partition selector.
constexpr uint64_t kMaxPortableBytes = enclave::MaxRequest(enclave::Call::kImportStreams) - 8;
struct ChunkManifest {
  std::array<uint8_t, 8> writer{};
  uint8_t slot = 0;
  uint32_t chunks = 0;
  uint64_t bytes = 0;
  crypto::Digest sha{};
  static bool Is(crypto::ByteView b) {
    return b.size() >= 4 && std::equal(b.begin(), b.begin() + 4, std::begin(kChunkedMagic));
  }
  crypto::Bytes Encode() const {
    crypto::Bytes out;
    ByteWriter w(&out);
    w.Raw(kChunkedMagic, 4);
    w.Bytes(writer);
    w.U8(slot);
    w.U32(chunks);
    w.U64(bytes);
    w.Bytes(sha);
    return out;
  }
  static Result<ChunkManifest> Decode(crypto::ByteView b) {
    ByteReader r(b);
    ChunkManifest m;
    MEDSTREAM_TRY(magic, r.Bytes(4, "chunk manifest magic"));
    MEDSTREAM_TRY(writer, r.Bytes(8, "chunk writer"));
    MEDSTREAM_TRY(slot, r.U8("chunk slot"));
    MEDSTREAM_TRY(chunks, r.U32("chunk count"));
    MEDSTREAM_TRY(bytes, r.U64("portable state size"));
    MEDSTREAM_TRY(sha, r.Bytes(32, "portable state digest"));
    (void)magic;
    if (r.remaining() != 0) return Corrupt("chunk manifest: bytes after its end");
    // Each chunk holds at least one byte; no state is larger than an import carries.
    if (slot > 1 || bytes > kMaxPortableBytes || chunks == 0 || chunks > bytes) {
      return Corrupt("chunk manifest of " + std::to_string(chunks) + " chunks for " +
                     std::to_string(bytes) + " bytes in slot " + std::to_string(slot));
    }
    std::copy(writer.begin(), writer.end(), m.writer.begin());
    std::copy(sha.begin(), sha.end(), m.sha.begin());
    m.slot = slot;
    m.chunks = chunks;
    m.bytes = bytes;
    return m;
  }
  std::string KeyPrefix(uint32_t partition) const {
    return cl::PartitionKey(partition) + ".s." + crypto::ToHex(writer) + "." +
           std::to_string(slot) + ".";
  }
};

bool Transient(const Error& e) {
  return e.code() == Error::Code::kIo || e.code() == Error::Code::kDeadlineExceeded;
}

// Retries `f` while it fails transiently (a stream just created whose leader is not elected yet
// answers "no responders"; a node failing over), for at most `seconds`.
template <typename F>
auto Retrying(double seconds, F f) -> decltype(f()) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  auto r = f();
  while (!r && Transient(r.error()) && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    r = f();
  }
  return r;
}

}  // namespace

Status EnsureClusterLayout(nats::Connection& c, int replicas, double lease_s) {
  // Batches and results stay a day: a partition's checkpoint is minutes old at most, so a new
  // owner always finds what it must read again. The duplicate window covers a gateway's resend
  // and a new owner's re-publishing after a failover.
  if (auto s = c.EnsureStream({.name = cl::kBatchStream,
                               .subjects = {"medstream.batch.*"},
                               .replicas = replicas,
                               .duplicate_window_s = 3600,
                               .max_age_s = 86400});
      !s) {
    return s;
  }
  if (auto s = c.EnsureStream({.name = cl::kResultStream,
                               .subjects = {"medstream.result.>"},
                               .replicas = replicas,
                               .duplicate_window_s = 3600,
                               .max_age_s = 86400});
      !s) {
    return s;
  }
  if (auto s = c.EnsureStream({.name = cl::kQuarantineStream,
                               .subjects = {"medstream.quarantine.>"},
                               .replicas = replicas,
                               .max_age_s = 7 * 86400});
      !s) {
    return s;
  }
  for (const auto& [bucket, ttl] :
       {std::pair{cl::kLeaseBucket, lease_s}, std::pair{cl::kWorkerBucket, lease_s},
        std::pair{cl::kStateBucket, 0.0}}) {
    auto kv = c.EnsureKeyValue({.bucket = bucket, .replicas = replicas, .ttl_s = ttl});
    if (!kv) return std::unexpected(kv.error());
  }
  return {};
}

Result<std::unique_ptr<Worker>> Worker::Start(const WorkerOptions& o) {
  if (!cl::ValidWorkerName(o.name)) {
    return InvalidArgument("bad worker name '" + o.name + "' (1-64 of A-Z a-z 0-9 - _)");
  }
  if (o.partitions == 0 || o.partitions > enclave::kMaxPartitions) {
    return InvalidArgument("partitions must be 1 to " + std::to_string(enclave::kMaxPartitions));
  }
  if (o.lease_s < 1) return InvalidArgument("a lease lasts at least 1 s");
  std::unique_ptr<Worker> w(new Worker(o));
  crypto::Bytes nonce(8);
  if (auto s = crypto::RandomBytes(nonce); !s) return std::unexpected(s.error());
  w->instance_ = crypto::ToHex(nonce);
  std::copy(nonce.begin(), nonce.end(), w->instance_id_.begin());
  MEDSTREAM_TRY(enclave, LaunchEnclave(o.enclave));
  w->enclave_ = std::move(enclave);
  MEDSTREAM_TRY(conn, nats::Connection::Connect(o.nats));
  w->nats_ = std::move(conn);
  if (auto s = Retrying(30, [&] { return EnsureClusterLayout(*w->nats_, o.replicas, o.lease_s); });
      !s) {
    return std::unexpected(std::move(s.error()).With("setting up the cluster's streams"));
  }
  MEDSTREAM_TRY(leases, w->nats_->EnsureKeyValue({.bucket = cl::kLeaseBucket}));
  MEDSTREAM_TRY(state, w->nats_->EnsureKeyValue({.bucket = cl::kStateBucket}));
  MEDSTREAM_TRY(workers, w->nats_->EnsureKeyValue({.bucket = cl::kWorkerBucket}));
  w->leases_ = std::move(leases);
  w->state_ = std::move(state);
  w->workers_ = std::move(workers);
  Worker* raw = w.get();
  MEDSTREAM_TRY(relay, ServeEdgeOverNats(*w->nats_, cl::EdgeSubject(o.name),
                                         [raw](enclave::Call call, crypto::ByteView req) {
                                           return raw->CallEnclave(call, req);
                                         }));
  w->relay_ = std::move(relay);
  if (auto s = w->nats_->Flush(o.nats.timeout_s); !s) return std::unexpected(s.error());
  // Registered only now that the relay answers: a gateway that sees the entry can attest.
  MEDSTREAM_TRY(
      rev, Retrying(30, [&] { return w->workers_->Put(o.name, crypto::AsBytes(w->instance_)); }));
  (void)rev;
  w->last_renew_ = Clock::now();
  return w;
}

Worker::~Worker() {
  relay_.reset();  // no relay call after this
}

Result<crypto::Bytes> Worker::CallEnclave(enclave::Call call, crypto::ByteView request) {
  std::lock_guard lock(enclave_mu_);
  if (!enclave_) return Fail(Error::Code::kFailedPrecondition, "the enclave is gone");
  return enclave_->Call(call, request);
}

int Worker::enclave_pid() const {
  return enclave_ ? enclave_->pid() : -1;
}

bool Worker::provisioned() {
  if (provisioned_) return true;
  auto raw = CallEnclave(enclave::Call::kStats, {});
  if (!raw) return false;
  auto stats = enclave::EnclaveStats::Decode(*raw);
  provisioned_ = stats && stats->keys > 0;
  return provisioned_;
}

WorkerCounters Worker::counters() const {
  std::lock_guard lock(counters_mu_);
  return counters_;
}

Status Worker::Renew(Clock::time_point now) {
  // "ready" once provisioned: the fair share counts only workers that can process.
  const std::string entry = instance_ + (provisioned_ ? " ready" : "");
  if (auto r = workers_->Put(options_.name, crypto::AsBytes(entry)); !r) {
    // Tried again next round; meanwhile the entry may expire and others count one worker less
    // (they take more partitions, never the ones we hold a lease on).
    std::fprintf(stderr, "worker %s: registering: %s\n", options_.name.c_str(),
                 r.error().message().c_str());
  }
  std::vector<uint32_t> lost;
  for (auto& [id, p] : owned_) {
    auto r = leases_->Update(cl::PartitionKey(id), crypto::AsBytes(options_.name), p.lease_rev);
    if (r) {
      p.lease_rev = *r;
      p.renewed = now;
    } else if (r.error().code() == Error::Code::kFailedPrecondition ||
               r.error().code() == Error::Code::kNotFound ||
               now - p.renewed >= std::chrono::duration<double>(options_.lease_s)) {
      // Expired and taken, deleted, or not renewed for a whole lease (a node failing over, a
      // partition of the network): not ours, or not surely ours any more.
      lost.push_back(id);
    }
  }
  for (uint32_t id : lost) {
    std::fprintf(stderr, "worker %s: lost the lease of partition %u\n", options_.name.c_str(), id);
    std::lock_guard lock(counters_mu_);
    ++counters_.lost;
    Drop(id, /*delete_lease=*/false);
  }
  last_renew_ = now;
  return {};
}

Status Worker::Rebalance() {
  MEDSTREAM_TRY(names, workers_->Keys());
  uint32_t ready = 0;
  for (const std::string& n : names) {
    auto e = workers_->Get(n);
    const std::string v = e ? std::string(e->value.begin(), e->value.end()) : "";
    ready += v.ends_with(" ready") ? 1 : 0;
  }
  const uint32_t n = std::max<uint32_t>(1, ready);
  uint32_t share = (options_.partitions + n - 1) / n;
  if (options_.max_partitions > 0) share = std::min(share, options_.max_partitions);
  // Hand back beyond the share (a worker joined): checkpoint first, so the next owner continues.
  while (owned_.size() > share) {
    auto it = std::prev(owned_.end());
    if (auto s = Checkpoint(it->second, /*clean=*/true); !s && !Transient(s.error())) {
      Drop(it->first, false);
      continue;
    }
    Drop(it->first, /*delete_lease=*/true);
    std::lock_guard lock(counters_mu_);
    ++counters_.released;
  }
  if (owned_.size() >= share) return {};
  // Try free partitions from a point of our own, so that workers starting together spread out.
  const uint32_t start =
      static_cast<uint32_t>(std::hash<std::string>{}(options_.name) % options_.partitions);
  for (uint32_t k = 0; k < options_.partitions && owned_.size() < share; ++k) {
    const uint32_t id = (start + k) % options_.partitions;
    if (owned_.count(id) > 0) continue;
    auto rev = leases_->Create(cl::PartitionKey(id), crypto::AsBytes(options_.name));
    if (!rev) {
      if (rev.error().code() == Error::Code::kFailedPrecondition) continue;  // owned by another
      return std::unexpected(rev.error());
    }
    Partition& p = owned_[id];
    p.id = id;
    p.lease_rev = *rev;
    p.renewed = Clock::now();
    if (auto s = TakeOver(id); !s) {
      Drop(id, /*delete_lease=*/true);
      // A partition whose stored state is damaged (an entry that does not decode, a stream the
      // enclave cannot open: anyone who can write the bucket can do it) is not this worker's
      // failure. Stopping here made every worker stop in turn on it, the whole cluster for one
      // entry; it is left alone instead, said once, for an operator.
      const bool damaged = s.error().code() == Error::Code::kCorrupt;
      if (!damaged) {
        std::fprintf(stderr, "worker %s: could not take partition %u: %s\n", options_.name.c_str(),
                     id, s.error().message().c_str());
      } else if (damaged_.insert(id).second) {
        std::fprintf(stderr,
                     "worker %s: partition %u's stored state is damaged, so it is left alone "
                     "(repair or delete key %s of %s; its streams then start afresh): %s\n",
                     options_.name.c_str(), id, cl::PartitionKey(id).c_str(), cl::kStateBucket,
                     s.error().message().c_str());
        std::lock_guard lock(counters_mu_);
        ++counters_.partitions_damaged;
      }
      if (!damaged && !Transient(s.error()) &&
          s.error().code() != Error::Code::kFailedPrecondition) {
        return s;
      }
      continue;
    }
    damaged_.erase(id);
    std::lock_guard lock(counters_mu_);
    ++counters_.takeovers;
  }
  return {};
}

Status Worker::TakeOver(uint32_t id) {
  Partition& p = owned_.at(id);
  const std::string key = cl::PartitionKey(id);
  const enclave::PartitionSelector sel{id, options_.partitions};
  StateEntry entry;
  uint64_t rev = 0;
  auto got = state_->Get(key);
  if (got) {
    MEDSTREAM_TRY(e, StateEntry::Decode(got->value));
    entry = std::move(e);
    rev = got->revision;
  } else if (got.error().code() != Error::Code::kNotFound) {
    return std::unexpected(got.error());
  }
  // The enclave's streams of this partition become exactly the stored ones.
  crypto::Bytes import = sel.Encode();
  {
    auto portable = LoadPortable(id, entry.portable);
    if (!portable) {
      // Most likely an owner whose lease expired while it was paused wrote a checkpoint since we
      // read the entry, replacing the chunks it named: not this worker's failure. Tried again at
      // a later round, as a partition another worker holds (the state is never guessed at).
      return Fail(Error::Code::kFailedPrecondition,
                  "restoring partition " + std::to_string(id) + ": " + portable.error().message() +
                      " (its state changed while it was read, or its chunks are damaged)");
    }
    import.insert(import.end(), portable->begin(), portable->end());
  }
  if (auto r = CallEnclave(enclave::Call::kImportStreams, import); !r) {
    return std::unexpected(std::move(r.error()).With("restoring partition " + std::to_string(id)));
  }
  crypto::Wipe(import);
  // The previous owner's consumer goes (a paused owner that wakes reads nothing more from it).
  if (!entry.consumer.empty()) (void)nats_->DeleteConsumer(cl::kBatchStream, entry.consumer);
  // Fence: rewrite the entry with our consumer. A previous owner's later checkpoint, based on the
  // revision it saw, now fails.
  const std::string consumer = "p" + std::to_string(id) + "-" + options_.name + "-" + instance_ +
                               "-" + std::to_string(rev + 1);
  StateEntry fenced = entry;
  fenced.consumer = consumer;
  fenced.clean = false;
  auto new_rev =
      rev == 0 ? state_->Create(key, fenced.Encode()) : state_->Update(key, fenced.Encode(), rev);
  if (!new_rev) return std::unexpected(new_rev.error());
  SweepChunks(id, entry.portable);  // ours now: what the entry does not name is garbage
  MEDSTREAM_TRY(sub, nats_->PullSubscribe(cl::kBatchStream, consumer, cl::BatchSubject(id), 60,
                                          entry.next_seq));
  p.state_rev = *new_rev;
  p.next_seq = entry.next_seq;
  p.written_next_seq = entry.next_seq;
  p.written_portable = std::move(entry.portable);
  p.suspect_seq = entry.suspect_seq;
  p.suspect_tries = entry.suspect_tries;
  // The previous owner died without handing back (and without saying which batch it was on, if
  // its enclave died with it), or a batch is suspect: mark each batch until the first checkpoint.
  p.careful = (rev != 0 && !entry.clean) || entry.suspect_tries > 0;
  p.consumer_name = consumer;
  p.consumer = std::move(sub);
  p.since_checkpoint = 0;
  p.last_checkpoint = Clock::now();
  return {};
}

size_t Worker::ChunkBytes() const {
  if (options_.state_chunk_bytes > 0) return options_.state_chunk_bytes;
  const int64_t max_payload = nats_->max_payload();
  return static_cast<size_t>(std::max<int64_t>(max_payload - 4096, 4096));
}

Result<crypto::Bytes> Worker::StorePortable(uint32_t id, crypto::Bytes portable,
                                            crypto::ByteView written) {
  const size_t chunk = ChunkBytes();
  if (portable.size() <= chunk && !ChunkManifest::Is(portable)) return portable;
  if (portable.size() > kMaxPortableBytes) {
    return Fail(Error::Code::kResourceExhausted,
                "partition " + std::to_string(id) + "'s state of " +
                    std::to_string(portable.size()) + " bytes is more than an import carries");
  }
  ChunkManifest m;
  std::copy(instance_id_.begin(), instance_id_.end(), m.writer.begin());
  // The slot the entry as last written does not name (its chunks stay whole until replaced).
  if (ChunkManifest::Is(written)) {
    auto last = ChunkManifest::Decode(written);
    if (last && last->writer == m.writer) m.slot = 1 - last->slot;
  }
  m.bytes = portable.size();
  m.chunks = static_cast<uint32_t>((portable.size() + chunk - 1) / chunk);
  m.sha = crypto::Sha256(portable);
  const crypto::Bytes manifest = m.Encode();
  for (uint32_t i = 0; i < m.chunks; ++i) {
    const size_t at = size_t{i} * chunk;
    const crypto::ByteView part =
        crypto::ByteView(portable).subspan(at, std::min(chunk, portable.size() - at));
    if (auto r = state_->Put(m.KeyPrefix(id) + std::to_string(i), part); !r) {
      DeleteChunks(id, manifest);
      return std::unexpected(std::move(r.error()).With("storing partition " + std::to_string(id) +
                                                       "'s state, chunk " + std::to_string(i)));
    }
  }
  return manifest;
}

Result<crypto::Bytes> Worker::LoadPortable(uint32_t id, const crypto::Bytes& stored) {
  if (!ChunkManifest::Is(stored)) return stored;
  MEDSTREAM_TRY(m, ChunkManifest::Decode(stored));
  crypto::Bytes out;
  out.reserve(m.bytes);
  for (uint32_t i = 0; i < m.chunks; ++i) {
    const std::string key = m.KeyPrefix(id) + std::to_string(i);
    auto e = state_->Get(key);
    if (!e) return std::unexpected(std::move(e.error()).With("chunk " + key));
    if (e->value.empty() || e->value.size() > m.bytes - out.size()) {
      return Corrupt("chunk " + key + " does not fit its manifest");
    }
    out.insert(out.end(), e->value.begin(), e->value.end());
  }
  if (out.size() != m.bytes || crypto::Sha256(out) != m.sha) {
    return Corrupt("the chunks of partition " + std::to_string(id) +
                   "'s state do not match their manifest");
  }
  return out;
}

void Worker::DeleteChunks(uint32_t id, crypto::ByteView stored) {
  if (!ChunkManifest::Is(stored)) return;
  auto m = ChunkManifest::Decode(stored);
  if (!m) return;
  for (uint32_t i = 0; i < m->chunks; ++i)
    (void)state_->Delete(m->KeyPrefix(id) + std::to_string(i));
}

void Worker::SweepChunks(uint32_t id, crypto::ByteView current) {
  auto keys = state_->Keys();
  if (!keys) return;  // the next owner sweeps
  const std::string mine = cl::PartitionKey(id) + ".s.";
  std::string keep;
  if (ChunkManifest::Is(current)) {
    if (auto m = ChunkManifest::Decode(current)) keep = m->KeyPrefix(id);
  }
  for (const std::string& key : *keys) {
    if (key.starts_with(mine) && (keep.empty() || !key.starts_with(keep)))
      (void)state_->Delete(key);
  }
}

void Worker::Drop(uint32_t id, bool delete_lease) {
  auto it = owned_.find(id);
  if (it == owned_.end()) return;
  it->second.consumer.reset();
  if (!it->second.consumer_name.empty()) {
    (void)nats_->DeleteConsumer(cl::kBatchStream, it->second.consumer_name);
  }
  if (delete_lease) (void)leases_->Delete(cl::PartitionKey(id));
  owned_.erase(it);
}

Status Worker::Checkpoint(Partition& p, bool clean) {
  const enclave::PartitionSelector sel{p.id, options_.partitions};
  MEDSTREAM_TRY(exported, CallEnclave(enclave::Call::kExportStreams, sel.Encode()));
  MEDSTREAM_TRY(portable, StorePortable(p.id, std::move(exported), p.written_portable));
  // A mark on a batch already behind us is history (the enclave got through it after all).
  const bool keep_mark = p.suspect_seq >= p.next_seq;
  StateEntry e{.next_seq = p.next_seq,
               .suspect_seq = keep_mark ? p.suspect_seq : 0,
               .suspect_tries = keep_mark ? p.suspect_tries : 0,
               .clean = clean,
               .consumer = p.consumer_name,
               .portable = std::move(portable)};
  auto rev = state_->Update(cl::PartitionKey(p.id), e.Encode(), p.state_rev);
  if (!rev) {
    DeleteChunks(p.id, e.portable);  // named by no entry
    return std::unexpected(rev.error());
  }
  DeleteChunks(p.id, p.written_portable);  // replaced
  p.state_rev = *rev;
  p.written_next_seq = e.next_seq;
  p.written_portable = std::move(e.portable);
  p.suspect_seq = e.suspect_seq;
  p.suspect_tries = e.suspect_tries;
  p.careful = false;
  p.checkpoint_failing = false;
  p.since_checkpoint = 0;
  p.last_checkpoint = Clock::now();
  std::lock_guard lock(counters_mu_);
  ++counters_.checkpoints;
  return {};
}

Status Worker::Mark(Partition& p, uint64_t inflight) {
  StateEntry e{.next_seq = p.written_next_seq,
               .suspect_seq = p.suspect_seq,
               .suspect_tries = p.suspect_tries,
               .inflight_seq = inflight,
               .clean = false,
               .consumer = p.consumer_name,
               .portable = p.written_portable};
  auto rev = state_->Update(cl::PartitionKey(p.id), e.Encode(), p.state_rev);
  if (!rev) return std::unexpected(rev.error());
  p.state_rev = *rev;
  return {};
}

Status Worker::Quarantine(Partition& p, nats::Message& m, const Error& why) {
  const std::string reason = std::string(CodeWords(why.code())) + ": " + why.message();
  std::fprintf(stderr, "worker %s: partition %u: batch %llu quarantined: %s\n",
               options_.name.c_str(), p.id, static_cast<unsigned long long>(m.stream_sequence()),
               reason.c_str());
  auto header = wire::Header::Decode(m.data());
  const std::string subject = header ? cl::QuarantineSubject(header->stream, header->seq)
                                     : cl::QuarantineSubjectUnreadable(m.stream_sequence());
  auto r =
      nats_->Publish(subject, m.data(), "q-" + std::to_string(m.stream_sequence()),
                     options_.publish_timeout_s, {{"Medstream-Reason", reason.substr(0, 1000)}});
  if (!r) return std::unexpected(r.error());
  std::lock_guard lock(counters_mu_);
  ++counters_.quarantined;
  return {};
}

bool Worker::QuarantineAndGoOn(Partition& p, nats::Message& m, const Error& why) {
  if (auto s = Quarantine(p, m, why); !s) {
    Drop(p.id, /*delete_lease=*/true);  // not stored: started again from the checkpoint
    return false;
  }
  p.next_seq = m.stream_sequence() + 1;
  ++p.since_checkpoint;
  (void)m.Ack();
  return true;
}

Status Worker::ProcessSome(Partition& p) {
  auto fetched = p.consumer->Fetch(options_.fetch_batch, 0.02);
  if (!fetched) {
    if (Transient(fetched.error())) return {};  // asked again next round
    // The consumer is gone (deleted by a new owner that took the partition): not ours.
    std::fprintf(stderr, "worker %s: partition %u: %s; dropping it\n", options_.name.c_str(), p.id,
                 fetched.error().message().c_str());
    Drop(p.id, /*delete_lease=*/false);
    return {};
  }
  std::vector<nats::Message>& msgs = *fetched;
  for (nats::Message& m : msgs) {
    if (m.stream_sequence() < p.next_seq) {  // delivered again: done before
      (void)m.Ack();
      continue;
    }
    const uint64_t seq = m.stream_sequence();
    if (p.suspect_seq == seq && p.suspect_tries >= static_cast<uint32_t>(kMaxBatchAttempts)) {
      // Enclaves died or hung on this batch kMaxBatchAttempts times: not another.
      const Error why(Error::Code::kResourceExhausted,
                      "an enclave died or hung on this batch " + std::to_string(p.suspect_tries) +
                          " times (the limit is " + std::to_string(kMaxBatchAttempts) + ")");
      if (!QuarantineAndGoOn(p, m, why)) return {};
      continue;
    }
    if (p.careful) {
      if (auto s = Mark(p, /*inflight=*/seq); !s) {
        // Fenced, or the cluster did not answer: start again from the checkpoint (later).
        std::fprintf(stderr, "worker %s: partition %u: marking batch %llu: %s; dropping it\n",
                     options_.name.c_str(), p.id, static_cast<unsigned long long>(seq),
                     s.error().message().c_str());
        Drop(p.id, /*delete_lease=*/s.error().code() != Error::Code::kFailedPrecondition);
        return {};
      }
    }
    auto header = wire::Header::Decode(m.data());
    auto result = header ? CallEnclave(enclave::Call::kProcessBatch, m.data())
                         : Result<crypto::Bytes>(std::unexpected(header.error()));
    if (result) {
      const std::string subject = cl::ResultSubject(header->stream, header->seq);
      const std::string id = wire::ResultFileName(header->stream, header->seq);
      const auto until = Clock::now() + std::chrono::duration<double>(options_.publish_timeout_s);
      auto ack = nats_->Publish(subject, *result, id, 5);
      while (!ack && Transient(ack.error()) && Clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        ack = nats_->Publish(subject, *result, id, 5);
      }
      if (!ack && ack.error().code() == Error::Code::kResourceExhausted) {
        // Over the nodes' max_payload (an identity result of a batch near the gateway's cut):
        // it would never be stored. The enclave moved on; the batch goes to quarantine.
        const Error why(Error::Code::kResourceExhausted,
                        "its result (" + std::to_string(result->size()) +
                            " bytes) is over the cluster's max_payload (" +
                            std::to_string(nats_->max_payload()) + " bytes)");
        if (!QuarantineAndGoOn(p, m, why)) return {};
        continue;
      }
      if (!ack) {
        // The enclave moved on but the result is not stored: start the partition again from its
        // checkpoint (the batch will be processed again, to the same bytes).
        std::fprintf(stderr, "worker %s: partition %u: result not stored (%s); restarting it\n",
                     options_.name.c_str(), p.id, ack.error().message().c_str());
        Drop(p.id, /*delete_lease=*/true);
        return {};
      }
      std::lock_guard lock(counters_mu_);
      ++counters_.processed;
      counters_.beats += header->payload_size / sizeof(hrv::Beat);
    } else if (result.error().code() == Error::Code::kAlreadyExists) {
      std::lock_guard lock(counters_mu_);
      ++counters_.replays;
    } else if (result.error().code() == Error::Code::kIo ||
               result.error().code() == Error::Code::kDeadlineExceeded ||
               result.error().code() == Error::Code::kInternal) {
      // The enclave died or hung: say on which batch (unless marked already), then fail-stop
      // (others continue from the last checkpoint, carefully).
      if (!p.careful) {  // (a careful owner's in-flight mark says it already)
        p.suspect_tries = p.suspect_seq == seq ? p.suspect_tries + 1 : 1;
        p.suspect_seq = seq;
        if (auto s = Mark(p, /*inflight=*/0); !s) {
          std::fprintf(stderr, "worker %s: partition %u: marking batch %llu: %s\n",
                       options_.name.c_str(), p.id, static_cast<unsigned long long>(seq),
                       s.error().message().c_str());
        }
      }
      return std::unexpected(std::move(result.error())
                                 .With("the enclave failed on batch " + std::to_string(seq) +
                                       " of partition " + std::to_string(p.id)));
    } else {
      if (!QuarantineAndGoOn(p, m, result.error())) return {};
      continue;
    }
    p.next_seq = seq + 1;
    ++p.since_checkpoint;
    (void)m.Ack();
  }
  return {};
}

Status Worker::Step() {
  const auto now = Clock::now();
  const auto third = std::chrono::duration<double>(options_.lease_s / 3);
  if (now - last_renew_ >= third) {
    if (auto s = Renew(now); !s) return s;
  }
  if (!provisioned_) {
    if (!provisioned()) return {};
    if (auto s = Renew(now); !s) return s;  // say "ready" at once
  }
  if (now - last_rebalance_ >= third) {
    // The cluster unreachable for a while (a node failing over) is not fatal: the leases say
    // what is ours, and the next round tries again.
    if (auto s = Rebalance(); !s) {
      if (!Transient(s.error())) return s;
      std::fprintf(stderr, "worker %s: %s (will retry)\n", options_.name.c_str(),
                   s.error().message().c_str());
    }
    last_rebalance_ = now;
  }
  std::vector<uint32_t> ids;
  for (const auto& [id, p] : owned_) ids.push_back(id);
  for (uint32_t id : ids) {
    auto it = owned_.find(id);
    if (it == owned_.end()) continue;
    Partition& p = it->second;
    if (auto s = ProcessSome(p); !s) return s;
    it = owned_.find(id);
    if (it == owned_.end()) continue;
    const bool due = p.since_checkpoint >= options_.checkpoint_every ||
                     (p.since_checkpoint > 0 &&
                      Clock::now() - p.last_checkpoint >=
                          std::chrono::duration<double>(options_.checkpoint_interval_s));
    if (due) {
      if (auto s = Checkpoint(p); !s) {
        {
          std::lock_guard lock(counters_mu_);
          ++counters_.checkpoint_failures;
        }
        if (!p.checkpoint_failing && s.error().code() != Error::Code::kFailedPrecondition) {
          std::fprintf(stderr, "worker %s: checkpoint of partition %u failed (tried again): %s\n",
                       options_.name.c_str(), id, s.error().message().c_str());
        }
        p.checkpoint_failing = true;
        if (s.error().code() == Error::Code::kFailedPrecondition) {
          std::fprintf(stderr, "worker %s: partition %u was taken over (fenced)\n",
                       options_.name.c_str(), id);
          std::lock_guard lock(counters_mu_);
          ++counters_.lost;
        }
        if (!Transient(s.error())) Drop(id, false);
      }
    }
  }
  std::lock_guard lock(counters_mu_);
  counters_.owned.clear();
  for (const auto& [id, p] : owned_) counters_.owned.push_back(id);
  return {};
}

Status Worker::Run(const std::atomic<bool>& stop) {
  while (!stop) {
    if (auto s = Step(); !s) return s;
    if (owned_.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Release();
}

Status Worker::Release() {
  Status first;
  std::vector<uint32_t> ids;
  for (const auto& [id, p] : owned_) ids.push_back(id);
  for (uint32_t id : ids) {
    auto s = Checkpoint(owned_.at(id), /*clean=*/true);
    if (!s && first) first = s;
    Drop(id, /*delete_lease=*/static_cast<bool>(s));
    std::lock_guard lock(counters_mu_);
    ++counters_.released;
  }
  (void)workers_->Delete(options_.name);
  std::lock_guard lock(counters_mu_);
  counters_.owned.clear();
  return first;
}

}  // namespace medstream::host

#include "host/worker/worker.h"

#include <algorithm>
#include <cstdio>
#include <thread>

#include "common/base/bytes.h"
#include "common/wire/cluster.h"
#include "common/wire/wire.h"
#include "host/worker/edge_relay.h"
#include "host/worker/partition_state.h"

namespace medstream::host {

namespace cl = wire::cluster;

namespace {

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
  w->bucket_ = NatsStateBucket(*w->state_);
  w->chunks_ = std::make_unique<ChunkStore>(*w->bucket_, w->instance_id_);
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
  MEDSTREAM_TRY(store, NatsLeaseStore(*w->nats_, o.name, w->instance_));
  w->keeper_ = std::make_unique<LeaseKeeper>(std::move(store), o.name, o.lease_s, o.hung_s);
  w->keeper_->Start();
  return w;
}

Worker::~Worker() {
  if (keeper_) keeper_->Stop();  // a worker gone renews nothing: its leases expire
  relay_.reset();                // no relay call after this
}

Result<crypto::Bytes> Worker::CallEnclave(enclave::Call call, crypto::ByteView request) {
  std::lock_guard lock(enclave_mu_);
  if (!enclave_) return Fail(Error::Code::kFailedPrecondition, "the enclave is gone");
  return enclave_->Call(call, request);
}

Result<crypto::Bytes> Worker::ProcessingCall(enclave::Call call, crypto::ByteView request) {
  keeper_->Busy(Clock::now(),
                std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                    CallBudgetS(call, request.size(), options_.enclave.call_budget_s))));
  auto r = CallEnclave(call, request);
  keeper_->Pulse(Clock::now());
  return r;
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

void Worker::LoseLease(uint32_t id) {
  std::fprintf(stderr, "worker %s: partition %u is not ours any more (its lease was lost)\n",
               options_.name.c_str(), id);
  {
    std::lock_guard lock(counters_mu_);
    ++counters_.lost;
  }
  Drop(id, /*delete_lease=*/false);
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
    keeper_->Pulse(Clock::now());  // a takeover is several cluster calls: alive between them
    if (owned_.count(id) > 0) continue;
    if (auto d = damaged_.find(id); d != damaged_.end()) {
      // Left alone until its entry changes (an operator's repair or delete): trying it again
      // each round took the lease and read the whole state back, every round, on every worker.
      auto e = state_->Get(cl::PartitionKey(id));
      if (!e && e.error().code() != Error::Code::kNotFound) continue;  // asked again next round
      if ((e ? e->revision : 0) == d->second) continue;
    }
    const auto asked = Clock::now();
    auto rev = leases_->Create(cl::PartitionKey(id), crypto::AsBytes(options_.name));
    if (!rev) {
      if (rev.error().code() == Error::Code::kFailedPrecondition) continue;  // owned by another
      return std::unexpected(rev.error());
    }
    Partition& p = owned_[id];
    p.id = id;
    keeper_->Add(id, *rev, asked);
    uint64_t state_rev = 0;
    if (auto s = TakeOver(id, &state_rev); !s) {
      Drop(id, /*delete_lease=*/true);
      // A partition whose stored state is damaged (an entry that does not decode, a stream the
      // enclave cannot open: anyone who can write the bucket can do it) is not this worker's
      // failure. Stopping here made every worker stop in turn on it, the whole cluster for one
      // entry; it is left alone instead, said once, for an operator, until its entry changes
      // (then tried again, and said again if still damaged).
      const bool damaged = s.error().code() == Error::Code::kCorrupt;
      if (!damaged) {
        std::fprintf(stderr, "worker %s: could not take partition %u: %s\n", options_.name.c_str(),
                     id, s.error().message().c_str());
      } else {
        damaged_[id] = state_rev;
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

Status Worker::TakeOver(uint32_t id, uint64_t* state_rev) {
  Partition& p = owned_.at(id);
  const std::string key = cl::PartitionKey(id);
  const enclave::PartitionSelector sel{id, options_.partitions};
  StateEntry entry;
  uint64_t rev = 0;
  auto got = state_->Get(key);
  if (got) {
    *state_rev = got->revision;
    MEDSTREAM_TRY(e, StateEntry::Decode(got->value));
    entry = std::move(e);
    rev = got->revision;
  } else if (got.error().code() != Error::Code::kNotFound) {
    return std::unexpected(got.error());
  }
  // The enclave's streams of this partition become exactly the stored ones.
  {
    auto portable = chunks_->Load(id, entry.portable);
    if (!portable) {
      const std::string what = "restoring partition " + std::to_string(id) + ": ";
      if (Transient(portable.error())) {
        return std::unexpected(std::move(portable.error()).With(what));
      }
      // An owner whose lease expired while it was paused may have checkpointed since we read the
      // entry: it names its new chunks (a compare-and-set) before it deletes the ones the old
      // entry named. So if the entry is still the one we read, nothing raced and the chunks are
      // damaged (left alone, as a damaged entry); else the partition is tried again at a later
      // round (the state is never guessed at).
      auto now = state_->Get(key);
      if (now && now->revision == rev) {
        return Corrupt(what + portable.error().message() + " (its chunks are damaged)");
      }
      return Fail(Error::Code::kFailedPrecondition,
                  what + portable.error().message() + " (its state changed while it was read)");
    }
    if (auto s = ImportPartition(sel, portable->pieces); !s) {
      return std::unexpected(
          std::move(s.error()).With("restoring partition " + std::to_string(id)));
    }
  }
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
  chunks_->Sweep(id, entry.portable);  // ours now: what the entry does not name is garbage
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

void Worker::Drop(uint32_t id, bool delete_lease) {
  auto it = owned_.find(id);
  if (it == owned_.end()) return;
  keeper_->Remove(id);  // before the delete: a renewal after it must not count as lost
  it->second.consumer.reset();
  if (!it->second.consumer_name.empty()) {
    (void)nats_->DeleteConsumer(cl::kBatchStream, it->second.consumer_name);
  }
  if (delete_lease) (void)leases_->Delete(cl::PartitionKey(id));
  owned_.erase(it);
}

Result<std::vector<crypto::Bytes>> Worker::ExportPartition(const enclave::PartitionSelector& sel) {
  std::vector<crypto::Bytes> parts;
  for (uint32_t part = 0;; ++part) {
    if (part >= kMaxExportParts) {
      return Fail(Error::Code::kResourceExhausted, "partition " + std::to_string(sel.partition) +
                                                       "'s state is more than " +
                                                       std::to_string(kMaxExportParts) + " parts");
    }
    const enclave::ExportRequest req{
        .selector = sel, .part = part, .part_bytes = options_.export_part_bytes};
    MEDSTREAM_TRY(answer, ProcessingCall(enclave::Call::kExportStreams, req.Encode()));
    MEDSTREAM_TRY(got, enclave::ExportPart::Decode(answer));
    parts.emplace_back(got.portable.begin(), got.portable.end());
    if (got.last) break;
  }
  return parts;
}

Status Worker::ImportPartition(const enclave::PartitionSelector& sel, const StatePieces& stored) {
  MEDSTREAM_TRY(parts, DecodeExportParts(stored));
  for (size_t i = 0; i < parts.size(); ++i) {
    crypto::Bytes request = enclave::ImportRequest::EncodePieces(sel, static_cast<uint32_t>(i),
                                                                 i + 1 == parts.size(), parts[i]);
    auto r = ProcessingCall(enclave::Call::kImportStreams, request);
    crypto::Wipe(request);
    if (!r) return std::unexpected(r.error());
  }
  return {};
}

Status Worker::Checkpoint(Partition& p, bool clean) {
  const enclave::PartitionSelector sel{p.id, options_.partitions};
  MEDSTREAM_TRY(parts, ExportPartition(sel));
  crypto::Bytes framing;
  const StatePieces exported = ExportPartsPieces(parts, &framing);
  const uint64_t size = TotalBytes(exported);
  if (options_.max_state_bytes > 0 && size > options_.max_state_bytes) {
    return Fail(Error::Code::kResourceExhausted,
                "partition " + std::to_string(p.id) + "'s state of " + std::to_string(size) +
                    " bytes is more than a checkpoint carries (" +
                    std::to_string(options_.max_state_bytes) + " bytes)");
  }
  MEDSTREAM_TRY(portable, chunks_->Store(p.id, exported, p.written_portable, ChunkBytes()));
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
    chunks_->Delete(p.id, e.portable);  // named by no entry
    return std::unexpected(rev.error());
  }
  chunks_->Delete(p.id, p.written_portable);  // replaced
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
  if (!keeper_->Held(p.id, Clock::now())) {
    LoseLease(p.id);
    return {};
  }
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
    // Between batches: alive for the lease keeper, and still the owner. A lease lost mid-run is
    // let go at once (its consumer deleted with the batches fetched, not left to the ack wait).
    const auto now = Clock::now();
    keeper_->Pulse(now);
    if (!keeper_->Held(p.id, now)) {
      LoseLease(p.id);
      return {};
    }
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
    auto result = header ? ProcessingCall(enclave::Call::kProcessBatch, m.data())
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
  Status s = StepOnce();
  // A fail-stop: the leases expire and others continue (a hung worker holds nothing either:
  // lease_keeper.h).
  if (!s) keeper_->Stop();
  return s;
}

Status Worker::StepOnce() {
  const auto now = Clock::now();
  const auto third = std::chrono::duration<double>(options_.lease_s / 3);
  keeper_->Pulse(now);
  if (!provisioned_) {
    if (!provisioned()) return {};
    // Said at once, so that this round's Rebalance counts this worker in the fair share.
    if (auto s = keeper_->SetReady(); !s) {
      std::fprintf(stderr, "worker %s: registering: %s\n", options_.name.c_str(),
                   s.error().message().c_str());
    }
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
    const bool due = (p.since_checkpoint >= options_.checkpoint_every ||
                      (p.since_checkpoint > 0 &&
                       Clock::now() - p.last_checkpoint >=
                           std::chrono::duration<double>(options_.checkpoint_interval_s))) &&
                     Clock::now() >= p.too_large_until;
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
        if (s.error().code() == Error::Code::kResourceExhausted) {
          // The state is more than a partition may store (max_state_bytes, kMaxPortableBytes).
          // It cannot move, but it is not broken: the partition goes on, its results
          // published, and the checkpoint is tried again now and then. Dropping it made this or
          // another worker take it again, replay the same batches from the last checkpoint and
          // fail again, for ever: the partition's users got no result past that checkpoint.
          p.too_large_until =
              Clock::now() +
              std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                  30 * std::max(1.0, options_.checkpoint_interval_s)));
        } else if (!Transient(s.error())) {
          Drop(id, false);
        }
      }
    }
  }
  std::lock_guard lock(counters_mu_);
  counters_.renewals = keeper_->rounds();
  counters_.owned.clear();
  for (const auto& [id, p] : owned_) counters_.owned.push_back(id);
  counters_.damaged.clear();
  for (const auto& [id, rev] : damaged_) counters_.damaged.push_back(id);
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
  keeper_->Stop();  // before the registration goes: a round after it would write it again
  (void)workers_->Delete(options_.name);
  std::lock_guard lock(counters_mu_);
  counters_.owned.clear();
  return first;
}

}  // namespace medstream::host

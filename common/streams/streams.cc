#include "common/streams/streams.h"

namespace medstream::streams {

hrv::WindowWorkers StreamTable::Workers(hrv::JobKind kind, const StreamConfig& config) {
  EngineSet& set = engines_[{static_cast<int>(kind), static_cast<int>(config.spectral)}];
  const size_t workers = parallel_ ? parallel_->workers() : 1;
  while (set.owned.size() < workers) {
    set.owned.push_back(
        std::make_unique<hrv::MetricsEngine>(config.Analysis().spectral, hrv::JobSelection(kind)));
    set.ptrs.push_back(set.owned.back().get());
  }
  return {.parallel = parallel_, .engines = set.ptrs};
}

uint64_t StreamTable::LastSeq(const wire::StreamId& stream) const {
  auto it = streams_.find(stream);
  return it == streams_.end() ? 0 : it->second.last_seq;
}

Result<StreamTable::Batch> StreamTable::Begin(const wire::StreamId& stream, uint64_t seq,
                                              uint32_t key_id, const StreamConfig& config) {
  if (seq == 0) return Corrupt("sequence numbers start at 1");
  Batch batch;
  batch.id = stream;
  batch.seq = seq;
  batch.config = &config;
  auto it = streams_.find(stream);
  if (it == streams_.end()) {
    Stream s;
    s.key_id = key_id;
    for (hrv::JobKind kind : config.jobs) {
      MEDSTREAM_TRY(job, hrv::StreamJob::Create(kind, config.Analysis(), config.windows));
      s.jobs.push_back(std::move(job));
    }
    it = streams_.emplace(stream, std::move(s)).first;
    batch.created = true;
  }
  Stream& s = it->second;
  if (s.key_id != key_id) {
    return Fail(Error::Code::kFailedPrecondition,
                "stream " + wire::StreamName(stream) + " belongs to key " +
                    std::to_string(s.key_id) + ", batch claims key " + std::to_string(key_id));
  }
  if (seq <= s.last_seq) {
    return Fail(Error::Code::kAlreadyExists, "replayed batch: sequence " + std::to_string(seq) +
                                                 " of stream " + wire::StreamName(stream) +
                                                 " is not after the last one processed (" +
                                                 std::to_string(s.last_seq) + ")");
  }
  if (!batch.created) {
    ByteWriter w(&batch.snapshot);
    for (const hrv::StreamJob& job : s.jobs) job.SaveState(&w);
  }
  batch.result.missing_before = seq - s.last_seq - 1;
  for (const hrv::StreamJob& job : s.jobs)
    batch.result.jobs.emplace_back(job.kind(), hrv::JobOutput{});
  return batch;
}

void StreamTable::Push(Batch& batch, std::span<const hrv::Beat> beats) {
  Stream& s = streams_.at(batch.id);
  batch.result.beats += beats.size();
  for (size_t j = 0; j < s.jobs.size(); ++j) {
    s.jobs[j].Push(beats, Workers(s.jobs[j].kind(), *batch.config), &batch.result.jobs[j].second);
  }
}

wire::BatchResult StreamTable::Commit(Batch& batch) {
  Stream& s = streams_.at(batch.id);
  for (size_t j = 0; j < s.jobs.size(); ++j) {
    s.jobs[j].Flush(Workers(s.jobs[j].kind(), *batch.config), &batch.result.jobs[j].second);
  }
  s.last_seq = batch.seq;
  return std::move(batch.result);
}

void StreamTable::Abort(Batch& batch) {
  if (batch.created) {
    streams_.erase(batch.id);
    return;
  }
  Stream& s = streams_.at(batch.id);
  ByteReader r(batch.snapshot);
  for (hrv::StreamJob& job : s.jobs) {
    // The snapshot was written by this process a moment ago; it cannot fail to load.
    job = hrv::StreamJob::LoadState(&r, batch.config->Analysis(), batch.config->windows).value();
  }
}

Result<wire::BatchResult> StreamTable::Process(const wire::StreamId& stream, uint64_t seq,
                                               uint32_t key_id, const StreamConfig& config,
                                               std::span<const hrv::Beat> beats) {
  MEDSTREAM_TRY(batch, Begin(stream, seq, key_id, config));
  Push(batch, beats);
  return Commit(batch);
}

void StreamTable::SaveOne(const wire::StreamId& id, const Stream& s, ByteWriter* w) {
  w->Bytes(id);
  w->U64(s.last_seq);
  w->U32(s.key_id);
  w->U8(static_cast<uint8_t>(s.jobs.size()));
  for (const hrv::StreamJob& job : s.jobs) job.SaveState(w);
}

void StreamTable::Save(ByteWriter* w) const {
  w->U64(streams_.size());
  for (const auto& [id, s] : streams_) SaveOne(id, s, w);
}

Status StreamTable::SaveStream(const wire::StreamId& id, ByteWriter* w) const {
  auto it = streams_.find(id);
  if (it == streams_.end()) return NotFound("no stream " + wire::StreamName(id));
  SaveOne(id, it->second, w);
  return {};
}

std::vector<wire::StreamId> StreamTable::Ids() const {
  std::vector<wire::StreamId> out;
  out.reserve(streams_.size());
  for (const auto& [id, s] : streams_) out.push_back(id);
  return out;
}

Result<StreamTable::Saved> StreamTable::LoadStream(
    ByteReader* r, const std::function<const StreamConfig*(uint32_t)>& config_of) const {
  Saved out;
  MEDSTREAM_TRY(idb, r->Bytes(16, "stream id"));
  std::copy(idb.begin(), idb.end(), out.id.begin());
  Stream& s = out.stream;
  MEDSTREAM_TRY(last, r->U64("last sequence"));
  MEDSTREAM_TRY(key_id, r->U32("key id"));
  s.last_seq = last;
  s.key_id = key_id;
  const StreamConfig* config = config_of(key_id);
  if (!config)
    return Corrupt("saved stream refers to key " + std::to_string(key_id) +
                   ", which the state does not hold");
  MEDSTREAM_TRY(jobs, r->U8("job count"));
  for (int j = 0; j < jobs; ++j) {
    MEDSTREAM_TRY(job, hrv::StreamJob::LoadState(r, config->Analysis(), config->windows));
    s.jobs.push_back(std::move(job));
  }
  return out;
}

void StreamTable::Put(Saved saved) {
  streams_.insert_or_assign(saved.id, std::move(saved.stream));
}

Status StreamTable::Load(ByteReader* r,
                         const std::function<const StreamConfig*(uint32_t)>& config_of) {
  streams_.clear();
  MEDSTREAM_TRY(n, r->U64("stream count"));
  for (uint64_t i = 0; i < n; ++i) {
    MEDSTREAM_TRY(saved, LoadStream(r, config_of));
    Put(std::move(saved));
  }
  return {};
}

}  // namespace medstream::streams

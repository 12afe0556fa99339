// The gateway's main loop (gateway.h: Gateway::Tick, CutAll, AskStatuses): when a stream's batch
// is due (its own grid of cut times), sealing it into the spool, uploading it, and the order of
// cuts and results within a tick. The keys, recovery and the message merge are in gateway.cc, the
// results and counters in results_writer.cc.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/base/file.h"
#include "owner/gateway/gateway.h"

namespace medstream::gateway {

namespace fs = std::filesystem;

Status Gateway::SaveSequences() {
  std::string text;
  for (const auto& [user, s] : streams_) {
    text += fmt::format("{} {} {}\n", user, s.next_seq, s.batch.sealed_until());
  }
  if (auto st = WriteFileAtomic(options_.state_dir + "/devices", durable_devices_.Save(), 0600);
      !st) {
    return st;
  }
  devices_dirty_ = false;
  return WriteFileAtomic(options_.state_dir + "/seq", text, 0600);
}

Status Gateway::Cut(Stream& s) {
  if (s.batch.empty()) return {};
  // Spool first, then the state that says it is sealed, then the log (see gateway.h). A failure
  // before the spool file exists changes nothing: the batch stays open and is cut again later.
  // Beats that piled up while cuts failed (a full disk, a spool that was not a folder) can pass
  // what one file may carry: they are sealed in pieces of at most max_batch_beats_, since one file
  // over the link's cap would be refused at every upload, or by the enclave, and hold the stream
  // for good. Each piece's sealed boundary is saved before the next piece is written, so a failure
  // between pieces leaves the rest open and every beat still in the log.
  while (!s.batch.empty()) {
    const uint64_t seq = s.next_seq;
    const auto piece = std::span(s.batch.beats()).first(std::min(s.batch.size(), max_batch_beats_));
    // Sealed while written (client::StreamSealer::SealBatchTo): each segment is written as soon
    // as it is sealed, by the thread that sealed it, and no sealed copy of the whole batch is made.
    const std::string name = wire::BatchFileName(s.id, seq);
    if (auto st = WriteFileAtomicFrom(
            options_.state_dir + "/spool/" + name, 0600,
            [&](const FileSink& write) { return s.sealer->SealBatchTo(seq, piece, write); });
        !st) {
      return st;
    }
    if (options_.record_beats) RecordBeats(s, piece);
    ++s.next_seq;
    s.in_flight[seq] = s.batch.opened;
    ++stats_.batches_sealed;
    s.batch.SealedFirst(piece.size());
    open_beats_ -= piece.size();
    if (!s.batch.empty()) {
      if (auto st = SaveSequences(); !st) return st;
    }
  }
  // Every message of this device so far is in the batch, which is durable now: its entry may say
  // so.
  durable_devices_.CopyDevice(devices_, s.user);
  s.log_incomplete = false;
  if (auto st = SaveSequences(); !st) return st;
  return s.log->Reset();
}

Status Gateway::UploadSpool() {
  std::vector<std::string> names;
  // The gateway's own folder, but listed without exceptions: one removed or unreadable under
  // a running gateway is an error to report, not a crash.
  std::error_code list_error;
  for (fs::directory_iterator it(options_.state_dir + "/spool", list_error), end;
       !list_error && it != end; it.increment(list_error)) {
    const fs::directory_entry& e = *it;
    if (e.path().extension() == ".batch") names.push_back(e.path().filename().string());
  }
  if (list_error) {
    return IoError("cannot list the spool " + options_.state_dir +
                   "/spool: " + list_error.message());
  }
  std::sort(names.begin(), names.end());
  // A batch that does not go holds up its own stream's later batches, which must reach the
  // enclave in order, and not the other streams' (on a cluster, one partition's stream can be full
  // while the others take batches). A failure that ran into the link's time limit says the link
  // is down, and every other upload would wait as long: it ends the pass, as do kMaxFailures. The
  // batches stay in the spool and are tried again at the next tick; the failure is said (once in
  // 10 s), not returned: an outage is not the tick's failure.
  constexpr size_t kMaxFailures = 8;
  std::set<std::string_view> held;  // streams one of whose batches did not go in this pass
  std::optional<Error> failure;
  size_t uploaded = 0;
  for (const std::string& name : names) {
    const std::string_view stream = std::string_view(name).substr(0, name.rfind('-'));
    if (held.contains(stream)) continue;
    const std::string from = options_.state_dir + "/spool/" + name;
    if (auto s = link_->UploadFile(name, from); !s) {
      held.insert(stream);
      if (!failure) failure = s.error();
      if (s.error().code() == Error::Code::kDeadlineExceeded || held.size() >= kMaxFailures) break;
      continue;
    }
    std::remove(from.c_str());
    ++stats_.batches_uploaded;
    ++uploaded;
  }
  if (failure) {
    SayRepeated("upload", fmt::format("uploading the spool: {} ({} of {} batches wait in it; "
                                      "tried again at the next tick)",
                                      failure->message(), names.size() - uploaded, names.size()));
  }
  return {};
}

Status Gateway::Tick() {
  const auto now = options_.clock();
  if (std::chrono::duration<double>(now - last_status_ask_).count() >= options_.status_interval_s) {
    AskStatuses();
  }
  std::lock_guard lock(mu_);
  if (now - last_sync_ >= std::chrono::seconds(1)) {
    // Durable against power loss too, in groups (a process crash loses nothing in between). The
    // logs first: the devices' state may then say what they hold, and not before.
    for (auto& [user, s] : streams_) {
      // One log that cannot be flushed holds up neither the other logs nor the cuts and results.
      if (auto st = s.log->Sync(); !st) {
        ++stats_.wal_sync_failed;
        s.log_incomplete = true;
        // Every second, for every user, on a failing disk: once in 10 s (wal_sync_failed counts).
        SayRepeated("wal-sync",
                    fmt::format("{}: {} (its messages count as durable again once its batch is "
                                "cut; a power loss before then counts them as lost)",
                                user, st.error().message()));
      }
    }
    std::set<std::string> held;  // devices whose logs miss a message: left for their cut
    for (const std::string& device : devices_unsynced_) {
      if (auto it = streams_.find(device); it != streams_.end() && it->second.log_incomplete) {
        held.insert(device);
        continue;
      }
      durable_devices_.CopyDevice(devices_, device);
    }
    devices_unsynced_ = std::move(held);
    if (devices_dirty_) {
      if (auto st = WriteFileAtomic(options_.state_dir + "/devices", durable_devices_.Save(), 0600);
          !st) {
        return st;
      }
      devices_dirty_ = false;
    }
    last_sync_ = now;
  }
  // Each stage runs whatever the one before it came to, and the first failure is returned: a cut
  // that fails (a full disk) once stopped the tick before the upload and the results, so the
  // spool was never sent on (an upload over SFTP frees its space) and no user's results were read
  // for as long as the cut kept failing.
  Status first = CutDue(now);
  if (auto st = UploadSpool(); !st && first) first = st;
  if (auto st = ReadEveryResult(/*cut_due=*/first.has_value()); !st && first) first = st;
  return first;
}

Status Gateway::ReadEveryResult(bool cut_due) {
  Status first;  // the first failed cut; every stream's results are read all the same
  for (auto& [user, s] : streams_) {
    // A result the untrusted server damaged, replaced or made huge stalls its own stream only:
    // said once per result, and the other streams' results go on.
    if (auto st = ReadResults(s); !st && s.refused_result != s.next_result) {
      s.refused_result = s.next_result;
      ++stats_.results_refused;
      std::fprintf(stderr, "gateway: %s: %s (waiting for a good copy)\n", user.c_str(),
                   st.error().message().c_str());
    }
    // Sixteen Stream-Big results take over a second to write out: a batch due meanwhile is not
    // left waiting for the next tick.
    if (cut_due) {
      if (auto st = CutDue(options_.clock()); !st) {
        first = st;
        cut_due = false;  // failing now (a full disk): tried again at the next tick, not per stream
      }
    }
  }
  return first;
}

std::chrono::steady_clock::time_point Gateway::DueAt(const Stream& s) const {
  using Clock = std::chrono::steady_clock;
  const auto interval = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(options_.batch_seconds));
  if (!options_.stagger_cuts || interval <= Clock::duration::zero()) {
    return s.batch.opened + interval;
  }
  // The first point of the grid phase + n x interval strictly after the batch's first beat: a
  // late tick delays one cut, not the grid.
  const Clock::duration since = s.batch.opened.time_since_epoch() - s.phase;
  const auto n =
      since >= Clock::duration::zero()
          ? since / interval
          : -((-since + interval - Clock::duration(1)) / interval);  // floor, for a clock near 0
  return Clock::time_point(s.phase + (n + 1) * interval);
}

Status Gateway::CutDue(std::chrono::steady_clock::time_point now) {
  std::vector<Stream*> due;
  for (auto& [user, s] : streams_) {
    if (!s.batch.empty() && now >= DueAt(s) && !Holding(s, now)) due.push_back(&s);
  }
  return CutInOrder(std::move(due), /*read_between=*/false);
}

Status Gateway::CutInOrder(std::vector<Stream*> streams, bool read_between) {
  std::stable_sort(streams.begin(), streams.end(),
                   [&](const Stream* a, const Stream* b) { return DueAt(*a) < DueAt(*b); });
  // One stream's cut that fails does not keep the others' from being tried (a failure before the
  // spool file exists leaves its batch open, to be cut again; one after it leaves a spooled batch
  // that the next start adopts): the first failure is returned once all were.
  Status first;
  for (Stream* s : streams) {
    if (auto st = Cut(*s); !st) {
      if (first) first = st;
      continue;
    }
    // Right away, so the server works on this batch while the next one is sealed.
    if (auto st = UploadSpool(); !st && first) first = st;
    if (read_between) {
      if (auto st = ReadEveryResult(/*cut_due=*/false); !st && first) first = st;
    }
  }
  return first;
}

void Gateway::AskStatuses() {
  // Outside the lock: the broker's answer comes through the message handler, which takes it.
  last_status_ask_ = options_.clock();
  if (auto st = source_->AskStatuses(); !st) {
    std::fprintf(stderr, "gateway: %s\n", st.error().message().c_str());
  }
}

Status Gateway::CutAll() {
  std::lock_guard lock(mu_);
  std::vector<Stream*> open;
  for (auto& [user, s] : streams_) {
    if (!s.batch.empty()) open.push_back(&s);
  }
  // The results of the batches cut before each one are back by then (a batch takes the server
  // tens of milliseconds, sealing a large one longer): read, not left behind every other cut.
  return CutInOrder(std::move(open), /*read_between=*/true);
}

Gateway::FinishReport Gateway::Finish(std::chrono::steady_clock::duration grace) {
  FinishReport r;
  r.cut = CutAll();
  // The server answers a batch in tens of milliseconds: the results cut just now come back
  // within the grace unless the server (or its link) is down.
  const auto until = options_.clock() + grace;
  while (outstanding() > 0 && options_.clock() < until) {
    if (auto st = Tick(); !st) r.tick = st;
    if (outstanding() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  r.batches_waiting = outstanding();
  std::lock_guard lock(mu_);
  for (const auto& [user, s] : streams_) {
    if (s.batch.empty()) continue;
    r.beats_open += s.batch.size();
    ++r.users_open;
  }
  std::error_code e;
  for (fs::directory_iterator it(options_.state_dir + "/spool", e), end; !e && it != end;
       it.increment(e)) {
    r.batches_unsent += it->path().extension() == ".batch";
  }
  return r;
}

bool Gateway::Holding(Stream& s, std::chrono::steady_clock::time_point now) {
  if (!s.gap_opened) return false;
  if (std::chrono::duration<double>(now - *s.gap_opened).count() >= options_.late_grace_s) {
    s.gap_opened.reset();  // waited long enough: what is missing now is lost
    return false;
  }
  // Still a gap after what is sealed: its messages may yet arrive.
  auto d = devices_.devices().find(s.user);
  if (d == devices_.devices().end()) return false;
  for (const Gap& g : d->second.gaps) {
    if (g.t_after > s.batch.sealed_until()) return true;
  }
  s.gap_opened.reset();  // every gap filled
  return false;
}

}  // namespace medstream::gateway

#include "host/server/server.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>

#include <fmt/format.h>

#include "common/base/fdio.h"
#include "common/base/file.h"
#include "common/wire/wire.h"

namespace medstream::host {

namespace {

namespace fs = std::filesystem;

constexpr char kCheckpointFile[] = "state/checkpoint.sealed";
// The enclave's checkpoint file: this magic, then each sealed part (edge.h, CheckpointPart) as a
// u64 length and its bytes. A file without it is a checkpoint from before parts: one sealed blob.
constexpr uint8_t kPartsMagic[8] = {'M', 'S', 'C', 'F', 1, 0, 0, 0};
constexpr char kJournalFile[] = "state/journal";
// NAME_MAX less ".reason": longer inbox names are quarantined under a shortened name.
constexpr size_t kMaxQuarantineName = 255 - 7;

// What a gateway may ask through the relay is the ABI's to say (edge.h, CallSpec::relays).
bool RelayAllowed(uint16_t call) {
  return enclave::RelayMayForward(enclave::kServerRelay, call);
}

std::vector<std::string> SortedBatchNames(ServerEnv& env, const std::string& dir) {
  std::vector<std::string> names;
  for (std::string& n : env.ListDir(dir)) {
    // Whatever its type: a FIFO or a directory named *.batch is quarantined, not left behind.
    // Hidden names are uploads in progress (gateways write ".NAME.part", then rename).
    if (n.ends_with(".batch") && !n.starts_with(".")) names.push_back(std::move(n));
  }
  std::sort(names.begin(), names.end());
  return names;
}

// The input's fault (quarantine) rather than the enclave's (restart and retry)? The enclave died
// (kInternal) or was stopped by the watchdog (kDeadlineExceeded): neither says the input is bad
// until it happens again on a fresh enclave.
bool InputsFault(const Error& e) {
  return e.code() != Error::Code::kInternal && e.code() != Error::Code::kDeadlineExceeded;
}

// A quarantine name that fits NAME_MAX with ".reason" appended: long names keep their start and
// get a hash of the whole name, so two long names never collide.
std::string QuarantineName(const std::string& name) {
  if (name.size() <= kMaxQuarantineName) return name;
  const crypto::Digest d = crypto::Sha256(crypto::AsBytes(name));
  return name.substr(0, 160) + "~" + crypto::ToHex(d).substr(0, 16) + ".batch";
}

bool IsReplay(const Error& e) {
  return e.code() == Error::Code::kAlreadyExists;
}

}  // namespace

Result<std::unique_ptr<Server>> Server::Start(const ServerOptions& options) {
  if (options.mode != "vanilla" && options.mode != "inproc" && options.mode != "process") {
    return InvalidArgument("unknown mode '" + options.mode + "': vanilla, inproc or process");
  }
  std::unique_ptr<Server> s(new Server(options));
  for (const char* sub : {"inbox", "outbox", "done", "quarantine", "state"}) {
    if (auto st = s->env_.MakeDirs(s->Path(sub)); !st) return std::unexpected(st.error());
  }
  if (auto st = s->LaunchAndRecover(); !st) return std::unexpected(st.error());
  if (options.relay && options.mode != "vanilla") {
    const std::string path = s->Path("enclave.sock");
    unlink(path.c_str());
    s->relay_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path)
      return InvalidArgument("server directory path too long for a socket");
    std::strcpy(addr.sun_path, path.c_str());
    if (s->relay_fd_ < 0 ||
        bind(s->relay_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        listen(s->relay_fd_, 16) != 0) {
      return IoError("cannot listen on " + path + ": " + std::strerror(errno));
    }
    s->relay_thread_ = std::thread([raw = s.get()] { raw->RelayLoop(); });
  }
  return s;
}

Server::~Server() {
  stopping_ = true;
  if (relay_fd_ >= 0) shutdown(relay_fd_, SHUT_RDWR);
  if (relay_thread_.joinable()) relay_thread_.join();  // its clients' connections closed
  if (relay_fd_ >= 0) close(relay_fd_);
}

std::string Server::Describe() const {
  if (options_.mode == "vanilla") return "vanilla: no enclave, no encryption (the baseline)";
  if (options_.mode == "inproc") return "inproc: enclave code in this process (no isolation)";
  return "process: medstream-enclave in a separate hardened process (software-simulated TEE; "
         "protects against this host process, not against root or a hypervisor)";
}

int Server::enclave_pid() const {
  return enclave_ ? enclave_->pid() : -1;
}

Status Server::LaunchAndRecover() {
  std::lock_guard lock(mu_);
  if (options_.mode == "vanilla") {
    vanilla_ = std::make_unique<VanillaProcessor>(options_.vanilla_config);
    auto checkpoint = env_.ReadFile(Path(kCheckpointFile), kNoSizeLimit);
    if (checkpoint) {
      ByteReader r(*checkpoint);
      if (auto s = vanilla_->Load(&r); !s)
        return std::unexpected(std::move(s.error()).With("vanilla checkpoint"));
    }
  } else {
    enclave_.reset();
    MEDSTREAM_TRY(t, LaunchEnclave({.backend = options_.mode,
                                    .platform_dir = options_.platform_dir,
                                    .enclave_path = options_.enclave_path,
                                    .call_budget_s = options_.call_budget_s,
                                    .inproc = options_.inproc}));
    enclave_ = std::move(t);
    if (!claim_ && options_.claim_counter) {
      // Before restoring: another instance's use of the counter would otherwise show up as a
      // baffling "rollback" refusal.
      MEDSTREAM_TRY(info, GetInfo(*enclave_));
      MEDSTREAM_TRY(claim, CounterClaim::Acquire(options_.platform_dir, info.mr_enclave, "server",
                                                 options_.dir, kCheckpointFile));
      claim_.emplace(std::move(claim));
    }
    if (auto s = RestoreEnclave(); !s)
      return std::unexpected(std::move(s.error()).With("restoring the sealed checkpoint"));
  }
  // Replay the journal: inputs processed after the checkpoint, in order. "?NAME" lines are tries
  // (see HandleInput): counted, not replayed.
  attempts_.clear();
  auto journal_bytes = env_.ReadFile(Path(kJournalFile), kNoSizeLimit);
  if (!journal_bytes) return {};
  const std::string text(journal_bytes->begin(), journal_bytes->end());
  const std::string* journal = &text;
  size_t start = 0;
  while (start < journal->size()) {
    size_t end = journal->find('\n', start);
    if (end == std::string::npos) break;  // a torn last line was never acted upon
    const std::string name = journal->substr(start, end - start);
    start = end + 1;
    if (name.starts_with('?')) {
      ++attempts_[name.substr(1)];
      continue;
    }
    attempts_.erase(name);
    std::string path = Path("done") + "/" + name;
    // Killed after journalling this input but before moving it out of the inbox.
    const bool still_in_inbox = !env_.Exists(path);
    if (still_in_inbox) path = Path("inbox") + "/" + name;
    auto file = ReadBatch(path);
    if (!file) {
      const std::string lost =
          "its result stands; its stream's state was rebuilt without its beats";
      if (file.error().code() != Error::Code::kNotFound) {
        // There but unreadable since (too large, not a regular file): out of the way, with why,
        // as HandleInput does with such an input, so that it does not come back at every start.
        if (auto s = Quarantine(name,
                                "unreadable when the journal was replayed (" +
                                    file.error().message() + "): " + lost,
                                "unreadable", still_in_inbox ? "inbox" : "done");
            !s) {
          return s;
        }
        continue;
      }
      // Gone (an operator's removal, a disk that lost it): nothing to rebuild from. It used to be
      // skipped without a word, though the stream's later results then differ from what they
      // would have been; now it is counted and said.
      {
        std::lock_guard counters(counters_mu_);
        ++counters_.replay_missing;
      }
      std::fprintf(stderr,
                   "server: warning: %s was processed after the last checkpoint but is gone "
                   "from done/ and inbox/: %s\n",
                   Printable(name).c_str(), lost.c_str());
      continue;
    }
    auto result = ProcessBatchFile(*file);
    if (!result) {
      if (IsReplay(result.error())) {
        std::lock_guard counters(counters_mu_);
        ++counters_.replayed_on_recovery;
        continue;  // the checkpoint already covers it
      }
      if (result.error().code() == Error::Code::kCorrupt) {
        // Processed before the crash, it no longer opens: damaged since (a failing disk, or
        // whoever holds this folder). It used to stop the server at every start. Its result
        // stands; the stream's state is rebuilt without it, as when an operator removes the file.
        if (auto s = Quarantine(name,
                                "damaged after it was processed (" + result.error().message() +
                                    "): its result stands; its stream's state was rebuilt "
                                    "without its beats",
                                "damaged", still_in_inbox ? "inbox" : "done");
            !s) {
          return s;
        }
        continue;
      }
      return std::unexpected(std::move(result.error()).With("replaying " + name));
    }
    // Deterministic: the same bytes as the result written before the crash.
    auto header = wire::Header::Decode(*result);
    if (header) {
      const std::string out =
          Path("outbox") + "/" + wire::ResultFileName(header->stream, header->seq);
      // A failure stops the start, as it stops HandleInput: ignored, the result was gone for good
      // once the next checkpoint emptied the journal; now the next start writes it again.
      if (!env_.Exists(out)) {
        if (auto s = env_.WriteAtomic(out, *result, 0644); !s) {
          return std::unexpected(std::move(s.error()).With("replaying " + name));
        }
      }
    }
    if (still_in_inbox) {
      // Left in the inbox, a processed batch would be refused later as a replay.
      if (auto s = env_.Rename(path, Path("done") + "/" + name); !s) {
        return std::unexpected(std::move(s.error()).With("replaying " + name));
      }
    }
  }
  return {};
}

Result<crypto::ByteView> Server::ReadBatch(const std::string& path) {
  // The host enforces the edge cap itself, before reading anything into memory: a huge or sparse
  // file is refused here, not by an enclave killed by it.
  const uint64_t cap =
      enclave::FindCall(static_cast<uint16_t>(enclave::Call::kProcessBatch))->max_request;
  if (enclave_) {
    if (const std::span<uint8_t> place = enclave_->RequestBuffer(); !place.empty()) {
      size_t n = 0;
      MEDSTREAM_TRY(fit, env_.ReadFileInto(path, cap, place, &n, nullptr));
      if (fit) return crypto::ByteView(place.first(n));
    }
  }
  // Otherwise into a buffer kept from batch to batch, as the process backend reads into its kept
  // region: a fresh buffer per batch would fault in (and zero) new pages for every large batch and
  // make the vanilla baseline slower than it needs to be. It stays at the largest batch read, at
  // most the edge cap.
  if (!read_buffer_.empty()) {
    size_t n = 0;
    MEDSTREAM_TRY(fit, env_.ReadFileInto(path, cap, read_buffer_, &n, nullptr));
    if (fit) return crypto::ByteView(read_buffer_).first(n);
  }
  MEDSTREAM_TRY(file, env_.ReadFile(path, cap));
  read_buffer_ = std::move(file);
  return crypto::ByteView(read_buffer_);
}

Result<crypto::ByteView> Server::ProcessBatchFile(crypto::ByteView file) {
  if (vanilla_) {
    MEDSTREAM_TRY(result, vanilla_->ProcessBatch(file));
    vanilla_result_ = std::move(result);
    return crypto::ByteView(vanilla_result_);
  }
  return enclave_->CallView(enclave::Call::kProcessBatch, file);
}

Result<crypto::ByteView> Server::ProcessBatchReading(const std::string& path, bool* unreadable,
                                                     size_t* size) {
  // The same cap as ReadBatch, checked when the file is opened, before anything is sent.
  const uint64_t cap =
      enclave::FindCall(static_cast<uint16_t>(enclave::Call::kProcessBatch))->max_request;
  *unreadable = false;
  return enclave_->CallFilled(
      enclave::Call::kProcessBatch,
      [&](std::span<uint8_t> dest, const ReadProgress& progress) -> Status {
        bool call_refused = false;  // the transport's own refusal, not the file's
        const ReadProgress sized{.sized =
                                     [&](uint64_t n) {
                                       Status s = progress.sized(n);
                                       call_refused = !s;
                                       return s;
                                     },
                                 .arrived = progress.arrived};
        auto fit = env_.ReadFileInto(path, cap, dest, size, &sized);
        if (!fit) {
          *unreadable = !call_refused;
          return std::unexpected(fit.error());
        }
        if (!*fit) {  // cannot happen: the cap is below the region's size
          *unreadable = true;
          return ResourceExhausted(path + " does not fit the enclave's shared region");
        }
        return {};
      });
}

Result<crypto::Bytes> Server::CallEnclave(enclave::Call call, crypto::ByteView request) {
  std::lock_guard lock(mu_);
  if (!enclave_) return Fail(Error::Code::kFailedPrecondition, "vanilla mode has no enclave");
  auto r = enclave_->Call(call, request);
  if (r && call == enclave::Call::kChannel) {
    // A key may just have been provisioned: seal it at once, so a crash cannot lose it.
    if (auto s = Checkpoint(); !s) return std::unexpected(s.error());
  }
  return r;
}

Status Server::AppendJournal(const std::string& line, bool sync) {
  return env_.Append(Path(kJournalFile), line + "\n", sync);
}

Status Server::Quarantine(const std::string& name, const std::string& reason, const char* kind,
                          const char* from) {
  const std::string short_name = QuarantineName(name);
  const std::string to = Path("quarantine") + "/" + short_name;
  // Reasons can quote input-derived text (the name too): one bounded line, no control
  // characters for a terminal to act on.
  std::string line = short_name == name ? reason : "inbox name '" + name + "': " + reason;
  if (line.size() > 4096) line = line.substr(0, 4096) + " [...]";
  line = Printable(line);
  if (auto s = env_.WriteAtomic(to + ".reason", crypto::AsBytes(line + "\n"), 0644); !s) return s;
  if (auto s = env_.Rename(Path(from) + "/" + name, to); !s) {
    return std::unexpected(std::move(s.error()).With("quarantining " + name));
  }
  {
    std::lock_guard counters(counters_mu_);
    ++counters_.quarantined;
    ++counters_.quarantined_by_reason[kind];
  }
  std::fprintf(stderr, "server: quarantined %s: %s\n", Printable(short_name).c_str(), line.c_str());
  attempts_.erase(name);
  return {};
}

namespace {

// Names the server handles: what gateways write (wire::BatchFileName), and nothing that could
// break a line-based file (the journal) or a terminal.
bool SafeInputName(const std::string& name) {
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

}  // namespace

Status Server::HandleInput(const std::string& name) {
  std::lock_guard lock(mu_);
  if (stuck_.contains(name)) return {};
  const double t0 = env_.NowSeconds();
  const std::string in = Path("inbox") + "/" + name;
  if (!SafeInputName(name)) {
    return QuarantineOrSkip(name, "the name has characters outside A-Z a-z 0-9 . _ -", "name");
  }
  // With the process backend's shared region the file is read during each try, while the
  // enclave already works on it (ProcessBatchReading); otherwise once, before the tries.
  const bool read_during_call = enclave_ && !enclave_->RequestBuffer().empty();
  Result<crypto::ByteView> file = crypto::ByteView{};
  size_t file_size = 0;
  if (!read_during_call) {
    file = ReadBatch(in);
    if (!file) {
      if (file.error().code() == Error::Code::kNotFound) return {};  // taken away meanwhile
      return QuarantineOrSkip(name, file.error().message(), "unreadable");
    }
    file_size = file->size();
  }
  for (;;) {
    const int attempt = attempts_[name] + 1;
    if (attempt > kMaxBatchAttempts) {
      return QuarantineOrSkip(name,
                              fmt::format("tried {} times; each time the enclave died, ran "
                                          "past its time budget, or the server stopped",
                                          attempt - 1),
                              "tries");
    }
    // The try is journalled before it starts, so a try that kills the server itself counts too.
    // No fsync: a killed process loses nothing already written; a power loss only restarts the
    // count (so this costs a write, not a disk flush, per batch).
    if (auto s = AppendJournal("?" + name, /*sync=*/false); !s) return s;
    attempts_[name] = attempt;
    const double call_start = env_.NowSeconds();
    bool unreadable = false;
    auto result = read_during_call ? ProcessBatchReading(in, &unreadable, &file_size)
                                   : ProcessBatchFile(*file);
    {
      std::lock_guard counters(counters_mu_);
      counters_.enclave_call_s.Observe(env_.NowSeconds() - call_start);
    }
    if (!result && unreadable) {
      if (result.error().code() == Error::Code::kNotFound) {  // taken away meanwhile
        attempts_.erase(name);
        return {};
      }
      return QuarantineOrSkip(name, result.error().message(), "unreadable");
    }
    if (!result) {
      if (InputsFault(result.error()))
        return QuarantineOrSkip(name, result.error().message(), "refused");
      std::fprintf(stderr, "server: %s (try %d of %d on %s)\n", result.error().message().c_str(),
                   attempt, kMaxBatchAttempts, name.c_str());
      if (attempt >= kMaxBatchAttempts) {
        return QuarantineOrSkip(name,
                                "the enclave failed on this batch " + std::to_string(attempt) +
                                    " times: " + result.error().message(),
                                "failed");
      }
      // The enclave died or was stopped: start a new one from the sealed state, replay, retry.
      {
        std::lock_guard counters(counters_mu_);
        ++counters_.enclave_restarts;
      }
      if (auto s = LaunchAndRecover(); !s) return s;
      if (read_during_call) continue;  // read again by the next try
      // The recovery's replays reused the buffer the batch was read into: read it again.
      file = ReadBatch(in);
      if (!file) {
        if (file.error().code() == Error::Code::kNotFound) return {};
        return QuarantineOrSkip(name, file.error().message(), "unreadable");
      }
      file_size = file->size();
      continue;
    }
    attempts_.erase(name);
    MEDSTREAM_TRY(header, wire::Header::Decode(*result));
    const std::string out = Path("outbox") + "/" + wire::ResultFileName(header.stream, header.seq);
    if (auto s = env_.WriteAtomic(out, *result, 0644); !s) return s;
    if (auto s = AppendJournal(name); !s) return s;
    if (auto s = env_.Rename(in, Path("done") + "/" + name); !s) return s;
    Status checkpointed;
    if (++since_checkpoint_ >= options_.checkpoint_every) checkpointed = Checkpoint();
    std::lock_guard counters(counters_mu_);
    ++counters_.processed;
    counters_.bytes_in += file_size;
    counters_.batch_s.push_back(env_.NowSeconds() - t0);
    return checkpointed;
  }
}

Status Server::QuarantineOrSkip(const std::string& name, const std::string& reason,
                                const char* kind) {
  if (auto s = Quarantine(name, reason, kind); !s) {
    // One input must not stop the server: leave it where it is and go on with the others.
    std::fprintf(stderr,
                 "server: error: %s; %s stays in the inbox and is skipped until a restart\n",
                 Printable(s.error().message()).c_str(), Printable(name).c_str());
    stuck_.insert(name);
  }
  return {};
}

Result<size_t> Server::ProcessInbox() {
  size_t n = 0;
  for (const std::string& name : SortedBatchNames(env_, Path("inbox"))) {
    if (auto s = HandleInput(name); !s) return std::unexpected(s.error());
    ++n;
  }
  return n;
}

Result<uint64_t> Server::WriteEnclaveCheckpoint() {
  // Part by part into the file as they come, so neither side holds the whole state at once; the
  // file replaces the last one only once every part is in it.
  uint64_t version = 0;
  auto fill = [&](const FileSink& sink) -> Status {
    if (auto s = sink(0, kPartsMagic); !s) return s;
    uint64_t offset = sizeof kPartsMagic;
    auto v = CheckpointEnclave(*enclave_, [&](crypto::ByteView sealed) -> Status {
      crypto::Bytes length;
      ByteWriter(&length).U64(sealed.size());
      if (auto s = sink(offset, length); !s) return s;
      if (auto s = sink(offset + length.size(), sealed); !s) return s;
      offset += length.size() + sealed.size();
      return {};
    });
    if (!v) return std::unexpected(v.error());
    version = *v;
    return {};
  };
  if (auto s = env_.WriteAtomicFrom(Path(kCheckpointFile), 0600, fill); !s)
    return std::unexpected(s.error());
  return version;
}

Status Server::RestoreEnclave() {
  const std::string path = Path(kCheckpointFile);
  auto head = env_.ReadAt(path, 0, sizeof kPartsMagic);
  if (!head && head.error().code() == Error::Code::kNotFound) return {};  // a first start
  if (!head) return std::unexpected(head.error());
  const uint64_t cap = enclave::MaxRequest(enclave::Call::kRestore);
  if (head->size() < sizeof kPartsMagic ||
      !std::equal(head->begin(), head->end(), std::begin(kPartsMagic))) {
    // From before parts: one sealed blob.
    MEDSTREAM_TRY(blob, env_.ReadFile(path, cap));
    MEDSTREAM_TRY(complete, RestorePart(*enclave_, blob));
    if (!complete) return Corrupt(path + ": a checkpoint of one part that is not its last");
    return {};
  }
  uint64_t offset = sizeof kPartsMagic;
  for (uint32_t part = 0;; ++part) {
    MEDSTREAM_TRY(length_bytes, env_.ReadAt(path, offset, 8));
    if (length_bytes.empty()) return Corrupt(path + ": ends before the checkpoint's last part");
    ByteReader r(length_bytes);
    MEDSTREAM_TRY(length, r.U64("part length"));
    if (length > cap) {
      return Corrupt(path + ": part " + std::to_string(part) + " of " + std::to_string(length) +
                     " bytes, more than a restore call carries");
    }
    MEDSTREAM_TRY(sealed, env_.ReadAt(path, offset + 8, static_cast<size_t>(length)));
    if (sealed.size() != length)
      return Corrupt(path + ": part " + std::to_string(part) + " cut short");
    offset += 8 + length;
    MEDSTREAM_TRY(complete, RestorePart(*enclave_, sealed));
    if (complete) break;
  }
  MEDSTREAM_TRY(rest, env_.ReadAt(path, offset, 1));
  if (!rest.empty()) return Corrupt(path + ": bytes after the checkpoint's last part");
  return {};
}

Status Server::Checkpoint() {
  std::lock_guard lock(mu_);
  crypto::Bytes blob;
  uint64_t version = 0;
  if (vanilla_) {
    ByteWriter w(&blob);
    vanilla_->Save(&w);
    if (auto s = env_.WriteAtomic(Path(kCheckpointFile), blob, 0600); !s) return s;
  } else {
    MEDSTREAM_TRY(v, WriteEnclaveCheckpoint());
    version = v;
  }
  // The journal restarts empty: everything in it is now inside the checkpoint.
  if (auto s = env_.WriteAtomic(Path(kJournalFile), {}, 0600); !s) return s;
  if (!vanilla_) {
    MEDSTREAM_TRY(ok,
                  enclave_->Call(enclave::Call::kCommit, enclave::CommitVersion{version}.Encode()));
    (void)ok;
  }
  since_checkpoint_ = 0;
  std::lock_guard counters(counters_mu_);
  ++counters_.checkpoints;
  return {};
}

std::string Server::MetricsText() const {
  metrics::Text t;
  std::lock_guard lock(counters_mu_);
  const ServerCounters& c = counters_;
  t.Counter("medstream_server_batches_processed_total",
            "Batches processed by the enclave (result written).", static_cast<double>(c.processed));
  t.Counter("medstream_server_batch_bytes_total", "Bytes of the batches processed.",
            static_cast<double>(c.bytes_in));
  for (const char* kind : {"name", "unreadable", "refused", "failed", "tries", "damaged"}) {
    auto it = c.quarantined_by_reason.find(kind);
    t.Counter("medstream_server_quarantined_total", "Inputs quarantined, by reason.",
              it == c.quarantined_by_reason.end() ? 0.0 : static_cast<double>(it->second),
              {{"reason", kind}});
  }
  t.Counter("medstream_server_replayed_on_recovery_total",
            "Journalled batches the checkpoint already covered at recovery.",
            static_cast<double>(c.replayed_on_recovery));
  t.Counter("medstream_server_replay_missing_total",
            "Journalled batches gone at recovery: their streams' state was rebuilt without them.",
            static_cast<double>(c.replay_missing));
  t.Counter("medstream_server_checkpoints_total", "Sealed checkpoints written.",
            static_cast<double>(c.checkpoints));
  t.Counter("medstream_server_enclave_restarts_total",
            "Enclaves restarted after dying or overrunning their time budget.",
            static_cast<double>(c.enclave_restarts));
  t.Histogram("medstream_server_enclave_call_seconds",
              "The enclave's process_batch call, per batch (copy in, decrypt, analyse, seal).",
              c.enclave_call_s);
  t.Histogram("medstream_server_batch_seconds",
              "Per batch: read, enclave call, result written, checkpoint.",
              metrics::LatencyBuckets(), c.batch_s);
  return t.str();
}

Status Server::Run(const std::atomic<bool>& stop) {
  MEDSTREAM_TRY(watch, env_.WatchDir(Path("inbox")));
  Status status;
  while (!stop) {
    if (auto n = ProcessInbox(); !n) {
      status = std::unexpected(n.error());
      break;
    }
    // Woken by a new file; the timeout is a safety net for events missed under load.
    watch->Wait(0.5);
  }
  if (status) status = Checkpoint();
  return status;
}

void Server::RelayLoop() {
  // A client (the gateway attesting, over SSH) makes a few small calls. Each connection was a
  // thread kept, and a descriptor number kept, until the server stopped; its stop then shut down
  // those numbers, which other files may have had by then.
  ServeListener(
      relay_fd_, "server relay", {.max_request = 64 * 1024, .max_connections = 16},
      [this](uint16_t call, crypto::ByteView request) -> Result<crypto::Bytes> {
        if (!RelayAllowed(call)) {
          return Fail(Error::Code::kInvalidArgument,
                      "the relay only forwards info, handshake, channel and stats calls");
        }
        return CallEnclave(static_cast<enclave::Call>(call), request);
      },
      stopping_);
}

Result<std::unique_ptr<EnclaveTransport>> ConnectRelay(const std::string& socket_path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) return InvalidArgument("socket path too long");
  std::strcpy(addr.sun_path, socket_path.c_str());
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const std::string why = std::strerror(errno);
    if (fd >= 0) close(fd);
    return Fail(Error::Code::kNotFound, "cannot reach the server's enclave relay at " +
                                            socket_path + ": " + why + " (is the server running?)");
  }
  return MakeSocketTransport(fd, -1, "relay");
}

}  // namespace medstream::host

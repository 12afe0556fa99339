#include "owner/gateway/gateway.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/abi/edge.h"
#include "common/base/file.h"
#include "host/server/server.h"
#include "owner/gateway/result_files.h"
#include "owner/sensor/sensor.h"

namespace medstream::gateway {

namespace {

// Options come from a command line or a program: a number no clock or cut can use (NaN, a negative
// age, an infinite wait) is refused where it enters, not made into a duration at the first cut
// (undefined for NaN) or a wait that never ends. Every comparison with NaN is false: `In` fails.
Status CheckOptions(const Options& o) {
  const auto in = [](double v, double lo, double hi) { return v >= lo && v <= hi; };
  const auto bad = [](const char* name, double v, const char* range) {
    return InvalidArgument(fmt::format("gateway option {} must be {}, got {}", name, range, v));
  };
  if (!in(o.batch_seconds, 1e-3, 1e9))
    return bad("batch_seconds", o.batch_seconds, "1 ms to 1e9 s");
  if (!in(o.late_grace_s, 0, 86400)) return bad("late_grace_s", o.late_grace_s, "0 to 86400 s");
  if (!in(o.status_interval_s, 1e-3, 86400)) {
    return bad("status_interval_s", o.status_interval_s, "1 ms to 86400 s");
  }
  if (!in(o.quarantine_check_s, 1e-3, 86400)) {
    return bad("quarantine_check_s", o.quarantine_check_s, "1 ms to 86400 s");
  }
  if (o.batch_beats == 0) return InvalidArgument("gateway option batch_beats must be at least 1");
  if (o.max_open_beats == 0) {
    return InvalidArgument("gateway option max_open_beats must be at least 1");
  }
  return {};
}

// Results come from the untrusted server: never read more than a result can be (edge.h's cap).
const uint64_t kMaxResultBytes =
    enclave::FindCall(static_cast<uint16_t>(enclave::Call::kProcessBatch))->max_response;

namespace fs = std::filesystem;

// Devices the gateway follows at most (each one's state is small, but not free).
constexpr size_t kMaxDevices = 100000;

// A count written by the gateway: decimal digits only (std::from_chars takes no sign or space).
bool WholeNumber(std::string_view text, uint64_t* v) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *v);
  return !text.empty() && ec == std::errc() && end == text.data() + text.size();
}

// A time up to which beats are sealed: a number, or -inf before the first cut (as fmt writes it).
bool SealedUntil(std::string_view text, double* v) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *v);
  return !text.empty() && ec == std::errc() && end == text.data() + text.size() &&
         (std::isfinite(*v) || *v == -std::numeric_limits<double>::infinity());
}

bool ValidUser(const std::string& u) {
  return !u.empty() && u.size() <= 64 && std::all_of(u.begin(), u.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
  });
}

class Local : public ServerLink {
 public:
  explicit Local(std::string dir) : dir_(std::move(dir)) {}
  Status Upload(const std::string& name, crypto::ByteView data) override {
    const std::string inbox = dir_ + "/inbox";
    if (!FileExists(inbox))
      return Fail(Error::Code::kNotFound, "server inbox " + inbox + " absent");
    const std::string tmp = inbox + "/." + name + ".part";
    if (auto s = WriteFileAtomic(tmp, data, 0644); !s) return s;
    if (std::rename(tmp.c_str(), (inbox + "/" + name).c_str()) != 0) {
      return IoError("cannot move " + name + " into the server inbox");
    }
    return {};
  }
  Status UploadFile(const std::string& name, const std::string& path) override {
    const std::string inbox = dir_ + "/inbox";
    if (!FileExists(inbox))
      return Fail(Error::Code::kNotFound, "server inbox " + inbox + " absent");
    const std::string tmp = inbox + "/." + name + ".part";
    std::remove(tmp.c_str());  // left by a crash mid-upload
    if (link(path.c_str(), tmp.c_str()) != 0) return ServerLink::UploadFile(name, path);
    if (std::rename(tmp.c_str(), (inbox + "/" + name).c_str()) != 0) {
      return IoError("cannot move " + name + " into the server inbox");
    }
    // The data was made durable when spooled; make the new name durable too.
    if (const int fd = open(inbox.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); fd >= 0) {
      fsync(fd);
      close(fd);
    }
    return {};
  }
  Result<crypto::Bytes> ReadResult(const std::string& name) override {
    auto b = ReadFileBytes(dir_ + "/outbox/" + name, kMaxResultBytes);
    if (!b && b.error().code() == Error::Code::kNotFound) return NotFound(name);
    return b;
  }
  Result<std::string> QuarantineReason(const std::string& batch_name) override {
    MEDSTREAM_TRY(text, ReadFileText(dir_ + "/quarantine/" + batch_name + ".reason", 4096));
    return text;
  }
  Result<std::unique_ptr<host::EnclaveTransport>> Relay() override {
    return host::ConnectRelay(dir_ + "/enclave.sock");
  }

 private:
  std::string dir_;
};

// The SFTP link. An SSH connection does not survive the server's sshd restarting or the network
// going away, and a dead one would fail every upload until the gateway restarted (the batches wait
// in the spool meanwhile, so nothing is lost, but nothing moves either). So a transport error, or a
// server that stops answering (each step waits sftp::Target::timeout_s at most), drops the
// connection and the next call connects afresh, at most once every 2 s.
class Remote : public ServerLink {
 public:
  Remote(sftp::Target target, std::unique_ptr<sftp::Client> c, std::string relay)
      : target_(std::move(target)), c_(std::move(c)), relay_(std::move(relay)) {}
  Status Upload(const std::string& name, crypto::ByteView data) override {
    MEDSTREAM_TRY(c, Session());
    return Checked(c->Upload("/inbox", name, data));
  }
  Result<crypto::Bytes> ReadResult(const std::string& name) override {
    MEDSTREAM_TRY(c, Session());
    return Checked(c->Download("/outbox/" + name, kMaxResultBytes));
  }
  Result<std::string> QuarantineReason(const std::string& batch_name) override {
    MEDSTREAM_TRY(c, Session());
    MEDSTREAM_TRY(bytes, Checked(c->Download("/quarantine/" + batch_name + ".reason", 4096)));
    return std::string(bytes.begin(), bytes.end());
  }
  Result<std::unique_ptr<host::EnclaveTransport>> Relay() override {
    MEDSTREAM_TRY(c, Session());
    return Checked(c->OpenRelay(relay_));
  }

 private:
  Result<sftp::Client*> Session() {
    if (c_) return c_.get();
    const auto now = std::chrono::steady_clock::now();
    if (now < next_attempt_) {
      return Fail(Error::Code::kIo, "the SFTP connection to " + target_.host + ":" +
                                        std::to_string(target_.port) +
                                        " was lost; reconnecting shortly");
    }
    next_attempt_ = now + std::chrono::seconds(2);
    MEDSTREAM_TRY(c, sftp::Client::Connect(target_));
    c_ = std::move(c);
    return c_.get();
  }
  // kIo is the connection failing, kDeadlineExceeded the server not answering within the
  // target's timeout (sftp::Target::timeout_s; the connection is given up): both drop it. The
  // others are answers: no such file, too large ...
  template <typename R>
  R Checked(R r) {
    if (!r && (r.error().code() == Error::Code::kIo ||
               r.error().code() == Error::Code::kDeadlineExceeded)) {
      c_.reset();
    }
    return r;
  }

  sftp::Target target_;
  std::unique_ptr<sftp::Client> c_;
  std::string relay_;
  std::chrono::steady_clock::time_point next_attempt_{};
};

}  // namespace

Status ServerLink::UploadFile(const std::string& name, const std::string& path) {
  MEDSTREAM_TRY(bytes, ReadFileBytes(path));
  return Upload(name, bytes);
}

Result<std::unique_ptr<host::EnclaveTransport>> ServerLink::RelayTo(const std::string& enclave) {
  (void)enclave;
  return Relay();
}

std::unique_ptr<ServerLink> LocalLink(const std::string& server_dir) {
  return std::make_unique<Local>(server_dir);
}

Result<std::unique_ptr<ServerLink>> SftpLink(const sftp::Target& target,
                                             const std::string& relay_socket) {
  MEDSTREAM_TRY(c, sftp::Client::Connect(target));
  return std::unique_ptr<ServerLink>(std::make_unique<Remote>(target, std::move(c), relay_socket));
}

Result<std::unique_ptr<Gateway>> Gateway::Start(const Options& options,
                                                std::unique_ptr<MessageSource> source,
                                                std::unique_ptr<ServerLink> link) {
  if (auto s = CheckOptions(options); !s) return std::unexpected(s.error());
  std::unique_ptr<Gateway> g(new Gateway(options));
  if (!g->options_.clock) g->options_.clock = [] { return std::chrono::steady_clock::now(); };
  if (link) {
    g->link_ = std::move(link);
  } else if (options.sftp) {
    MEDSTREAM_TRY(sftp_link, SftpLink(*options.sftp, options.server_dir + "/enclave.sock"));
    g->link_ = std::move(sftp_link);
  } else {
    g->link_ = LocalLink(options.server_dir);
  }
  for (const std::string& d : {options.state_dir + "/spool", options.state_dir + "/wal"}) {
    if (auto s = MakeDirs(d, 0700); !s) return std::unexpected(s.error());
  }
  bool tightened = false;
  if (auto s = MakePrivateDir(options.results_dir, &tightened); !s) {
    return std::unexpected(std::move(s.error()).With("results directory"));
  }
  if (tightened) {
    std::fprintf(stderr, "gateway: %s was readable by others; it now is 0700 (it holds results)\n",
                 options.results_dir.c_str());
  }
  if (auto s = g->LoadOrCreateKeys(); !s) return std::unexpected(s.error());
  // A batch never exceeds what the link carries, even with one more message's beats: the sealed
  // size is the header, the beats and a tag per segment.
  const size_t cap = g->link_->MaxBatchBytes();
  const size_t plain =
      cap - wire::kHeaderSize - crypto::AesGcm::kTagSize * (cap / wire::kSegmentBytes + 1);
  g->max_batch_beats_ = plain / sizeof(hrv::Beat) - sensor::kMaxBeatsPerMessage;
  if (g->link_->SingleEnclave()) {
    if (auto s = g->AttestAndProvision(); !s) return std::unexpected(s.error());
  } else {
    g->provisioner_ = std::thread([raw = g.get()] { raw->ProvisionLoop(); });
  }
  if (auto s = g->Recover(); !s) return std::unexpected(s.error());
  g->source_ = source ? std::move(source) : MqttSource(options);
  Gateway* raw = g.get();
  if (auto s = g->source_->Start([raw](const mqtt::Message& m) { raw->OnMessage(m); }); !s) {
    return std::unexpected(s.error());
  }
  return g;
}

namespace {

class Mqtt : public MessageSource {
 public:
  explicit Mqtt(const Options& o) : options_(o) {}
  Status Start(Handler handler) override {
    MEDSTREAM_TRY(addr, mqtt::ParseAddress(options_.broker));
    // A persistent session: the broker keeps the subscription and queues messages while the
    // gateway is away (a restart, a crash), and sends unacknowledged ones again. The handler is in
    // place before the connection, since queued messages arrive at once.
    mqtt::Client::Options co;
    co.host = addr.first;
    co.port = addr.second;
    co.client_id = "medstream-gateway-" + options_.site;
    co.tls = options_.tls;
    co.clean_session = false;
    co.subscription = mqtt::Client::Subscription{
        .pattern = "medstream/" + options_.site + "/+/rr", .qos = 1, .handler = std::move(handler)};
    co.also_subscribe = {"medstream/" + options_.site + "/+/status"};
    MEDSTREAM_TRY(client, mqtt::Client::Connect(co));
    client_ = std::move(client);
    return {};
  }
  Status AskStatuses() override {
    return client_->Resubscribe("medstream/" + options_.site + "/+/status", 0);
  }

 private:
  Options options_;
  std::unique_ptr<mqtt::Client> client_;
};

}  // namespace

std::unique_ptr<MessageSource> MqttSource(const Options& options) {
  return std::make_unique<Mqtt>(options);
}

Gateway::~Gateway() {
  source_.reset();  // no message arrives while the rest goes
  if (provisioner_.joinable()) {
    {
      std::lock_guard lock(provision_mu_);
      provision_stop_ = true;
    }
    provision_cv_.notify_all();
    provisioner_.join();  // at most one round of attestations, in parallel, each request bounded
  }
}

Status Gateway::LoadOrCreateKeys() {
  MEDSTREAM_TRY(keys, KeyStore::LoadOrCreate(options_.state_dir + "/keys"));
  keys_ = std::move(keys);
  return {};
}

Status Gateway::Recover() {
  const std::string devices_path = options_.state_dir + "/devices";
  if (auto text = ReadFileText(devices_path)) {
    if (auto devices = SequenceTracker::Load(*text)) {
      devices_ = std::move(*devices);
    } else {
      // Damaged (power loss, a failing disk). It used to stop the gateway, for every user, at
      // every start; it is kept aside instead, and each device's loss counting starts again with
      // its next message: what it lost before that cannot be counted, which is said here.
      const std::string aside = devices_path + ".damaged-" + std::to_string(time(nullptr));
      std::error_code ec;
      fs::rename(devices_path, aside, ec);
      if (ec) return IoError("cannot set aside " + devices_path + ": " + ec.message());
      ++stats_.devices_state_damaged;
      devices_ = SequenceTracker::Resuming();
      devices_dirty_ = true;
      std::fprintf(stderr,
                   "gateway: warning: %s: %s; kept in %s. The devices' loss counting starts "
                   "again with their next messages: messages lost before them cannot be counted\n",
                   devices_path.c_str(), devices.error().message().c_str(), aside.c_str());
    }
  } else if (text.error().code() != Error::Code::kNotFound) {
    return std::unexpected(text.error());
  }
  // STATE/seq: "user next_seq sealed_until" per line (older files lack the third field).
  auto seq_text = ReadFileText(options_.state_dir + "/seq");
  if (!seq_text && seq_text.error().code() != Error::Code::kNotFound) {
    return std::unexpected(seq_text.error());  // unreadable is not absent: users would restart
  }
  if (const auto* text = seq_text ? &*seq_text : nullptr) {
    std::istringstream in(*text);
    for (std::string line; std::getline(in, line);) {
      std::istringstream fields(line);
      std::string user, next_text, sealed_text;
      uint64_t next = 0;
      double sealed = -std::numeric_limits<double>::infinity();
      // Read strictly: `>>` into an integer takes "-1" as the largest count and "1e30" as 1, and
      // strtod takes anything; a wrapped next_seq would stall the user's stream at the server,
      // a sealed_until of +inf or NaN would drop every later beat as already sealed.
      if (!(fields >> user >> next_text) || !ValidUser(user) || !WholeNumber(next_text, &next) ||
          ((fields >> sealed_text) && !SealedUntil(sealed_text, &sealed))) {
        return Corrupt(options_.state_dir + "/seq is damaged: '" + Printable(line) +
                       "' (each line must be: user next_seq [sealed_until]; restore it from a "
                       "backup or remove it to start the users' sequences again)");
      }
      MEDSTREAM_TRY(s, StreamFor(user));
      s->next_seq = next;
      s->batch.SetSealedUntil(sealed);
    }
  }
  // The gateway's own folder, but listed without exceptions: one removed or unreadable under
  // a running gateway is an error to report, not a crash.
  std::error_code list_error;
  for (fs::directory_iterator it(options_.state_dir + "/wal", list_error), end;
       !list_error && it != end; it.increment(list_error)) {
    const fs::directory_entry& e = *it;
    const std::string name = e.path().filename().string();
    if (!name.ends_with(".wal")) continue;
    const std::string user = name.substr(0, name.size() - 4);
    if (!ValidUser(user)) {
      // Not a log this gateway wrote (it names logs by valid user names only): left where it is,
      // and it stops no one.
      std::fprintf(stderr, "gateway: warning: %s/wal/%s is not a user's log; left alone\n",
                   options_.state_dir.c_str(), Printable(name).c_str());
      continue;
    }
    MEDSTREAM_TRY(s, StreamFor(user));
    (void)s;
  }
  if (list_error) {
    return IoError("cannot list the write-ahead logs in " + options_.state_dir +
                   "/wal: " + list_error.message());
  }
  bool adopted = false;
  for (auto& [user, s] : streams_) {
    // A batch in the spool that STATE/seq does not know: sealed just before a crash. Adopt it.
    for (;;) {
      const std::string path =
          options_.state_dir + "/spool/" + wire::BatchFileName(s.id, s.next_seq);
      auto file = ReadFileBytes(path);
      if (!file) break;
      if (auto opened = s.sealer->OpenBatch(*file)) {
        if (!opened->empty()) s.batch.SetSealedUntil(opened->back().t_s);
      } else {
        // Damaged (a failing disk). It used to stop the gateway, for every user, at every start.
        // Its beats are still in the write-ahead log (the log is reset only once STATE/seq has
        // the batch), so they go into the next batch; this file keeps its number and is
        // uploaded as it is, for the enclave to refuse (a quarantine said in the user's results).
        ++stats_.spool_batches_damaged;
        std::fprintf(stderr,
                     "gateway: warning: %s: %s; its beats are sealed again from the write-ahead "
                     "log, and this file will be refused by the enclave\n",
                     path.c_str(), opened.error().message().c_str());
      }
      ++s.next_seq;
      adopted = true;
    }
    // The log replays each message's sequence too (a no-op for what STATE/devices already has).
    for (const BeatLog::Record& r : s.log->TakeRecoveredRecords()) {
      if (r.sequence && !r.beats.empty()) {
        devices_.OnMessage(user, *r.sequence, r.beats.size(), r.beats.front().t_s,
                           r.beats.back().t_s);
      }
      stats_.beats_recovered += Merge(s, r.beats);
    }
    if (!s.batch.empty()) s.batch.opened = options_.clock();
    // What was read back may be in the page cache only (after a process crash): durable before
    // the devices' state says it is.
    if (auto st = s.log->Sync(); !st) return st;
  }
  durable_devices_ = devices_;
  if (adopted) return SaveSequences();
  return {};
}

void Gateway::SettleResults(Stream& s) {
  // Where the user's results stand: the jsonl's newest whole result. A file that lost the lines of
  // its newest result to a torn append has that result read again (the files that hold it skip
  // it); CSV rows of results the jsonl lacks go and are written again with them.
  auto settle = [&](const std::string& path, ResultFileKind kind, uint64_t max_seq) {
    uint64_t cut = 0;
    auto tail = SettleResultFile(path, kind, max_seq, &cut);
    if (!tail) {
      // Appending will fail too, and say so for this stream only.
      std::fprintf(stderr, "gateway: warning: %s\n", tail.error().message().c_str());
      return ResultTail{};
    }
    if (tail->cut_newest) {
      ++stats_.results_torn;
      s.reread_until = std::max(s.reread_until, tail->last_seq + 1);
    }
    if (cut > 0) {
      std::fprintf(stderr,
                   "gateway: %s: cut off %llu bytes after result %llu (a torn append: a crash or "
                   "power loss mid-write)%s\n",
                   path.c_str(), static_cast<unsigned long long>(cut),
                   static_cast<unsigned long long>(tail->last_seq),
                   tail->cut_newest
                       ? fmt::format("; result {} is read again", tail->last_seq + 1).c_str()
                       : "");
    }
    return *tail;
  };
  const std::string base = options_.results_dir + "/" + s.user;
  s.jsonl_last = settle(base + ".jsonl", ResultFileKind::kJsonLines, ~uint64_t{0}).last_seq;
  s.next_result = s.jsonl_last + 1;
  for (const hrv::JobKind kind : hrv::kAllJobs) {
    const std::string path = base + "." + std::string(hrv::JobName(kind)) + ".csv";
    if (!FileExists(path)) continue;
    const ResultTail tail = settle(path, ResultFileKind::kCsv, s.jsonl_last);
    s.csv_last[kind] = tail.last_seq;
    if (tail.cut_newest) s.next_result = std::min(s.next_result, tail.last_seq + 1);
  }
}

Result<Gateway::Stream*> Gateway::StreamFor(const std::string& user) {
  auto it = streams_.find(user);
  if (it != streams_.end()) return &it->second;
  if (!ValidUser(user)) return InvalidArgument("bad user name '" + user + "'");
  Stream s;
  s.user = user;
  s.id = keys_.Pseudonym(user);
  MEDSTREAM_TRY(sealer, client::StreamSealer::Create(keys_.data_key(), keys_.key_id(), s.id));
  s.sealer = std::make_unique<client::StreamSealer>(std::move(sealer));
  MEDSTREAM_TRY(log, BeatLog::Open(options_.state_dir + "/wal/" + user + ".wal", keys_.log_key(),
                                   user, options_.sync_file));
  if (!log.note().empty()) std::fprintf(stderr, "gateway: %s\n", log.note().c_str());
  stats_.wal_bytes_damaged += log.damaged_bytes();
  s.log = std::move(log);
  SettleResults(s);
  if (options_.stagger_cuts) {
    // The first n multiples of the golden ratio modulo 1 are no closer than 1/(3n) whatever n is
    // (the three-gap theorem): sixteen users started together are cut at least 0.34 s of a 10 s
    // interval apart. (A draw from the pseudonyms put three of sixteen within 0.3 s.) The phase
    // after a restart may differ: that only makes the stream's first batch shorter.
    const double k = static_cast<double>(streams_.size());
    const double fraction = k * 0.6180339887498949 - std::floor(k * 0.6180339887498949);
    s.phase = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(fraction * options_.batch_seconds));
  }
  return &streams_.emplace(user, std::move(s)).first->second;
}

void Gateway::SayRepeated(std::string_view kind, std::string_view line) {
  if (auto held = repeats_.Admit(kind, options_.clock())) {
    std::fprintf(stderr, "gateway: %.*s%s\n", static_cast<int>(line.size()), line.data(),
                 HeldBackNote(*held).c_str());
  }
}

size_t Gateway::Merge(Stream& s, std::span<const hrv::Beat> beats) {
  const OpenBatch::Merged m = s.batch.Merge(beats);
  open_beats_ += m.added;
  stats_.beats_stale += m.stale;
  return m.added;
}

void Gateway::Say(const std::string& user, const Observation& o, const char* what) {
  if (o.lost_beats == 0 && o.lost_messages == 0 && o.recovered_beats == 0) return;
  devices_dirty_ = true;
  // Bounded: a broker dropping all day must not fill the disk with this line.
  constexpr uint64_t kMaxLossLines = 1000;
  if (++loss_lines_ > kMaxLossLines) return;
  if (o.recovered_beats > 0) {
    std::fprintf(stderr, "gateway: %s: %llu beats thought lost arrived late after all\n",
                 user.c_str(), static_cast<unsigned long long>(o.recovered_beats));
  } else {
    std::fprintf(stderr,
                 "gateway: warning: %s: %llu messages (%llu beats) it sent never arrived (%s); "
                 "counted as lost, windows over them are marked\n",
                 user.c_str(), static_cast<unsigned long long>(o.lost_messages),
                 static_cast<unsigned long long>(o.lost_beats), what);
  }
  if (loss_lines_ == kMaxLossLines) {
    std::fprintf(stderr, "gateway: (no more loss lines; the counts in the stats go on)\n");
  }
}

void Gateway::OnStatusMessage(const std::string& user, const mqtt::Message& m) {
  auto status = sensor::DecodeStatus(m.payload);
  if (!status) {
    ++stats_.malformed;
    std::fprintf(stderr, "gateway: dropped a malformed status on %s: %s\n", m.topic.c_str(),
                 status.error().message().c_str());
    return;
  }
  // Bounded: a status creates a device's entry only while there are fewer than kMaxDevices.
  if (!ValidUser(user) ||
      (!devices_.devices().contains(user) && devices_.devices().size() >= kMaxDevices)) {
    ++stats_.malformed;
    std::fprintf(stderr, "gateway: dropped a status on %s: bad device name or too many devices\n",
                 m.topic.c_str());
    return;
  }
  Say(user, devices_.OnStatus(user, *status), "the end of its session, by its status");
  devices_unsynced_.insert(user);  // a status is retained by the broker: saved with the next sync
}

void Gateway::OnMessage(const mqtt::Message& m) {
  std::lock_guard lock(mu_);
  ++stats_.messages;
  // medstream/<site>/<user>/rr or .../status
  const std::string prefix = "medstream/" + options_.site + "/";
  std::string user;
  if (m.topic.starts_with(prefix) && m.topic.ends_with("/status")) {
    return OnStatusMessage(m.topic.substr(prefix.size(), m.topic.size() - prefix.size() - 7), m);
  }
  if (m.topic.starts_with(prefix) && m.topic.ends_with("/rr")) {
    user = m.topic.substr(prefix.size(), m.topic.size() - prefix.size() - 3);
  }
  auto message = sensor::DecodeMessage(m.payload);
  if (!ValidUser(user) || !message) {
    ++stats_.malformed;
    std::fprintf(stderr, "gateway: dropped a malformed message on %s: %s\n", m.topic.c_str(),
                 message ? "bad user name" : message.error().message().c_str());
    return;
  }
  if (message->version == sensor::kBluetoothHeartRate && message->untimed_rr_ms.empty()) {
    ++stats_.heart_rate_only;  // a heart rate without RR: nothing for HRV
    return;
  }
  const std::vector<hrv::Beat>* beats = &message->beats;
  std::optional<sensor::Sequence> sequence;
  if (message->has_sequence) {
    sequence = message->sequence;
  } else {
    ++stats_.old_format_messages;
  }
  auto stream = StreamFor(user);
  if (!stream) {
    ++stats_.malformed;
    SayRepeated("stream", stream.error().message());
    return;
  }
  Stream& s = **stream;
  if (message->version == sensor::kBluetoothHeartRate) {
    // Bluetooth measurements carry RR without times: continue from the device's last beat.
    const double last = s.batch.newest();
    message->beats = sensor::TimeBeats(message->untimed_rr_ms, last, options_.wall_clock());
  }
  if (open_beats_ + beats->size() > options_.max_open_beats && !s.batch.empty()) {
    // The disk may be back: this stream's cut makes room before anything is dropped.
    if (auto st = Cut(s); !st) SayRepeated("cut", st.error().message());
  }
  if (open_beats_ + beats->size() > options_.max_open_beats) {
    // Not logged, not tracked: the device's next message or status shows the gap, counted as
    // lost, as a message the broker dropped.
    stats_.beats_dropped_backlog += beats->size();
    SayRepeated("backlog",
                fmt::format("{}: dropped a message of {} beats: the open batches hold {} beats, "
                            "the most --max-open-beats allows, because their cuts fail (see "
                            "above); counted as lost ({} beats dropped so far)",
                            s.user, beats->size(), open_beats_, stats_.beats_dropped_backlog));
    return;
  }
  // Logged before this callback returns, i.e. before libmosquitto acknowledges the message.
  if (auto st = s.log->Append(*beats, sequence); !st) {
    s.log_incomplete = true;
    // Said at the 1st, 1001st, ... failure: a full disk fails every message.
    if (stats_.wal_append_failed++ % 1000 == 0) {
      std::fprintf(stderr,
                   "gateway: %s: %s (the message is kept in memory until its batch is cut; a "
                   "crash before then counts it as lost; %llu such messages so far)\n",
                   s.user.c_str(), st.error().message().c_str(),
                   static_cast<unsigned long long>(stats_.wal_append_failed));
    }
  }
  Observation seen;
  if (sequence) {
    seen =
        devices_.OnMessage(s.user, *sequence, beats->size(), beats->front().t_s, beats->back().t_s);
    devices_unsynced_.insert(s.user);
    Say(s.user, seen, "a gap in its message sequence");
    if (seen.lost_messages > 0) s.gap_opened = options_.clock();
  }
  if (s.batch.empty()) s.batch.opened = options_.clock();
  const uint64_t stale_before = stats_.beats_stale;
  stats_.beats_in += Merge(s, *beats);
  if (seen.recovered_beats > 0 && stats_.beats_stale > stale_before) {
    // First arrivals, not repeats: they filled a gap, but a later batch is sealed already.
    const uint64_t late = stats_.beats_stale - stale_before;
    stats_.beats_stale -= late;
    stats_.beats_too_late += late;
    std::fprintf(stderr,
                 "gateway: warning: %s: %llu beats arrived after a later batch was sealed (more "
                 "than --late-grace %.1f s late): not analysed, counted as lost\n",
                 s.user.c_str(), static_cast<unsigned long long>(late), options_.late_grace_s);
  }
  if (stats_.beats_stale - stale_before == beats->size()) {
    // Every beat at or before what this device already sealed: a redelivery is normal, but a
    // device whose clock went back (or a second device on its topic) loses everything it sends.
    // Said at the first such message and every 1000th after.
    if (s.stale_messages++ % 1000 == 0) {
      std::fprintf(stderr,
                   "gateway: warning: %s: all %zu beats of a message are at or before its last "
                   "sealed beat (t = %.3f s): dropped as repeats (%llu such messages so far)\n",
                   s.user.c_str(), beats->size(), s.batch.sealed_until(),
                   static_cast<unsigned long long>(s.stale_messages));
    }
  }
  if (s.batch.size() >= max_batch_beats_ ||
      (s.batch.size() >= options_.batch_beats && !Holding(s, options_.clock()))) {
    // A cut that fails (a full disk) is tried again at each message and each tick; said once in
    // 10 s.
    if (auto st = Cut(s); !st) SayRepeated("cut", st.error().message());
  }
}

Stats Gateway::stats() const {
  std::lock_guard lock(mu_);
  Stats st = stats_;
  st.lost_messages = devices_.lost_messages();
  st.lost_beats = devices_.lost_beats() + stats_.beats_too_late;
  st.recovered_beats = devices_.recovered_beats();
  return st;
}

size_t Gateway::outstanding() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& [user, s] : streams_) n += s.next_seq - s.next_result;
  return n;
}

}  // namespace medstream::gateway

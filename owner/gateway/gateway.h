// gateway: the data owner's trusted edge. Beats arrive over MQTT from the sensors; the gateway
// groups them per user into micro-batches, seals each batch for the enclave, keeps it in a local
// spool until the server has it, and turns the enclave's encrypted results back into per-user CSV
// and JSON lines.
//
//   STATE/keys          data key, key id and the pseudonym secret (0600): never leave the gateway
//   STATE/spool/        sealed batches not yet uploaded (a crash or a server outage loses none)
//   STATE/wal/<user>.wal  encrypted write-ahead log of the beats of the open batch (beat_log.h)
//   STATE/seq           per user: the next sequence number and the time of the last beat sealed
//   STATE/devices       per device: its message sequence and what never arrived (sequence.h)
//   RESULTS/<user>.<job>.csv  one row per window: seq, window, metrics, lost_beats (beats sent
//                       inside the window that never arrived), then the window in ISO-8601 UTC
//                       (start_utc, end_utc); RESULTS/<user>.jsonl likewise (owner/results reads
//                       it), each result's lines ended by its marker (result_files.h)
//
// Users are pseudonymised: the server sees stream ids HMAC(secret, user), never user names.
// Before any key leaves, the gateway attests the enclave (through the server's relay socket) and
// checks its policy. Results are appended in sequence order; the next sequence to read is taken
// from the output files themselves, so a restart neither skips nor repeats a result.
//
// Crash safety. Every message is in the write-ahead log before the broker gets its acknowledgement
// (see beat_log.h), and the gateway's MQTT session is persistent, so the broker keeps what arrives
// while the gateway is down. Cutting a batch: seal, write it to the spool, then record its sequence
// number and last beat time in STATE/seq, then empty the log. A restart finds every beat either in
// a sealed batch or in the log; beats at or before the last sealed time (a message delivered again)
// are dropped, so none is sealed twice; a spooled batch that STATE/seq does not know yet (the crash
// came between the two writes) is adopted, so no sequence number is sealed twice either.
//
// Loss. Each message carries its device's session and sequence numbers and each device keeps a
// retained status on the broker (sensor.h); the gateway counts every message and beat that never
// arrived (a broker that dropped them, a queue that overflowed), says so at warning level, reports
// it in stats() and marks every window built over a hole with the beats missing in it.
// STATE/devices is saved with STATE/seq and at most once a second; the write-ahead log records each
// message's sequence, so a restart replays it and counts the same.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "adapters/mqtt/mqtt.h"
#include "adapters/sftp/sftp.h"
#include "common/abi/edge.h"
#include "common/attest/policy.h"
#include "common/base/log_limit.h"
#include "owner/client/client.h"
#include "owner/gateway/beat_log.h"
#include "owner/gateway/key_store.h"
#include "owner/gateway/open_batch.h"
#include "owner/gateway/sequence.h"

namespace medstream::gateway {

// How the gateway reaches the server: a local directory, or SFTP (OpenSSH internal-sftp chrooted to
// the server directory) with the enclave relay through the same SSH connection.
class ServerLink {
 public:
  virtual ~ServerLink() = default;
  virtual Status Upload(const std::string& name, crypto::ByteView data) = 0;  // into inbox/
  // Uploads a file the gateway keeps (a spooled batch). The local link hard-links it into the
  // inbox when both are on one file system: a Stream-Big batch is not written a second time.
  virtual Status UploadFile(const std::string& name, const std::string& path);
  virtual Result<crypto::Bytes> ReadResult(const std::string& name) = 0;  // NotFound if absent
  // Why the server quarantined the batch NAME (its words, untrusted: a server can always withhold
  // a result; this only lets the gateway say so and go on); kNotFound if it did not.
  virtual Result<std::string> QuarantineReason(const std::string& batch_name) {
    return NotFound(batch_name);
  }
  virtual Result<std::unique_ptr<host::EnclaveTransport>> Relay() = 0;

  // A cluster (cluster_link.h) has many enclaves, one per worker, and no single one to attest at
  // start: the gateway then asks for the enclaves that registered (or restarted) since it last
  // looked, attests each against its policy and provisions the key, and says which it is done
  // with (provisioned or refused) so that they are not named again until they restart. These
  // three are called from the gateway's provisioning side, the other functions from its main
  // loop (and a message callback): a link must let the two sides run at the same time. On the
  // provisioning side, NewEnclaves and Attested come from one thread, RelayTo from up to
  // kParallelAttestations threads at once (each worker is attested on a thread of its own).
  virtual bool SingleEnclave() const { return true; }
  virtual Result<std::vector<std::string>> NewEnclaves() { return std::vector<std::string>{}; }
  virtual Result<std::unique_ptr<host::EnclaveTransport>> RelayTo(const std::string& enclave);
  virtual void Attested(const std::string& enclave) { (void)enclave; }
  // The largest sealed batch file the link carries; the gateway cuts batches below it.
  virtual size_t MaxBatchBytes() const { return wire::kMaxBatchBytes; }
};
std::unique_ptr<ServerLink> LocalLink(const std::string& server_dir);
// `relay_socket`: the relay's absolute path on the server. A call failing on the connection (kIo)
// drops it; the next call connects again (at most once every 2 s), so an sshd restart or a network
// outage holds batches in the spool only until the server is back.
Result<std::unique_ptr<ServerLink>> SftpLink(const sftp::Target& target,
                                             const std::string& relay_socket);

// Cluster mode: how often the gateway looks for new workers to attest, and the longest it waits
// before asking again a worker it could not reach.
inline constexpr std::chrono::milliseconds kWorkerScanInterval{500};
inline constexpr std::chrono::milliseconds kMaxWorkerRetry{60'000};
// How many workers are attested at once, each on a thread of its own: a worker that never answers
// holds up the others' attestation for one request's limit (10 s) per kParallelAttestations of
// them, not for 10 s each.
inline constexpr size_t kParallelAttestations = 8;

struct Options {
  std::string state_dir;
  std::string results_dir;
  std::string server_dir;            // local-directory link: its inbox, outbox and enclave.sock
  std::optional<sftp::Target> sftp;  // SFTP link instead (relay at server_dir/enclave.sock)
  std::string broker = "127.0.0.1:8883";
  mqtt::Tls tls;  // the broker's CA and the gateway's certificate (owner/broker/broker.h)
  std::string site = "demo";
  // How often the devices' retained statuses are asked for again (they reveal a lost tail).
  double status_interval_s = 10;
  size_t batch_beats = 1000;
  double batch_seconds = 10;
  // Spread the users' cut times over the interval: each stream is cut on its own grid of points
  // batch_seconds apart, the k-th stream's grid offset by the fractional part of k x the golden
  // ratio of an interval (well spread for any number of users), so that users who started
  // together are not all sealed, uploaded and analysed in the same tick, and late ticks do not
  // make their cuts drift together (the tail latency of many users; docs/evaluation.md). A batch
  // is cut at the first point of its stream's grid after its first beat: never older than
  // batch_seconds, its stream's first one shorter. Off: each batch batch_seconds after its first
  // beat.
  bool stagger_cuts = true;
  // A device's batch is not cut (by age or size, up to the wire's cap) while a gap in its message
  // sequence is younger than this: messages a broker restart or a reconnection reordered still
  // arrive in time to be analysed in order. Beats that arrive after their batch was sealed even
  // so are counted as lost (Stats::beats_too_late), not as repeats.
  double late_grace_s = 5;
  // A stream whose next result has not come for this long is checked for a quarantined batch
  // (then every quarantine_check_s / 3).
  double quarantine_check_s = 30;
  enclave::StreamConfig config;
  std::string root_ca;  // trust anchor for attestation
  attest::Policy policy;
  // Also keep the beats of every sealed batch in RESULTS/<user>.beats.csv (time_s,rr_ms; 0600):
  // the tachogram, spectrum and Poincare plot of `medstream report` need them. A crash between
  // sealing a batch and this append can leave that batch out (a record for reports, not the data
  // of record: that is in the spool and the enclave).
  bool record_beats = false;
  // The most beats the open batches of all users hold together (16 bytes each: 2 GiB). Reached
  // only while cuts fail (a full disk): a message that would pass it is dropped before its
  // device's sequence is tracked, so it counts as lost as a broker's drop does (lost_messages,
  // lost_beats, the windows over it marked) and in beats_dropped_backlog, instead of the gateway
  // growing until the kernel kills it with every open beat.
  size_t max_open_beats = size_t{128} << 20;
  // How the write-ahead logs are flushed (BeatLog::SyncFn); null: fdatasync. Tests inject failures.
  BeatLog::SyncFn sync_file = nullptr;
  // Monotonic time now: batch ages, status intervals, result latency. Default: steady_clock.
  std::function<std::chrono::steady_clock::time_point()> clock = nullptr;
  // Unix time now: times the beats of Bluetooth measurements, which come without (sensor.h).
  std::function<double()> wall_clock = [] {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
};

struct Stats {
  uint64_t messages = 0;
  uint64_t malformed = 0;
  uint64_t results_refused = 0;  // result files from the server that failed to open (each once)
  // Batches the server (or a worker) quarantined: their results skipped, said in the user's
  // .jsonl as {"seq":N,"quarantined":REASON}; their beats are not in beats_processed.
  uint64_t batches_quarantined = 0;
  // Results whose lines a results file lost to a torn append (found at start, read again), and
  // those of them no longer on the server (their lines in that file are lost; said).
  uint64_t results_torn = 0, results_torn_gone = 0;
  // Messages the write-ahead log could not take (a full disk): analysed unless the gateway
  // stops before their batch is cut, and then counted as lost at start.
  uint64_t wal_append_failed = 0;
  // Flushes of a write-ahead log that failed: its messages count as durable again only once its
  // batch is cut (a later flush may succeed without the pages the failed one dropped).
  uint64_t wal_sync_failed = 0;
  uint64_t beats_in = 0;
  uint64_t beats_recovered = 0;  // from the write-ahead log at start
  // Bytes of the write-ahead logs that could not be read at start (damage, beat_log.h): the
  // beats they held are lost; each damaged log is kept as it was beside it.
  uint64_t wal_bytes_damaged = 0;
  // STATE/devices found damaged at start (set aside; loss counting started again): 0 or 1.
  uint64_t devices_state_damaged = 0;
  // Batches sealed just before a crash and found damaged in the spool at start (their beats are
  // sealed again from the write-ahead log).
  uint64_t spool_batches_damaged = 0;
  uint64_t beats_stale = 0;  // delivered again after they were sealed: dropped
  // Beats that filled a gap (first arrivals, not repeats) after a later batch was sealed: they
  // cannot be analysed in order any more and count as lost (included in lost_beats).
  uint64_t beats_too_late = 0;
  // Beats of messages dropped because the open batches held Options::max_open_beats (cuts
  // failing): also counted as lost once the device's next message or status shows the gap.
  uint64_t beats_dropped_backlog = 0;
  uint64_t batches_sealed = 0;
  uint64_t batches_uploaded = 0;
  uint64_t results = 0;
  uint64_t beats_processed = 0;
  uint64_t windows = 0;
  uint64_t gaps_reported = 0;
  // Sent by the devices but never received (sequence.h); recovered: arrived late, after all.
  uint64_t lost_messages = 0, lost_beats = 0, recovered_beats = 0;
  // Without a sequence (v1, JSON without one, Bluetooth measurements): losses not countable.
  uint64_t old_format_messages = 0;
  uint64_t heart_rate_only = 0;  // Bluetooth measurements without RR intervals (no beats)
  // A cluster's workers: enclaves attested and provisioned, and refused by the policy.
  uint64_t workers_attested = 0, workers_refused = 0;
  // Workers registered now whose last attestation could not reach them (asked again later). A
  // worker whose registration expires is forgotten, so names that come and go do not pile up.
  uint64_t workers_unreachable = 0;
  std::vector<double> latency_s;  // first beat of a batch received -> its result read
};

// Where the gateway's messages come from. The broker (MqttSource: a persistent session on
// medstream/SITE/+/rr and /status) unless Start is given another, e.g. a test's in-memory feed.
class MessageSource {
 public:
  using Handler = std::function<void(const mqtt::Message&)>;
  virtual ~MessageSource() = default;
  // Starts delivering to `handler` (from any thread, one message at a time); the handler is in
  // place when this returns. A message is acknowledged to its sender only after the handler
  // returned (the write-ahead log relies on it).
  virtual Status Start(Handler handler) = 0;
  // Has the devices' retained statuses delivered again through the handler.
  virtual Status AskStatuses() = 0;
};
// The broker in options.broker, with options.tls, for options.site.
std::unique_ptr<MessageSource> MqttSource(const Options& options);

// Messages handed over by the caller (tests, `medstream bench --cluster`), synchronously on the
// caller's thread as the broker's thread would; there are no retained statuses to ask for.
class FeedSource : public MessageSource {
 public:
  Status Start(Handler handler) override {
    handler_ = std::move(handler);
    return {};
  }
  Status AskStatuses() override { return {}; }
  void Send(const std::string& topic, std::vector<uint8_t> payload) {
    handler_({topic, std::move(payload), false});
  }

 private:
  Handler handler_;
};

// Thread-safety: messages arrive on the source's thread while one thread drives Tick, CutAll and
// the rest; both take the gateway's lock. In cluster mode a third thread of the gateway's own
// attests and provisions workers, outside that lock. stats(), MetricsText(), outstanding() and
// claims() may be called from any thread.
class Gateway {
 public:
  // Attests the enclave (cluster mode: starts attesting the workers, on their own thread),
  // provisions the key, recovers STATE, then starts `source` (the broker by default): messages
  // arriving after this returns are merged into open batches.
  // `link`: how the server is reached; null: options.sftp or the local options.server_dir.
  static Result<std::unique_ptr<Gateway>> Start(const Options& options,
                                                std::unique_ptr<MessageSource> source = nullptr,
                                                std::unique_ptr<ServerLink> link = nullptr);
  ~Gateway();

  // One step of the main loop: cut batches that are old enough, upload the spool, read results.
  // A batch that comes due while results are being read is cut before the next stream's results
  // (reading and writing out a large result takes a tenth of a second or more).
  Status Tick();
  // Cuts every open batch now (end of a run): the one due first first, each uploaded as soon as it
  // is sealed, the results that came back read between the cuts.
  Status CutAll();
  // Ends a run: CutAll, then Tick until every result is back or `grace` has passed on the
  // injected clock (a tick every 50 ms). Whatever is left waits for the next start with the same
  // state folder and is not lost: what the report counts says how much and why.
  struct FinishReport {
    Status cut;                  // CutAll's failure (ok when every open batch was sealed)
    Status tick;                 // the last failure among the waiting ticks (ok when none failed)
    size_t batches_waiting = 0;  // sealed batches whose results were not read (outstanding())
    size_t batches_unsent = 0;   // of those, still in the spool: the server never had them
    // Beats no sealed batch holds (they came after the cut, or it failed): in the write-ahead
    // log, and the users they belong to.
    uint64_t beats_open = 0;
    size_t users_open = 0;
  };
  FinishReport Finish(std::chrono::steady_clock::duration grace);
  // Asks the broker for the devices' retained statuses now (Tick does every status_interval_s);
  // they arrive through the message handler. Not under the gateway's lock.
  void AskStatuses();
  Stats stats() const;
  // The counters in the Prometheus text format (/metrics): messages, beats, batches, results,
  // windows, malformed and stale input, lost messages and beats detected, the write-ahead log's
  // size, and the beat-to-result latency histogram. Thread-safe.
  std::string MetricsText() const;
  // Batches sealed but whose results have not been read yet.
  size_t outstanding() const;
  // What the enclave attested (cluster mode: the last worker attested). Thread-safe.
  attest::Claims claims() const {
    std::lock_guard lock(mu_);
    return claims_;
  }

 private:
  explicit Gateway(Options o) : options_(std::move(o)) {}
  struct Stream {
    std::string user;
    wire::StreamId id{};
    OpenBatch batch;
    std::optional<BeatLog> log;
    // The log may not hold every message (an append failed: a full disk; or a flush failed, whose
    // pages the kernel may have dropped): until the next cut puts every message in a durable
    // batch, STATE/devices does not move past what the log held before, so a crash or a power
    // loss meanwhile counts those messages as lost instead of hiding them.
    bool log_incomplete = false;
    uint64_t next_seq = 1;
    uint64_t next_result = 1;
    // The newest result the user's .jsonl and each job's .csv hold (result_files.h), and the
    // newest one a file lost to a torn append and reads again.
    uint64_t jsonl_last = 0;
    std::map<hrv::JobKind, uint64_t> csv_last;
    uint64_t reread_until = 0;
    uint64_t refused_result = 0;  // the result last refused (said once)
    std::chrono::steady_clock::time_point quarantine_check_at{};  // 0: set at the first look
    uint64_t stale_messages = 0;  // messages dropped whole as repeats (warned at 1, 1001, ...)
    std::unique_ptr<client::StreamSealer> sealer;
    std::map<uint64_t, std::chrono::steady_clock::time_point> in_flight;
    // When the newest gap in this device's message sequence opened (late_grace_s holds cuts).
    std::optional<std::chrono::steady_clock::time_point> gap_opened;
    // Where this stream's grid of cut times lies within an interval (Options::stagger_cuts).
    std::chrono::steady_clock::duration phase{};
  };
  // When `s`'s open batch is due to be cut (Options::stagger_cuts).
  std::chrono::steady_clock::time_point DueAt(const Stream& s) const;
  // Whether `s`'s batch waits for the messages of a young gap (Options::late_grace_s).
  bool Holding(Stream& s, std::chrono::steady_clock::time_point now);
  Status LoadOrCreateKeys();
  Status AttestAndProvision();
  Status AttestAndProvision(host::EnclaveTransport& relay);
  // A cluster's new workers: attested and provisioned, or refused (said once each); one that
  // cannot be reached is asked again after a delay that doubles (1 s to kMaxWorkerRetry). At most
  // kParallelAttestations a scan, at once, in the order they came due (a new worker when it was
  // first seen), so that a scan lasts at most one request's limit.
  void ProvisionWorkers();
  // What attesting worker `name` came to (`s`): counted and said, and when it is to be asked again.
  void Provisioned(const std::string& name, const Status& s);
  // Cluster mode: ProvisionWorkers every kWorkerScanInterval on a thread of its own, never under
  // mu_ nor inside Tick. Attesting a worker is a few requests over NATS, each allowed seconds:
  // under the lock, as it was, one worker slow to answer (or a host that registers workers that
  // never answer) held up the sensors' messages and every user's cuts and results.
  void ProvisionLoop();
  Status Recover();
  // Adds beats to the open batch; returns how many were new.
  size_t Merge(Stream& s, std::span<const hrv::Beat> beats);
  void OnMessage(const mqtt::Message& m);
  Result<Stream*> StreamFor(const std::string& user);
  // Where `s`'s result files stand (result_files.h): sets next_result, jsonl_last and csv_last.
  void SettleResults(Stream& s);
  Status Cut(Stream& s);
  // Cuts `streams`' batches in the order they came due (the earliest first), uploading each as
  // soon as it is sealed, so that the server analyses one while the next is sealed and no due
  // batch waits behind younger ones; `read_between`: reads the results back between the cuts.
  Status CutInOrder(std::vector<Stream*> streams, bool read_between);
  // Cuts the batches old enough at `now` (CutInOrder).
  Status CutDue(std::chrono::steady_clock::time_point now);
  Status UploadSpool();
  // Reads every stream's results that are back; `cut_due`: cuts a batch that comes due meanwhile
  // before the next stream's results.
  Status ReadEveryResult(bool cut_due);
  void RecordBeats(const Stream& s, std::span<const hrv::Beat> beats);
  Status ReadResults(Stream& s);
  // Whether the server quarantined `s`'s next result's batch (asked only once that result is
  // quarantine_check_s late): if so, says so in the user's .jsonl and moves past it.
  Result<bool> SkipIfQuarantined(Stream& s);
  Status SaveSequences();
  void OnStatusMessage(const std::string& user, const mqtt::Message& m);
  void Say(const std::string& user, const Observation& o, const char* what);
  // "gateway: LINE" on stderr, unless a line of `kind` was said in the last 10 s (repeats_): for
  // failures that repeat at the rate of messages or ticks. Thread-safe.
  void SayRepeated(std::string_view kind, std::string_view line);
  void CountLoss();

  Options options_;
  KeyStore keys_;
  std::chrono::steady_clock::time_point last_sync_, last_status_ask_;
  size_t open_beats_ = 0;       // in every stream's open batch (Options::max_open_beats)
  size_t max_batch_beats_ = 0;  // below the link's batch cap, with room for one more message
  SequenceTracker devices_;
  // What STATE/devices says: each device only as far as its messages are durable, in a synced
  // write-ahead log or a sealed batch. Saving devices_ itself recorded messages whose log records
  // a power loss could still take (up to a second of every user's, at any user's cut); on restart
  // they were neither replayed nor counted as a gap: lost without a word. A device observed since
  // the last sync is in devices_unsynced_ and is brought up to date here once the logs are
  // synced, or at its own cut.
  SequenceTracker durable_devices_;
  std::set<std::string> devices_unsynced_;
  bool devices_dirty_ = false;
  uint64_t loss_lines_ = 0;  // warnings said about gaps (bounded)
  attest::Claims claims_;    // under mu_ (the provisioning thread writes it)
  mutable std::mutex mu_;
  std::map<std::string, Stream> streams_;
  Stats stats_;
  // Lines that can repeat at the rate of messages or ticks (a full disk fails every cut and every
  // flush): one of a kind each 10 s, with the count held back.
  LogLimiter repeats_{std::chrono::seconds(10)};
  std::unique_ptr<MessageSource> source_;
  std::unique_ptr<ServerLink> link_;
  // The provisioning thread (cluster mode) and what only it touches: the workers registered and
  // not attested yet, and when each is due (first seen, or asked again after a failure). It calls
  // link_'s NewEnclaves, RelayTo and Attested; the rest of the gateway calls the link's other
  // functions (cluster_link.h: the two sets share only the thread-safe connection).
  struct WorkerRetry {
    std::chrono::steady_clock::time_point next;
    std::chrono::milliseconds delay{0};
  };
  std::map<std::string, WorkerRetry> worker_retry_;
  std::mutex provision_mu_;
  std::condition_variable provision_cv_;
  bool provision_stop_ = false;
  std::thread provisioner_;
};

}  // namespace medstream::gateway

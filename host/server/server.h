// The untrusted server: an inbox of encrypted micro-batches in, an outbox of encrypted results out.
//
//   DIR/inbox/        *.batch files, written by gateways (temp name, then rename)
//   DIR/outbox/       <stream>-<seq>.result, written atomically (temp file, fsync, rename)
//   DIR/done/         inputs whose results are in the outbox
//   DIR/quarantine/   refused inputs, each with NAME.reason saying why
//   DIR/state/        the enclave's sealed checkpoint and the journal of inputs since
//   DIR/enclave.sock  relay for gateways: attestation and key provisioning reach the enclave here
//
// Exactly once, whatever is killed when: a batch's result is written before its input leaves the
// inbox and before it is journalled; results are deterministic and named by stream and sequence,
// so writing one again writes the same bytes. After a crash the enclave restores the last sealed
// checkpoint and is fed the journalled inputs again (those the checkpoint already covers are
// refused as replays and skipped), which rebuilds its state exactly; then the inbox continues.
// If the enclave process dies, the server restarts it the same way and retries the batch.
//
// Hostile input never stops the service: a batch over the edge cap, a name that is not a regular
// file (FIFO, directory), or one the enclave refuses is quarantined with its reason; a batch on
// which the enclave dies or runs past its time budget (the watchdog kills it) is retried on a
// fresh enclave at most kMaxBatchAttempts times in all, each try journalled ("?NAME") before it
// starts, so a batch that kills the server itself, or was being tried when the server was killed,
// is quarantined after a restart instead of being tried forever (counted since the last
// checkpoint, which only follows successes).
//
// Thread-safety: ProcessInbox/Run and the relay thread share the enclave under one mutex; call
// ProcessInbox, Run and Checkpoint from one thread.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/abi/edge.h"
#include "common/metrics/metrics.h"
#include "host/server/claim.h"
#include "host/server/env.h"
#include "host/server/transport.h"
#include "host/server/vanilla.h"

namespace medstream::host {

struct ServerOptions {
  std::string dir;
  std::string mode = "process";  // vanilla, inproc or process
  std::string platform_dir;
  std::string enclave_path;              // process mode; default beside the executable
  int checkpoint_every = 50;             // batches between checkpoints
  enclave::StreamConfig vanilla_config;  // vanilla mode has no attested provisioning
  bool relay = true;                     // serve DIR/enclave.sock
  double call_budget_s = 0;              // process mode: per-call watchdog (0 = edge.h budgets)
  // Claim the platform's rollback counter for this directory (host/server/claim.h). Off only for
  // harnesses that run throw-away servers one after another on one platform and never restart
  // an earlier one (medstream bench).
  bool claim_counter = true;
  // The inproc backend (host/inproc: LaunchInproc), for mode "inproc".
  InprocFactory inproc = nullptr;
  // Files, the inbox watch and the clock; null: PosixServerEnv(). Must outlive the server.
  ServerEnv* env = nullptr;
};

struct ServerCounters {
  uint64_t processed = 0;
  uint64_t quarantined = 0;
  uint64_t replayed_on_recovery = 0;
  // Journalled batches (processed after the last checkpoint) that were gone when the journal was
  // replayed at start: their results stand, their streams' state was rebuilt without their beats.
  uint64_t replay_missing = 0;
  uint64_t checkpoints = 0;
  uint64_t enclave_restarts = 0;
  uint64_t bytes_in = 0;        // batch bytes processed
  std::vector<double> batch_s;  // per processed batch: read, enclave, result written, checkpoint
  // Inputs quarantined, by why: "name" (characters outside the safe set), "unreadable" (too big,
  // not a regular file), "refused" (the enclave refused the input: damaged, forged, replayed),
  // "failed" (the enclave failed on it every try), "tries" (tried too often across restarts),
  // "damaged" (processed before a crash, it no longer opens when the journal is replayed; one
  // unreadable then, too large or not a regular file, counts as "unreadable").
  std::map<std::string, uint64_t> quarantined_by_reason;
  // The enclave's process_batch call, per batch.
  metrics::Histogram enclave_call_s{metrics::LatencyBuckets()};
};

inline constexpr int kMaxBatchAttempts = 3;

class Server {
 public:
  static Result<std::unique_ptr<Server>> Start(const ServerOptions& options);
  ~Server();

  // Processes every batch now in the inbox, oldest name first.
  Result<size_t> ProcessInbox();
  // Watches the inbox until `stop` is set, processing batches as they arrive.
  Status Run(const std::atomic<bool>& stop);
  // Seals the enclave state (or saves vanilla state), then clears the journal.
  Status Checkpoint();

  // Not synchronised: for the thread that runs the server (tests, the end of a run).
  const ServerCounters& counters() const { return counters_; }
  // The counters in the Prometheus text format (/metrics). Thread-safe.
  std::string MetricsText() const;
  std::string Describe() const;
  int enclave_pid() const;

 private:
  explicit Server(ServerOptions options)
      : options_(std::move(options)), env_(options_.env ? *options_.env : PosixServerEnv()) {}
  Status LaunchAndRecover();
  // The enclave's checkpoint in parts (edge.h, CheckpointPart), written to the checkpoint file as
  // they come; its version, to commit once the journal is cleared.
  Result<uint64_t> WriteEnclaveCheckpoint();
  // The checkpoint file's parts handed back to a fresh enclave in order (nothing to do if none).
  Status RestoreEnclave();
  Result<crypto::Bytes> CallEnclave(enclave::Call call, crypto::ByteView request);
  // A batch read where the enclave takes it from: the transport's request buffer when it has one
  // the file fits (the process backend's shared region: no copy on the host), else read_buffer_
  // (kept from batch to batch).
  // Valid until the next enclave call.
  Result<crypto::ByteView> ReadBatch(const std::string& path);
  // The batch's sealed result, valid until the next enclave call (a view of the shared region).
  Result<crypto::ByteView> ProcessBatchFile(crypto::ByteView file);
  // A batch read into the shared region while the enclave already works on it (CallFilled): the
  // result, or the error of reading the file (*unreadable set) or of the call. *size: the file's.
  Result<crypto::ByteView> ProcessBatchReading(const std::string& path, bool* unreadable,
                                               size_t* size);
  Status HandleInput(const std::string& name);
  // `kind`: the reason's class (ServerCounters::quarantined_by_reason); `from`: the folder the
  // input is in ("inbox", or "done" for one that was processed).
  Status Quarantine(const std::string& name, const std::string& reason, const char* kind,
                    const char* from = "inbox");
  // Quarantine, and if even that fails, log and skip the input (the server goes on).
  Status QuarantineOrSkip(const std::string& name, const std::string& reason, const char* kind);
  // Appends a line to state/journal (fsync'd when `sync`).
  Status AppendJournal(const std::string& line, bool sync = true);
  void RelayLoop();
  std::string Path(const char* sub) const { return options_.dir + "/" + sub; }

  ServerOptions options_;
  ServerEnv& env_;
  std::recursive_mutex mu_;  // one enclave call sequence at a time (inbox loop and relay)
  std::unique_ptr<EnclaveTransport> enclave_;
  std::optional<CounterClaim> claim_;
  std::unique_ptr<VanillaProcessor> vanilla_;
  crypto::Bytes read_buffer_;       // ReadBatch's when the transport has no buffer that fits
  crypto::Bytes vanilla_result_;    // ProcessBatchFile's in vanilla mode
  mutable std::mutex counters_mu_;  // counters_ against MetricsText's thread (writes are ours)
  ServerCounters counters_;
  int since_checkpoint_ = 0;
  // Tries of inputs not yet done, from the journal's "?NAME" lines (rebuilt at each recovery).
  std::map<std::string, int> attempts_;
  // Inputs that could not even be quarantined (logged once): skipped until a restart.
  std::set<std::string> stuck_;
  int relay_fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::thread relay_thread_;  // ServeListener's: joins and closes every client's before it ends
};

// A gateway's connection to a server's relay socket: the edge calls a client may make
// (info, handshake, channel, stats), framed exactly as for the process backend.
Result<std::unique_ptr<EnclaveTransport>> ConnectRelay(const std::string& socket_path);

}  // namespace medstream::host

// pipeline: the whole system on one machine, for real, run for a while and measured. Eclipse
// Mosquitto on a free loopback port, `medstream server` (with its enclave) as its own process,
// OpenSSH's sshd with `sftp`, a gateway in this process, and `medstream sensor` simulating users.
// `medstream demo` shows it; `medstream bench --e2e` measures Stream-Small and Stream-Big with it.
// Every process it starts is stopped before Run returns.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "algo/hrv/jobs.h"
#include "common/base/result.h"
#include "common/base/stats.h"
#include "owner/results/results.h"

namespace medstream::pipeline {

struct Options {
  std::string self;        // the medstream executable (run as server and sensor)
  std::string work;        // working directory, created; broker/, gateway/, results/, sensors/
  std::string server_dir;  // default WORK/server (SFTP's chroot must be root-owned: see demo)
  int users = 20;
  double duration_s = 60;  // wall seconds the sensors publish
  double speed = 30;       // heart seconds per wall second ...
  double rate = 0;         // ... or total beats per second across users (overrides speed)
  int beats_per_message = 4;
  double batch_seconds = 10;
  size_t batch_beats = 1000;  // also cut a user's batch at this many beats
  uint64_t seed = 1;
  // The time domain (HR, SDNN, RMSSD, pNN50), the bands (LF, HF, LF/HF) and the nonlinear metrics.
  std::vector<hrv::JobKind> jobs = {hrv::JobKind::kHrvFull};
  std::string mode = "process";
  bool sftp = false;
  // Scale-out instead of one server (docs/scale-out.md): a 3-node NATS JetStream cluster on
  // loopback ports and `workers` workers (`medstream worker`, each with its enclave).
  bool cluster = false;
  int workers = 2;
  bool record = true;                      // sensors keep what they sent in WORK/sensors/<user>.csv
  uint64_t max_queued_messages = 1000000;  // the broker's per-client queue (0: no limit)
  std::string http_listen;  // the dashboard's HOST:PORT ("": none); loopback (owner/dashboard)
  // Called about every 5 s while the sensors publish, and once after the drain.
  std::function<void(const std::string& line)> progress;
};

struct Summary {
  int users = 0;
  std::string mode;
  double wall_s = 0;  // sensors' publishing time
  uint64_t beats_published = 0, beats_received = 0, beats_processed = 0;
  uint64_t batches = 0, results = 0, windows = 0, malformed = 0;
  uint64_t lost_beats = 0, lost_batches = 0, duplicates = 0;
  // What the gateway itself found missing from the devices' message sequences (sequence.h).
  uint64_t lost_beats_detected = 0, lost_messages_detected = 0;
  Spread latency_s;        // per batch: its oldest beat received by the gateway -> its result read
  Spread server_batch_ms;  // the server's time per batch: read, enclave, result written
  uint64_t server_bytes_in = 0;
  double batch_interval_s = 0;
  std::string server_dir, results_dir;
  struct UserLatest {
    std::string user;
    size_t windows = 0;      // windows of every job in RESULTS/<user>.jsonl
    results::Latest latest;  // the latest window, every job's metrics merged
  };
  std::vector<UserLatest> users_latest;  // by user name
  // Cluster runs: what each worker did (its --stats-json), and the cluster's nodes.
  struct WorkerSummary {
    std::string name;
    uint64_t batches = 0, beats = 0, replays = 0, quarantined = 0, takeovers = 0, checkpoints = 0;
  };
  std::vector<WorkerSummary> workers;
  int cluster_nodes = 0;
  // Beats per second published.
  double rate() const { return wall_s > 0 ? static_cast<double>(beats_published) / wall_s : 0; }
};

Result<Summary> Run(const Options& options);

}  // namespace medstream::pipeline

// evaluation: the research evaluation of the original work (SGX-Spark), reproduced on medstream.
//
// A grid of points (mode x job x workload x load). Every point starts a real server (host::Server
// on a fresh directory, with a process or inproc enclave attested and provisioned through its relay
// socket, exactly as a gateway does) and feeds it sealed batches through the gateway's own upload
// path; results come back through the outbox and are opened and checked. Nothing is shortcut: file
// writes, the enclave boundary, encryption and decryption are all in the measured path.
//
//   batch-*   one batch of `load` bytes per repetition; elapsed = seal + upload + server + open
//             (the modes of one load take their repetitions in turn, so that a drift of the
//             machine falls on each alike)
//   stream-*  one batch of `load` bytes per interval (1 s), for a fixed duration; per-batch time is
//             batch present in the inbox -> its result present in the outbox
//
// Loads are in the original's text encoding (~23 bytes a sample, "<epoch>,<rr>"): a load of L
// bytes carries L/23 samples. Our binary batches are smaller (16 bytes a sample + tags); both are
// reported. A baseline of the kind a data scientist would write (pandas/numpy/scipy, run by
// /usr/bin/python3 on the same samples as a CSV file) can be run beside the batch points.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "common/base/result.h"

namespace medstream::evaluation {

// "<epoch>,<rr>\n": the original workloads' bytes a sample, in which loads and MB/s are stated.
inline constexpr double kTextBytesPerSample = 23;

// The largest load a point takes: 64 MiB of text is about 2.9 M samples, whose binary batch
// (16 bytes a sample + tags) still fits in one batch file (wire::kMaxBatchBytes) with room to
// spare.
inline constexpr uint64_t kMaxLoadBytes = uint64_t{64} << 20;

struct Point {
  std::string mode;      // vanilla, inproc, process, or pandas (the baseline)
  std::string job;       // identity, sdnn, hrv-bands, hrv-full
  std::string workload;  // batch-small, stream-small, batch-big, stream-big
  uint64_t load_bytes = 0;
  bool stream() const { return workload.starts_with("stream"); }
};

struct Measurement {
  Point point;
  uint64_t samples = 0;            // per batch
  uint64_t bytes_in = 0;           // our batch file size (per batch)
  std::vector<double> elapsed;     // seconds, one per repetition (stream: one per run)
  double avg_batch_ms = 0;         // server-side time per batch (median over repetitions)
  double peak_rss_mb = 0;          // bench process (gateway and host) + enclave process
  double host_peak_rss_mb = 0;     // the bench process alone (gateway and host; pandas: python)
  double enclave_peak_rss_mb = 0;  // the enclave process alone (process mode; else 0)
  uint64_t batches = 0;            // stream: batches fed; batch: repetitions
  bool real_time = true;           // stream: every batch done within its interval, no backlog
  double slowdown = 0;             // median elapsed / vanilla's at the same (job, workload, load)
  // Every sample processed at this point (a stream: per batch x batches), as both the table and
  // the CSV show it.
  uint64_t TotalSamples() const { return samples * (point.stream() ? batches : 1); }
  double Median() const;
  double Min() const;
  double Max() const;
  // Samples per second of elapsed time, and the load in MB/s (text encoding, as the original).
  double ThroughputMbS() const;
};

struct Options {
  std::vector<std::string> modes = {"vanilla", "inproc", "process"};
  std::vector<std::string> jobs = {"identity", "sdnn", "hrv-bands", "hrv-full"};
  std::vector<std::string> workloads = {"batch-small", "stream-small", "batch-big", "stream-big"};
  std::vector<uint64_t> small_loads;  // bytes; empty: 1, 2, 4, 8, 16, 32 kB
  std::vector<uint64_t> big_loads;    // empty: 1 ... 32 MB
  int reps = 3;
  // Batch points: more repetitions until each mode's add up to about this many seconds (judged by
  // the warm-up), at most kMaxReps. A 1 MB batch takes ~2 ms, mostly two fsyncs whose time varies
  // by tenths of a millisecond: 3 repetitions of it say little, 100 give a steady median.
  double min_time_s = 0.25;
  double duration_s = 60;  // stream workloads
  double interval_s = 1;   // stream workloads: one batch per interval
  bool baseline = true;    // pandas rows beside batch points of sdnn and hrv-bands
  std::string work_dir;    // empty: a temporary directory, removed afterwards
  bool keep = false;
  std::string platform_dir;  // empty: a fresh simulated platform under the work directory
  std::string enclave_path;  // process mode: default beside the running executable
  std::string python = "/usr/bin/python3";
  std::string baseline_script;  // tools/bench_baseline.py
  // Called before and after every point (done = points finished, of total).
  std::function<void(const Point&, size_t done, size_t total, const Measurement*)> progress;
};

inline constexpr int kMaxReps = 1000;
// The repetitions of a batch point whose modes' warm-ups took `warmup_s` seconds: o.reps, or more
// until the slowest mode's add up to o.min_time_s, at most kMaxReps (never fewer than o.reps). The
// warm-up overstates a repetition a little (first-touch page faults), so this errs on fewer.
int RepsFor(const Options& o, std::span<const double> warmup_s);

// The quick grid: every mode, identity and sdnn, two loads per workload, 2 s streams, 2 reps.
Options QuickOptions();
std::vector<Point> Plan(const Options& options);
Result<std::vector<Measurement>> Run(const Options& options);

// The CSV of the issue (one row per point):
//   mode,job,workload,load_bytes,samples,elapsed_s,avg_batch_ms,throughput_mb_s,
//   slowdown_vs_vanilla,peak_rss_mb, then elapsed_min_s,elapsed_max_s,reps,bytes_in,real_time
std::string ToCsv(const std::vector<Measurement>& rows);
std::string ToTable(const std::vector<Measurement>& rows);
// gnuplot, one figure per workload (WORKLOAD.png and .svg) with a row of panels per job: elapsed
// time (streams: average batch time) in ms against load on log-log axes, a line per mode with
// min-max bars over the `reps` repetitions, and the slowdown against vanilla beside it; the
// machine and the repetitions in the title. The data of each panel: WORKLOAD-JOB.dat.
Status Plot(const std::vector<Measurement>& rows, const std::string& dir);

std::string LoadLabel(uint64_t bytes);  // "1 kB", "32 MB"

}  // namespace medstream::evaluation

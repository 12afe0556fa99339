// cluster_bench: `medstream bench --cluster`, the scale-out's throughput on this machine
// (docs/scale-out.md). For each worker count: a fresh 3-node NATS cluster on loopback, a backlog
// of sealed batches published by the gateway (generated users, no broker), then that many
// `medstream worker` processes started and timed from the moment all are attested until every
// result is back at the gateway. Beats per second = the backlog's beats / that time: what the
// workers and the cluster sustain, without the sensors' pace. Not thread-safe; starts and stops
// every process it needs.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "algo/hrv/jobs.h"
#include "common/base/result.h"

namespace medstream::pipeline {

struct ClusterBenchOptions {
  std::string self;  // the medstream executable (run as worker)
  std::string work;  // working directory (created, removed after unless keep)
  bool keep = false;
  std::vector<int> workers = {1, 2};
  int users = 64;
  size_t beats_per_user = 50000;
  size_t batch_beats = 5000;
  std::vector<hrv::JobKind> jobs = {hrv::JobKind::kHrvBands};
  std::string mode = "process";
  int repetitions = 1;
  std::function<void(const std::string& line)> progress;
};

struct ClusterBenchRow {
  int workers = 0, repetition = 0;
  uint64_t beats = 0, batches = 0;
  double seconds = 0;  // all workers attested -> the last result read
  double beats_per_s = 0;
  double mb_s = 0;  // sealed batch bytes per second
  uint64_t lost_batches = 0;
};

Result<std::vector<ClusterBenchRow>> RunClusterBench(const ClusterBenchOptions& options);

}  // namespace medstream::pipeline

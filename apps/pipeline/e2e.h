// e2e: `medstream bench --e2e`, the research's streaming workloads through the whole system
// (pipeline.h): Stream-Small (1424 beats/s, 20 users) and Stream-Big (x1024, 16 users), each in
// the enclave modes asked for. The plan, the runs and the real-time verdict live here; the CLI
// only prints the rows. Not thread-safe (it runs processes one point after another).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "apps/pipeline/pipeline.h"
#include "common/base/result.h"

namespace medstream::pipeline {

// Workloads: "stream-small" (1424 beats/s, 20 users), "stream-big" (x1024, 16 users), "xN"
// (Stream-Big's shape at N times Stream-Small's rate) and "stream-max" (x1024, x1536, ... until a
// point is not real time: the end-to-end ceiling).
inline constexpr double kMaxScale = 16384;

struct EndToEndOptions {
  std::string self;                    // the medstream executable
  std::vector<std::string> workloads;  // "stream-small", "stream-big"
  std::vector<std::string> modes;      // "inproc", "process"
  std::vector<hrv::JobKind> jobs = {hrv::JobKind::kSdnn};
  double duration_s = 60;
  double interval_s = 10;
  // Scale-out instead of one server: each point on a 3-node NATS cluster with this many workers
  // (docs/scale-out.md), one row per count; empty: one server per mode.
  std::vector<int> cluster_workers;
  std::string work_dir;  // "": a temporary one
  bool keep = false;     // keep every point's directories
  std::function<void(const std::string& workload, const std::string& mode, const std::string& line)>
      progress;
};

struct EndToEndRow {
  std::string workload, mode;
  int workers = 0;  // cluster points: the workers (mode is theirs); 0: one server
  int users = 0;
  double target_rate = 0;  // beats/s across users
  Summary summary;
  double text_mb_s = 0;    // beats in the original's text encoding (23 bytes a sample)
  double server_mb_s = 0;  // sealed batches into the server
  // The sensors kept the rate, the server kept up with the interval, every batch came back,
  // nothing lost or doubled.
  bool real_time = false;
  std::string error;  // the point failed (the others still ran)
};

// kInvalidArgument for an unknown workload or a mode without an enclave (vanilla).
Status CheckEndToEnd(const EndToEndOptions& options);
// Every point; a point that fails carries its error and the rest still run.
std::vector<EndToEndRow> RunEndToEnd(const EndToEndOptions& options);

}  // namespace medstream::pipeline

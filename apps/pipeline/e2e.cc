#include "apps/pipeline/e2e.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <limits>

#include "apps/evaluation/evaluation.h"

namespace medstream::pipeline {

namespace {

struct Point {
  std::string workload;
  double rate = 0;  // beats/s across users
  int users = 0;
  int beats_per_message = 0;
  bool record = true;
};

std::vector<Point> Plan(const std::vector<std::string>& workloads) {
  std::vector<Point> plan;
  for (const std::string& w : workloads) {
    if (w == "stream-small") plan.push_back({w, 1424, 20, 4, true});
    // x1024; a thousand beats a message, as a phone relaying a strap would batch them.
    if (w == "stream-big") plan.push_back({w, 1424.0 * 1024, 16, 1024, false});
  }
  return plan;
}

}  // namespace

Status CheckEndToEnd(const EndToEndOptions& o) {
  for (const auto& w : o.workloads) {
    if (w != "stream-small" && w != "stream-big")
      return InvalidArgument("--e2e runs stream-small and stream-big, not '" + w + "'");
  }
  for (const auto& m : o.modes) {
    if (m != "inproc" && m != "process")
      return InvalidArgument("--e2e needs an enclave to attest: inproc or process, not '" + m +
                             "'");
  }
  return {};
}

std::vector<EndToEndRow> RunEndToEnd(const EndToEndOptions& eo) {
  namespace fs = std::filesystem;
  const std::string root =
      eo.work_dir.empty()
          ? (fs::temp_directory_path() / ("medstream-e2e-" + std::to_string(getpid()))).string()
          : eo.work_dir;
  std::vector<EndToEndRow> rows;
  for (const Point& e : Plan(eo.workloads)) {
    // One server per mode, or per mode and worker count on a cluster.
    std::vector<std::pair<std::string, int>> setups;
    for (const std::string& mode : eo.modes) {
      if (eo.cluster_workers.empty()) setups.emplace_back(mode, 0);
      for (int n : eo.cluster_workers) setups.emplace_back(mode, n);
    }
    for (const auto& [mode, workers] : setups) {
      Options o;
      o.self = eo.self;
      o.work = root + "/" + e.workload + "-" + mode +
               (workers > 0 ? "-" + std::to_string(workers) + "w" : "");
      o.cluster = workers > 0;
      o.workers = std::max(workers, 1);
      o.users = e.users;
      o.duration_s = eo.duration_s;
      o.rate = e.rate;
      o.beats_per_message = e.beats_per_message;
      o.batch_seconds = eo.interval_s;
      o.batch_beats = std::numeric_limits<size_t>::max();  // by time, as the original
      o.jobs = eo.jobs;
      o.mode = mode;
      o.record = e.record;
      if (eo.progress) {
        const std::string label =
            workers > 0 ? mode + " " + std::to_string(workers) + " worker(s)" : mode;
        o.progress = [&eo, &e, label](const std::string& line) {
          eo.progress(e.workload, label, line);
        };
      }
      EndToEndRow row;
      row.workload = e.workload;
      row.mode = mode;
      row.workers = workers;
      row.users = e.users;
      row.target_rate = e.rate;
      auto r = Run(o);
      if (!eo.keep) fs::remove_all(o.work);
      if (!r) {
        row.error = r.error().message();
        rows.push_back(std::move(row));
        continue;
      }
      row.summary = *r;
      row.text_mb_s = r->rate() * evaluation::kTextBytesPerSample / 1e6;
      row.server_mb_s = static_cast<double>(r->server_bytes_in) / r->wall_s / 1e6;
      row.real_time = r->rate() >= 0.95 * e.rate && r->server_batch_ms.p99 < eo.interval_s * 1000 &&
                      r->results == r->batches && r->lost_beats == 0 && r->duplicates == 0;
      rows.push_back(std::move(row));
    }
  }
  if (!eo.keep && eo.work_dir.empty()) fs::remove_all(root);
  return rows;
}

}  // namespace medstream::pipeline

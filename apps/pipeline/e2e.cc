#include "apps/pipeline/e2e.h"

#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
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

constexpr double kSmallRate = 1424;  // beats/s of Stream-Small; Stream-Big is x1024

// Stream-Big's shape (16 users, a thousand beats a message, as a phone relaying a strap would
// batch them) at `scale` times Stream-Small's rate.
Point Scaled(const std::string& name, double scale) {
  return {name, kSmallRate * scale, 16, 1024, false};
}

// "x<N>" with 1 <= N <= kMaxScale; 0 otherwise.
double ParseScale(const std::string& w) {
  if (w.size() < 2 || w[0] != 'x') return 0;
  char* end = nullptr;
  const double v = std::strtod(w.c_str() + 1, &end);
  return (end && *end == '\0' && v >= 1 && v <= kMaxScale) ? v : 0;
}

std::vector<Point> Plan(const std::vector<std::string>& workloads) {
  std::vector<Point> plan;
  for (const std::string& w : workloads) {
    if (w == "stream-small") plan.push_back({w, kSmallRate, 20, 4, true});
    if (w == "stream-big") plan.push_back(Scaled(w, 1024));
    if (const double scale = ParseScale(w); scale > 0) plan.push_back(Scaled(w, scale));
  }
  return plan;
}

}  // namespace

Status CheckEndToEnd(const EndToEndOptions& o) {
  for (const auto& w : o.workloads) {
    if (w != "stream-small" && w != "stream-big" && w != "stream-max" && ParseScale(w) == 0)
      return InvalidArgument(
          "--e2e runs stream-small, stream-big, stream-max or xN (N times "
          "stream-small's rate, 1 to " +
          std::to_string(static_cast<int>(kMaxScale)) + "), not '" + w + "'");
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
  std::vector<Point> plan = Plan(eo.workloads);
  // stream-max: Stream-Big's shape at rising rates (x1.5 a step from x1024) until a point is not
  // real time; the ceiling is the last that was.
  const bool climb =
      std::find(eo.workloads.begin(), eo.workloads.end(), "stream-max") != eo.workloads.end();
  if (climb) plan.push_back(Scaled("x1024", 1024));
  double good = 0, bad = 0;  // the climb's highest real-time scale and lowest failed one
  int refinements = 0;
  for (size_t next = 0; next < plan.size(); ++next) {
    const Point e = plan[next];
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
    if (climb && next + 1 == plan.size() && e.workload.starts_with("x")) {
      bool all_real_time = true;
      for (size_t i = rows.size() - setups.size(); i < rows.size(); ++i)
        all_real_time = all_real_time && rows[i].real_time;
      const double at = e.rate / kSmallRate;
      (all_real_time ? good : bad) = at;
      // Up x1.5 a step until a point fails, then halve the gap twice (within ~12%).
      double scale = bad == 0 ? std::round(at * 1.5) : std::round((good + bad) / 2);
      if (bad > 0 && (++refinements > 2 || scale <= good || scale >= bad)) scale = 0;
      if (scale > 0 && scale <= kMaxScale) {
        plan.push_back(Scaled(fmt::format("x{:.0f}", scale), scale));
      }
    }
  }
  if (!eo.keep && eo.work_dir.empty()) fs::remove_all(root);
  return rows;
}

}  // namespace medstream::pipeline

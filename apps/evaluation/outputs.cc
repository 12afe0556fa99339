// The grid's outputs: the CSV, the terminal table and the gnuplot figures (evaluation.h).
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "adapters/proc/proc.h"
#include "apps/evaluation/evaluation.h"
#include "common/base/file.h"
#include "common/crypto/crypto.h"

namespace medstream::evaluation {

namespace fs = std::filesystem;

std::string ToCsv(const std::vector<Measurement>& rows) {
  std::string out =
      "mode,job,workload,load_bytes,samples,elapsed_s,avg_batch_ms,throughput_mb_s,"
      "slowdown_vs_vanilla,peak_rss_mb,elapsed_min_s,elapsed_max_s,reps,bytes_in,real_time,"
      "enclave_peak_rss_mb,host_peak_rss_mb\n";
  for (const Measurement& m : rows) {
    fmt::format_to(std::back_inserter(out), "{},{},{},{},{},{:.6f},{:.3f},{:.3f},{:.3f},{:.1f},",
                   m.point.mode, m.point.job, m.point.workload, m.point.load_bytes,
                   m.TotalSamples(), m.Median(), m.avg_batch_ms, m.ThroughputMbS(), m.slowdown,
                   m.peak_rss_mb);
    fmt::format_to(std::back_inserter(out), "{:.6f},{:.6f},{},{},{},{:.1f},{:.1f}\n", m.Min(),
                   m.Max(), m.elapsed.size(), m.bytes_in, m.real_time ? "yes" : "no",
                   m.enclave_peak_rss_mb, m.host_peak_rss_mb);
  }
  return out;
}

std::string ToTable(const std::vector<Measurement>& rows) {
  std::string out = fmt::format("{:<8} {:<10} {:<13} {:>6} {:>9} {:>21} {:>11} {:>9} {:>9} {:>8}\n",
                                "mode", "job", "workload", "load", "samples", "elapsed s (min-max)",
                                "batch ms", "MB/s", "slowdown", "RSS MB");
  for (const Measurement& m : rows) {
    const std::string spread =
        m.point.stream() ? fmt::format("{:.3f}{}", m.Median(), m.real_time ? "" : " (behind)")
                         : fmt::format("{:.4f} ({:.4f}-{:.4f})", m.Median(), m.Min(), m.Max());
    fmt::format_to(std::back_inserter(out),
                   "{:<8} {:<10} {:<13} {:>6} {:>9} {:>21} {:>11.3f} {:>9.2f} {:>9} {:>8.1f}\n",
                   m.point.mode, m.point.job, m.point.workload, LoadLabel(m.point.load_bytes),
                   m.TotalSamples(), spread, m.avg_batch_ms, m.ThroughputMbS(),
                   m.slowdown > 0 ? fmt::format("{:.2f}x", m.slowdown) : "", m.peak_rss_mb);
  }
  return out;
}

std::string MachineCaption(const std::vector<Measurement>& rows) {
  // Batch points repeat until they have run a while (Options::min_time_s): the fewest is stated.
  size_t reps = 0;
  for (const Measurement& m : rows) {
    if (!m.point.stream() && !m.elapsed.empty() && (reps == 0 || m.elapsed.size() < reps)) {
      reps = m.elapsed.size();
    }
  }
  std::string cpu = "unknown CPU";
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("model name")) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) cpu = line.substr(std::min(colon + 2, line.size()));
      break;
    }
  }
  // Quotes would end gnuplot's string.
  std::erase(cpu, '\'');
  std::erase(cpu, '"');
  // The cipher's code path: the same CPU name covers parts with and without AVX-512, where
  // AES-GCM runs about 3x as fast.
  return fmt::format(
      "{} cores, {} (AES-GCM: {}); median of {} or more repetitions, bars min-max (streams: "
      "average batch time over the run)",
      std::thread::hardware_concurrency(), cpu, crypto::GcmCodePath(), reps);
}

Status Plot(const std::vector<Measurement>& rows, const std::string& dir) {
  if (auto s = MakeDirs(dir, 0755); !s) return s;
  std::vector<std::string> modes, workloads;
  std::map<std::string, std::vector<std::string>> jobs_of;  // workload -> jobs, in order
  for (const Measurement& m : rows) {
    if (std::find(modes.begin(), modes.end(), m.point.mode) == modes.end())
      modes.push_back(m.point.mode);
    if (std::find(workloads.begin(), workloads.end(), m.point.workload) == workloads.end())
      workloads.push_back(m.point.workload);
    auto& jobs = jobs_of[m.point.workload];
    if (std::find(jobs.begin(), jobs.end(), m.point.job) == jobs.end()) jobs.push_back(m.point.job);
  }
  const std::string caption = MachineCaption(rows);
  // One figure per workload: a row per job, elapsed time against load on log-log axes (a line per
  // mode, min-max bars) on the left, the slowdown against vanilla on the right.
  for (const std::string& workload : workloads) {
    const bool stream = workload.starts_with("stream");
    const auto& jobs = jobs_of[workload];
    const std::string base = dir + "/" + workload;
    std::string panels;
    for (const std::string& job : jobs) {
      // Per load: "label" load_bytes, then per mode: ms min_ms max_ms slowdown ("-": no point).
      std::map<uint64_t, std::map<std::string, const Measurement*>> table;
      for (const Measurement& m : rows) {
        if (m.point.job == job && m.point.workload == workload)
          table[m.point.load_bytes][m.point.mode] = &m;
      }
      std::string data = "# label load_bytes";
      for (const auto& mode : modes)
        data += fmt::format(" {0}_ms {0}_min {0}_max {0}_slowdown", mode);
      data += "\n";
      for (const auto& [load, by_mode] : table) {
        data += fmt::format("\"{}\" {}", LoadLabel(load), load);
        for (const auto& mode : modes) {
          auto it = by_mode.find(mode);
          if (it == by_mode.end()) {
            data += " - - - -";
            continue;
          }
          const Measurement& m = *it->second;
          const double ms = stream ? m.avg_batch_ms : m.Median() * 1000;
          const double lo = stream ? ms : m.Min() * 1000, hi = stream ? ms : m.Max() * 1000;
          data += fmt::format(" {:.6g} {:.6g} {:.6g} {:.6g}", ms, lo, hi, m.slowdown);
        }
        data += "\n";
      }
      const std::string dat = base + "-" + job + ".dat";
      if (auto s = WriteFileAtomic(dat, data); !s) return s;
      std::string left, right;
      for (size_t c = 0; c < modes.size(); ++c) {
        const size_t col = 3 + 4 * c;
        // A mode keeps its colour and symbol in every panel.
        left +=
            fmt::format("{}'{}' using 2:{}:{}:{}:xtic(1) with yerrorlines lc {} pt {} title '{}'",
                        c ? ", " : "", dat, col, col + 1, col + 2, c + 1, c + 1, modes[c]);
        if (modes[c] != "vanilla") {
          right += fmt::format("{}'{}' using 2:{}:xtic(1) with linespoints lc {} pt {} title '{}'",
                               right.empty() ? "" : ", ", dat, col + 3, c + 1, c + 1, modes[c]);
        }
      }
      panels += fmt::format(
          "set title '{} - {}'\nset logscale xy\nset ylabel '{}'\nset key top left\n"
          "plot {}\n",
          workload, job, stream ? "average batch time (ms)" : "elapsed time (ms)", left);
      panels += fmt::format(
          "set title '{} - {}: slowdown against vanilla'\nunset logscale y\n"
          "set ylabel 'slowdown (x vanilla)'\nset yrange [0:*]\nset key top right\n{}"
          "set autoscale y\n",
          workload, job, right.empty() ? "" : "plot " + right + ", 1 notitle dt 2 lc 'gray'\n");
      if (right.empty()) panels += "set multiplot next\n";
    }
    const int height = 320 * static_cast<int>(jobs.size()) + 60;
    for (const auto& [term, ext] : {std::pair{"pngcairo", "png"}, std::pair{"svg", "svg"}}) {
      const std::string script = fmt::format(
          "set terminal {} size 1100,{}\nset output '{}.{}'\nset datafile missing '-'\n"
          "set grid\nset xlabel 'load'\nset bars small\nset autoscale xfix\n"
          "set offsets graph 0.05, graph 0.05, 0, 0\n"
          "set multiplot layout {},2 title '{}: {}' font ',10'\n{}unset multiplot\n",
          term, height, base, ext, jobs.size(), workload, caption, panels);
      const std::string script_path = base + "." + ext + ".gp";
      if (auto s = WriteFileAtomic(script_path, script); !s) return s;
      const pid_t pid = proc::Spawn({"/usr/bin/gnuplot", script_path}, base + ".log");
      int status = 0;
      if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
          WEXITSTATUS(status) != 0) {
        return Fail(Error::Code::kInternal, "gnuplot failed on " + script_path +
                                                " (is gnuplot-nox installed? see " + base +
                                                ".log)");
      }
      std::error_code ec;
      fs::remove(base + ".log", ec);
    }
  }
  return {};
}

}  // namespace medstream::evaluation

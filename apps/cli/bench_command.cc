// `medstream bench`: the evaluation grid of the original research (apps/evaluation/evaluation.h).
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>

#include <fmt/format.h>

#include "algo/hrv/jobs.h"
#include "apps/cli/commands.h"
#include "apps/evaluation/evaluation.h"
#include "apps/pipeline/cluster_bench.h"
#include "apps/pipeline/e2e.h"
#include "common/base/file.h"
#include "common/crypto/crypto.h"

namespace medstream::cli {

namespace {

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = std::min(s.find(',', start), s.size());
    if (comma > start) out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// "1k,32k,1M,8MB,4096" -> bytes (k = 1024, M = 1024 * 1024), each from 1 byte to
// evaluation::kMaxLoadBytes. strtod's 1e30 or inf converted to an integer was undefined behaviour
// (it ran as a 0-byte load, reported as such).
Result<std::vector<uint64_t>> ParseLoads(const std::string& s) {
  std::vector<uint64_t> out;
  for (const std::string& item : Split(s)) {
    double v = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    std::string unit(end, item.data() + item.size());
    if (!unit.empty() && (unit.back() == 'B' || unit.back() == 'b')) unit.pop_back();
    uint64_t scale = 1;
    if (unit == "k" || unit == "K") {
      scale = 1024;
    } else if (unit == "M" || unit == "m") {
      scale = 1024 * 1024;
    } else if (!unit.empty() || ec != std::errc()) {
      return InvalidArgument("'" + item + "' is not a load: a number of bytes, or with k or M");
    }
    const double bytes = v * static_cast<double>(scale);
    if (!(bytes >= 1) || bytes > static_cast<double>(evaluation::kMaxLoadBytes))
      return InvalidArgument(fmt::format("'{}': a load must be from 1 byte to {} MB", item,
                                         evaluation::kMaxLoadBytes >> 20));
    out.push_back(static_cast<uint64_t>(bytes));
  }
  return out;
}

// "1,2" -> worker counts, each from 1 to 64.
Result<std::vector<int>> ParseWorkerCounts(const std::string& s) {
  std::vector<int> out;
  for (const std::string& w : Split(s)) {
    int n = 0;
    const auto [end, ec] = std::from_chars(w.data(), w.data() + w.size(), n);
    if (ec != std::errc() || end != w.data() + w.size() || n < 1 || n > 64)
      return InvalidArgument("--workers takes counts from 1 to 64, e.g. 1,2 (not '" + w + "')");
    out.push_back(n);
  }
  return out;
}

std::string DefaultBaselineScript() {
  // Beside the build (build/medstream -> tools/), else the source tree the build came from.
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const std::string dir = self.parent_path().string();
    for (const std::string& c :
         {dir + "/../tools/bench_baseline.py", dir + "/tools/bench_baseline.py"})
      if (FileExists(c)) return c;
  }
  return MEDSTREAM_SOURCE_DIR "/tools/bench_baseline.py";
}

// What every bench header says under its first line: what process mode is, and the cipher's code
// path on this CPU (process mode's figures depend on it about 3x).
void PrintModeNotes() {
  std::printf(
      "  process = medstream-enclave in a separate hardened process (a software-simulated TEE)\n"
      "  AES-256-GCM: intel-ipsec-mb, %s code on this CPU\n",
      crypto::GcmCodePath().c_str());
}

// `--e2e`: the rows of pipeline::RunEndToEnd as a table and CSV.
int PrintEndToEnd(const pipeline::EndToEndOptions& options, const std::string& jobs_text,
                  const std::string& csv) {
  std::printf(
      "medstream bench --e2e: sensors -> Mosquitto -> gateway -> %s, %.0f s per "
      "point, batch interval %.0f s, jobs %s\n",
      options.cluster_workers.empty() ? "server -> enclave"
                                      : "NATS JetStream (3 nodes) -> workers (Nw: N workers)",
      options.duration_s, options.interval_s, jobs_text.c_str());
  PrintModeNotes();
  std::string table = fmt::format(
      "{:<13} {:<8} {:>5} {:>10} {:>10} {:>7} {:>7} {:>7} {:>9} {:>9} {:>8} {:>8} {:>5} {:>4} "
      "{}\n",
      "workload", "mode", "users", "target/s", "beats/s", "text", "server", "batches", "batch ms",
      "p99 ms", "lat p50", "lat p99", "lost", "dup", "real time");
  std::string rows =
      "workload,mode,workers,jobs,users,target_beats_s,beats_s,text_mb_s,server_mb_s,batches,"
      "server_batch_ms_mean,server_batch_ms_p99,server_batch_ms_max,latency_p50_s,"
      "latency_p99_s,lost_beats,duplicates,batch_interval_s,real_time\n";
  int rc = 0;
  for (const pipeline::EndToEndRow& e : pipeline::RunEndToEnd(options)) {
    if (!e.error.empty()) {
      std::fprintf(stderr, "medstream bench: error: %s %s: %s\n", e.workload.c_str(),
                   e.mode.c_str(), e.error.c_str());
      rc = 1;
      continue;
    }
    const pipeline::Summary& r = e.summary;
    const std::string mode =
        e.workers > 0 ? fmt::format("{}w", e.workers) : e.mode;  // cluster rows: workers
    // A cluster has no one server whose input and batch times these columns are.
    const bool server = e.workers == 0;
    table += fmt::format(
        "{:<13} {:<8} {:>5} {:>10.0f} {:>10.0f} {:>5.2f}MB {:>7} {:>7} {:>9} {:>9} "
        "{:>7.2f}s {:>7.2f}s {:>5} {:>4} {}\n",
        e.workload, mode, e.users, e.target_rate, r.rate(), e.text_mb_s,
        server ? fmt::format("{:.2f}MB", e.server_mb_s) : "-", r.batches,
        server ? fmt::format("{:.1f}", r.server_batch_ms.mean) : "-",
        server ? fmt::format("{:.1f}", r.server_batch_ms.p99) : "-", r.latency_s.p50,
        r.latency_s.p99, r.lost_beats, r.duplicates, e.real_time ? "yes" : "NO");
    rows += fmt::format("{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n", e.workload,
                        e.mode, e.workers, jobs_text, e.users, e.target_rate, r.rate(), e.text_mb_s,
                        e.server_mb_s, r.batches, r.server_batch_ms.mean, r.server_batch_ms.p99,
                        r.server_batch_ms.max, r.latency_s.p50, r.latency_s.p99, r.lost_beats,
                        r.duplicates, options.interval_s, e.real_time ? 1 : 0);
    if (r.lost_beats || r.duplicates) rc = kExitDataLost;
  }
  std::printf(
      "\n%s\n(text: MB/s of beats in the original's text encoding, 23 bytes a sample; server: "
      "MB/s of sealed batches into the server; batch ms: the server's time per batch; lat: oldest "
      "beat of a batch received by the gateway -> its result read)\n",
      table.c_str());
  if (!csv.empty()) {
    if (auto s = WriteFileAtomic(csv, rows); !s) {
      return ExitWithError("bench", s.error());
    }
    std::printf("CSV: %s\n", csv.c_str());
  }
  return rc;
}

}  // namespace

void RegisterBenchCommand(CLI::App& app, int* exit_code) {
  struct Args {
    evaluation::Options o;
    bool quick = false;
    bool no_baseline = false;
    std::string modes, jobs, workloads, small_loads, big_loads;
    std::string csv, plot;
    int reps = 0;
    double min_time = -1;  // unset
    double duration = 0;
    bool e2e = false;
    bool cluster = false;
    std::string cluster_workers = "1,2";
    std::string rate;  // --e2e: "max" or multipliers of stream-small's rate
    int cluster_users = 64;
    size_t cluster_beats = 50000;
    size_t cluster_batch_beats = 5000;
    bool interval_set = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "bench",
      "Run the evaluation grid of the original research (modes x jobs x workloads x loads) "
      "through the real server, enclave and gateway code");
  cmd->footer(
      "Workloads: batch-small (1-32 kB in one batch), stream-small (1-32 kB per second),\n"
      "batch-big (1-32 MB in one batch), stream-big (1-32 MB per second). Loads are in the\n"
      "original's text encoding (23 bytes a sample). Slowdown is against vanilla at the same "
      "point\n"
      "(streams: average batch time). 'pandas' rows are the data scientist's baseline\n"
      "(tools/bench_baseline.py, Debian's python3-pandas). The process backend is a software\n"
      "simulation of a TEE boundary: it protects against the host process, not root.");
  cmd->add_flag("--quick", a->quick,
                "A small grid for smoke tests: identity and sdnn, 1 kB/32 kB/1 MB/4 MB, 2 s "
                "streams, 2 repetitions (under 2 minutes)");
  cmd->add_option("--modes", a->modes, "Comma-separated: vanilla,inproc,process");
  cmd->add_option("--jobs", a->jobs, "Comma-separated: identity,sdnn,hrv-bands,hrv-full");
  cmd->add_option("--workloads", a->workloads,
                  "Comma-separated: batch-small,stream-small,batch-big,stream-big");
  cmd->add_option("--small-loads", a->small_loads, "Loads of the small workloads (e.g. 1k,32k)");
  cmd->add_option("--big-loads", a->big_loads,
                  "Loads of the big workloads (e.g. 1M,32M; at most 64M)");
  cmd->add_option("--reps", a->reps, "Repetitions of each batch point (at least; default 3)")
      ->check(Positive());
  cmd->add_option("--min-time", a->min_time,
                  "Repeat each batch point until each mode has run about this many seconds, up "
                  "to 1000 repetitions (default 0.25; 0: exactly --reps)")
      ->check(NonNegative());
  cmd->add_option("--duration", a->duration, "Seconds each stream point runs (default 60)")
      ->check(Positive());
  cmd->add_option_function<double>(
         "--interval",
         [a](double v) {
           a->o.interval_s = v;
           a->interval_set = true;
         },
         "Seconds between batches of a stream (default 1; --e2e: 10)")
      ->check(Positive());
  cmd->add_flag("--e2e", a->e2e,
                "End to end instead of the grid: stream-small (1424 beats/s) and stream-big "
                "(x1024) from simulated sensors through Mosquitto, the gateway, the server and "
                "the enclave (default: process mode, sdnn, 60 s, 10 s batches)");
  cmd->add_option("--rate", a->rate,
                  "With --e2e: 'max' finds the end-to-end ceiling (Stream-Big's 16 users at x1024, "
                  "x1536, ... stream-small's rate until a point is not real time), or rates to run "
                  "as multipliers of stream-small's 1424 beats/s, e.g. 1024,2048,4096");
  cmd->add_flag("--cluster", a->cluster,
                "Scale-out throughput instead of the grid: per worker count, a fresh 3-node NATS "
                "cluster, a backlog of sealed batches, then the workers timed until every result "
                "is back (default: hrv-bands, process mode; docs/scale-out.md). With --e2e: that "
                "throughput, then the streaming workloads from the sensors through the cluster, a "
                "row per worker count (beat-to-result latency; default hrv-bands)");
  cmd->add_option("--workers", a->cluster_workers, "With --cluster: worker counts, e.g. 1,2")
      ->capture_default_str();
  cmd->add_option("--users", a->cluster_users, "With --cluster: users in the backlog")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--beats", a->cluster_beats, "With --cluster: beats per user in the backlog")
      ->check(CLI::Range(size_t{1}, size_t{100000000}))
      ->capture_default_str();
  cmd->add_option("--batch-beats", a->cluster_batch_beats,
                  "With --cluster: beats per batch (10 = a patient at 1 beat/s cut every 10 s)")
      ->check(CLI::Range(size_t{1}, size_t{1000000}))
      ->capture_default_str();
  cmd->add_flag("--no-baseline", a->no_baseline, "Skip the pandas baseline");
  cmd->add_option("--csv", a->csv, "Write one row per point to this CSV file");
  cmd->add_option("--plot", a->plot, "Draw the figures (PNG and SVG, gnuplot) into this directory");
  cmd->add_option("--dir", a->o.work_dir, "Work directory (default: a temporary one)");
  cmd->add_flag("--keep", a->o.keep, "Keep every point's server directory");
  cmd->add_option("--platform", a->o.platform_dir,
                  "Simulated platform (default: a fresh one in the work directory)");
  cmd->add_option("--enclave", a->o.enclave_path, "medstream-enclave (process mode)");
  cmd->add_option("--python", a->o.python, "Interpreter for the baseline (needs pandas, scipy)")
      ->capture_default_str();
  cmd->add_option("--baseline-script", a->o.baseline_script, "The baseline script");
  cmd->callback([a, exit_code] {
    auto fail = [&](const auto& e) { *exit_code = ExitWithError("bench", e); };
    evaluation::Options& o = a->o;
    if (a->cluster) {
      // Throughput: a backlog drained per worker count (with --e2e, then latency below).
      pipeline::ClusterBenchOptions c;
      c.self = SelfPath().value_or("medstream");
      c.work = o.work_dir.empty() ? (std::filesystem::temp_directory_path() /
                                     ("medstream-cluster-bench-" + std::to_string(getpid())))
                                        .string()
                                  : o.work_dir;
      c.keep = o.keep;
      auto workers = ParseWorkerCounts(a->cluster_workers);
      if (!workers) return fail(workers.error());
      c.workers = *workers;
      c.users = a->cluster_users;
      c.beats_per_user = a->cluster_beats;
      c.batch_beats = a->cluster_batch_beats;
      auto jobs = hrv::ParseJobList(a->jobs.empty() ? "hrv-bands" : a->jobs);
      if (!jobs) return fail(jobs.error());
      c.jobs = *jobs;
      if (!a->modes.empty()) c.mode = a->modes;
      c.repetitions = a->reps > 0 ? a->reps : 1;
      c.progress = [](const std::string& line) { std::fprintf(stderr, "  %s\n", line.c_str()); };
      std::printf(
          "medstream bench --cluster: %d users x %zu beats in batches of %zu, jobs %s, %s "
          "mode\n",
          c.users, c.beats_per_user, c.batch_beats, a->jobs.empty() ? "hrv-bands" : a->jobs.c_str(),
          c.mode.c_str());
      std::fflush(stdout);
      auto rows = pipeline::RunClusterBench(c);
      if (!rows) return fail(rows.error());
      std::printf("%-8s %-4s %12s %9s %10s %14s %9s %6s\n", "workers", "run", "beats", "batches",
                  "seconds", "beats/s", "MB/s", "lost");
      double one = 0;
      for (const auto& r : *rows) {
        if (r.workers == 1 && one == 0) one = r.beats_per_s;
        std::printf("%-8d %-4d %12llu %9llu %10.2f %14.0f %9.1f %6llu", r.workers, r.repetition + 1,
                    static_cast<unsigned long long>(r.beats),
                    static_cast<unsigned long long>(r.batches), r.seconds, r.beats_per_s, r.mb_s,
                    static_cast<unsigned long long>(r.lost_batches));
        if (one > 0) std::printf("   %.2fx", r.beats_per_s / one);
        std::printf("\n");
      }
      if (!a->csv.empty()) {
        std::string csv = "workers,run,beats,batches,seconds,beats_per_s,mb_s,lost_batches\n";
        for (const auto& r : *rows) {
          csv += fmt::format("{},{},{},{},{:.3f},{:.0f},{:.2f},{}\n", r.workers, r.repetition + 1,
                             r.beats, r.batches, r.seconds, r.beats_per_s, r.mb_s, r.lost_batches);
        }
        const std::string path = a->e2e ? a->csv + ".throughput.csv" : a->csv;
        if (auto s = WriteFileAtomic(path, csv); !s) return fail(s.error());
      }
      if (!a->e2e) return;
      std::printf("\n");
    }
    if (!a->rate.empty() && !a->e2e) return fail("--rate goes with --e2e");
    if (a->e2e) {
      pipeline::EndToEndOptions e;
      e.self = SelfPath().value_or("medstream");
      e.workloads = a->workloads.empty() ? std::vector<std::string>{"stream-small", "stream-big"}
                                         : Split(a->workloads);
      e.modes = a->modes.empty() ? std::vector<std::string>{"process"} : Split(a->modes);
      if (a->rate == "max") {
        e.workloads = {"stream-max"};
      } else if (!a->rate.empty()) {
        e.workloads.clear();
        for (const std::string& r : Split(a->rate)) e.workloads.push_back("x" + r);
      }
      if (a->cluster) {
        auto workers = ParseWorkerCounts(a->cluster_workers);
        if (!workers) return fail(workers.error());
        e.cluster_workers = *workers;
      }
      // The cluster's point is CPU-bound analysis shared out: hrv-bands by default.
      const std::string jobs_text = !a->jobs.empty() ? a->jobs : a->cluster ? "hrv-bands" : "sdnn";
      auto jobs = hrv::ParseJobList(jobs_text);
      if (!jobs) return fail(jobs.error());
      e.jobs = *jobs;
      e.duration_s = a->duration > 0 ? a->duration : 60;
      e.interval_s = a->interval_set ? o.interval_s : 10;
      e.work_dir = o.work_dir;
      e.keep = o.keep;
      e.progress = [](const std::string& w, const std::string& m, const std::string& line) {
        std::fprintf(stderr, "  %s %s: %s\n", w.c_str(), m.c_str(), line.c_str());
      };
      if (auto s = pipeline::CheckEndToEnd(e); !s) return fail(s.error());
      *exit_code = PrintEndToEnd(e, jobs_text, a->csv);
      return;
    }
    if (a->quick) {
      const evaluation::Options q = evaluation::QuickOptions();
      o.jobs = q.jobs;
      o.small_loads = q.small_loads;
      o.big_loads = q.big_loads;
      o.reps = q.reps;
      o.min_time_s = q.min_time_s;
      o.duration_s = q.duration_s;
    }
    if (!a->modes.empty()) o.modes = Split(a->modes);
    if (!a->jobs.empty()) o.jobs = Split(a->jobs);
    if (!a->workloads.empty()) o.workloads = Split(a->workloads);
    for (const auto& m : o.modes) {
      if (m != "vanilla" && m != "inproc" && m != "process")
        return fail("unknown mode '" + m + "': vanilla, inproc or process");
    }
    for (const auto& j : o.jobs) {
      if (auto k = hrv::ParseJobKind(j); !k) return fail(k.error());
    }
    for (const auto& w : o.workloads) {
      if (w != "batch-small" && w != "stream-small" && w != "batch-big" && w != "stream-big")
        return fail("unknown workload '" + w +
                    "': batch-small, stream-small, batch-big or stream-big");
    }
    for (auto [text, loads] :
         {std::pair{&a->small_loads, &o.small_loads}, std::pair{&a->big_loads, &o.big_loads}}) {
      if (text->empty()) continue;
      auto l = ParseLoads(*text);
      if (!l) return fail(l.error());
      *loads = *l;
    }
    if (a->reps > 0) o.reps = a->reps;
    if (a->min_time >= 0) o.min_time_s = a->min_time;
    if (a->duration > 0) o.duration_s = a->duration;
    o.baseline = !a->no_baseline;
    if (o.baseline) {
      if (o.baseline_script.empty()) o.baseline_script = DefaultBaselineScript();
      if (!FileExists(o.baseline_script))
        return fail(Error(Error::Code::kNotFound, "baseline script " + o.baseline_script +
                                                      " not found (or use --no-baseline)"));
      if (!FileExists(o.python))
        return fail(o.python +
                    " not found: the baseline needs Debian's python3-pandas (or use "
                    "--no-baseline)");
    }
    const bool tty = isatty(STDERR_FILENO);
    o.progress = [tty](const evaluation::Point& p, size_t done, size_t total,
                       const evaluation::Measurement* m) {
      const std::string what = fmt::format("{} {} {} {}", p.mode, p.job, p.workload,
                                           evaluation::LoadLabel(p.load_bytes));
      if (tty) {
        const int width = 30;
        const int filled = static_cast<int>(width * done / std::max<size_t>(total, 1));
        std::fprintf(stderr, "\r[%s%s] %zu/%zu %-45s", std::string(filled, '#').c_str(),
                     std::string(width - filled, '.').c_str(), done, total, what.c_str());
        if (done == total && m) std::fprintf(stderr, "\n");
      } else if (m) {
        std::fprintf(stderr, "bench: %zu/%zu %s: %.4f s\n", done, total, what.c_str(), m->Median());
      }
      std::fflush(stderr);
    };
    // With --min-time a batch point runs more than --reps times: say so, or the header misleads.
    const std::string reps =
        o.min_time_s > 0 ? fmt::format("{} or more repetitions (each mode {:g} s a batch point)",
                                       o.reps, o.min_time_s)
                         : fmt::format("{} repetitions", o.reps);
    std::printf(
        "medstream bench: %zu points (modes %zu, jobs %zu, workloads %zu), %s, streams %.0f s\n",
        evaluation::Plan(o).size(), o.modes.size(), o.jobs.size(), o.workloads.size(), reps.c_str(),
        o.duration_s);
    PrintModeNotes();
    std::fflush(stdout);
    auto rows = evaluation::Run(o);
    if (!rows) return fail(rows.error());
    std::printf("\n%s", evaluation::ToTable(*rows).c_str());
    if (!a->csv.empty()) {
      if (auto s = WriteFileAtomic(a->csv, evaluation::ToCsv(*rows)); !s) return fail(s.error());
      std::printf("\nCSV: %s\n", a->csv.c_str());
    }
    if (!a->plot.empty()) {
      if (auto s = evaluation::Plot(*rows, a->plot); !s) return fail(s.error());
      std::printf("plots: %s/<workload>.png and .svg (a row of panels per job)\n", a->plot.c_str());
    }
  });
}

}  // namespace medstream::cli

#include "apps/evaluation/evaluation.h"

#include <poll.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "adapters/proc/proc.h"
#include "common/attest/identity.h"
#include "common/attest/sim_platform.h"
#include "common/base/file.h"
#include "common/wire/wire.h"
#include "host/inproc/inproc.h"
#include "host/server/server.h"
#include "owner/client/client.h"
#include "owner/gateway/gateway.h"
#include "owner/sensor/sensor.h"

namespace medstream::evaluation {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kMaxBacklog = 3;  // stream: batches behind before we call it not sustained

double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

uint64_t SamplesFor(uint64_t load_bytes) {
  return std::max<uint64_t>(1, static_cast<uint64_t>(load_bytes / kTextBytesPerSample));
}

double Median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Peak resident memory of a process, MB (VmHWM), or 0 if unreadable.
double PeakRssMb(const std::string& pid) {
  std::ifstream in("/proc/" + pid + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("VmHWM:")) return std::strtod(line.c_str() + 6, nullptr) / 1024;
  }
  return 0;
}

void ResetPeakRss() {
  std::ofstream("/proc/self/clear_refs") << "5";  // Linux: reset VmHWM to the current RSS
}

// Realistic RR series (the sensor's generator), generated once and shared by every point.
class BeatPool {
 public:
  const std::vector<hrv::Beat>& Get(size_t n) {
    if (beats_.size() < n) {
      sensor::Generator g(20261123, 0, 1.7e9);
      beats_.clear();
      beats_.reserve(n);
      while (beats_.size() < n) {
        const hrv::Beat b = g.Next();
        if (!g.dropped()) beats_.push_back(b);
      }
    }
    return beats_;
  }
  // The first n beats, moved later in time by `block` whole copies of themselves, so that
  // consecutive batches of one stream continue in time.
  std::vector<hrv::Beat> Block(size_t n, uint64_t block) {
    const auto& all = Get(n);
    const double span = all[n - 1].t_s - all[0].t_s + 2;
    std::vector<hrv::Beat> out(all.begin(), all.begin() + static_cast<ptrdiff_t>(n));
    for (auto& b : out) b.t_s += static_cast<double>(block) * span;
    return out;
  }

 private:
  std::vector<hrv::Beat> beats_;
};

// What every point shares: the simulated platform and the identities the gateway pins.
struct Context {
  std::string work;
  std::string platform;
  std::optional<crypto::Certificate> root;
  std::map<std::string, attest::Policy> policies;  // by mode
  BeatPool pool;
};

// One point's server and the gateway side talking to it.
class Rig {
 public:
  static Result<std::unique_ptr<Rig>> Start(const Options& o, const Point& p, Context& ctx,
                                            const std::string& dir) {
    std::unique_ptr<Rig> rig(new Rig());
    rig->vanilla_ = p.mode == "vanilla";
    MEDSTREAM_TRY(job, hrv::ParseJobKind(p.job));
    enclave::StreamConfig config;
    config.jobs = {job};
    host::ServerOptions so;
    so.dir = dir;
    so.mode = p.mode;
    so.platform_dir = ctx.platform;
    so.enclave_path = o.enclave_path;
    so.vanilla_config = config;
    so.claim_counter = false;        // fresh throw-away servers, one after another, never restarted
    so.inproc = host::LaunchInproc;  // the grid's inproc mode
    MEDSTREAM_TRY(server, host::Server::Start(so));
    rig->server_ = std::move(server);
    rig->link_ = gateway::LocalLink(dir);
    rig->stream_ = {0x5e, 0x11, static_cast<uint8_t>(p.load_bytes & 0xff)};
    if (!rig->vanilla_) {
      MEDSTREAM_TRY(relay, rig->link_->Relay());
      auto session = client::Attest(*relay, {.root = &*ctx.root, .policy = ctx.policies[p.mode]});
      if (!session) return std::unexpected(std::move(session.error()).With("attesting"));
      enclave::ProvisionKey key;
      key.key_id = 1;
      if (auto s = crypto::RandomBytes(key.key.span()); !s) return std::unexpected(s.error());
      key.config = config;
      if (auto s = client::Provision(*relay, *session, key); !s) return std::unexpected(s.error());
      MEDSTREAM_TRY(sealer, client::StreamSealer::Create(key.key, 1, rig->stream_));
      rig->sealer_.emplace(std::move(sealer));
    }
    return rig;
  }

  // The gateway's side of a batch: seal it (vanilla: plaintext) and upload it into the inbox.
  Result<crypto::Bytes> Seal(uint64_t seq, std::span<const hrv::Beat> beats) {
    if (sealer_) return sealer_->SealBatch(seq, beats);
    wire::Header h;
    h.stream = stream_;
    h.seq = seq;
    return wire::MakeBatchFile(h, beats, nullptr);
  }
  Status Upload(uint64_t seq, crypto::ByteView file) {
    return link_->Upload(wire::BatchFileName(stream_, seq), file);
  }
  std::string ResultName(uint64_t seq) const { return wire::ResultFileName(stream_, seq); }
  // Fetches and opens a result; returns the beats it accounts for.
  Result<uint64_t> Fetch(uint64_t seq) {
    MEDSTREAM_TRY(file, link_->ReadResult(ResultName(seq)));
    if (sealer_) {
      uint64_t got = 0;
      MEDSTREAM_TRY(r, sealer_->OpenResult(file, &got));
      if (got != seq) return Corrupt("result of sequence " + std::to_string(got));
      return r.beats;
    }
    MEDSTREAM_TRY(opened, wire::OpenFile(file, wire::Kind::kResult, nullptr));
    MEDSTREAM_TRY(r, wire::DecodeResult(opened.payload));
    return r.beats;
  }
  host::Server& server() { return *server_; }
  double HostPeakRssMb() const { return evaluation::PeakRssMb("self"); }
  double EnclavePeakRssMb() const {
    const int pid = server_->enclave_pid();
    return pid > 0 ? evaluation::PeakRssMb(std::to_string(pid)) : 0;
  }

 private:
  Rig() = default;
  bool vanilla_ = false;
  std::unique_ptr<host::Server> server_;
  std::unique_ptr<gateway::ServerLink> link_;
  wire::StreamId stream_{};
  std::optional<client::StreamSealer> sealer_;
};

Status CheckBeats(uint64_t got, uint64_t want, uint64_t seq) {
  if (got == want) return {};
  return Fail(Error::Code::kInternal,
              fmt::format("batch {}: the result accounts for {} beats, not {}", seq, got, want));
}

Result<Measurement> RunBatch(const Options& o, const Point& p, Context& ctx,
                             const std::string& dir) {
  Measurement m;
  m.point = p;
  m.samples = SamplesFor(p.load_bytes);
  ResetPeakRss();
  MEDSTREAM_TRY(rig, Rig::Start(o, p, ctx, dir));
  std::vector<double> server_ms;
  // Repetition 0 warms up (first-touch page faults of a fresh server and enclave) and is not
  // counted: a server in use is warm.
  for (int rep = 0; rep <= o.reps; ++rep) {
    const uint64_t seq = static_cast<uint64_t>(rep) + 1;
    const auto beats = ctx.pool.Block(m.samples, seq);
    const auto t0 = Clock::now();
    MEDSTREAM_TRY(file, rig->Seal(seq, beats));
    if (auto s = rig->Upload(seq, file); !s) return std::unexpected(s.error());
    const auto s0 = Clock::now();
    MEDSTREAM_TRY(n, rig->server().ProcessInbox());
    const auto s1 = Clock::now();
    if (n != 1 || rig->server().counters().quarantined != 0) {
      return Fail(Error::Code::kInternal,
                  "the server quarantined a benchmark batch: see " + dir + "/quarantine");
    }
    MEDSTREAM_TRY(got, rig->Fetch(seq));
    const auto t1 = Clock::now();
    if (auto s = CheckBeats(got, m.samples, seq); !s) return std::unexpected(s.error());
    m.bytes_in = file.size();
    if (rep == 0) continue;
    m.elapsed.push_back(Seconds(t1 - t0));
    server_ms.push_back(Seconds(s1 - s0) * 1000);
  }
  m.batches = static_cast<uint64_t>(o.reps);
  m.avg_batch_ms = Median(server_ms);
  m.host_peak_rss_mb = rig->HostPeakRssMb();
  m.enclave_peak_rss_mb = rig->EnclavePeakRssMb();
  m.peak_rss_mb = m.host_peak_rss_mb + m.enclave_peak_rss_mb;
  return m;
}

// Records when each result file appears in the outbox.
class OutboxWatch {
 public:
  static Result<std::unique_ptr<OutboxWatch>> Start(const std::string& outbox) {
    std::unique_ptr<OutboxWatch> w(new OutboxWatch());
    w->fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd_ < 0 || inotify_add_watch(w->fd_, outbox.c_str(), IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
      return IoError("cannot watch " + outbox);
    }
    w->thread_ = std::thread([raw = w.get()] { raw->Loop(); });
    return w;
  }
  ~OutboxWatch() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  std::optional<Clock::time_point> Seen(const std::string& name) {
    std::lock_guard lock(mu_);
    auto it = seen_.find(name);
    if (it == seen_.end()) return std::nullopt;
    return it->second;
  }
  size_t count() {
    std::lock_guard lock(mu_);
    return seen_.size();
  }

 private:
  OutboxWatch() = default;
  void Loop() {
    alignas(inotify_event) char buf[8192];
    while (!stop_) {
      pollfd pfd{fd_, POLLIN, 0};
      if (poll(&pfd, 1, 20) <= 0) continue;
      const ssize_t n = read(fd_, buf, sizeof buf);
      const auto now = Clock::now();
      for (ssize_t i = 0; i < n;) {
        const auto* e = reinterpret_cast<const inotify_event*>(buf + i);
        if (e->len > 0) {
          const std::string name = e->name;
          if (name.ends_with(".result")) {
            std::lock_guard lock(mu_);
            seen_.emplace(name, now);
          }
        }
        i += static_cast<ssize_t>(sizeof(inotify_event) + e->len);
      }
    }
  }
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::map<std::string, Clock::time_point> seen_;
};

Result<Measurement> RunStream(const Options& o, const Point& p, Context& ctx,
                              const std::string& dir) {
  Measurement m;
  m.point = p;
  m.samples = SamplesFor(static_cast<uint64_t>(static_cast<double>(p.load_bytes) * o.interval_s));
  ResetPeakRss();
  MEDSTREAM_TRY(rig, Rig::Start(o, p, ctx, dir));
  MEDSTREAM_TRY(watch, OutboxWatch::Start(dir + "/outbox"));
  std::atomic<bool> stop{false};
  Status served;
  std::thread server([&] { served = rig->server().Run(stop); });
  const uint64_t planned =
      std::max<uint64_t>(1, static_cast<uint64_t>(std::llround(o.duration_s / o.interval_s)));
  std::vector<Clock::time_point> present;
  Status fed;
  const auto interval =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.interval_s));
  // One batch warms up first and is not counted, as repetition 0 of the batch workloads: the
  // first batch of a fresh server and enclave pays their first-touch page faults (a few ms at
  // 1 MB, a fifth of a 5 s point's average), which a server in use has long paid.
  constexpr uint64_t kWarmup = 1;
  {
    auto file = rig->Seal(1, ctx.pool.Block(m.samples, 1));
    if (!file) fed = std::unexpected(file.error());
    if (fed) fed = rig->Upload(1, *file);
    const auto until = Clock::now() + std::chrono::seconds(120);
    while (fed && watch->count() < kWarmup && Clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (fed && watch->count() < kWarmup) {
      fed = Fail(Error::Code::kInternal, "the warm-up batch has no result after 120 s");
    }
  }
  const auto start = Clock::now() + std::chrono::milliseconds(200);
  for (uint64_t i = 0; fed && i < planned; ++i) {
    const uint64_t seq = i + 1 + kWarmup;
    // The gateway seals a batch as its beats arrive; it is uploaded when the interval closes.
    auto file = rig->Seal(seq, ctx.pool.Block(m.samples, seq));
    if (!file) {
      fed = std::unexpected(file.error());
      break;
    }
    m.bytes_in = file->size();
    std::this_thread::sleep_until(start + interval * static_cast<int64_t>(i));
    present.push_back(Clock::now());
    if (auto s = rig->Upload(seq, *file); !s) {
      fed = s;
      break;
    }
    if (present.size() + kWarmup > watch->count() + kMaxBacklog) {
      m.real_time = false;  // falling behind: stop feeding, let it drain
      break;
    }
  }
  // Wait for every fed batch's result (or give up after a generous time).
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  while (watch->count() < present.size() + kWarmup && Clock::now() < deadline && served) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  stop = true;
  server.join();
  if (!fed) return std::unexpected(fed.error());
  if (!served) return std::unexpected(served.error());
  std::vector<double> latency;
  Clock::time_point last = present.empty() ? Clock::now() : present.front();
  for (size_t i = 0; i < present.size(); ++i) {
    const uint64_t seq = i + 1 + kWarmup;
    auto seen = watch->Seen(rig->ResultName(seq));
    if (!seen) {
      return Fail(Error::Code::kInternal,
                  fmt::format("stream batch {} has no result after 120 s (quarantined: {})", seq,
                              rig->server().counters().quarantined));
    }
    latency.push_back(Seconds(*seen - present[i]));
    last = std::max(last, *seen);
    MEDSTREAM_TRY(got, rig->Fetch(seq));
    if (auto s = CheckBeats(got, m.samples, seq); !s) return std::unexpected(s.error());
  }
  m.batches = present.size();
  if (m.batches < planned) m.real_time = false;
  const double worst = *std::max_element(latency.begin(), latency.end());
  if (worst > o.interval_s) m.real_time = false;
  m.avg_batch_ms = std::accumulate(latency.begin(), latency.end(), 0.0) * 1000 /
                   static_cast<double>(latency.size());
  m.elapsed = {Seconds(last - present.front())};
  m.host_peak_rss_mb = rig->HostPeakRssMb();
  m.enclave_peak_rss_mb = rig->EnclavePeakRssMb();
  m.peak_rss_mb = m.host_peak_rss_mb + m.enclave_peak_rss_mb;
  return m;
}

// The pandas baseline: the same samples as a CSV file, the script times itself (reading the CSV
// included, importing pandas not), peak RSS from the kernel.
Result<Measurement> RunBaseline(const Options& o, const Point& p, Context& ctx,
                                const std::string& dir) {
  Measurement m;
  m.point = p;
  m.samples = SamplesFor(p.load_bytes);
  const std::string csv = dir + "/samples.csv";
  {
    const auto& beats = ctx.pool.Get(m.samples);
    std::string text;
    text.reserve(m.samples * 24);
    for (size_t i = 0; i < m.samples; ++i) {
      fmt::format_to(std::back_inserter(text), "{:.3f},{:.1f}\n", beats[i].t_s, beats[i].rr_ms);
    }
    if (auto s = WriteFileAtomic(csv, text); !s) return std::unexpected(s.error());
    m.bytes_in = text.size();
  }
  const std::string log = dir + "/baseline.out";
  const pid_t pid = proc::Spawn({o.python, o.baseline_script, "--job", p.job, "--input", csv,
                                 "--reps", std::to_string(o.reps)},
                                log);
  int status = 0;
  rusage ru{};
  if (pid < 0 || wait4(pid, &status, 0, &ru) != pid) return IoError("cannot run " + o.python);
  auto out = ReadFileText(log);
  if (!out || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Fail(Error::Code::kInternal,
                "the pandas baseline failed (" + o.python + " " + o.baseline_script +
                    "): " + (out ? out->substr(0, 2000) : std::string("no output")));
  }
  const size_t line = out->rfind('{');
  auto j = nlohmann::json::parse(out->substr(line == std::string::npos ? 0 : line), nullptr,
                                 /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.contains("elapsed_s")) {
    return Corrupt("the pandas baseline printed no timing: " + out->substr(0, 500));
  }
  for (const auto& e : j["elapsed_s"]) m.elapsed.push_back(e.get<double>());
  m.batches = m.elapsed.size();
  m.avg_batch_ms = Median(m.elapsed) * 1000;
  m.peak_rss_mb = m.host_peak_rss_mb = static_cast<double>(ru.ru_maxrss) / 1024;
  return m;
}

std::vector<uint64_t> Loads(const Options& o, const std::string& workload) {
  const bool big = workload.ends_with("big");
  const auto& chosen = big ? o.big_loads : o.small_loads;
  if (!chosen.empty()) return chosen;
  std::vector<uint64_t> out;
  for (uint64_t l = 1024; l <= 32 * 1024; l *= 2) out.push_back(big ? l * 1024 : l);
  return out;
}

bool HasBaseline(const std::string& job) {
  return job == "sdnn" || job == "hrv-bands";
}

Status PrepareContext(const Options& o, Context* ctx) {
  ctx->platform = o.platform_dir.empty() ? ctx->work + "/platform" : o.platform_dir;
  if (o.platform_dir.empty()) {
    if (auto s = attest::InitPlatform({.dir = ctx->platform, .force = true, .now = time(nullptr)});
        !s) {
      return s;
    }
  }
  MEDSTREAM_TRY(pem, ReadFileText(attest::SimPlatform::RootPath(ctx->platform)));
  MEDSTREAM_TRY(root, crypto::Certificate::FromPem(pem));
  ctx->root.emplace(std::move(root));
  for (const std::string& mode : o.modes) {
    if (mode == "vanilla") continue;
    MEDSTREAM_TRY(policy, client::PolicyForThisBuild(mode, o.enclave_path));
    ctx->policies[mode] = policy;
  }
  return {};
}

}  // namespace

double Measurement::Median() const {
  return evaluation::Median(elapsed);
}
double Measurement::Min() const {
  return elapsed.empty() ? NAN : *std::min_element(elapsed.begin(), elapsed.end());
}
double Measurement::Max() const {
  return elapsed.empty() ? NAN : *std::max_element(elapsed.begin(), elapsed.end());
}
double Measurement::ThroughputMbS() const {
  const double load =
      static_cast<double>(point.load_bytes) * static_cast<double>(point.stream() ? batches : 1);
  return load / 1e6 / Median();
}

std::string LoadLabel(uint64_t bytes) {
  if (bytes >= (uint64_t{1} << 20) && bytes % (uint64_t{1} << 20) == 0)
    return fmt::format("{} MB", bytes >> 20);
  if (bytes >= 1024 && bytes % 1024 == 0) return fmt::format("{} kB", bytes >> 10);
  return fmt::format("{} B", bytes);
}

Options QuickOptions() {
  Options o;
  o.jobs = {"identity", "sdnn"};
  o.small_loads = {1024, 32 * 1024};
  o.big_loads = {uint64_t{1} << 20, uint64_t{4} << 20};
  o.reps = 2;
  o.duration_s = 2;
  return o;
}

std::vector<Point> Plan(const Options& o) {
  std::vector<Point> points;
  for (const std::string& workload : o.workloads) {
    for (const std::string& job : o.jobs) {
      for (uint64_t load : Loads(o, workload)) {
        for (const std::string& mode : o.modes) points.push_back({mode, job, workload, load});
        if (o.baseline && HasBaseline(job) && !workload.starts_with("stream")) {
          points.push_back({"pandas", job, workload, load});
        }
      }
    }
  }
  return points;
}

Result<std::vector<Measurement>> Run(const Options& o) {
  Context ctx;
  const bool temp = o.work_dir.empty();
  ctx.work =
      temp ? (fs::temp_directory_path() / fmt::format("medstream-bench-{}", getpid())).string()
           : o.work_dir;
  std::error_code ec;
  fs::remove_all(ctx.work + "/points", ec);
  if (auto s = MakeDirs(ctx.work + "/points", 0700); !s) return std::unexpected(s.error());
  struct Cleanup {
    std::string dir;
    bool remove;
    ~Cleanup() {
      std::error_code e;
      if (remove) fs::remove_all(dir, e);
    }
  } cleanup{ctx.work, temp && !o.keep};
  if (auto s = PrepareContext(o, &ctx); !s) return std::unexpected(s.error());

  const std::vector<Point> points = Plan(o);
  std::vector<Measurement> rows;
  for (size_t i = 0; i < points.size(); ++i) {
    const Point& p = points[i];
    if (o.progress) o.progress(p, i, points.size(), nullptr);
    const std::string dir = fmt::format("{}/points/{:04}-{}-{}-{}-{}", ctx.work, i, p.mode, p.job,
                                        p.workload, p.load_bytes);
    if (auto s = MakeDirs(dir, 0700); !s) return std::unexpected(s.error());
    Result<Measurement> m = p.mode == "pandas" ? RunBaseline(o, p, ctx, dir)
                            : p.stream()       ? RunStream(o, p, ctx, dir)
                                               : RunBatch(o, p, ctx, dir);
    if (!m) {
      return std::unexpected(std::move(m.error()).With(
          fmt::format("{} {} {} {}", p.mode, p.job, p.workload, LoadLabel(p.load_bytes))));
    }
    rows.push_back(std::move(*m));
    if (!o.keep) fs::remove_all(dir, ec);
    if (o.progress) o.progress(p, i + 1, points.size(), &rows.back());
  }
  // Slowdown against vanilla at the same (job, workload, load): elapsed for batches; for streams,
  // whose elapsed time is the fixed duration, the average batch time.
  for (Measurement& m : rows) {
    for (const Measurement& v : rows) {
      if (v.point.mode == "vanilla" && v.point.job == m.point.job &&
          v.point.workload == m.point.workload && v.point.load_bytes == m.point.load_bytes) {
        m.slowdown = m.point.stream() ? m.avg_batch_ms / v.avg_batch_ms : m.Median() / v.Median();
      }
    }
  }
  return rows;
}

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

std::string MachineCaption(int reps) {
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
  return fmt::format(
      "{} cores, {}; median of {} repetitions, bars min-max (streams: average "
      "batch time over the run)",
      std::thread::hardware_concurrency(), cpu, reps);
}

Status Plot(const std::vector<Measurement>& rows, const std::string& dir, int reps) {
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
  const std::string caption = MachineCaption(reps);
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

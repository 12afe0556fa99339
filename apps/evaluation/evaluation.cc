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

// The largest load's beats (16 bytes each) must fit in one batch file, with room for its tags.
static_assert(kMaxLoadBytes / kTextBytesPerSample * 16 < 0.75 * wire::kMaxBatchBytes);

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
    rig->spool_ = dir + ".spool";  // beside the server's folder: one file system, as the gateway's
    if (auto s = MakeDirs(rig->spool_, 0700); !s) return std::unexpected(s.error());
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
  // A batch as the gateway cuts it (gateway::Gateway::Cut, UploadSpool): sealed while it is
  // written into the spool (plain in vanilla mode, through the same writer), then linked into the
  // inbox. Returns the file's size.
  Result<size_t> SealAndUpload(uint64_t seq, std::span<const hrv::Beat> beats) {
    const std::string name = wire::BatchFileName(stream_, seq);
    const std::string spooled = spool_ + "/" + name;
    std::atomic<size_t> bytes{0};  // a FileSink may be called from several threads
    auto write = [&](const FileSink& sink) {
      const FileSink counted = [&](uint64_t offset, crypto::ByteView part) {
        bytes += part.size();
        return sink(offset, part);
      };
      if (sealer_) return sealer_->SealBatchTo(seq, beats, counted);
      wire::Header h;
      h.stream = stream_;
      h.seq = seq;
      return wire::WriteBatchFileTo(h, beats, nullptr, nullptr, counted);
    };
    if (auto s = WriteFileAtomicFrom(spooled, 0600, write); !s) return std::unexpected(s.error());
    const Status uploaded = link_->UploadFile(name, spooled);
    std::remove(spooled.c_str());
    if (!uploaded) return std::unexpected(uploaded.error());
    return bytes.load();
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
  ~Rig() {
    std::error_code ec;
    if (!spool_.empty()) std::filesystem::remove_all(spool_, ec);
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
  std::string spool_;
};

Status CheckBeats(uint64_t got, uint64_t want, uint64_t seq) {
  if (got == want) return {};
  return Fail(Error::Code::kInternal,
              fmt::format("batch {}: the result accounts for {} beats, not {}", seq, got, want));
}

// One batch point in progress: its server and the repetitions measured so far.
struct BatchRun {
  Measurement m;
  std::unique_ptr<Rig> rig;
  std::vector<double> server_ms;
  double warmup_s = 0;  // rep 0's elapsed time
};

// One repetition (rep 0 warms up: first-touch page faults of a fresh server and enclave, and is
// not counted: a server in use is warm). The host's peak RSS is reset before it and read after, so
// a point's figure is its own repetitions' peak (plus what other live points keep resident).
Status BatchRep(Context& ctx, BatchRun& r, int rep) {
  Measurement& m = r.m;
  Rig& rig = *r.rig;
  const uint64_t seq = static_cast<uint64_t>(rep) + 1;
  const auto beats = ctx.pool.Block(m.samples, seq);
  ResetPeakRss();
  const auto t0 = Clock::now();
  MEDSTREAM_TRY(file_bytes, rig.SealAndUpload(seq, beats));
  const auto s0 = Clock::now();
  MEDSTREAM_TRY(n, rig.server().ProcessInbox());
  const auto s1 = Clock::now();
  if (n != 1 || rig.server().counters().quarantined != 0) {
    return Fail(Error::Code::kInternal,
                "the server quarantined a benchmark batch (kept with "
                "--keep, in the point's quarantine folder)");
  }
  MEDSTREAM_TRY(got, rig.Fetch(seq));
  const auto t1 = Clock::now();
  m.host_peak_rss_mb = std::max(m.host_peak_rss_mb, rig.HostPeakRssMb());
  if (auto s = CheckBeats(got, m.samples, seq); !s) return s;
  m.bytes_in = file_bytes;
  if (rep == 0) {
    r.warmup_s = Seconds(t1 - t0);
    return {};
  }
  m.elapsed.push_back(Seconds(t1 - t0));
  r.server_ms.push_back(Seconds(s1 - s0) * 1000);
  return {};
}

// The modes of one (job, workload, load) with their repetitions interleaved: vanilla's first,
// process's first, vanilla's second, ... Each mode has its own server throughout, but a drift of
// the shared machine (a neighbour's load, the clock's frequency) between one mode's repetitions and
// the next's falls on every mode alike, so their ratio is steadier than with one mode after the
// other.
Result<std::vector<Measurement>> RunBatches(const Options& o, std::span<const Point> points,
                                            Context& ctx, const std::vector<std::string>& dirs) {
  std::vector<BatchRun> runs(points.size());
  for (size_t i = 0; i < points.size(); ++i) {
    runs[i].m.point = points[i];
    runs[i].m.samples = SamplesFor(points[i].load_bytes);
    auto rig = Rig::Start(o, points[i], ctx, dirs[i]);
    if (!rig) return std::unexpected(std::move(rig.error()).With(points[i].mode));
    runs[i].rig = std::move(*rig);
  }
  int reps = o.reps;
  for (int rep = 0; rep <= reps; ++rep) {
    for (BatchRun& r : runs) {
      if (auto s = BatchRep(ctx, r, rep); !s) {
        return std::unexpected(std::move(s.error()).With(r.m.point.mode));
      }
    }
    if (rep == 0) {
      std::vector<double> warmups;
      for (const BatchRun& r : runs) warmups.push_back(r.warmup_s);
      reps = RepsFor(o, warmups);
    }
  }
  std::vector<Measurement> out;
  for (BatchRun& r : runs) {
    Measurement& m = r.m;
    m.batches = static_cast<uint64_t>(reps);
    m.avg_batch_ms = Median(r.server_ms);
    m.enclave_peak_rss_mb = r.rig->EnclavePeakRssMb();
    m.peak_rss_mb = m.host_peak_rss_mb + m.enclave_peak_rss_mb;
    out.push_back(std::move(m));
  }
  return out;
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

int RepsFor(const Options& o, std::span<const double> warmup_s) {
  const double slowest = warmup_s.empty() ? 0 : *std::ranges::max_element(warmup_s);
  if (o.min_time_s <= 0 || slowest <= 0) return o.reps;
  const double wanted = std::min(std::ceil(o.min_time_s / slowest), double{kMaxReps});
  return std::max(o.reps, static_cast<int>(wanted));
}

Options QuickOptions() {
  Options o;
  o.jobs = {"identity", "sdnn"};
  o.small_loads = {1024, 32 * 1024};
  o.big_loads = {uint64_t{1} << 20, uint64_t{4} << 20};
  o.reps = 2;
  o.min_time_s = 0;
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
  for (size_t i = 0; i < points.size();) {
    // A batch point runs with the other server modes of its (job, workload, load), interleaved.
    size_t group = 1;
    auto same_load = [&](const Point& q) {
      return q.mode != "pandas" && q.job == points[i].job && q.workload == points[i].workload &&
             q.load_bytes == points[i].load_bytes;
    };
    if (points[i].mode != "pandas" && !points[i].stream()) {
      while (i + group < points.size() && same_load(points[i + group])) ++group;
    }
    std::vector<std::string> dirs;
    for (size_t k = i; k < i + group; ++k) {
      const Point& p = points[k];
      if (o.progress) o.progress(p, i, points.size(), nullptr);
      dirs.push_back(fmt::format("{}/points/{:04}-{}-{}-{}-{}", ctx.work, k, p.mode, p.job,
                                 p.workload, p.load_bytes));
      if (auto s = MakeDirs(dirs.back(), 0700); !s) return std::unexpected(s.error());
    }
    const Point& p = points[i];
    Result<std::vector<Measurement>> m;
    if (p.mode == "pandas" || p.stream()) {
      auto one =
          p.mode == "pandas" ? RunBaseline(o, p, ctx, dirs[0]) : RunStream(o, p, ctx, dirs[0]);
      if (one) {
        m = std::vector{std::move(*one)};
      } else {
        m = std::unexpected(std::move(one.error()).With(p.mode));
      }
    } else {
      m = RunBatches(o, std::span(points).subspan(i, group), ctx, dirs);
    }
    if (!m) {
      return std::unexpected(std::move(m.error()).With(
          fmt::format("{} {} {}", p.job, p.workload, LoadLabel(p.load_bytes))));
    }
    for (size_t k = 0; k < group; ++k) {
      rows.push_back(std::move((*m)[k]));
      if (!o.keep) fs::remove_all(dirs[k], ec);
      if (o.progress) o.progress(points[i + k], i + k + 1, points.size(), &rows.back());
    }
    i += group;
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

}  // namespace medstream::evaluation

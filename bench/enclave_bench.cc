// Enclave benchmarks: attested handshake, per-call overhead of each backend, and batch
// throughput of the SDNN job in vanilla / inproc / process from 1 KB to 32 MB (issue target:
// process <= 1.15 x vanilla for batches >= 1 MB). Batches carry real RR intervals (the 24 h
// chf201 record, cycled) with continuing timestamps, as a stream would.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "adapters/recording/recording.h"
#include "common/attest/identity.h"
#include "common/attest/sim_platform.h"
#include "common/base/file.h"
#include "common/base/memory.h"
#include "host/inproc/inproc.h"
#include "host/server/vanilla.h"
#include "owner/client/client.h"

namespace medstream {
namespace {

namespace fs = std::filesystem;

const std::string& Platform() {
  static const std::string dir = [] {
    const std::string d =
        fs::temp_directory_path() / ("medstream-bench-" + std::to_string(getpid()));
    if (!attest::InitPlatform({.dir = d, .force = true, .now = time(nullptr)})) std::abort();
    if (!host::SignThisExecutableForInproc()) std::abort();
    std::atexit([] {
      fs::remove_all(fs::temp_directory_path() / ("medstream-bench-" + std::to_string(getpid())));
    });
    return d;
  }();
  return dir;
}

const crypto::Certificate& Root() {
  static const crypto::Certificate root =
      crypto::Certificate::FromPem(*ReadFileText(attest::SimPlatform::RootPath(Platform())))
          .value();
  return root;
}

std::unique_ptr<host::EnclaveTransport> Launch(const std::string& backend) {
  auto t = host::LaunchEnclave({.backend = backend,
                                .platform_dir = Platform(),
                                .enclave_path = MEDSTREAM_ENCLAVE_BINARY,
                                .inproc = host::LaunchInproc});
  if (!t) {
    std::fprintf(stderr, "%s\n", t.error().message().c_str());
    std::abort();
  }
  return std::move(*t);
}

attest::Policy PolicyFor(host::EnclaveTransport& t) {
  auto info = host::GetInfo(t).value();
  attest::Policy p;
  p.mr_enclave = {info.mr_enclave};
  p.allow_simulated = true;
  return p;
}

const std::vector<double>& RealRr() {
  static const std::vector<double> rr = [] {
    recording::ReadOptions o;
    o.unit = recording::Unit::kS;
    auto rec = recording::ReadRecording(
        std::string(MEDSTREAM_TEST_DATA_DIR) + "/rr/chf2db_chf201_rr_secs.txt", o);
    std::vector<double> out;
    for (const auto& b : rec->beats) {
      if (b.rr_ms >= 300 && b.rr_ms <= 2000) out.push_back(b.rr_ms);
    }
    return out;
  }();
  return rr;
}

// Produces consecutive batches of one stream.
class BatchSource {
 public:
  explicit BatchSource(size_t bytes) : beats_per_batch_(bytes / 16) {}
  std::vector<hrv::Beat> Next() {
    std::vector<hrv::Beat> out(std::max<size_t>(beats_per_batch_, 1));
    const auto& rr = RealRr();
    for (auto& b : out) {
      const double v = rr[i_++ % rr.size()];
      t_ += v / 1000;
      b = {t_, v};
    }
    return out;
  }
  size_t beats_per_batch() const { return beats_per_batch_; }

 private:
  size_t beats_per_batch_;
  size_t i_ = 0;
  double t_ = 1.7e9;
};

void BM_Handshake(benchmark::State& state, const std::string& backend) {
  auto t = Launch(backend);
  const attest::Policy policy = PolicyFor(*t);
  for (auto _ : state) {
    auto s = client::Attest(*t, {.root = &Root(), .policy = policy});
    if (!s) state.SkipWithError(s.error().message().c_str());
    benchmark::DoNotOptimize(s);
  }
}
BENCHMARK_CAPTURE(BM_Handshake, inproc, std::string("inproc"))->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Handshake, process, std::string("process"))->Unit(benchmark::kMicrosecond);

void BM_CallOverhead(benchmark::State& state, const std::string& backend) {
  auto t = Launch(backend);
  for (auto _ : state) {
    auto r = t->Call(enclave::Call::kStats, {});
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK_CAPTURE(BM_CallOverhead, inproc, std::string("inproc"))->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_CallOverhead, process, std::string("process"))->Unit(benchmark::kMicrosecond);

void BM_VanillaCall(benchmark::State& state) {
  host::VanillaProcessor v({});
  BatchSource src(1024);
  wire::Header h;
  uint64_t seq = 0;
  for (auto _ : state) {
    state.PauseTiming();
    h.seq = ++seq;
    auto file = wire::MakeBatchFile(h, {}, nullptr).value();
    state.ResumeTiming();
    benchmark::DoNotOptimize(v.ProcessBatch(file));
  }
}
BENCHMARK(BM_VanillaCall)->Unit(benchmark::kMicrosecond);

enclave::StreamConfig JobConfig(hrv::JobKind job) {
  enclave::StreamConfig c;
  c.jobs = {job};
  return c;
}

// One batch of state.range(0) bytes per iteration, timed from the batch file being in memory to
// the result file being in memory (the enclave's decryption and encryption included; the
// gateway's sealing of the next batch is not timed).
// With `idle_ms`, each batch comes after that long idle, as a stream's batch a second apart does:
// the enclave's threads are asleep and its caches cold (the wake-up path of the stream workloads).
// `job`: sdnn by default; identity, whose analysis is a digest, shows what the enclave's crypto and
// copies cost on their own.
void BM_Batch(benchmark::State& state, const std::string& mode, int idle_ms = 0,
              hrv::JobKind job = hrv::JobKind::kSdnn) {
  const size_t bytes = static_cast<size_t>(state.range(0));
  BatchSource src(bytes);
  std::unique_ptr<host::EnclaveTransport> t;
  std::unique_ptr<host::VanillaProcessor> vanilla;
  crypto::Key256 key;
  (void)crypto::RandomBytes(key.span());
  const wire::StreamId stream = {7};
  std::optional<client::StreamSealer> sealer;
  if (mode == "vanilla") {
    vanilla = std::make_unique<host::VanillaProcessor>(JobConfig(job));
  } else {
    t = Launch(mode);
    auto s = client::Attest(*t, {.root = &Root(), .policy = PolicyFor(*t)}).value();
    enclave::ProvisionKey p;
    p.key_id = 1;
    p.key = key;
    p.config = JobConfig(job);
    if (!client::Provision(*t, s, p)) std::abort();
    sealer.emplace(client::StreamSealer::Create(key, 1, stream).value());
  }
  uint64_t seq = 0;
  size_t file_bytes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    const auto beats = src.Next();
    crypto::Bytes file;
    if (vanilla) {
      wire::Header h;
      h.stream = stream;
      h.seq = ++seq;
      file = wire::MakeBatchFile(h, beats, nullptr).value();
    } else {
      file = sealer->SealBatch(++seq, beats).value();
    }
    file_bytes = file.size();
    if (idle_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(idle_ms));
    state.ResumeTiming();
    auto r = vanilla ? vanilla->ProcessBatch(file) : t->Call(enclave::Call::kProcessBatch, file);
    if (!r) state.SkipWithError(r.error().message().c_str());
    benchmark::DoNotOptimize(r);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * file_bytes));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * src.beats_per_batch()));
}

void Sizes(benchmark::internal::Benchmark* b) {
  for (int64_t s = 1 << 10; s <= int64_t{32} << 20; s *= 4) b->Arg(s);
  b->Arg(int64_t{32} << 20);
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
// Sealing and opening a 22 MB file (a 32 MB-text identity result) on one thread or two
// (wire::Helper): what the gateway and the enclave spend on AES-GCM per large file.
void BM_SealFile(benchmark::State& state) {
  crypto::Key256 key;
  (void)crypto::RandomBytes(key.span());
  auto gcm = crypto::AesGcm::Create(key).value();
  auto second = crypto::AesGcm::Create(key).value();
  const crypto::Bytes payload(size_t{22} << 20, 0x5a);
  wire::Header h;
  h.kind = wire::Kind::kResult;
  for (auto _ : state) {
    wire::ThreadHelper two(&second);
    auto file = wire::MakeFile(h, payload, &gcm, state.range(0) == 2 ? two.get() : nullptr);
    benchmark::DoNotOptimize(file);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * payload.size()));
}
BENCHMARK(BM_SealFile)->ArgName("threads")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);

void BM_OpenFile(benchmark::State& state) {
  crypto::Key256 key;
  (void)crypto::RandomBytes(key.span());
  auto gcm = crypto::AesGcm::Create(key).value();
  auto second = crypto::AesGcm::Create(key).value();
  wire::Header h;
  h.kind = wire::Kind::kResult;
  const auto file = wire::MakeFile(h, crypto::Bytes(size_t{22} << 20, 0x5a), &gcm).value();
  for (auto _ : state) {
    wire::ThreadHelper two(&second);
    auto opened =
        wire::OpenFile(file, wire::Kind::kResult, &gcm, state.range(0) == 2 ? two.get() : nullptr);
    if (!opened) state.SkipWithError(opened.error().message().c_str());
    benchmark::DoNotOptimize(opened);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * (size_t{22} << 20)));
}
BENCHMARK(BM_OpenFile)->ArgName("threads")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);

// The gateway's cut of one batch of state.range(0) bytes into its spool (WriteFileAtomic: written,
// fsync'ed, renamed): "plain" as vanilla writes it, "sealed_then_written" (SealBatch, then the
// file), "sealed_while_written" (SealBatchTo: each 4 MiB chunk written as soon as it is sealed,
// no sealed copy of the whole batch), which is what the gateway does.
void BM_SpoolBatch(benchmark::State& state, const std::string& how) {
  BatchSource src(static_cast<size_t>(state.range(0)));
  const auto beats = src.Next();
  crypto::Key256 key;
  (void)crypto::RandomBytes(key.span());
  auto sealer = client::StreamSealer::Create(key, 1, {7}).value();
  const std::string dir = std::filesystem::temp_directory_path() /
                          ("medstream-spool-bench-" + std::to_string(getpid()));
  (void)MakeDirs(dir, 0700);
  uint64_t seq = 0;
  for (auto _ : state) {
    const std::string path = dir + "/" + std::to_string(++seq) + ".batch";
    Status s;
    if (how == "plain") {
      wire::Header h;
      h.seq = seq;
      s = WriteFileAtomicFrom(path, 0600, [&](const FileSink& w) {
        return wire::WriteBatchFileTo(h, beats, nullptr, nullptr, w);
      });
    } else if (how == "sealed_then_written") {
      auto file = sealer.SealBatch(seq, beats);
      s = file ? WriteFileAtomic(path, *file, 0600) : Status(std::unexpected(file.error()));
    } else {
      s = WriteFileAtomicFrom(path, 0600,
                              [&](const FileSink& w) { return sealer.SealBatchTo(seq, beats, w); });
    }
    if (!s) state.SkipWithError(s.error().message().c_str());
    state.PauseTiming();
    std::remove(path.c_str());
    state.ResumeTiming();
  }
  std::filesystem::remove_all(dir);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * beats.size() * 16));
}
void SpoolSizes(benchmark::internal::Benchmark* b) {
  for (int64_t s : {int64_t{1} << 20, int64_t{4} << 20, int64_t{32} << 20}) b->Arg(s);
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK_CAPTURE(BM_SpoolBatch, plain, std::string("plain"))->Apply(SpoolSizes);
BENCHMARK_CAPTURE(BM_SpoolBatch, sealed_then_written, std::string("sealed_then_written"))
    ->Apply(SpoolSizes);
BENCHMARK_CAPTURE(BM_SpoolBatch, sealed_while_written, std::string("sealed_while_written"))
    ->Apply(SpoolSizes);

// BM_SpoolBatch without the disk: the batch file's parts copied into memory, so what is left is the
// CPU the gateway spends per batch ("plain": framing and copy; "sealed": SealBatchTo on this thread
// and the shared helper thread, each sealed segment written as soon as it is done).
void BM_SealToMemory(benchmark::State& state, const std::string& how) {
  BatchSource src(static_cast<size_t>(state.range(0)));
  const auto beats = src.Next();
  crypto::Key256 key;
  (void)crypto::RandomBytes(key.span());
  auto sealer = client::StreamSealer::Create(key, 1, {7}).value();
  std::vector<uint8_t> dest(wire::SealedFileSize(beats.size() * sizeof(hrv::Beat)));
  const FileSink sink = [&](uint64_t offset, std::span<const uint8_t> part) -> Status {
    if (offset + part.size() > dest.size()) return InvalidArgument("a part past the end");
    std::memcpy(dest.data() + offset, part.data(), part.size());
    return {};
  };
  uint64_t seq = 0;
  for (auto _ : state) {
    Status s;
    if (how == "plain") {
      wire::Header h;
      h.seq = ++seq;
      s = wire::WriteBatchFileTo(h, beats, nullptr, nullptr, sink);
    } else {
      s = sealer.SealBatchTo(++seq, beats, sink);
    }
    if (!s) state.SkipWithError(s.error().message().c_str());
    benchmark::DoNotOptimize(dest.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * beats.size() * 16));
}
BENCHMARK_CAPTURE(BM_SealToMemory, plain, std::string("plain"))->Apply(SpoolSizes);
BENCHMARK_CAPTURE(BM_SealToMemory, sealed, std::string("sealed"))->Apply(SpoolSizes);
BENCHMARK_CAPTURE(BM_Batch, vanilla, std::string("vanilla"))->Apply(Sizes);
BENCHMARK_CAPTURE(BM_Batch, inproc, std::string("inproc"))->Apply(Sizes);
BENCHMARK_CAPTURE(BM_Batch, process, std::string("process"))->Apply(Sizes);
void IdentitySizes(benchmark::internal::Benchmark* b) {
  b->Arg(1 << 20)->Arg(4 << 20)->Arg(16 << 20)->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK_CAPTURE(BM_Batch, vanilla_identity, std::string("vanilla"), 0, hrv::JobKind::kIdentity)
    ->Apply(IdentitySizes);
BENCHMARK_CAPTURE(BM_Batch, process_identity, std::string("process"), 0, hrv::JobKind::kIdentity)
    ->Apply(IdentitySizes);
void IdleSizes(benchmark::internal::Benchmark* b) {
  b->Arg(1 << 20)->Arg(4 << 20)->Iterations(30)->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK_CAPTURE(BM_Batch, vanilla_after_idle, std::string("vanilla"), 300)->Apply(IdleSizes);
BENCHMARK_CAPTURE(BM_Batch, process_after_idle, std::string("process"), 300)->Apply(IdleSizes);

}  // namespace
}  // namespace medstream

int main(int argc, char** argv) {
  medstream::TuneAllocatorForLargeBuffers();  // as medstream and medstream-enclave do
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

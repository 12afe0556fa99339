// Data lake benchmarks (issue targets: ingest >= 200 k rows/s; a GROUP BY aggregate over 1 M rows
// < 1 s in process mode), against sqlite3 running the same query on the plaintext rows.
// Everything goes through the real path: LakeHost (SQLite store of sealed pages), the process
// enclave, the attested channel, and LakeClient.
#include <benchmark/benchmark.h>
#include <sqlite3.h>

#include <filesystem>

#include "common/attest/identity.h"
#include "common/attest/sim_platform.h"
#include "common/base/file.h"
#include "common/base/memory.h"
#include "host/lake_host/lake_host.h"
#include "owner/lake_client/lake_client.h"

namespace medstream {
namespace {

namespace fs = std::filesystem;
constexpr char kQuery[] =
    "SELECT ward, sex, AVG(systolic_bp), STDDEV(systolic_bp), COUNT(*) FROM admissions WHERE age "
    ">= 60 AND readmitted = 'no' GROUP BY ward, sex";
constexpr char kSqliteQuery[] =
    "SELECT ward, sex, AVG(systolic_bp), COUNT(*) FROM admissions WHERE age >= 60 AND readmitted "
    "= 'no' GROUP BY ward, sex";

// One lake per simulated platform: the lake's rollback counter belongs to (platform, enclave).
struct Lake {
  std::unique_ptr<crypto::Certificate> root;
  std::unique_ptr<lakesvc::LakeHost> host;
  std::unique_ptr<lakesvc::LakeClient> client;
};

struct Fixture {
  std::string dir;
  std::string csv;
  crypto::EcKey key = crypto::EcKey::Generate().value();
  explicit Fixture(uint64_t rows) {
    dir = fs::temp_directory_path() / ("medstream-lake-bench-" + std::to_string(getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    csv = dir + "/admissions.csv";
    if (!WriteFileAtomic(csv, lakesvc::SynthesizeAdmissions(rows, 1))) std::abort();
  }
  ~Fixture() { fs::remove_all(dir); }
  Lake Open(const std::string& sub) {
    const std::string d = dir + "/" + sub;
    fs::create_directories(d);
    if (auto s = attest::InitPlatform({.dir = d + "/platform", .now = time(nullptr)}); !s) {
      std::fprintf(stderr, "%s\n", s.error().message().c_str());
      std::abort();
    }
    Lake l;
    l.root = std::make_unique<crypto::Certificate>(
        crypto::Certificate::FromPem(*ReadFileText(attest::SimPlatform::RootPath(d + "/platform")))
            .value());
    auto h = lakesvc::LakeHost::Start({.dir = d,
                                       .mode = "process",
                                       .platform_dir = d + "/platform",
                                       .enclave_path = MEDSTREAM_ENCLAVE_BINARY});
    if (!h) {
      std::fprintf(stderr, "%s\n", h.error().message().c_str());
      std::abort();
    }
    l.host = std::move(*h);
    client::AttestOptions attest;
    attest.root = l.root.get();
    attest.policy.mr_enclave = {attest::LoadIdentity(MEDSTREAM_ENCLAVE_BINARY)->mr_enclave};
    attest.policy.allow_simulated = true;
    l.client = lakesvc::LakeClient::Connect(l.host->transport(), attest, key).value();
    if (!l.client->Init("bench")) std::abort();
    return l;
  }
};

Fixture& F() {
  static Fixture f(1'000'000);
  return f;
}

void BM_Ingest1M(benchmark::State& state) {
  int round = 0;
  for (auto _ : state) {
    state.PauseTiming();
    Lake lake = F().Open("ingest" + std::to_string(round++));
    state.ResumeTiming();
    auto r = lake.client->Ingest("admissions", F().csv, "", 5, nullptr);
    if (!r || r->stored != 1'000'000) state.SkipWithError("ingest failed");
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * 1'000'000);
}
BENCHMARK(BM_Ingest1M)->Unit(benchmark::kMillisecond)->UseRealTime()->Iterations(2);

void BM_GroupBy1M_Process(benchmark::State& state) {
  static int round = 0;  // the benchmark function runs more than once
  Lake lake = F().Open("query" + std::to_string(round++));
  if (auto in = lake.client->Ingest("admissions", F().csv, "", 5, nullptr); !in) {
    state.SkipWithError(in.error().message().c_str());
    return;
  }
  for (auto _ : state) {
    auto r = lake.client->Query(kQuery);
    if (!r || r->rows.size() != 12) {
      state.SkipWithError(r ? "wrong number of groups" : r.error().message().c_str());
      break;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * 1'000'000);
}
BENCHMARK(BM_GroupBy1M_Process)->Unit(benchmark::kMillisecond)->UseRealTime();

// sqlite3 on the plaintext, the same rows in an indexed-nothing table (as an analyst would load
// the CSV), the same aggregate (without STDDEV, which sqlite3 lacks).
void BM_GroupBy1M_Sqlite3(benchmark::State& state) {
  sqlite3* db = nullptr;
  sqlite3_open(":memory:", &db);
  sqlite3_exec(db,
               "CREATE TABLE admissions (patient_id TEXT, admission_date TEXT, age INTEGER, sex "
               "TEXT, ward TEXT, diagnosis TEXT, systolic_bp INTEGER, diastolic_bp INTEGER, "
               "heart_rate INTEGER, bmi REAL, length_of_stay INTEGER, readmitted TEXT)",
               nullptr, nullptr, nullptr);
  sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
  sqlite3_stmt* ins = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO admissions VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", -1, &ins,
                     nullptr);
  const std::string text = *ReadFileText(F().csv);
  size_t pos = text.find('\n') + 1;
  while (pos < text.size()) {
    const size_t end = text.find('\n', pos);
    std::string_view line(text.data() + pos, end - pos);
    sqlite3_reset(ins);
    int col = 1;
    size_t s = 0;
    while (true) {
      const size_t comma = line.find(',', s);
      const std::string_view f =
          line.substr(s, comma == std::string_view::npos ? line.npos : comma - s);
      sqlite3_bind_text(ins, col++, f.data(), static_cast<int>(f.size()), SQLITE_TRANSIENT);
      if (comma == std::string_view::npos) break;
      s = comma + 1;
    }
    sqlite3_step(ins);
    pos = end + 1;
  }
  sqlite3_finalize(ins);
  sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  for (auto _ : state) {
    sqlite3_stmt* q = nullptr;
    sqlite3_prepare_v2(db, kSqliteQuery, -1, &q, nullptr);
    int rows = 0;
    while (sqlite3_step(q) == SQLITE_ROW) ++rows;
    sqlite3_finalize(q);
    if (rows != 12) state.SkipWithError("sqlite3 query failed");
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * 1'000'000);
  sqlite3_close(db);
}
BENCHMARK(BM_GroupBy1M_Sqlite3)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace medstream

int main(int argc, char** argv) {
  medstream::TuneAllocatorForLargeBuffers();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

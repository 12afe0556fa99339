// Writes the seed corpus of every fuzz target into OUT/<target>/, made from real data: the
// PhysioNet recordings in tests/data/rr (and ../shared/data when present), the real SGX quotes and
// collateral in tests/data/attestation, and files made with medstream's own encoders from those
// beats (MQTT payloads, batch and result files, channel messages, edge frames).
//   make_seeds OUT TEST_DATA_DIR [SHARED_DATA_DIR]
#include <filesystem>
#include <fstream>
#include <iostream>

#include "adapters/recording/recording.h"
#include "algo/hrv/jobs.h"
#include "common/abi/edge.h"
#include "common/attest/policy.h"
#include "common/base/file.h"
#include "common/channel/channel.h"
#include "common/crypto/crypto.h"
#include "common/wire/wire.h"
#include "owner/gateway/beat_log.h"
#include "owner/sensor/sensor.h"

namespace fs = std::filesystem;
using namespace medstream;

namespace {

std::string g_out;
int g_written = 0;

void Put(const std::string& target, const std::string& name, std::span<const uint8_t> bytes) {
  const std::string dir = g_out + "/" + target;
  fs::create_directories(dir);
  std::ofstream(dir + "/" + name, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
  ++g_written;
}
void Put(const std::string& target, const std::string& name, std::string_view text) {
  Put(target, name, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

crypto::Key256 FixedKey(int mul, int add) {
  crypto::Key256 k;
  for (size_t i = 0; i < 32; ++i) k.span()[i] = static_cast<uint8_t>(i * mul + add);
  return k;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: make_seeds OUT TEST_DATA_DIR [SHARED_DATA_DIR]\n";
    return 2;
  }
  g_out = argv[1];
  const std::string test_data = argv[2];
  std::vector<std::string> rr_files;
  for (const std::string& dir :
       {test_data + "/rr", argc > 3 ? std::string(argv[3]) + "/rr" : std::string()}) {
    if (dir.empty() || !fs::exists(dir)) continue;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.is_regular_file() && e.path().extension() != ".md") rr_files.push_back(e.path());
    }
  }
  std::sort(rr_files.begin(), rr_files.end());
  // Recordings: the first 8 KB of each real file, under each format/unit selector byte.
  std::vector<hrv::Beat> beats;
  for (const std::string& f : rr_files) {
    auto text = ReadFileText(f).value();
    const std::string name = fs::path(f).filename();
    for (uint8_t sel : {0, 1, 2}) {
      std::string seed(1, static_cast<char>(sel));
      seed += text.substr(0, 8192);
      Put("recording", name + "-" + std::to_string(sel), seed);
    }
    Put("lake_csv", name, text.substr(0, 4096));
    if (beats.empty()) {
      auto rec = recording::ParseRecording(text, f, {});
      if (rec) beats = rec->beats;
    }
  }
  // WFDB: the excerpt's header with the start of its signal file, and its annotations.
  {
    auto slurp = [](const std::string& path) {
      std::ifstream in(path, std::ios::binary);
      return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    };
    const std::string hea = slurp(test_data + "/wfdb/119_3min.hea");
    const std::string dat = slurp(test_data + "/wfdb/119_3min.dat").substr(0, 3000);
    // The header says 64 800 frames: also one for the 1000 frames the 3000 bytes hold (initial
    // values, no checksums), which decodes.
    const std::string short_hea =
        "119_3min 2 360 1000\n119_3min.dat 212 200 11 1024 825\n119_3min.dat 212 200 11 1024 930\n";
    for (const auto& [name, h] : {std::pair{"excerpt-short", short_hea}, {"excerpt", hea}}) {
      std::string seed;
      seed.push_back(static_cast<char>(h.size() & 0xFF));
      seed.push_back(static_cast<char>(h.size() >> 8));
      Put("wfdb_record", name, seed + h + dat);
    }
    Put("wfdb_annotations", "excerpt", slurp(test_data + "/wfdb/119_3min.atr"));
  }
  for (const auto& e : fs::directory_iterator(test_data + "/bad")) {
    Put("recording", "bad-" + e.path().filename().string(),
        "\x00" + ReadFileText(e.path()).value_or(""));
  }
  if (beats.empty()) {
    std::cerr << "make_seeds: no recording found under " << test_data << "/rr\n";
    return 1;
  }
  // Real beats on an epoch clock, as sensors send them.
  for (hrv::Beat& b : beats) b.t_s += 1.7e9;
  const std::span all(beats);
  // MQTT payloads.
  for (size_t n : {1, 3, 10, 100, 1024}) {
    Put("mqtt_payload", "beats-" + std::to_string(n),
        sensor::EncodePayload({.session = 42, .seq = n, .first_beat = 3 * n}, all.first(n)));
    Put("mqtt_payload", "v1-beats-" + std::to_string(n), sensor::EncodePayloadV1(all.first(n)));
  }
  Put("mqtt_payload", "status", sensor::EncodeStatus({42, 10, 30, true}));
  const std::vector<uint16_t> rr{800, 790, 1023};
  Put("mqtt_payload", "ble-hrm", sensor::EncodeHeartRateMeasurement(70, rr));
  Put("mqtt_payload", "json", R"({"t": 1700000000.25, "rr_ms": [812, 790.5, 801]})");
  Put("mqtt_payload", "json-seq",
      R"({"t": 1700000000.25, "rr_ms": [812], "session": 7, "seq": 3, "first_beat": 9})");
  // Batch files, plain and under the targets' fixed key.
  auto batch_gcm = crypto::AesGcm::Create(FixedKey(7, 1)).value();
  for (size_t n : {1, 50, 400}) {
    wire::Header h;
    h.kind = wire::Kind::kBatch;
    h.key_id = 1;
    h.stream = {0x5e, 0x11};
    h.seq = n;
    Put("batch_file", "plain-" + std::to_string(n),
        wire::MakeBatchFile(h, all.first(n), nullptr).value());
    Put("batch_file", "sealed-" + std::to_string(n),
        wire::MakeBatchFile(h, all.first(n), &batch_gcm).value());
  }
  // Result files: the real windows of the real beats.
  auto result_gcm = crypto::AesGcm::Create(FixedKey(3, 5)).value();
  for (hrv::JobKind kind : {hrv::JobKind::kSdnn, hrv::JobKind::kHrvFull, hrv::JobKind::kIdentity}) {
    auto job = hrv::StreamJob::Create(kind, {}, {.window_s = 60, .step_s = 30}).value();
    hrv::MetricsEngine engine({}, hrv::JobSelection(kind));
    wire::BatchResult r;
    r.beats = 300;
    r.jobs.emplace_back(kind, hrv::JobOutput{});
    job.Push(all.first(300), engine, &r.jobs[0].second);
    crypto::Bytes payload;
    wire::EncodeResult(r, &payload);
    const std::string name = std::string(hrv::JobName(kind));
    Put("result_file", "payload-" + name, payload);
    wire::Header h;
    h.kind = wire::Kind::kResult;
    h.stream = {0x5e, 0x11};
    h.seq = 1;
    Put("result_file", "plain-" + name, wire::MakeFile(h, payload, nullptr).value());
    Put("result_file", "sealed-" + name, wire::MakeFile(h, payload, &result_gcm).value());
  }
  // Channel: a real ClientHello, the enclave's ServerHello, records under the fixed keys.
  auto client = channel::ClientHandshake::Start().value();
  Put("channel", "client-hello", client.hello());
  auto server =
      channel::ServerHandshake::Respond(client.hello(), 1,
                                        [](const channel::ReportData&) -> Result<crypto::Bytes> {
                                          return crypto::Bytes(64, 0x42);
                                        })
          .value();
  Put("channel", "server-hello", server.reply());
  auto sender = channel::RecordLayer::Create(FixedKey(-1, 255), FixedKey(1, 0)).value();
  for (auto type : {channel::RecordType::kApplication, channel::RecordType::kFinished}) {
    const std::string text = "provision key 1";
    Put("channel", "record-" + std::to_string(static_cast<int>(type)),
        sender.Seal(type, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()))
            .value());
  }
  // Edge calls: header | request | index of the call (FuzzedDataProvider takes it from the end).
  auto edge = [&](const std::string& name, uint8_t index, uint16_t call,
                  std::span<const uint8_t> request) {
    crypto::Bytes seed(enclave::kFrameHeaderSize);
    enclave::EncodeFrameHeader(true, call, request.size(), seed.data());
    seed.insert(seed.end(), request.begin(), request.end());
    seed.push_back(index);
    Put("edge_call", name, seed);
  };
  edge("info", 0, 1, {});
  edge("handshake", 1, 2, client.hello());
  {
    crypto::Bytes req;
    ByteWriter w(&req);
    w.U64(1);
    w.Bytes(sender.Seal(channel::RecordType::kApplication, client.hello()).value());
    edge("channel", 2, 3, req);
    edge("lake-request", 8, 11, req);
  }
  {
    wire::Header h;
    h.key_id = 1;
    h.stream = {1};
    h.seq = 1;
    edge("process-batch", 3, 4, wire::MakeBatchFile(h, all.first(20), &batch_gcm).value());
  }
  edge("restore", 4, 7, crypto::Bytes(100, 7));
  edge("stats", 5, 8, {});
  for (uint8_t kind : {1, 2, 3}) {
    crypto::Bytes req;
    ByteWriter w(&req);
    w.U8(kind);
    w.String(kind == 2 ? "page/admissions/1" : "manifest");
    w.Bytes(crypto::Bytes(64, kind));
    edge("lake-load-" + std::to_string(kind), 7, 10, req);
  }
  // Attestation: real quotes and collateral.
  for (const auto& e : fs::directory_iterator(test_data + "/attestation")) {
    const std::string name = e.path().filename();
    auto bytes = ReadFileBytes(e.path()).value();
    if (e.path().extension() == ".bin") Put("quote", name, bytes);
    if (e.path().extension() == ".json") Put("collateral", name, bytes);
  }
  attest::Policy p;
  p.mr_enclave = {attest::Digest{}};
  p.allow_simulated = true;
  Put("policy", "simulated", attest::PolicyToJson(p));
  p.isv_prod_id = 3;
  p.min_isv_svn = 2;
  p.mr_signer = {attest::Digest{}};
  Put("policy", "full", attest::PolicyToJson(p));
  // Lake: CSV in the fuzz schema's shape, and the queries the tests run.
  Put("lake_csv", "schema-shaped",
      "id,day,age,sex,bp\nP1,2024-01-01,30,F,120.5\n\"P,2\",2024-02-29,41,M,\nP3,,x,F,1e3\n");
  for (const char* q :
       {"SELECT COUNT(*) FROM t",
        "SELECT sex, AVG(bp), COUNT(*) FROM t WHERE age >= 40 GROUP BY sex",
        "SELECT sex, STDDEV(bp), MEDIAN(age), PERCENTILE(bp, 90) FROM t WHERE age BETWEEN 20 AND "
        "70 "
        "OR day < '2024-01-03' GROUP BY sex",
        "SELECT COUNT(*) FROM t WHERE NOT (sex IN ('F', 'X') AND bp IS NOT NULL)",
        "SELECT age, note FROM t WHERE note = 'a'", "SELECT MIN(day), MAX(day) AS last FROM t;"}) {
    Put("sql", "q" + std::to_string(g_written), std::string_view(q));
  }
  // Rolling: raw bytes of real beats (the target reads doubles from them).
  Put("rolling", "real-beats",
      std::span(reinterpret_cast<const uint8_t*>(beats.data()), 400 * sizeof(hrv::Beat)));
  Put("rolling", "small", std::string_view("\x01\x00\x10\x20\x30\x40\x50\x60\x70\x80\x90\xa0"));
  // The gateway's write-ahead log under the beat_log target's key: records of 1, 10 and 100 real
  // beats, with and without their message's sequence.
  {
    const std::string path = g_out + "/.seed.wal";
    fs::remove(path);
    if (auto log = gateway::BeatLog::Open(path, FixedKey(7, 1), "user-0001")) {
      uint64_t seq = 0, first = 0;
      for (const size_t n : {size_t{1}, size_t{10}, size_t{100}, size_t{10}}) {
        (void)log->Append(all.subspan(first, n), sensor::Sequence{3, seq++, first});
        first += n;
      }
      (void)log->Append(all.first(5));  // a version 1 message
    }
    if (auto b = ReadFileBytes(path)) Put("beat_log", "records", *b);
    fs::remove(path);
  }
  // Results files' ends as the gateway writes them: JSON lines with their markers (kind byte 0),
  // a CSV with its header (kind byte 1); the second byte is the newest result the jsonl has.
  Put("result_tail", "jsonl",
      std::string_view(
          "\x00\xff{\"seq\":1,\"job\":\"sdnn\",\"t_start\":0.0,\"sdnn\":41.5}\n"
          "{\"seq\":1,\"windows\":1,\"end\":true}\n{\"seq\":2,\"windows\":0,\"end\":true}\n"
          "{\"seq\":3,\"job\":\"sdnn\",\"t_start\":30.0,\"sdnn\":40.2}\n{\"seq\":3,\"wi"));
  Put("result_tail", "csv",
      std::string_view(
          "\x01\x03seq,t_start,t_end,coverage,sdnn,lost_beats,start_utc,end_utc\n"
          "1,0,300,1,41.5,0,x,y\n1,30,330,1,40.25,0,x,y\n3,60,360,1,38,2,x,y\n4,90,39"));
  std::cout << "make_seeds: " << g_written << " seeds in " << g_out << "\n";
  return 0;
}

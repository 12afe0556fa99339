// The data lake end to end through the real executable (process enclave, SQLite store): results
// against an oracle (sqlite3 and pandas over the same CSV), every refusal the issue lists, and
// no plaintext in the storage directory. Plus unit tests of the SQL subset and the tables.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <signal.h>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "adapters/proc/proc.h"
#include "common/base/file.h"
#include "common/lake_abi/csv.h"
#include "host/lake_host/lake_host.h"
#include "owner/lake_client/lake_client.h"
#include "tests/shell.h"

namespace medstream {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

using CmdResult = testing::ShellResult;
using testing::Shell;

// The first child process of `parent` (the lake host's enclave), or -1.
pid_t ChildOf(pid_t parent) {
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    auto stat = ReadFileText(e.path().string() + "/stat");
    if (!stat) continue;
    // pid (comm) state ppid ...
    const size_t close = stat->rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream in(stat->substr(close + 2));
    std::string state;
    pid_t ppid = 0;
    in >> state >> ppid;
    if (ppid == parent) return static_cast<pid_t>(std::stol(name));
  }
  return -1;
}

class LakeCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("lake-test-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  CmdResult Lake(const std::string& args, const std::string& identity = "") {
    return Shell(std::string(MEDSTREAM_BINARY) + " lake --dir " + (dir_ / "lake").string() +
                 (identity.empty() ? "" : " --identity " + identity) + " " + args);
  }
  // Shell-quoted.
  std::string Q(const std::string& sql) {
    std::string out = "'";
    for (char c : sql) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
  }
  fs::path dir_;
};

TEST_F(LakeCli, AggregatesEqualSqliteAndPandas) {
  const std::string csv = (dir_ / "adm.csv").string();
  ASSERT_TRUE(WriteFileAtomic(csv, lakesvc::SynthesizeAdmissions(20000, 7)));
  ASSERT_EQ(Lake("init --name hospital-a").exit_code, 0);
  auto r = Lake("ingest --dataset admissions " + csv);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("20000 rows stored, 0 rows refused"), std::string::npos) << r.out;
  const std::vector<std::string> queries = {
      "SELECT sex, AVG(systolic_bp), COUNT(*) FROM admissions WHERE age >= 60 GROUP BY sex",
      "SELECT ward, diagnosis, COUNT(*), SUM(length_of_stay), MIN(bmi), MAX(heart_rate) FROM "
      "admissions WHERE readmitted = 'yes' AND NOT ward IN ('icu') GROUP BY ward, diagnosis",
      "SELECT ward, STDDEV(systolic_bp), MEDIAN(diastolic_bp), PERCENTILE(bmi, 90) FROM "
      "admissions WHERE age BETWEEN 40 AND 70 OR admission_date < '2023-03-01' GROUP BY ward",
      "SELECT COUNT(*), AVG(bmi), MIN(admission_date), MAX(admission_date) FROM admissions",
      "SELECT ward, age, COUNT(*) FROM admissions WHERE age > 90 GROUP BY ward, age",  // small
  };
  json spec = json::array();
  json got = json::array();
  for (const auto& q : queries) {
    spec.push_back({{"sql", q}, {"k", 5}});
    auto res = Lake("query --json " + Q(q));
    ASSERT_EQ(res.exit_code, 0) << q << "\n" << res.out;
    got.push_back(json::parse(res.out));
  }
  ASSERT_TRUE(WriteFileAtomic((dir_ / "q.json").string(), spec.dump()));
  auto oracle = Shell("/usr/bin/python3 " MEDSTREAM_SOURCE_DIR "/tools/lake_oracle.py " + csv +
                      " " + (dir_ / "q.json").string());
  ASSERT_EQ(oracle.exit_code, 0) << oracle.out;
  const json want = json::parse(oracle.out);
  ASSERT_EQ(want.size(), got.size());
  uint64_t suppressed = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(queries[i]);
    EXPECT_EQ(got[i]["suppressed_groups"], want[i]["suppressed_groups"]);
    suppressed += got[i]["suppressed_groups"].get<uint64_t>();
    ASSERT_EQ(got[i]["rows"].size(), want[i]["rows"].size());
    ASSERT_GT(got[i]["rows"].size(), 0u);
    for (size_t row = 0; row < want[i]["rows"].size(); ++row) {
      for (size_t c = 0; c < want[i]["rows"][row].size(); ++c) {
        const json& a = got[i]["rows"][row][c];
        const json& b = want[i]["rows"][row][c];
        if (b.is_number()) {
          ASSERT_TRUE(a.is_number()) << a << " vs " << b;
          EXPECT_NEAR(a.get<double>(), b.get<double>(),
                      1e-9 * std::max(1.0, std::fabs(b.get<double>())))
              << "row " << row << " column " << c;
        } else {
          EXPECT_EQ(a, b) << "row " << row << " column " << c;
        }
      }
    }
  }
  EXPECT_GT(suppressed, 0u) << "the age > 90 query has groups below k";

  // No plaintext value of the CSV anywhere under the lake directory. Needles of 8 bytes or more:
  // a 3-byte diagnosis code turns up by chance in a megabyte of ciphertext about once in 15 runs.
  for (const std::string needle : {"P0000001", "P0019999", "cardiology", "neurology", "2023-03-01",
                                   "patient_id", "systolic_bp", "admission_date"}) {
    for (const auto& e : fs::recursive_directory_iterator(dir_ / "lake")) {
      if (!e.is_regular_file()) continue;
      auto bytes = ReadFileBytes(e.path().string());
      ASSERT_TRUE(bytes);
      const std::string text(bytes->begin(), bytes->end());
      EXPECT_EQ(text.find(needle), std::string::npos) << needle << " in " << e.path();
    }
  }
}

TEST_F(LakeCli, RolesAndRefusals) {
  const std::string csv = (dir_ / "adm.csv").string();
  ASSERT_TRUE(WriteFileAtomic(csv, lakesvc::SynthesizeAdmissions(500, 3)));
  ASSERT_EQ(Lake("init").exit_code, 0);
  ASSERT_EQ(Lake("ingest --privacy exact --dataset admissions " + csv).exit_code, 0);
  const std::string analyst = (dir_ / "analyst.pem").string();
  const std::string other = (dir_ / "other.pem").string();
  ASSERT_EQ(Lake("keygen --out " + analyst).exit_code, 0);
  ASSERT_EQ(Lake("keygen --out " + other).exit_code, 0);

  // An identity nobody registered.
  auto r = Lake("query " + Q("SELECT COUNT(*) FROM admissions"), analyst);
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kPermissionDenied)) << r.out;
  // Unknown role.
  r = Lake("grant --key " + analyst + ".pub --name bob --role superuser");
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kInvalidArgument)) << r.out;
  // Only the admin grants.
  ASSERT_EQ(Lake("grant --key " + other + ".pub --name hospital-b --role owner").exit_code, 0);
  r = Lake("grant --key " + analyst + ".pub --name bob --role analyst", other);
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kPermissionDenied)) << r.out;
  ASSERT_EQ(Lake("grant --key " + analyst + ".pub --name bob --role analyst --dataset admissions")
                .exit_code,
            0);

  // Analysts get aggregates, never rows.
  r = Lake("query " + Q("SELECT age, sex FROM admissions WHERE age > 50"), analyst);
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kFailedPrecondition)) << r.out;
  r = Lake("query " + Q("SELECT * FROM admissions"), analyst);
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kFailedPrecondition)) << r.out;
  r = Lake("query --json " + Q("SELECT sex, COUNT(*) FROM admissions GROUP BY sex"), analyst);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  // A group of one patient is suppressed, even reached through WHERE.
  r = Lake("query --json " + Q("SELECT COUNT(*), AVG(systolic_bp) FROM admissions WHERE "
                               "patient_id = 'P0000042'"),
           analyst);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(json::parse(r.out)["rows"].size(), 0u);
  // Issue 13: to an analyst a suppressed group looks like no group (no one-query oracle).
  EXPECT_EQ(json::parse(r.out)["suppressed_groups"], 0);
  r = Lake("query --json " + Q("SELECT patient_id, AVG(bmi) FROM admissions GROUP BY patient_id"),
           analyst);
  EXPECT_EQ(json::parse(r.out)["rows"].size(), 0u);
  EXPECT_EQ(json::parse(r.out)["suppressed_groups"], 0);
  // Not granted: the other owner's view.
  r = Lake("query " + Q("SELECT COUNT(*) FROM admissions"), other);
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kNotFound)) << r.out;
  // Owner B may not delete owner A's dataset; analysts may not upload.
  r = Lake("delete --dataset admissions", other);
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kPermissionDenied)) << r.out;
  r = Lake("ingest --dataset mine " + csv, analyst);
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kPermissionDenied)) << r.out;
  // SQL errors name the position (for the person who typed it: no code can carry that).
  r = Lake("query " + Q("SELECT sex, AVG(systolic_bp FROM admissions GROUP BY sex"), analyst);
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kInvalidArgument)) << r.out;
  EXPECT_NE(r.out.find("SQL error at position 29: expected ')', found 'FROM'"), std::string::npos)
      << r.out;
  r = Lake("query " + Q("SELECT COUNT(*) FROM admissions WHERE age >"), analyst);
  EXPECT_NE(r.out.find("position 44: expected a number or a 'string', found the end"),
            std::string::npos)
      << r.out;
  // Nothing was lost: the owner still sees every row; the audit log holds every query.
  r = Lake("query --json " + Q("SELECT COUNT(*) FROM admissions"));
  EXPECT_EQ(json::parse(r.out)["rows"][0][0], 500);
  r = Lake("audit");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("hash chain verified"), std::string::npos);
  EXPECT_NE(r.out.find("refused: row-level SELECT"), std::string::npos);
  EXPECT_NE(r.out.find("bob ("), std::string::npos);
  r = Lake("audit", analyst);
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kPermissionDenied)) << r.out;
  // Owner B sees its own refused actions, not what the analyst asked of owner A's dataset.
  r = Lake("audit", other);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("refused: not its owner"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("bob ("), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("each entry's hash verified"), std::string::npos) << r.out;
  // The owner deletes its own dataset.
  ASSERT_EQ(Lake("delete --dataset admissions").exit_code, 0);
  r = Lake("query " + Q("SELECT COUNT(*) FROM admissions"));
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kNotFound)) << r.out;
}

TEST_F(LakeCli, MalformedRowsAreReportedAndGoodRowsKept) {
  const std::string csv = (dir_ / "bad.csv").string();
  ASSERT_TRUE(WriteFileAtomic(csv,
                              "id,age,sex,visit\n"
                              "1,40,F,2024-01-02\n"
                              "2,abc,M,2024-01-03\n"
                              "3,50,M\n"
                              "4,61,F,2024-02-30\n"
                              "5,,\"M\",2024-03-01\n"
                              "6,70,F,2024-03-02\n"));
  ASSERT_EQ(Lake("init").exit_code, 0);
  auto r = Lake(
      "ingest --dataset visits --schema id:integer,age:integer,sex:categorical,visit:date " + csv);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("3 rows stored, 3 rows refused"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("line 3: column 'age': 'abc' is not an integer"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("line 4: 3 fields, the schema has 4 columns"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("line 5: column 'visit': '2024-02-30': no such date"), std::string::npos)
      << r.out;
  r = Lake("query --json " + Q("SELECT id, age FROM visits WHERE age IS NULL"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(json::parse(r.out)["rows"], json::parse("[[5, null]]"));
}

TEST_F(LakeCli, TamperedAndRolledBackStorageIsDetected) {
  const std::string csv = (dir_ / "adm.csv").string();
  ASSERT_TRUE(WriteFileAtomic(csv, lakesvc::SynthesizeAdmissions(300, 5)));
  ASSERT_EQ(Lake("init").exit_code, 0);
  ASSERT_EQ(Lake("ingest --dataset a " + csv).exit_code, 0);
  const fs::path db = dir_ / "lake" / "lake.db";
  fs::copy_file(db, dir_ / "old.db");
  ASSERT_EQ(Lake("ingest --dataset b " + csv).exit_code, 0);
  ASSERT_EQ(Lake("query " + Q("SELECT COUNT(*) FROM b")).exit_code, 0);

  // Rolled back: yesterday's file, validly sealed, but older than the committed version.
  fs::copy_file(db, dir_ / "new.db");
  fs::copy_file(dir_ / "old.db", db, fs::copy_options::overwrite_existing);
  auto r = Lake("list");
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kRolledBack));
  fs::copy_file(dir_ / "new.db", db, fs::copy_options::overwrite_existing);
  ASSERT_EQ(Lake("list").exit_code, 0);

  // Tampered: one byte of a sealed page.
  auto py = Shell("/usr/bin/python3 -c \"import sqlite3; d=sqlite3.connect('" + db.string() +
                  "'); k,b=d.execute(\\\"SELECT key,data FROM blobs WHERE key LIKE 'page/%' LIMIT "
                  "1\\\").fetchone(); b=bytearray(b); b[len(b)//2]^=1; d.execute('UPDATE blobs SET "
                  "data=? WHERE key=?',(bytes(b),k)); d.commit()\"");
  ASSERT_EQ(py.exit_code, 0) << py.out;
  r = Lake("list");
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kCorrupt));
  // Swapped: restore, then give one dataset's page the other's key.
  fs::copy_file(dir_ / "new.db", db, fs::copy_options::overwrite_existing);
  py = Shell("/usr/bin/python3 -c \"import sqlite3; d=sqlite3.connect('" + db.string() +
             "'); ks=[k for (k,) in d.execute(\\\"SELECT key FROM blobs WHERE key LIKE 'page/%' "
             "ORDER BY key\\\")]; a=d.execute('SELECT data FROM blobs WHERE key=?',(ks[0],))."
             "fetchone()[0]; d.execute('UPDATE blobs SET data=? WHERE key=?',(a,ks[1])); "
             "d.commit()\"");
  ASSERT_EQ(py.exit_code, 0) << py.out;
  r = Lake("list");
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kCorrupt));
}

// The remote case: `lake serve` on a loopback port, clients with --server and a pinned root.
// Issue 11, items 2 and 4: a query nested 7000 deep once crashed the lake enclave (and went
// missing from the audit log); bytes that are not UTF-8 in a dataset name, a stored value or an
// alias once aborted every later --json output. A record over the limit once killed the enclave.
TEST_F(LakeCli, HostileQueriesValuesAndRecordsNeverStopTheLake) {
  const std::string csv = (dir_ / "adm.csv").string();
  std::string text = lakesvc::SynthesizeAdmissions(300, 3);
  const std::string header = text.substr(0, text.find('\n'));
  ASSERT_EQ(header.substr(0, 41), "patient_id,admission_date,age,sex,ward,di") << header;
  // Six rows in a ward whose name is not UTF-8 (k = 5 lets its group through).
  for (int i = 0; i < 6; ++i) {
    text += "PX" + std::to_string(i) + ",2023-06-11,51,M,w\xff\xfe,I50,131,68,64,26.9,3,no\n";
  }
  ASSERT_TRUE(WriteFileAtomic(csv, text));
  ASSERT_EQ(Lake("init").exit_code, 0);
  auto r = Lake("ingest --dataset admissions " + csv);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  // 7000 nested parentheses, NOT x 10000, 10000 unbalanced '(': refused with a reason.
  for (const std::string& where : {std::string(7000, '(') + "age = 1" + std::string(7000, ')'),
                                   [] {
                                     std::string w;
                                     for (int i = 0; i < 10000; ++i) w += "NOT ";
                                     return w + "age = 1";
                                   }(),
                                   std::string(10000, '(')}) {
    r = Lake("query " + Q("SELECT COUNT(*) FROM admissions WHERE " + where));
    EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kResourceExhausted)) << r.out.substr(0, 300);
  }
  // A dataset name, a stored value and an alias that are not UTF-8: --json still prints JSON.
  r = Lake("query " + std::string("\"$(printf 'SELECT COUNT(*) FROM x\\344')\""));
  EXPECT_NE(r.exit_code, 0);
  r = Lake("query --json " + Q("SELECT ward, COUNT(*) FROM admissions GROUP BY ward"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("w\xef\xbf\xbd\xef\xbf\xbd"), std::string::npos) << r.out;  // U+FFFD
  EXPECT_TRUE(json::accept(r.out)) << r.out;
  r = Lake("query --json " +
           std::string("\"$(printf 'SELECT COUNT(*) AS \\042\\377\\042 FROM admissions')\""));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(json::accept(r.out)) << r.out;
  r = Lake("audit --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  size_t lines = 0, refused_deep = 0;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] != '{') continue;
    ++lines;
    const json j = json::parse(line);
    refused_deep += j.dump().find("nested deeper") != std::string::npos;
  }
  EXPECT_GT(lines, 5u);
  EXPECT_EQ(refused_deep, 3u) << "every refused query is in the audit log";
  // A record of 2 MB: refused by the client, naming its line; the lake goes on.
  ASSERT_TRUE(WriteFileAtomic(csv, header + "\n" + std::string(2 << 20, 'a') + "\n"));
  r = Lake("ingest --dataset big " + csv);
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kResourceExhausted)) << r.out.substr(0, 300);
  EXPECT_NE(r.out.find("line 2: "), std::string::npos) << r.out.substr(0, 300);
  r = Lake("query --json " + Q("SELECT COUNT(*) FROM admissions"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(json::parse(r.out)["rows"][0][0], 306);
}

TEST_F(LakeCli, RemoteClientsThroughLakeServe) {
  const std::string csv = (dir_ / "adm.csv").string();
  ASSERT_TRUE(WriteFileAtomic(csv, lakesvc::SynthesizeAdmissions(400, 9)));
  ASSERT_EQ(Lake("init").exit_code, 0);
  const std::string lake = (dir_ / "lake").string();
  const std::string log = (dir_ / "serve.log").string();
  const int port = proc::FreeLoopbackPort();
  const int metrics_port = proc::FreeLoopbackPort();
  const pid_t server = proc::Spawn({MEDSTREAM_BINARY, "lake", "--dir", lake, "serve", "--listen",
                                    "127.0.0.1:" + std::to_string(port), "--metrics",
                                    "127.0.0.1:" + std::to_string(metrics_port)},
                                   log);
  // Stopped however the test ends (a failed ASSERT returns early).
  struct StopAtEnd {
    pid_t pid;
    bool stopped = false;
    ~StopAtEnd() {
      if (!stopped) proc::Stop(pid);
    }
  } stop_at_end{server};
  ASSERT_TRUE(proc::WaitForListener(port, 20000)) << Shell("cat " + log).out;
  auto client = [&](const std::string& root) {
    return std::string(MEDSTREAM_BINARY) + " lake --dir " + (dir_ / "client").string() +
           " --server tcp://127.0.0.1:" + std::to_string(port) + " --root " + root +
           " --identity " + lake + "/identity.pem ";
  };
  const std::string remote = client(lake + "/platform/root_ca.pem");
  auto r = Shell(remote + "ingest --dataset admissions " + csv);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("400 rows stored"), std::string::npos) << r.out;
  r = Shell(remote + "query --json " + Q("SELECT COUNT(*), AVG(age) FROM admissions"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const json remote_answer = json::parse(r.out);
  EXPECT_EQ(remote_answer["rows"][0][0], 400);
  // A client pinning another root refuses the enclave.
  ASSERT_EQ(Shell(std::string(MEDSTREAM_BINARY) + " platform init --dir " +
                  (dir_ / "other-platform").string())
                .exit_code,
            0);
  r = Shell(client((dir_ / "other-platform" / "root_ca.pem").string()) + "list");
  EXPECT_EQ(r.exit_code, ExitStatus(Error::Code::kCorrupt));
  // Issue 11, item 2: a request that kills the lake enclave once made every later request of
  // every identity fail until a restart. Now the host starts a fresh enclave from the store: the
  // request in flight fails, the next ones are answered.
  const pid_t enclave = ChildOf(server);
  ASSERT_GT(enclave, 0);
  ASSERT_EQ(kill(enclave, SIGKILL), 0);
  r = Shell(remote + "query --json " + Q("SELECT COUNT(*), AVG(age) FROM admissions"));
  if (r.exit_code != 0) {  // the request that found the enclave dead
    r = Shell(remote + "query --json " + Q("SELECT COUNT(*), AVG(age) FROM admissions"));
  }
  ASSERT_EQ(r.exit_code, 0) << r.out << Shell("cat " + log).out;
  EXPECT_EQ(json::parse(r.out), remote_answer);
  EXPECT_NE(ChildOf(server), enclave);
  EXPECT_NE(Shell("cat " + log).out.find("restarting the enclave"), std::string::npos);
  // Issue 16: the lake host's /metrics parses (promtool) and counts the restart and the requests.
  const std::string prom = (dir_ / "lake.prom").string();
  r = Shell("curl -sf http://127.0.0.1:" + std::to_string(metrics_port) + "/metrics > " + prom +
            " && promtool check metrics < " + prom);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const std::string metrics_text = ReadFileText(prom).value();
  auto sample = [&](const std::string& series) {
    const size_t at = metrics_text.find("\n" + series + " ");
    return at == std::string::npos ? -1.0 : std::stod(metrics_text.substr(at + series.size() + 2));
  };
  EXPECT_EQ(sample("medstream_lake_enclave_restarts_total"), 1);
  EXPECT_GE(sample(R"(medstream_lake_calls_total{call="lake_request",outcome="ok"})"), 3);
  EXPECT_GT(sample("medstream_lake_blobs_written_total"), 0);
  proc::Stop(server);
  stop_at_end.stopped = true;
  // The embedded host sees what the remote client stored, and answers the same.
  r = Lake("query --json " + Q("SELECT COUNT(*), AVG(age) FROM admissions"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(json::parse(r.out), remote_answer);
}

}  // namespace
}  // namespace medstream

// `medstream lake`: the secure data lake (enclave/lake/lake.h, lakesvc/lakesvc.h). The embedded
// default runs the host and a process enclave locally on DIR, with DIR/identity.pem as the caller.
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include "apps/cli/commands.h"
#include "apps/cli/http_options.h"
#include "apps/cli/json_out.h"
#include "common/attest/identity.h"
#include "common/attest/sim_platform.h"
#include "common/base/address.h"
#include "common/base/file.h"
#include "host/inproc/inproc.h"
#include "host/lake_host/lake_host.h"
#include "owner/lake_client/lake_client.h"

namespace medstream::cli {

namespace {

std::atomic<bool> g_stop{false};
void OnStop(int) {
  g_stop = true;
}

struct LakeArgs {
  std::string dir = "lake";
  std::string identity;  // default DIR/identity.pem
  std::string mode = "process";
  std::string platform;  // default DIR/platform
  std::string enclave;
  std::string server;  // tcp://HOST:PORT: a remote `lake serve` instead of the embedded host
  std::string root;    // the attestation root to pin (default: the platform's)
  bool json = false;
};

struct Connected {
  std::unique_ptr<lakesvc::LakeHost> host;
  std::unique_ptr<host::EnclaveTransport> remote;
  std::unique_ptr<lakesvc::LakeClient> client;
};

Result<std::pair<std::string, int>> ParseServer(const std::string& url) {
  const std::string prefix = "tcp://";
  if (!url.starts_with(prefix)) {
    return InvalidArgument("--server '" + url.substr(0, 80) + "': expected tcp://HOST:PORT");
  }
  MEDSTREAM_TRY(hp, ParseHostPort(std::string_view(url).substr(prefix.size()), "--server"));
  return std::pair{hp.host, hp.port};
}

Result<Connected> Connect(const LakeArgs& a) {
  const std::string platform = a.platform.empty() ? a.dir + "/platform" : a.platform;
  Connected c;
  host::EnclaveTransport* transport = nullptr;
  if (!a.server.empty()) {
    MEDSTREAM_TRY(target, ParseServer(a.server));
    MEDSTREAM_TRY(remote, host::ConnectTcp(target.first, target.second));
    c.remote = std::move(remote);
    transport = c.remote.get();
  } else {
    if (!FileExists(a.dir + "/lake.db"))
      return NotFound("no lake in " + a.dir + ": run 'medstream lake --dir " + a.dir + " init'");
    MEDSTREAM_TRY(host, lakesvc::LakeHost::Start({.dir = a.dir,
                                                  .mode = a.mode,
                                                  .platform_dir = platform,
                                                  .enclave_path = a.enclave,
                                                  .inproc = host::LaunchInproc}));
    c.host = std::move(host);
    transport = &c.host->transport();
  }
  // Pin the enclave build this medstream came with (inproc: this executable itself).
  MEDSTREAM_TRY(policy, client::PolicyForThisBuild(a.mode, a.enclave));
  MEDSTREAM_TRY(pem,
                ReadFileText(a.root.empty() ? attest::SimPlatform::RootPath(platform) : a.root));
  MEDSTREAM_TRY(root, crypto::Certificate::FromPem(pem));
  client::AttestOptions attest;
  attest.root = &root;
  attest.policy = policy;
  const std::string key_path = a.identity.empty() ? a.dir + "/identity.pem" : a.identity;
  auto key_pem = ReadFileText(key_path);
  if (!key_pem) return NotFound("identity key " + key_path + " not found");
  MEDSTREAM_TRY(key, crypto::EcKey::FromPem(*key_pem));
  if (!key.has_private()) return InvalidArgument(key_path + " holds no private key");
  MEDSTREAM_TRY(client, lakesvc::LakeClient::Connect(*transport, attest, key));
  c.client = std::move(client);
  return c;
}

std::string Cell(const lake::Value& v) {
  return lake::FormatValue(v);
}

void PrintTable(const lake::ResultSet& r) {
  std::vector<size_t> width;
  for (const auto& c : r.columns) width.push_back(c.size());
  for (const auto& row : r.rows)
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], Cell(row[i]).size());
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (size_t i = 0; i < cells.size(); ++i)
      s += fmt::format("{}{:<{}}", i ? "  " : "", cells[i], width[i]);
    std::printf("%s\n", s.c_str());
  };
  line(r.columns);
  std::vector<std::string> rule;
  for (size_t w : width) rule.push_back(std::string(w, '-'));
  line(rule);
  for (const auto& row : r.rows) {
    std::vector<std::string> cells;
    for (const auto& v : row) cells.push_back(Cell(v));
    line(cells);
  }
  if (r.dp) {
    std::string bounds;
    for (size_t i = 0; i < r.columns.size() && i < r.error95.size(); ++i) {
      if (r.error95[i] > 0) bounds += fmt::format("  {} ±{:.3g}", r.columns[i], r.error95[i]);
    }
    std::printf(
        "(%zu rows; differentially private: epsilon %.3g spent, %.3g left of your budget on this "
        "dataset;\n 95 %% error bounds:%s%s)\n",
        r.rows.size(), r.epsilon, r.budget_remaining, bounds.empty() ? " none" : bounds.c_str(),
        r.release_threshold > 0
            ? fmt::format("; groups shown from a noisy count of {:.1f}", r.release_threshold)
                  .c_str()
            : "");
    return;
  }
  std::printf("(%zu rows; %llu groups suppressed: fewer records than the dataset's k)\n",
              r.rows.size(), static_cast<unsigned long long>(r.suppressed_groups));
}

nlohmann::json ToJson(const lake::ResultSet& r) {
  nlohmann::json j;
  j["columns"] = r.columns;
  j["rows"] = nlohmann::json::array();
  for (const auto& row : r.rows) {
    nlohmann::json jr = nlohmann::json::array();
    for (const auto& v : row) {
      if (const auto* d = std::get_if<double>(&v)) {
        jr.push_back(*d);
      } else if (const auto* s = std::get_if<std::string>(&v)) {
        jr.push_back(*s);
      } else {
        jr.push_back(nullptr);
      }
    }
    j["rows"].push_back(jr);
  }
  j["suppressed_groups"] = r.suppressed_groups;
  if (r.dp) {
    j["differential_privacy"] = {{"epsilon", r.epsilon},
                                 {"budget_remaining", r.budget_remaining},
                                 {"release_threshold", r.release_threshold},
                                 {"error95", r.error95}};
  }
  return j;
}

// Ends a lake subcommand on an error (ExitWithError, "lake CMD").
struct LakeFail {
  int* exit_code;
  void operator()(const std::string& cmd, const Error& e) const {
    *exit_code = ExitWithError("lake " + cmd, e);
  }
  void operator()(const std::string& cmd, std::string_view usage) const {
    *exit_code = ExitWithError("lake " + cmd, usage);
  }
};

// medstream lake init
void RegisterLakeInit(CLI::App* lake, const std::shared_ptr<LakeArgs>& a, const LakeFail& fail) {
  auto init_name = std::make_shared<std::string>("lake-owner");
  CLI::App* init = lake->add_subcommand("init", "Create a lake whose local identity is its admin");
  init->add_option("--name", *init_name, "Your name in the audit log")->capture_default_str();
  init->callback([a, init_name, fail] {
    if (FileExists(a->dir + "/lake.db"))
      return fail("init", Error(Error::Code::kAlreadyExists, "a lake already exists in " + a->dir));
    if (auto s = MakeDirs(a->dir, 0700); !s) return fail("init", s.error());
    const std::string platform = a->platform.empty() ? a->dir + "/platform" : a->platform;
    if (!FileExists(attest::SimPlatform::RootPath(platform))) {
      if (auto s = attest::InitPlatform({.dir = platform, .now = time(nullptr)}); !s)
        return fail("init", s.error());
    }
    const std::string key_path = a->identity.empty() ? a->dir + "/identity.pem" : a->identity;
    if (!FileExists(key_path)) {
      auto key = crypto::EcKey::Generate();
      auto pem = key ? key->PrivatePem() : Result<std::string>(std::unexpected(key.error()));
      if (!pem) return fail("init", pem.error());
      if (auto s = WriteFileAtomic(key_path, *pem, 0600); !s) return fail("init", s.error());
    }
    if (auto s = lakesvc::Store::Open(a->dir + "/lake.db"); !s) return fail("init", s.error());
    auto c = Connect(*a);
    if (!c) return fail("init", c.error());
    if (auto s = c->client->Init(*init_name); !s) return fail("init", s.error());
    std::printf("lake created in %s; admin identity %s (%s)\n", a->dir.c_str(), key_path.c_str(),
                init_name->c_str());
  });
}

// medstream lake keygen
void RegisterLakeKeygen(CLI::App* lake, const std::shared_ptr<LakeArgs>&, const LakeFail& fail) {
  auto keygen_out = std::make_shared<std::string>();
  CLI::App* keygen = lake->add_subcommand("keygen", "Create an identity key pair (for grant)");
  keygen->add_option("--out", *keygen_out, "Private key file; the public key goes to FILE.pub")
      ->required();
  keygen->callback([keygen_out, fail] {
    auto key = crypto::EcKey::Generate();
    if (!key) return fail("keygen", key.error());
    auto priv = key->PrivatePem();
    auto pub = key->PublicPem();
    if (!priv || !pub)
      return fail("keygen", Error(Error::Code::kInternal, "cannot encode the key"));
    if (auto s = WriteFileAtomic(*keygen_out, *priv, 0600); !s) return fail("keygen", s.error());
    if (auto s = WriteFileAtomic(*keygen_out + ".pub", *pub, 0644); !s)
      return fail("keygen", s.error());
    std::printf("identity key %s, public key %s.pub\n", keygen_out->c_str(), keygen_out->c_str());
  });
}

// medstream lake grant
void RegisterLakeGrant(CLI::App* lake, const std::shared_ptr<LakeArgs>& a, const LakeFail& fail) {
  struct GrantArgs {
    std::string key, name, role;
    std::vector<std::string> datasets;
  };
  auto g = std::make_shared<GrantArgs>();
  CLI::App* grant = lake->add_subcommand("grant", "Register an identity with a role (admin only)");
  grant->add_option("--key", g->key, "The identity's public key (PEM)")->required();
  grant->add_option("--name", g->name, "Its name")->required();
  grant->add_option("--role", g->role, "owner or analyst")->required();
  grant->add_option("--dataset", g->datasets, "Datasets an analyst may query (repeatable)");
  grant->callback([a, g, fail] {
    auto pem = ReadFileText(g->key);
    if (!pem) return fail("grant", pem.error());
    auto key = crypto::EcKey::FromPem(*pem);
    if (!key) return fail("grant", key.error());
    auto c = Connect(*a);
    if (!c) return fail("grant", c.error());
    if (auto s = c->client->Grant(key->RawPublic(), g->name, g->role, g->datasets); !s)
      return fail("grant", s.error());
    std::printf("granted: %s as %s\n", g->name.c_str(), g->role.c_str());
  });
}

// medstream lake ingest
void RegisterLakeIngest(CLI::App* lake, const std::shared_ptr<LakeArgs>& a, const LakeFail& fail) {
  struct IngestArgs {
    std::string dataset, file, schema, privacy = "dp";
    uint32_t k = 5;
    lakesvc::LakeClient::IngestOptions options;
  };
  auto in = std::make_shared<IngestArgs>();
  CLI::App* ingest = lake->add_subcommand("ingest", "Upload a CSV file (header row first)");
  ingest->add_option("--dataset", in->dataset, "Dataset name")->required();
  ingest->add_option("file", in->file, "CSV file")->required()->check(CLI::ExistingFile);
  ingest->add_option("--schema", in->schema,
                     "Declared schema NAME:TYPE,... (integer, real, text, date, categorical); "
                     "default: inferred");
  ingest->add_option("--k", in->k, "Smallest group an analyst may see (exact datasets)")
      ->capture_default_str()
      ->check(Positive());
  ingest
      ->add_option("--privacy", in->privacy,
                   "How analysts are answered: dp (differentially private COUNT/SUM/AVG within a "
                   "budget) or exact (k-suppressed, with differencing defences); see docs/lake.md")
      ->check(CLI::IsMember({"dp", "exact"}))
      ->capture_default_str();
  ingest
      ->add_option("--epsilon", in->options.policy.epsilon,
                   "dp: privacy spent by a query that does not say (per query)")
      ->check(FiniteRange(lake::kMinQueryEpsilon, lake::kMaxQueryEpsilon))
      ->capture_default_str();
  ingest
      ->add_option("--budget", in->options.policy.budget,
                   "dp: each analyst's total epsilon on this dataset (sequential composition)")
      ->check(FiniteRange(1e-6, 1e6))
      ->capture_default_str();
  ingest->add_option("--attributes", in->options.attributes,
                     "Identifier columns and numeric bounds: COL:id,COL:LO..HI,... (analysts may "
                     "not use identifiers; dp needs bounds to SUM or AVG a column)");
  ingest->callback([a, in, fail] {
    auto c = Connect(*a);
    if (!c) return fail("ingest", c.error());
    const bool tty = isatty(STDERR_FILENO);
    in->options.policy.privacy = *lake::ParsePrivacy(in->privacy);
    auto report = c->client->Ingest(
        in->dataset, in->file, in->schema, in->k,
        [tty](uint64_t done, uint64_t total) {
          if (!tty) return;
          const int w = 30;
          const int f = static_cast<int>(w * done / total);
          std::fprintf(stderr, "\r[%s%s] %3d%%", std::string(f, '#').c_str(),
                       std::string(w - f, '.').c_str(), static_cast<int>(100 * done / total));
        },
        in->options);
    if (tty) std::fprintf(stderr, "\n");
    if (!report) return fail("ingest", report.error());
    std::printf("dataset %s: %llu rows stored, %llu rows refused\nschema: %s\n",
                in->dataset.c_str(), static_cast<unsigned long long>(report->stored),
                static_cast<unsigned long long>(report->refused), report->schema.c_str());
    for (const auto& b : report->bad_rows) {
      std::printf("  line %llu: %s\n", static_cast<unsigned long long>(b.line), b.reason.c_str());
    }
    if (report->refused > report->bad_rows.size())
      std::printf("  ... and %llu more\n",
                  static_cast<unsigned long long>(report->refused - report->bad_rows.size()));
  });
}

// medstream lake query
void RegisterLakeQuery(CLI::App* lake, const std::shared_ptr<LakeArgs>& a, const LakeFail& fail) {
  auto sql = std::make_shared<std::string>();
  CLI::App* query = lake->add_subcommand("query", "Run an aggregate SQL query inside the enclave");
  query->add_option("sql", *sql, "SELECT ... FROM dataset [WHERE ...] [GROUP BY ...]")->required();
  query->add_flag("--json", a->json, "One JSON object: columns, rows, suppressed_groups");
  auto epsilon = std::make_shared<double>(0);
  query
      ->add_option("--epsilon", *epsilon,
                   "dp datasets: privacy this query spends of your budget (default: the "
                   "dataset's)")
      ->check(FiniteRange(lake::kMinQueryEpsilon, lake::kMaxQueryEpsilon));
  query->callback([a, sql, fail, epsilon] {
    auto c = Connect(*a);
    if (!c) return fail("query", c.error());
    auto r = c->client->Query(*sql, *epsilon);
    if (!r) return fail("query", r.error());
    if (a->json) {
      std::printf("%s\n", DumpJson(ToJson(*r)).c_str());
    } else {
      PrintTable(*r);
    }
  });
}

// medstream lake delete
void RegisterLakeDelete(CLI::App* lake, const std::shared_ptr<LakeArgs>& a, const LakeFail& fail) {
  auto del_name = std::make_shared<std::string>();
  CLI::App* del = lake->add_subcommand("delete", "Delete one of your datasets");
  del->add_option("--dataset", *del_name, "Dataset name")->required();
  del->callback([a, del_name, fail] {
    auto c = Connect(*a);
    if (!c) return fail("delete", c.error());
    if (auto s = c->client->Delete(*del_name); !s) return fail("delete", s.error());
    std::printf("dataset %s deleted\n", del_name->c_str());
  });
}

// medstream lake audit
void RegisterLakeAudit(CLI::App* lake, const std::shared_ptr<LakeArgs>& a, const LakeFail& fail) {
  CLI::App* audit = lake->add_subcommand("audit", "Show the hash-chained audit log (verified)");
  audit->add_flag("--json", a->json, "JSON lines");
  audit->callback([a, fail] {
    auto c = Connect(*a);
    if (!c) return fail("audit", c.error());
    auto view = c->client->Audit();
    if (!view) return fail("audit", view.error());
    for (const auto& e : view->entries) {
      if (a->json) {
        nlohmann::json j = {{"seq", e.seq},         {"time", e.time},
                            {"who", e.who},         {"op", e.op},
                            {"dataset", e.dataset}, {"detail", e.detail},
                            {"outcome", e.outcome}, {"hash", crypto::ToHex(e.hash)}};
        std::printf("%s\n", DumpJson(j).c_str());
      } else {
        std::printf("%4llu  %s  %-8s %-14s %s  %s%s%s\n", static_cast<unsigned long long>(e.seq),
                    e.who.c_str(), e.op.c_str(), e.dataset.c_str(), e.outcome.c_str(),
                    e.detail.empty() ? "" : "[", e.detail.c_str(), e.detail.empty() ? "" : "]");
      }
    }
    if (a->json) return;
    if (view->whole) {
      std::printf("%zu entries, hash chain verified\n", view->entries.size());
    } else {
      std::printf(
          "%zu of %llu entries (your datasets and your own actions), each entry's hash verified\n",
          view->entries.size(), static_cast<unsigned long long>(view->length));
    }
  });
}

// medstream lake list
void RegisterLakeList(CLI::App* lake, const std::shared_ptr<LakeArgs>& a, const LakeFail& fail) {
  CLI::App* list = lake->add_subcommand("list", "Datasets you may see");
  list->callback([a, fail] {
    auto c = Connect(*a);
    if (!c) return fail("list", c.error());
    auto ds = c->client->List();
    if (!ds) return fail("list", ds.error());
    std::printf("you are: %s\n", c->client->role().c_str());
    for (const auto& d : *ds) {
      const std::string policy =
          d.policy.privacy == lake::Privacy::kDp
              ? fmt::format("dp (epsilon {:.3g}/query, budget {:.3g}, spent {:.3g})",
                            d.policy.epsilon, d.policy.budget, d.budget_spent)
              : fmt::format("exact k={}", d.k);
      std::printf("%-20s owner %-16s %10llu rows  %s  %s\n", d.name.c_str(), d.owner.c_str(),
                  static_cast<unsigned long long>(d.rows), policy.c_str(), d.schema.c_str());
    }
  });
}

// medstream lake serve
void RegisterLakeServe(CLI::App* lake, const std::shared_ptr<LakeArgs>& a, const LakeFail& fail) {
  auto listen = std::make_shared<std::string>("127.0.0.1:7400");
  CLI::App* serve = lake->add_subcommand(
      "serve", "Serve the lake to remote clients (lake --server tcp://HOST:PORT ...)");
  serve->add_option("--listen", *listen, "ADDRESS:PORT to listen on (port 0: any free port)")
      ->capture_default_str();
  auto metrics = std::make_shared<HttpArgs>();
  AddMetricsOptions(serve, metrics.get());
  serve->callback([a, listen, fail, metrics] {
    auto where = ParseHostPort(*listen, "--listen", {.allow_zero = true});
    if (!where) return fail("serve", where.error());
    if (!FileExists(a->dir + "/lake.db"))
      return fail("serve",
                  "no lake in " + a->dir + ": run 'medstream lake --dir " + a->dir + " init'");
    const std::string platform = a->platform.empty() ? a->dir + "/platform" : a->platform;
    auto host = lakesvc::LakeHost::Start({.dir = a->dir,
                                          .mode = a->mode,
                                          .platform_dir = platform,
                                          .enclave_path = a->enclave,
                                          .inproc = host::LaunchInproc});
    if (!host) return fail("serve", host.error());
    lakesvc::LakeHost* h = host->get();
    auto endpoint = StartMetrics(*metrics, [h] { return h->MetricsText(); });
    if (!endpoint) return fail("serve", endpoint.error());
    if (*endpoint)
      std::printf("medstream lake serve: metrics at %s/metrics\n", (*endpoint)->url().c_str());
    std::signal(SIGINT, OnStop);
    std::signal(SIGTERM, OnStop);
    const std::string address = where->host;
    auto s = (*host)->Serve(address, where->port, g_stop, [&](int port) {
      std::printf("medstream lake serve: %s on %s:%d (%s enclave, a software-simulated TEE)\n",
                  a->dir.c_str(), address.c_str(), port, a->mode.c_str());
      std::fflush(stdout);
    });
    if (!s) return fail("serve", s.error());
  });
}

// medstream lake synth
void RegisterLakeSynth(CLI::App* lake, const std::shared_ptr<LakeArgs>&, const LakeFail& fail) {
  struct SynthArgs {
    uint64_t rows = 1000;
    uint64_t seed = 1;
    std::string out;
  };
  auto sy = std::make_shared<SynthArgs>();
  CLI::App* synth = lake->add_subcommand("synth", "Write a synthetic admissions CSV");
  synth->add_option("--rows", sy->rows, "Rows")->capture_default_str();
  synth->add_option("--seed", sy->seed, "Random seed")->capture_default_str();
  synth->add_option("--out", sy->out, "Output file (default: stdout)");
  synth->callback([sy, fail] {
    const std::string csv = lakesvc::SynthesizeAdmissions(sy->rows, sy->seed);
    if (sy->out.empty()) {
      std::fwrite(csv.data(), 1, csv.size(), stdout);
    } else if (auto s = WriteFileAtomic(sy->out, csv, 0600); !s) {
      fail("synth", s.error());
    }
  });
}

}  // namespace

void RegisterLakeCommand(CLI::App& app, int* exit_code) {
  auto a = std::make_shared<LakeArgs>();
  CLI::App* lake = app.add_subcommand(
      "lake",
      "Secure data lake: hospitals upload patient records (CSV) to an attested enclave; "
      "analysts get aggregates only");
  lake->require_subcommand(1);
  lake->add_option("--dir", a->dir, "Lake directory (sealed store lake.db, identity.pem)")
      ->capture_default_str();
  lake->add_option("--identity", a->identity, "Your identity key (PEM; default DIR/identity.pem)");
  lake->add_option("--mode", a->mode, "Enclave backend")
      ->check(CLI::IsMember({"process", "inproc"}))
      ->capture_default_str();
  lake->add_option("--platform", a->platform, "Simulated platform (default DIR/platform)");
  lake->add_option("--enclave", a->enclave,
                   "medstream-enclave (process mode; its identity is what clients pin)");
  lake->add_option(
      "--server", a->server,
      "tcp://HOST:PORT of a remote 'medstream lake serve' instead of the embedded host");
  lake->add_option("--root", a->root,
                   "Attestation root certificate to pin (default: the platform's, DIR/platform)");
  lake->footer(
      "The enclave is a software simulation of a TEE (a separate hardened process): it protects\n"
      "the records from the host process, not from root or a hypervisor.");

  const LakeFail fail{exit_code};

  RegisterLakeInit(lake, a, fail);
  RegisterLakeKeygen(lake, a, fail);
  RegisterLakeGrant(lake, a, fail);
  RegisterLakeIngest(lake, a, fail);
  RegisterLakeQuery(lake, a, fail);
  RegisterLakeDelete(lake, a, fail);
  RegisterLakeAudit(lake, a, fail);
  RegisterLakeList(lake, a, fail);
  RegisterLakeServe(lake, a, fail);
  RegisterLakeSynth(lake, a, fail);
}

}  // namespace medstream::cli

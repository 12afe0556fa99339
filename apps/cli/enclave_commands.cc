// `medstream platform`, `medstream enclave`, `medstream attest`.
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "apps/cli/commands.h"
#include "apps/cli/json_out.h"
#include "common/attest/collateral.h"
#include "common/attest/identity.h"
#include "common/attest/policy.h"
#include "common/attest/sim_platform.h"
#include "common/base/file.h"
#include "host/inproc/inproc.h"
#include "host/server/transport.h"
#include "owner/client/client.h"
#include "owner/client/evidence.h"

namespace medstream::cli {

namespace {

std::string Hex(crypto::ByteView b) {
  return crypto::ToHex(b);
}

nlohmann::ordered_json ClaimsJson(const attest::Claims& c) {
  return {{"mrenclave", Hex(c.mr_enclave)},
          {"mrsigner", Hex(c.mr_signer)},
          {"isv_prod_id", c.isv_prod_id},
          {"isv_svn", c.isv_svn},
          {"debug", c.debug},
          {"simulated", c.simulated},
          {"report_data", Hex(c.report_data)},
          {"qe_mrenclave", Hex(c.qe_mr_enclave)},
          {"qe_mrsigner", Hex(c.qe_mr_signer)},
          {"qe_isv_svn", c.qe_isv_svn},
          {"pck_subject", c.pck_subject},
          {"root_subject", c.root_subject}};
}

void PrintClaims(const attest::Claims& c, bool json) {
  const auto j = ClaimsJson(c);
  if (json) {
    std::printf("%s\n", DumpJson(j).c_str());
    return;
  }
  std::printf("verified: signature, attestation key, PCK chain to the pinned root, QE report\n");
  for (const auto& [k, v] : j.items()) {
    std::printf("  %-13s %s\n", k.c_str(),
                v.is_string() ? v.get<std::string>().c_str() : DumpJson(v).c_str());
  }
  if (c.simulated) {
    std::printf("  NOTE: simulated TEE evidence (software simulation, not hardware)\n");
  }
}

struct LaunchArgs {
  std::string backend = "process";
  std::string platform = DefaultPlatformDir();
  std::string enclave_path;
  bool debug = false;
};

void AddLaunchOptions(CLI::App* cmd, LaunchArgs* a) {
  cmd->add_option("--backend", a->backend, "Enclave backend")
      ->check(CLI::IsMember({"process", "inproc"}))
      ->capture_default_str();
  cmd->add_option("--platform", a->platform,
                  "Simulated platform directory (env MEDSTREAM_PLATFORM)")
      ->capture_default_str();
  cmd->add_option("--enclave", a->enclave_path,
                  "medstream-enclave executable (default: beside medstream)");
  cmd->add_flag("--debug", a->debug, "Launch a DEBUG enclave (no hardening; reported in evidence)");
}

Result<std::unique_ptr<host::EnclaveTransport>> Launch(const LaunchArgs& a) {
  return host::LaunchEnclave({.backend = a.backend,
                              .platform_dir = a.platform,
                              .enclave_path = a.enclave_path,
                              .debug = a.debug,
                              .inproc = host::LaunchInproc});
}

std::string EnclaveExecutable(const LaunchArgs& a) {
  if (a.backend == "inproc") return SelfPath().value_or("medstream");
  return a.enclave_path.empty() ? host::DefaultEnclavePath() : a.enclave_path;
}

void RegisterPlatformCommand(CLI::App& app, int* exit_code) {
  CLI::App* platform = app.add_subcommand(
      "platform", "The simulated TEE platform (keys a TEE vendor and its hardware would hold)");
  platform->require_subcommand(1);
  auto init_dir = std::make_shared<std::string>(DefaultPlatformDir());
  auto force = std::make_shared<bool>(false);
  CLI::App* init = platform->add_subcommand(
      "init", "Create a simulation root CA, PCK chain, attestation key and sealing root");
  init->add_option("--dir", *init_dir, "Where to create it (env MEDSTREAM_PLATFORM)")
      ->capture_default_str();
  init->add_flag("--force", *force, "Replace an existing platform (invalidates its sealed state)");
  init->callback([=] {
    auto s = attest::InitPlatform(
        {.dir = *init_dir, .force = *force, .now = static_cast<int64_t>(std::time(nullptr))});
    if (!s) {
      *exit_code = ExitWithError("platform init", s.error());
      return;
    }
    std::printf(
        "created a SIMULATED TEE platform in %s\n"
        "  trust anchor for relying parties: %s\n"
        "  SIMULATION ONLY: these keys are files; whoever can read them can forge evidence.\n",
        init_dir->c_str(), attest::SimPlatform::RootPath(*init_dir).c_str());
  });
}

void RegisterEnclaveCommand(CLI::App& app, int* exit_code) {
  CLI::App* enc = app.add_subcommand("enclave", "Inspect, measure and sign the enclave");
  enc->require_subcommand(1);
  auto launch = std::make_shared<LaunchArgs>();
  auto json = std::make_shared<bool>(false);
  CLI::App* info = enc->add_subcommand("info", "Start the enclave and print what it reports");
  AddLaunchOptions(info, launch.get());
  info->add_flag("--json", *json, "JSON output");
  info->callback([=] {
    auto t = Launch(*launch);
    if (!t) {
      *exit_code = ExitWithError("enclave info", t.error());
      return;
    }
    auto i = host::GetInfo(**t);
    if (!i) {
      *exit_code = ExitWithError("enclave info", i.error());
      return;
    }
    nlohmann::ordered_json j = {{"backend", i->backend},
                                {"simulated", i->simulated},
                                {"debug", i->debug},
                                {"mrenclave", Hex(i->mr_enclave)},
                                {"mrsigner", Hex(i->mr_signer)},
                                {"isv_prod_id", i->isv_prod_id},
                                {"isv_svn", i->isv_svn},
                                {"edge_version", i->edge_version},
                                {"protection", i->note}};
    if (*json) {
      std::printf("%s\n", DumpJson(j).c_str());
      return;
    }
    for (const auto& [k, v] : j.items()) {
      std::printf("%-13s %s\n", k.c_str(),
                  v.is_string() ? v.get<std::string>().c_str() : DumpJson(v).c_str());
    }
  });

  auto measure_path = std::make_shared<std::string>();
  CLI::App* measure = enc->add_subcommand("measure", "Print an executable's MRENCLAVE (SHA-256)");
  measure->add_option("executable", *measure_path, "Default: medstream-enclave beside medstream");
  measure->callback([=] {
    const std::string path = measure_path->empty() ? host::DefaultEnclavePath() : *measure_path;
    auto m = attest::MeasureFile(path);
    if (!m) {
      *exit_code = ExitWithError("enclave measure", m.error());
      return;
    }
    std::printf("%s  %s\n", Hex(*m).c_str(), path.c_str());
  });

  struct SignArgs {
    std::string key;
    bool create_key = false;
    uint16_t prod_id = 1;
    uint16_t svn = 1;
    std::vector<std::string> files;
    bool quiet = false;
  };
  auto sign = std::make_shared<SignArgs>();
  CLI::App* sign_cmd = enc->add_subcommand(
      "sign", "Sign executables' measurements with a release key (writes EXECUTABLE.sig)");
  sign_cmd->add_option("--key", sign->key, "ECDSA P-256 private key (PEM)")->required();
  sign_cmd->add_flag("--create-key", sign->create_key, "Create the key if it does not exist");
  sign_cmd->add_option("--prod-id", sign->prod_id, "ISVPRODID")->capture_default_str();
  sign_cmd->add_option("--svn", sign->svn, "ISVSVN (security version)")->capture_default_str();
  sign_cmd->add_option("executables", sign->files, "Executables to sign")->required();
  sign_cmd->add_flag("--quiet", sign->quiet, "Print nothing on success");
  sign_cmd->callback([=] {
    if (!FileExists(sign->key)) {
      if (!sign->create_key) {
        *exit_code = ExitWithError(
            "enclave sign",
            Error(Error::Code::kNotFound, "no key at " + sign->key + " (use --create-key)"));
        return;
      }
      auto k = crypto::EcKey::Generate();
      auto pem = k ? k->PrivatePem() : Result<std::string>(std::unexpected(k.error()));
      if (!pem || !WriteFileAtomic(sign->key, *pem, 0600)) {
        *exit_code =
            ExitWithError("enclave sign", Error(Error::Code::kIo, "cannot create " + sign->key));
        return;
      }
    }
    auto pem = ReadFileText(sign->key);
    auto key =
        pem ? crypto::EcKey::FromPem(*pem) : Result<crypto::EcKey>(std::unexpected(pem.error()));
    if (!key || !key->has_private()) {
      *exit_code = ExitWithError("enclave sign", sign->key + " is not an ECDSA P-256 private key");
      return;
    }
    for (const std::string& f : sign->files) {
      auto m = attest::MeasureFile(f);
      auto sig = m ? attest::SignMeasurement(*m, *key, sign->prod_id, sign->svn)
                   : Result<crypto::Bytes>(std::unexpected(m.error()));
      if (!sig || !WriteFileAtomic(f + ".sig", *sig, 0644)) {
        *exit_code = ExitWithError("enclave sign", Error(Error::Code::kIo, "cannot sign " + f));
        return;
      }
      if (!sign->quiet) {
        std::printf("%s.sig\n  mrenclave %s\n  mrsigner  %s\n  isv_prod_id %u isv_svn %u\n",
                    f.c_str(), Hex(*m).c_str(), Hex(crypto::Sha256(key->RawPublic())).c_str(),
                    sign->prod_id, sign->svn);
      }
    }
  });

  auto policy_args = std::make_shared<LaunchArgs>();
  auto allow_sim = std::make_shared<bool>(false);
  CLI::App* policy = enc->add_subcommand(
      "policy", "Print a verifier policy pinning this build's enclave (measurement and signer)");
  AddLaunchOptions(policy, policy_args.get());
  policy->add_flag("--allow-simulated", *allow_sim, "Accept simulated-TEE evidence");
  policy->callback([=] {
    auto id = attest::LoadIdentity(EnclaveExecutable(*policy_args));
    if (!id) {
      *exit_code = ExitWithError("enclave policy", id.error());
      return;
    }
    attest::Policy p;
    p.mr_enclave = {id->mr_enclave};
    p.mr_signer = {id->mr_signer};
    p.isv_prod_id = id->isv_prod_id;
    p.min_isv_svn = id->isv_svn;
    p.allow_simulated = *allow_sim;
    std::printf("%s", attest::PolicyToJson(p).c_str());
  });
}

void RegisterAttestCommand(CLI::App& app, int* exit_code) {
  struct AttestArgs {
    std::string quote, root, at, policy, collateral;
    std::vector<std::string> crls;
    bool hex = false, json = false;
    LaunchArgs launch;
  };
  auto at = std::make_shared<AttestArgs>();
  CLI::App* attest_cmd = app.add_subcommand(
      "attest",
      "Attest an enclave: start one, verify its evidence against --root and --policy, print the "
      "verified claims (or 'attest verify' for an evidence file)");
  attest_cmd->require_subcommand(0, 1);
  attest_cmd->add_option("--policy", at->policy, "Verifier policy (JSON)");
  attest_cmd->add_option("--root", at->root, "Trust anchor (default: the platform's root CA)");
  attest_cmd->add_flag("--json", at->json, "JSON output");
  AddLaunchOptions(attest_cmd, &at->launch);
  CLI::App* verify = attest_cmd->add_subcommand(
      "verify", "Verify an SGX DCAP quote v3 file offline (hardware or simulated)");
  verify->add_option("quote", at->quote, "Quote file (binary, or hex text with --hex)")
      ->required()
      ->check(CLI::ExistingFile);
  verify->add_option("--root", at->root, "Pinned root CA (PEM or DER), e.g. Intel's SGX root")
      ->required();
  verify->add_option("--at", at->at, "Verification time (default now): Unix s or ISO 8601 UTC");
  verify->add_option("--crl", at->crls, "CRL (DER) to check the PCK chain against; repeatable");
  verify
      ->add_option("--collateral", at->collateral,
                   "Intel collateral (dcap-qvl QuoteCollateralV3 JSON, or a directory holding "
                   "collateral.json): adds the TCB status")
      ->check(CLI::ExistingPath);
  verify->add_option("--policy", at->policy, "Also check this policy");
  verify->add_flag("--hex", at->hex, "The quote file is hex text");
  verify->add_flag("--json", at->json, "JSON output");
  verify->callback([=] {
    auto when = client::ParseTimeArgument(at->at);
    auto evidence = when ? client::VerifyEvidenceFiles({.quote = at->quote,
                                                        .hex = at->hex,
                                                        .root = at->root,
                                                        .at = *when,
                                                        .crls = at->crls,
                                                        .policy = at->policy,
                                                        .collateral = at->collateral})
                         : Result<client::VerifiedEvidence>(std::unexpected(when.error()));
    if (!evidence) {
      *exit_code = ExitWithError("attest verify", evidence.error());
      return;
    }
    const attest::Claims* claims = &evidence->claims;
    if (!evidence->tcb) {
      PrintClaims(*claims, at->json);
      return;
    }
    const attest::TcbResult* tcb = &*evidence->tcb;
    if (at->json) {
      auto j = ClaimsJson(*claims);
      j["tcb_status"] = tcb->status;
      j["platform_tcb_status"] = tcb->platform_status;
      j["qe_tcb_status"] = tcb->qe_status;
      j["tcb_date"] = tcb->tcb_date;
      j["advisory_ids"] = tcb->advisories;
      j["fmspc"] = tcb->fmspc;
      std::printf("%s\n", DumpJson(j).c_str());
      return;
    }
    PrintClaims(*claims, false);
    std::string advisories;
    for (const auto& a : tcb->advisories) advisories += (advisories.empty() ? "" : ", ") + a;
    std::printf("  %-13s %s (platform %s, QE %s; TCB date %s)\n  %-13s %s\n", "tcb_status",
                tcb->status.c_str(), tcb->platform_status.c_str(), tcb->qe_status.c_str(),
                tcb->tcb_date.c_str(), "advisories", advisories.empty() ? "-" : advisories.c_str());
  });
  attest_cmd->callback([=] {
    if (!attest_cmd->get_subcommands().empty()) return;
    if (at->policy.empty()) {
      *exit_code =
          ExitWithError("attest", "--policy FILE is required (see 'medstream enclave policy')");
      return;
    }
    auto policy_file = attest::LoadPolicy(at->policy);
    if (!policy_file) {
      *exit_code = ExitWithError("attest", policy_file.error());
      return;
    }
    auto root = client::LoadRootCertificate(
        at->root.empty() ? attest::SimPlatform::RootPath(at->launch.platform) : at->root);
    if (!root) {
      *exit_code = ExitWithError("attest", root.error());
      return;
    }
    auto t = Launch(at->launch);
    if (!t) {
      *exit_code = ExitWithError("attest", t.error());
      return;
    }
    auto session = client::Attest(**t, {.root = &*root, .policy = *policy_file});
    if (!session) {
      *exit_code = ExitWithError("attest", Error(session.error()).With("enclave refused"));
      return;
    }
    if (!at->json)
      std::printf("attested channel established (session %llu)\n",
                  static_cast<unsigned long long>(session->id));
    PrintClaims(session->claims, at->json);
  });
}

}  // namespace

void RegisterEnclaveCommands(CLI::App& app, int* exit_code) {
  RegisterPlatformCommand(app, exit_code);
  RegisterEnclaveCommand(app, exit_code);
  RegisterAttestCommand(app, exit_code);
}

}  // namespace medstream::cli

// `medstream demo`: the whole system on one machine, for real.
//
// Starts Eclipse Mosquitto on a free loopback port, `medstream server` (process mode) as its own
// process, a gateway in this process, and `medstream sensor` simulating users faster than real
// time; then prints what arrived, what was lost (must be 0) and how long it took.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "attest/sim_platform.h"
#include "base/file.h"
#include "cli/commands.h"
#include "enclave/identity.h"
#include "gateway/gateway.h"
#include "host/transport.h"
#include "proc/proc.h"
#include "sftp/sshd.h"

namespace medstream::cli {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

void RegisterDemoCommand(CLI::App& app, int* exit_code) {
  struct Args {
    int users = 20;
    double duration_s = 60;
    double speed = 30;
    double batch_seconds = 10;
    uint64_t seed = 1;
    std::string keep, summary_json;
    std::string jobs = "sdnn,hrv-bands";
    bool sftp = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "demo",
      "Run the whole system on this machine: Mosquitto, sensors, gateway, server and a "
      "process-mode enclave, then print a summary");
  cmd->add_option("--users", a->users, "Simulated users")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  cmd->add_option("--duration", a->duration_s, "Seconds the sensors publish (wall clock)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--speed", a->speed, "Heart time per wall second (faster than real time)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--batch-seconds", a->batch_seconds, "Gateway micro-batch interval (s)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--seed", a->seed, "Random seed of the simulated users")->capture_default_str();
  cmd->add_option("--jobs", a->jobs, "Jobs the data owner provisions")->capture_default_str();
  cmd->add_option("--keep", a->keep,
                  "Keep every directory here: raw beats sent, server inbox/outbox (ciphertext), "
                  "decrypted results");
  cmd->add_option("--summary-json", a->summary_json, "Also write the summary as JSON");
  cmd->add_flag("--sftp", a->sftp,
                "Upload over SFTP: OpenSSH sshd (internal-sftp, chrooted to the server directory, "
                "key auth, pinned host key) on a loopback port; needs root");
  cmd->callback([a, exit_code] {
    auto fail = [&](const std::string& m) {
      std::fprintf(stderr, "medstream demo: error: %s\n", m.c_str());
      *exit_code = 1;
    };
    const std::string self = enclave::SelfPath().value_or("medstream");
    const std::string work =
        a->keep.empty()
            ? (fs::temp_directory_path() / ("medstream-demo-" + std::to_string(getpid()))).string()
            : fs::absolute(a->keep).string();
    // OpenSSH's chroot must be root-owned all the way up, so never under /tmp.
    const std::string server_dir =
        a->sftp ? "/var/lib/medstream/demo-" + std::to_string(getpid()) + "/server"
                : work + "/server";
    fs::remove_all(server_dir);
    fs::create_directories(work);
    if (a->sftp) {
      if (auto s = MakeDirs(fs::path(server_dir).parent_path().string(), 0755); !s) {
        return fail(s.error().message());
      }
    }
    const std::string platform = work + "/platform";
    std::printf(
        "medstream demo: %d users for %.0f s at %.0fx real time, enclave in process mode\n"
        "  NOTE: a software-simulated TEE (no TEE hardware here): it protects against the\n"
        "  untrusted server process, not against root or a hypervisor.\n  working in %s\n",
        a->users, a->duration_s, a->speed, work.c_str());
    if (auto s = attest::InitPlatform({.dir = platform, .force = true, .now = time(nullptr)}); !s) {
      return fail(s.error().message());
    }
    // 1. The broker.
    const int port = proc::FreeLoopbackPort();
    fs::create_directories(work + "/broker");
    std::ofstream(work + "/broker/mosquitto.conf")
        << "listener " << port << " 127.0.0.1\nallow_anonymous true\npersistence false\n"
        << "max_queued_messages 1000000\nlog_dest stderr\n";
    // (As root, mosquitto drops to its own user; it logs to stderr, redirected here.)
    const pid_t broker = proc::Spawn({"/usr/sbin/mosquitto", "-c", work + "/broker/mosquitto.conf"},
                                     work + "/broker/mosquitto.log");
    pid_t server = -1;
    pid_t sensors = -1;
    auto cleanup = [&] {
      proc::Stop(sensors);
      proc::Stop(server);
      proc::Stop(broker);
    };
    for (int i = 0; i < 300 && !proc::CanConnectLoopback(port); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!proc::CanConnectLoopback(port)) {
      cleanup();
      return fail("mosquitto did not start (is it installed? scripts/install-deps.sh)");
    }
    std::printf("  broker     mosquitto on 127.0.0.1:%d\n", port);
    // 2. The untrusted server with its enclave.
    server = proc::Spawn(
        {self, "server", "--dir", server_dir, "--mode", "process", "--platform", platform},
        work + "/server.log");
    for (int i = 0; i < 500 && !FileExists(server_dir + "/enclave.sock"); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    // 3. The gateway: attests the enclave against this build's identity before any key leaves.
    auto identity = enclave::LoadIdentity(host::DefaultEnclavePath());
    if (!identity) {
      cleanup();
      return fail(identity.error().message());
    }
    gateway::Options go;
    go.state_dir = work + "/gateway";
    go.results_dir = work + "/results";
    go.server_dir = server_dir;
    std::unique_ptr<sftp::Sshd> sshd;
    if (a->sftp) {
      auto d = sftp::Sshd::Start(work + "/ssh", server_dir, proc::FreeLoopbackPort());
      if (!d) {
        cleanup();
        return fail(d.error().message());
      }
      sshd = std::move(*d);
      go.sftp = sftp::Target{.host = "127.0.0.1",
                             .port = sshd->port(),
                             .user = "root",
                             .private_key = sshd->client_key(),
                             .host_key = sshd->host_key_pub()};
      std::printf(
          "  transport  SFTP: OpenSSH sshd on 127.0.0.1:%d, internal-sftp chrooted to %s,\n"
          "             key authentication, host key pinned\n",
          sshd->port(), server_dir.c_str());
    }
    go.broker = "127.0.0.1:" + std::to_string(port);
    go.site = "demo";
    go.batch_seconds = a->batch_seconds;
    go.root_ca = attest::SimPlatform::RootPath(platform);
    go.policy.mr_enclave = {identity->mr_enclave};
    go.policy.mr_signer = {identity->mr_signer};
    go.policy.allow_simulated = true;  // the demo's enclave is simulated, and says so
    auto jobs = hrv::ParseJobList(a->jobs);
    if (!jobs) {
      cleanup();
      return fail(jobs.error().message());
    }
    go.config.jobs = *jobs;
    auto gw = gateway::Gateway::Start(go);
    if (!gw) {
      cleanup();
      return fail(gw.error().message() + " (server log: " + work + "/server.log)");
    }
    std::printf(
        "  server     medstream server --mode process (pid %d), enclave attested:\n"
        "             mrenclave %s (simulated)\n",
        server, crypto::ToHex((*gw)->claims().mr_enclave).substr(0, 16).c_str());
    // 4. The sensors.
    const double heart_seconds = a->duration_s * a->speed;
    sensors = proc::Spawn({self, "sensor", "--broker", go.broker, "--site", "demo", "--users",
                           std::to_string(a->users), "--duration", std::to_string(heart_seconds),
                           "--speed", std::to_string(a->speed), "--seed", std::to_string(a->seed),
                           "--beats-per-message", "4", "--record", work + "/sensors"},
                          work + "/sensor.log");
    std::printf("  sensors    %d simulated users, %.0f min of heart beats each\n\n", a->users,
                heart_seconds / 60);
    std::fflush(stdout);
    const auto t0 = Clock::now();
    auto last = t0;
    bool sensors_done = false;
    auto report = [&](const char* what) {
      const auto st = (*gw)->stats();
      std::printf(
          "  %5.0f s  %-9s beats in %8llu   batches %6llu   results %6llu   windows %7llu\n",
          std::chrono::duration<double>(Clock::now() - t0).count(), what,
          static_cast<unsigned long long>(st.beats_in),
          static_cast<unsigned long long>(st.batches_sealed),
          static_cast<unsigned long long>(st.results), static_cast<unsigned long long>(st.windows));
      std::fflush(stdout);
    };
    while (!sensors_done) {
      if (auto s = (*gw)->Tick(); !s) {
        cleanup();
        return fail(s.error().message());
      }
      int status = 0;
      if (waitpid(sensors, &status, WNOHANG) == sensors) {
        sensors_done = true;
        sensors = -1;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
          cleanup();
          return fail("the sensors failed (see " + work + "/sensor.log)");
        }
      }
      if (Clock::now() - last > std::chrono::seconds(5)) {
        report("running");
        last = Clock::now();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    // Drain: the last messages, the open batches, their results.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    (void)(*gw)->CutAll();
    const auto drain_until = Clock::now() + std::chrono::seconds(120);
    while (Clock::now() < drain_until) {
      if (auto s = (*gw)->Tick(); !s) break;
      if ((*gw)->outstanding() == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    report("drained");
    const auto st = (*gw)->stats();
    // What the sensors sent, from their own record.
    uint64_t published = 0;
    for (const auto& e : fs::directory_iterator(work + "/sensors")) {
      std::ifstream in(e.path());
      std::string line;
      std::getline(in, line);
      while (std::getline(in, line)) ++published;
    }
    size_t result_files = 0;
    for (const auto& e : fs::directory_iterator(server_dir + "/outbox")) {
      result_files += e.path().extension() == ".result";
    }
    const uint64_t lost_beats = published > st.beats_processed ? published - st.beats_processed : 0;
    const uint64_t lost_batches = st.batches_sealed - std::min(st.batches_sealed, st.results);
    const uint64_t duplicates = result_files > st.results ? result_files - st.results : 0;
    nlohmann::ordered_json j{
        {"users", a->users},
        {"mode", "process"},
        {"beats_published", published},
        {"beats_received", st.beats_in},
        {"beats_processed", st.beats_processed},
        {"batches", st.batches_sealed},
        {"results", st.results},
        {"windows", st.windows},
        {"malformed_messages", st.malformed},
        {"lost_beats", lost_beats},
        {"lost_batches", lost_batches},
        {"duplicates", duplicates},
        {"latency_p50_s", Percentile(st.latency_s, 0.5)},
        {"latency_p99_s", Percentile(st.latency_s, 0.99)},
        {"batch_interval_s", a->batch_seconds},
        {"results_dir", a->keep.empty() ? "" : work + "/results"},
    };
    std::printf(
        "\nsummary\n  users %d   beats published %llu, received %llu, processed in the enclave "
        "%llu\n"
        "  batches %llu   results %llu   windows %llu   malformed messages %llu\n"
        "  lost: %llu beats, %llu batches   duplicates: %llu\n"
        "  beat-to-result latency: p50 %.2f s, p99 %.2f s (batch interval %.1f s)\n",
        a->users, static_cast<unsigned long long>(published),
        static_cast<unsigned long long>(st.beats_in),
        static_cast<unsigned long long>(st.beats_processed),
        static_cast<unsigned long long>(st.batches_sealed),
        static_cast<unsigned long long>(st.results), static_cast<unsigned long long>(st.windows),
        static_cast<unsigned long long>(st.malformed), static_cast<unsigned long long>(lost_beats),
        static_cast<unsigned long long>(lost_batches), static_cast<unsigned long long>(duplicates),
        Percentile(st.latency_s, 0.5), Percentile(st.latency_s, 0.99), a->batch_seconds);
    gw->reset();
    sshd.reset();
    cleanup();
    if (!a->keep.empty()) {
      std::printf(
          "  kept in %s: sensors/ (raw beats sent), results/ (decrypted per user: CSV and\n"
          "  JSON lines), gateway/, platform/; the server's files (ciphertext) in %s\n",
          work.c_str(), server_dir.c_str());
    } else {
      fs::remove_all(work);
      if (a->sftp) fs::remove_all(fs::path(server_dir).parent_path());
      std::printf(
          "  (use --keep DIR to keep the sensors' beats, the server's files and the results)\n");
    }
    if (!a->summary_json.empty()) std::ofstream(a->summary_json) << j.dump(2) << "\n";
    if (lost_beats || lost_batches || duplicates) *exit_code = 2;
  });
}

}  // namespace medstream::cli

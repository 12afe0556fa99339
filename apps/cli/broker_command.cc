// `medstream broker`: the MQTT broker's certificate authority, configuration and device
// enrolment (owner/broker/broker.h). The broker itself is Eclipse Mosquitto: `mosquitto -c
// DIR/broker/mosquitto.conf`.
#include <cstdio>
#include <ctime>

#include "apps/cli/commands.h"
#include "owner/broker/broker.h"

namespace medstream::cli {

void RegisterBrokerCommand(CLI::App& app, int* exit_code) {
  CLI::App* cmd = app.add_subcommand(
      "broker",
      "Set up the MQTT broker: a CA, a TLS-only Mosquitto config with an ACL, and one "
      "certificate per device");
  cmd->require_subcommand(1);

  auto init = std::make_shared<broker::InitOptions>();
  CLI::App* i = cmd->add_subcommand(
      "init",
      "Create the broker CA, the broker's certificate, the gateway's certificate, "
      "DIR/broker/mosquitto.conf and its ACL (an existing CA is kept)");
  i->add_option("--dir", init->dir, "Folder for all of it")->required();
  i->add_option("--site", init->site, "Site: devices publish on medstream/SITE/DEVICE/rr")
      ->capture_default_str();
  i->add_option("--port", init->port, "TLS listener port")
      ->check(CLI::Range(1, 65535))
      ->capture_default_str();
  i->add_option("--listen", init->listen, "Address the listener binds")->capture_default_str();
  i->add_option("--name", init->names,
                "Host name or IP clients connect to (repeat; default 127.0.0.1 and localhost)");
  i->add_option("--max-queued-messages", init->max_queued_messages,
                "Per client, messages the broker queues beyond those in flight; past it, it drops "
                "them (the gateway then reports lost beats). 0 = no limit")
      ->capture_default_str();
  i->add_option("--max-queued-bytes", init->max_queued_bytes,
                "Per client, payload bytes the broker queues beyond those in flight; past it, it "
                "drops messages as past --max-queued-messages. 0 = no limit")
      ->capture_default_str();
  i->add_option("--persistence", init->persistence_dir,
                "Keep queued messages and sessions across broker restarts in this folder");
  i->add_flag("--force", init->force, "Make a new CA (every device must enrol again)");
  i->callback([init, exit_code] {
    init->now = time(nullptr);
    if (auto s = broker::Init(*init); !s) {
      *exit_code = ExitWithError("broker init", s.error());
      return;
    }
    const broker::Credentials gw = broker::ClientCredentials(init->dir, broker::kGatewayIdentity);
    std::printf(
        "broker set up in %s\n"
        "  run it:    mosquitto -c %s\n"
        "  gateway:   --ca %s --cert %s --key %s\n"
        "  devices:   medstream broker enroll --dir %s DEVICE...\n",
        init->dir.c_str(), broker::ConfigPath(init->dir).c_str(), gw.ca.c_str(), gw.cert.c_str(),
        gw.key.c_str(), init->dir.c_str());
  });

  struct EnrollArgs {
    std::string dir;
    std::vector<std::string> names;
    int users = 0;
    bool renew = false;
  };
  auto e = std::make_shared<EnrollArgs>();
  CLI::App* en = cmd->add_subcommand(
      "enroll", "Issue client certificates: one per device, its name its only identity");
  en->add_option("--dir", e->dir, "The `broker init` folder")->required();
  en->add_option("names", e->names, "Device names (1-64 of A-Z a-z 0-9 - _)");
  en->add_option("--users", e->users,
                 "Also enrol user-0001 ... user-N (the names `medstream sensor --users N` uses)")
      ->check(CLI::Range(0, 100000));
  en->add_flag("--renew", e->renew, "Issue a new certificate for a device enrolled already");
  en->callback([e, exit_code] {
    std::vector<std::string> names = e->names;
    for (int u = 1; u <= e->users; ++u) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "user-%04d", u);
      names.push_back(buf);
    }
    if (names.empty()) {
      *exit_code = ExitWithError("broker enroll", "name at least one device");
      return;
    }
    size_t issued = 0, kept = 0;
    for (const std::string& n : names) {
      auto c = broker::Enroll(e->dir, n, time(nullptr), e->renew);
      if (!c && c.error().code() == Error::Code::kAlreadyExists) {
        ++kept;
        continue;
      }
      if (!c) {
        *exit_code = ExitWithError("broker enroll", c.error());
        return;
      }
      ++issued;
      if (names.size() <= 10)
        std::printf("%s: --cert %s --key %s\n", n.c_str(), c->cert.c_str(), c->key.c_str());
    }
    std::printf("enrolled %zu devices (%zu had a certificate already) in %s/clients\n", issued,
                kept, e->dir.c_str());
  });
}

}  // namespace medstream::cli

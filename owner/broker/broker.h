// broker: the data owner's MQTT broker set-up: its certificate authority, the broker's TLS
// certificate, one client certificate per device (and one for the gateway), and a Mosquitto
// configuration that accepts nothing else.
//
//   DIR/ca.crt                 the broker CA (public; sensors and gateway verify the broker by it)
//   DIR/private/ca.key         its private key (0600 in 0700): only enrolment needs it
//   DIR/broker/                what Mosquitto reads: mosquitto.conf, acl, ca.crt, server.crt,
//                              server.key (0600; owned by the mosquitto user when run as root)
//   DIR/clients/NAME.crt|.key  a device's (or the gateway's) credentials, key 0600
//
// The configuration: one TLS listener (no plaintext one), require_certificate, no anonymous
// clients, identity = the certificate's common name (use_identity_as_username), and an ACL where
// the gateway identity alone may subscribe (to medstream/SITE/+/rr and .../status) and a device may
// publish only on its own topics, medstream/SITE/<its name>/rr and .../status. What one client can
// make the broker hold is bounded: a packet by kMaxPacketBytes, a subscriber's queue by
// max_queued_messages and max_queued_bytes. The number of connections is not: Mosquitto 2.0.11
// (Debian 12) counts each clean disconnection twice, so its max_connections stops holding after
// the first clients leave (eclipse-mosquitto/mosquitto#1460); the process's file limit bounds it.
//
// Certificates are ECDSA P-256, signed by the CA with SHA-256. Functions here touch only DIR; none
// keeps state, so concurrent calls on different DIRs are safe (on one DIR, enrolments race on the
// serial number only).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/base/result.h"

namespace medstream::broker {

// The gateway's identity at the broker (a device may not enrol under this name).
inline constexpr const char* kGatewayIdentity = "medstream-gateway";

// The largest MQTT packet the broker takes from any client. A device's largest valid message is a
// JSON payload of sensor::kMaxJsonPayloadBytes (64 KiB) on its longest topic (medstream/SITE/
// NAME/status, 146 bytes with 64-character names), plus at most 9 bytes of MQTT headers: 1 KiB of
// room covers them. Mosquitto disconnects a client that announces a larger packet before it reads
// the payload, so one device cannot make the broker, and the gateway it forwards to, hold up to
// MQTT's 256 MB per message (broker_test checks the largest valid message still passes).
inline constexpr uint64_t kMaxPacketBytes = 65 * 1024;

struct Credentials {
  std::string ca, cert, key;  // PEM files
};

struct InitOptions {
  std::string dir = {};
  std::string site = "demo";
  int port = 8883;
  std::string listen = "127.0.0.1";
  // Names the broker's certificate carries: clients check the host they connect to against them.
  std::vector<std::string> names = {"127.0.0.1", "localhost"};
  // Per client, QoS 1 messages the broker holds beyond those in flight; past it, the broker drops
  // (medstream then reports the beats as lost: see docs/streaming.md). 0 = no limit.
  uint64_t max_queued_messages = 1000000;
  uint64_t max_inflight_messages = 1000;  // per client, sent and not yet acknowledged
  // Per client, bytes of payload the broker queues beyond those in flight; past it, it drops as
  // past max_queued_messages. 1 GiB: about a minute of Stream-Big (17.5 MB/s) with the gateway
  // away. 0 = no limit (then at most max_queued_messages x kMaxPacketBytes).
  uint64_t max_queued_bytes = uint64_t{1} << 30;
  std::string persistence_dir = {};  // empty: no persistence (queued messages die with the broker)
  std::string log_dest = "stderr";
  int64_t now = 0;          // Unix seconds; the certificates' validity starts an hour before
  int validity_days = 825;  // server and client certificates; the CA gets ten years
  bool force = false;       // replace an existing CA (every enrolled device must enrol again)
};

// Creates (or, with `force`, recreates) the CA, the broker's certificate and configuration, and
// enrols the gateway. An existing CA is kept and only the configuration is rewritten.
Status Init(const InitOptions& options);

// Issues NAME's client certificate (1-64 of A-Z a-z 0-9 - _). kAlreadyExists if NAME has one and
// not `renew`; kInvalidArgument for a bad or reserved name; kFailedPrecondition without a CA.
Result<Credentials> Enroll(const std::string& dir, const std::string& name, int64_t now,
                           bool renew = false);

// Where NAME's credentials are (whether or not they exist).
Credentials ClientCredentials(const std::string& dir, const std::string& name);
std::string ConfigPath(const std::string& dir);

bool ValidDeviceName(const std::string& name);

}  // namespace medstream::broker

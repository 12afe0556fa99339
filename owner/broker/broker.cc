#include "owner/broker/broker.h"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "common/base/bytes.h"
#include "common/base/file.h"
#include "common/crypto/crypto.h"

namespace medstream::broker {

namespace {

namespace fs = std::filesystem;

constexpr int64_t kDay = 86400;

std::string CaKeyPath(const std::string& dir) {
  return dir + "/private/ca.key";
}

struct Ca {
  crypto::Certificate cert;
  crypto::EcKey key;
};

Result<Ca> LoadCa(const std::string& dir) {
  auto pem = ReadFileText(dir + "/ca.crt");
  auto key_pem = ReadFileText(CaKeyPath(dir));
  if (!pem || !key_pem) {
    return Fail(Error::Code::kFailedPrecondition,
                "no broker CA in " + dir + " (run `medstream broker init --dir " + dir + "`)");
  }
  MEDSTREAM_TRY(cert, crypto::Certificate::FromPem(*pem));
  MEDSTREAM_TRY(key, crypto::EcKey::FromPem(*key_pem));
  return Ca{std::move(cert), std::move(key)};
}

// Writes a key and its certificate: the key 0600, the certificate 0644.
Result<Credentials> Issue(const std::string& dir, const Ca& ca, const std::string& name,
                          int64_t now, int validity_days, const std::string& cert_path,
                          const std::string& key_path, const crypto::Certificate::Extras& extras) {
  MEDSTREAM_TRY(key, crypto::EcKey::Generate());
  MEDSTREAM_TRY(serial, crypto::RandomSerial());
  MEDSTREAM_TRY(cert, crypto::Certificate::Issue({.common_name = name, .organization = "medstream"},
                                                 key, &ca.cert, ca.key, /*ca=*/false, now - 3600,
                                                 now + validity_days * kDay, serial, extras));
  if (auto s = crypto::WriteKeyAndCertificate(cert_path, key_path, cert, key); !s)
    return std::unexpected(s.error());
  return Credentials{dir + "/ca.crt", cert_path, key_path};
}

// As root, Mosquitto drops to its own user before it reads its certificates: give it what it reads
// (and only that: the CA key and the clients' keys stay the owner's).
Status HandToMosquitto(const std::string& dir) {
  if (geteuid() != 0) return {};
  const passwd* pw = getpwnam("mosquitto");
  if (!pw) return {};
  for (const std::string& p :
       {dir + "/broker", dir + "/broker/server.key", dir + "/broker/server.crt",
        dir + "/broker/ca.crt", dir + "/broker/acl", dir + "/broker/mosquitto.conf"}) {
    if (chown(p.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      return IoError("cannot give " + p + " to the mosquitto user: " + std::strerror(errno));
    }
  }
  // It must also reach them: every folder above needs search permission for others.
  for (fs::path p = fs::absolute(dir); !p.empty() && p != p.root_path(); p = p.parent_path()) {
    struct stat st {};
    if (stat(p.c_str(), &st) == 0 && (st.st_mode & S_IXOTH) == 0) {
      return Fail(Error::Code::kFailedPrecondition,
                  "Mosquitto (user mosquitto) cannot reach " + dir + ": " + p.string() +
                      " is not searchable by others (chmod o+x it, or choose another --dir)");
    }
  }
  return {};
}

}  // namespace

bool ValidDeviceName(const std::string& d) {
  return !d.empty() && d.size() <= 64 && std::all_of(d.begin(), d.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
  });
}

Credentials ClientCredentials(const std::string& dir, const std::string& name) {
  return {dir + "/ca.crt", dir + "/clients/" + name + ".crt", dir + "/clients/" + name + ".key"};
}

std::string ConfigPath(const std::string& dir) {
  return dir + "/broker/mosquitto.conf";
}

Status Init(const InitOptions& o) {
  if (o.dir.empty()) return InvalidArgument("broker init needs a directory");
  if (!ValidDeviceName(o.site)) return InvalidArgument("bad site name '" + o.site + "'");
  if (o.port <= 0 || o.port > 65535) return InvalidArgument("bad port " + std::to_string(o.port));
  if (o.names.empty()) return InvalidArgument("the broker's certificate needs at least one name");
  for (const std::string& n : o.names) {
    if (n.empty() || n.find_first_of(", \n\t") != std::string::npos) {
      return InvalidArgument("bad broker name '" + n + "'");
    }
  }
  // The folder itself only needs to be passed through (Mosquitto reads DIR/broker).
  if (auto s = MakeDirs(o.dir, 0711); !s) return s;
  chmod(o.dir.c_str(), 0711);
  for (const std::string& d : {o.dir + "/private", o.dir + "/clients"}) {
    if (auto s = MakePrivateDir(d); !s) return s;
  }
  if (auto s = MakeDirs(o.dir + "/broker", 0755); !s) return s;
  const int64_t now = o.now;
  if (o.force || !FileExists(CaKeyPath(o.dir)) || !FileExists(o.dir + "/ca.crt")) {
    MEDSTREAM_TRY(key, crypto::EcKey::Generate());
    MEDSTREAM_TRY(serial, crypto::RandomSerial());
    MEDSTREAM_TRY(cert, crypto::Certificate::Issue(
                            {.common_name = "medstream broker CA (" + o.site + ")",
                             .organization = "medstream"},
                            key, nullptr, key, /*ca=*/true, now - 3600, now + 3650 * kDay, serial));
    if (auto s = crypto::WriteKeyAndCertificate(o.dir + "/ca.crt", CaKeyPath(o.dir), cert, key); !s)
      return s;
  }
  MEDSTREAM_TRY(ca, LoadCa(o.dir));
  std::string san;
  for (const std::string& n : o.names) {
    const bool ip = std::all_of(n.begin(), n.end(), [](char c) {
      return std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == ':';
    });
    san += (san.empty() ? "" : ",") + std::string(ip ? "IP:" : "DNS:") + n;
  }
  MEDSTREAM_TRY(server, Issue(o.dir, ca, o.names.front(), now, o.validity_days,
                              o.dir + "/broker/server.crt", o.dir + "/broker/server.key",
                              {.subject_alt_name = san, .extended_key_usage = "serverAuth"}));
  (void)server;
  MEDSTREAM_TRY(ca_pem, ReadFileText(o.dir + "/ca.crt"));
  if (auto s = WriteFileAtomic(o.dir + "/broker/ca.crt", ca_pem, 0644); !s) return s;
  const Credentials gw = ClientCredentials(o.dir, kGatewayIdentity);
  MEDSTREAM_TRY(gateway, Issue(o.dir, ca, kGatewayIdentity, now, o.validity_days, gw.cert, gw.key,
                               {.subject_alt_name = "", .extended_key_usage = "clientAuth"}));
  (void)gateway;
  const std::string acl = fmt::format(
      "# Generated by `medstream broker init` (site {0}). Identities are certificate common "
      "names.\n"
      "# Only the gateway reads the devices' topics.\n"
      "user {1}\n"
      "topic read medstream/{0}/+/rr\n"
      "topic read medstream/{0}/+/status\n"
      "\n"
      "# A device writes its own topics only (%u: its certificate's common name).\n"
      "pattern write medstream/{0}/%u/rr\n"
      "pattern write medstream/{0}/%u/status\n",
      o.site, kGatewayIdentity);
  if (auto s = WriteFileAtomic(o.dir + "/broker/acl", acl, 0644); !s) return s;
  const std::string b = fs::absolute(o.dir + "/broker").string();
  std::string conf = fmt::format(
      "# Generated by `medstream broker init`: run `mosquitto -c {0}/mosquitto.conf`.\n"
      "# One listener, TLS only; every client shows a certificate from the medstream CA and is\n"
      "# known by its common name; the ACL says who may read and write what.\n"
      "per_listener_settings false\n"
      "allow_anonymous false\n"
      "acl_file {0}/acl\n"
      "listener {1} {2}\n"
      "cafile {0}/ca.crt\n"
      "certfile {0}/server.crt\n"
      "keyfile {0}/server.key\n"
      "require_certificate true\n"
      "use_identity_as_username true\n"
      "# Per client: QoS 1 messages in flight, and queued beyond them in messages and bytes (0 =\n"
      "# no limit). Past the queue the broker drops messages; medstream's gateway counts them as\n"
      "# lost beats.\n"
      "max_inflight_messages {5}\n"
      "max_queued_messages {3}\n"
      "max_queued_bytes {6}\n"
      "# A client that sends a larger packet is disconnected before its payload is read: the\n"
      "# largest valid medstream message is smaller.\n"
      "max_packet_size {7}\n"
      "log_dest {4}\n",
      b, o.port, o.listen, o.max_queued_messages, o.log_dest, o.max_inflight_messages,
      o.max_queued_bytes, kMaxPacketBytes);
  if (o.persistence_dir.empty()) {
    conf += "persistence false\n";
  } else {
    conf += "persistence true\npersistence_location " + o.persistence_dir + "/\n";
  }
  if (auto s = WriteFileAtomic(ConfigPath(o.dir), conf, 0644); !s) return s;
  return HandToMosquitto(o.dir);
}

Result<Credentials> Enroll(const std::string& dir, const std::string& name, int64_t now,
                           bool renew) {
  if (!ValidDeviceName(name)) {
    return InvalidArgument("bad device name '" + name + "' (1 to 64 of A-Z a-z 0-9 - _)");
  }
  if (name == kGatewayIdentity) {
    return InvalidArgument(std::string(kGatewayIdentity) + " is the gateway's identity");
  }
  MEDSTREAM_TRY(ca, LoadCa(dir));
  const Credentials c = ClientCredentials(dir, name);
  if (!renew && FileExists(c.cert) && FileExists(c.key)) {
    return Fail(Error::Code::kAlreadyExists, name + " is enrolled already (" + c.cert + ")");
  }
  return Issue(dir, ca, name, now, 825, c.cert, c.key,
               {.subject_alt_name = "", .extended_key_usage = "clientAuth"});
}

}  // namespace medstream::broker

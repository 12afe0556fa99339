#include "common/attest/sim_platform.h"

#include <cstring>

#include "common/base/bytes.h"
#include "common/base/file.h"

namespace medstream::attest {

namespace {

constexpr char kOrg[] = "medstream SIMULATION ONLY (software TEE, not hardware)";
constexpr char kReadme[] =
    "medstream simulated TEE platform - SIMULATION ONLY\n"
    "\n"
    "These files stand in for what TEE hardware and its vendor provide. Anyone who can read them\n"
    "(root, a hypervisor, this user) can forge evidence and unseal state. Keep the directory\n"
    "private (0700); give relying parties root_ca.pem only.\n"
    "  root_ca.pem            simulation root CA certificate (the trust anchor to pin)\n"
    "  root_ca.key            its private key (only needed to re-issue; delete to be safer)\n"
    "  pck_chain.pem          PCK leaf, PCK platform CA, root\n"
    "  attestation_key.pem    the quoting enclave's attestation key\n"
    "  qe_certification.bin   QE report binding that key, signed by the PCK key\n"
    "  sealing_root.bin       the simulated CPU sealing secret\n"
    "  counters/              simulated monotonic counters (rollback protection)\n";

std::string P(const std::string& dir, const char* name) {
  return dir + "/" + name;
}

Bytes EncodeCertification(const QeCertification& c) {
  Bytes out;
  ByteWriter w(&out);
  w.Blob(c.qe_report);
  w.Bytes(c.qe_report_signature);
  w.Blob(c.auth_data);
  w.String(c.pck_chain_pem);
  return out;
}

Result<QeCertification> DecodeCertification(ByteView b) {
  ByteReader r(b);
  QeCertification c;
  MEDSTREAM_TRY(report, r.Blob("QE report", kReportBodySize));
  c.qe_report.assign(report.begin(), report.end());
  MEDSTREAM_TRY(sig, r.Bytes(64, "QE report signature"));
  std::memcpy(c.qe_report_signature.data(), sig.data(), 64);
  MEDSTREAM_TRY(auth, r.Blob("QE auth data", 1024));
  c.auth_data.assign(auth.begin(), auth.end());
  MEDSTREAM_TRY(pem, r.String("PCK chain", 1 << 20));
  c.pck_chain_pem = pem;
  return c;
}

}  // namespace

Digest SimQeMrEnclave() {
  return crypto::Sha256(crypto::AsBytes("medstream simulated QE v1"));
}
Digest SimQeMrSigner() {
  return crypto::Sha256(crypto::AsBytes("medstream simulation signer"));
}

Status InitPlatform(const PlatformInitOptions& o) {
  if (FileExists(P(o.dir, "attestation_key.pem")) && !o.force) {
    return Fail(Error::Code::kFailedPrecondition,
                "a platform already exists in " + o.dir + " (use --force to replace it)");
  }
  if (auto s = MakeDirs(o.dir + "/counters", 0700); !s) return s;
  const int64_t from = o.now - 86400, until = o.now + int64_t{86400} * o.validity_days;
  MEDSTREAM_TRY(root_key, crypto::EcKey::Generate());
  MEDSTREAM_TRY(ca_key, crypto::EcKey::Generate());
  MEDSTREAM_TRY(pck_key, crypto::EcKey::Generate());
  MEDSTREAM_TRY(ak, crypto::EcKey::Generate());
  MEDSTREAM_TRY(root,
                crypto::Certificate::Issue({"medstream SIMULATION ONLY Root CA", kOrg}, root_key,
                                           nullptr, root_key, true, from, until, 1));
  MEDSTREAM_TRY(ca, crypto::Certificate::Issue({"medstream SIMULATION ONLY PCK Platform CA", kOrg},
                                               ca_key, &root, root_key, true, from, until, 2));
  MEDSTREAM_TRY(pck, crypto::Certificate::Issue({"medstream SIMULATION ONLY PCK Certificate", kOrg},
                                                pck_key, &ca, ca_key, false, from, until, 3));
  // The quoting enclave certifies the attestation key once: its report binds SHA-256(AK || auth
  // data), and the PCK key signs that report, exactly as Intel's QE does.
  QeCertification cert;
  cert.auth_data.resize(32);
  for (size_t i = 0; i < 32; ++i) cert.auth_data[i] = static_cast<uint8_t>(i);
  ReportBody qe;
  qe.attributes_flags = kAttrInit | kAttrMode64;
  qe.mr_enclave = SimQeMrEnclave();
  qe.mr_signer = SimQeMrSigner();
  qe.isv_prod_id = 1;
  qe.isv_svn = 1;
  const Digest binding = AttestationKeyBinding(ak.RawPublic(), cert.auth_data);
  std::copy(binding.begin(), binding.end(), qe.report_data.begin());
  qe.AppendTo(&cert.qe_report);
  MEDSTREAM_TRY(qe_sig, pck_key.Sign(cert.qe_report));
  cert.qe_report_signature = qe_sig;
  MEDSTREAM_TRY(pck_pem, pck.Pem());
  MEDSTREAM_TRY(ca_pem, ca.Pem());
  MEDSTREAM_TRY(root_pem, root.Pem());
  cert.pck_chain_pem = pck_pem + ca_pem + root_pem;
  crypto::Key256 seal;
  if (auto s = crypto::RandomBytes(seal.span()); !s) return s;
  MEDSTREAM_TRY(root_key_pem, root_key.PrivatePem());
  MEDSTREAM_TRY(ak_pem, ak.PrivatePem());
  const std::pair<const char*, Status> writes[] = {
      {"README", WriteFileAtomic(P(o.dir, "README"), std::string_view(kReadme), 0644)},
      {"root_ca.pem", WriteFileAtomic(P(o.dir, "root_ca.pem"), root_pem, 0644)},
      {"root_ca.key", WriteFileAtomic(P(o.dir, "root_ca.key"), root_key_pem, 0600)},
      {"pck_chain.pem", WriteFileAtomic(P(o.dir, "pck_chain.pem"), cert.pck_chain_pem, 0644)},
      {"attestation_key.pem", WriteFileAtomic(P(o.dir, "attestation_key.pem"), ak_pem, 0600)},
      {"qe_certification.bin",
       WriteFileAtomic(P(o.dir, "qe_certification.bin"), EncodeCertification(cert), 0600)},
      {"sealing_root.bin", WriteFileAtomic(P(o.dir, "sealing_root.bin"), seal.span(), 0600)},
  };
  for (const auto& [name, status] : writes) {
    if (!status) return status;
  }
  return {};
}

Result<SimPlatform> SimPlatform::Load(const std::string& dir) {
  auto missing = [&](const Error& e) {
    return Fail(Error::Code::kNotFound, "no usable simulated platform in " + dir + " (" +
                                            e.message() +
                                            "); create one with 'medstream platform init'");
  };
  auto ak_pem = ReadFileText(P(dir, "attestation_key.pem"));
  if (!ak_pem) return missing(ak_pem.error());
  MEDSTREAM_TRY(ak, crypto::EcKey::FromPem(*ak_pem));
  auto cert_bytes = ReadFileBytes(P(dir, "qe_certification.bin"));
  if (!cert_bytes) return missing(cert_bytes.error());
  MEDSTREAM_TRY(cert, DecodeCertification(*cert_bytes));
  auto seal = ReadFileBytes(P(dir, "sealing_root.bin"));
  if (!seal) return missing(seal.error());
  if (seal->size() != 32) return Corrupt(P(dir, "sealing_root.bin") + " is not 32 bytes");
  auto root_pem = ReadFileText(RootPath(dir));
  if (!root_pem) return missing(root_pem.error());
  MEDSTREAM_TRY(root, crypto::Certificate::FromPem(*root_pem));
  crypto::Key256 seal_key(*seal);
  crypto::Wipe(*seal);
  return SimPlatform(dir, std::move(ak), std::move(cert), seal_key, std::move(root));
}

Result<Bytes> SimPlatform::Quote(const ReportBody& report) const {
  QuoteHeaderFields header;
  header.qe_svn = 1;
  header.pce_svn = 1;
  header.qe_vendor_id = kSimQeVendorId;
  return BuildQuote(report, attestation_key_, certification_, header);
}

}  // namespace medstream::attest

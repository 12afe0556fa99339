// The simulated TEE platform: what SGX hardware, its quoting enclave and Intel's provisioning
// service would provide, made in software for machines without a TEE.
//
// SIMULATION ONLY. `medstream platform init DIR` creates a per-deployment simulation root CA (its
// certificate says SIMULATION ONLY), a PCK certificate chain under it, an attestation key that a
// simulated quoting enclave certifies once, and a sealing root secret. Quotes made with it use the
// real quote v3 layout and verify with the same code as hardware quotes, but against this root.
// The keys are files on the host's disk: the simulation protects the enclave from the untrusted
// host *process* (separate address space, no ptrace, seccomp), not from root or a hypervisor,
// which can read these files. On real hardware the CPU holds the sealing and attestation keys.
#pragma once

#include <string>

#include "common/attest/quote.h"

namespace medstream::attest {

struct PlatformInitOptions {
  std::string dir;
  bool force = false;  // replace an existing platform
  int64_t now = 0;     // certificate validity starts a day before this (Unix seconds)
  int validity_days = 3650;
};
Status InitPlatform(const PlatformInitOptions& options);

class SimPlatform {
 public:
  static Result<SimPlatform> Load(const std::string& dir);

  // The simulated quoting enclave: a quote v3 over `report`, signed by the attestation key.
  Result<Bytes> Quote(const ReportBody& report) const;

  const crypto::Key256& sealing_root() const { return sealing_root_; }
  const crypto::Certificate& root() const { return root_; }
  const std::string& dir() const { return dir_; }
  // Where the simulated monotonic counters live (see enclave/core/sealing.h).
  std::string counter_dir() const { return dir_ + "/counters"; }

  static std::string RootPath(const std::string& dir) { return dir + "/root_ca.pem"; }

 private:
  SimPlatform(std::string dir, crypto::EcKey ak, QeCertification cert, crypto::Key256 seal,
              crypto::Certificate root)
      : dir_(std::move(dir)),
        attestation_key_(std::move(ak)),
        certification_(std::move(cert)),
        sealing_root_(seal),
        root_(std::move(root)) {}

  std::string dir_;
  crypto::EcKey attestation_key_;
  QeCertification certification_;
  crypto::Key256 sealing_root_;
  crypto::Certificate root_;
};

// Identity of the simulated quoting enclave (its QE report's MRENCLAVE and MRSIGNER).
Digest SimQeMrEnclave();
Digest SimQeMrSigner();

}  // namespace medstream::attest

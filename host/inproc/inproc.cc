#include "host/inproc/inproc.h"

#include "common/attest/identity.h"
#include "common/base/file.h"
#include "enclave/core/core.h"

namespace medstream::host {

namespace {

class InprocTransport : public EnclaveTransport {
 public:
  explicit InprocTransport(std::unique_ptr<enclave::EnclaveCore> core) : core_(std::move(core)) {}
  Result<crypto::Bytes> Call(enclave::Call call, crypto::ByteView request) override {
    return core_->Handle(static_cast<uint16_t>(call), request);
  }
  std::string_view backend() const override { return "inproc"; }

 private:
  std::unique_ptr<enclave::EnclaveCore> core_;
};

}  // namespace

Result<std::unique_ptr<EnclaveTransport>> LaunchInproc(const EnclaveLaunch& l) {
  MEDSTREAM_TRY(self, SelfPath());
  MEDSTREAM_TRY(identity, attest::LoadIdentity(self));
  enclave::CoreOptions o;
  o.backend = "inproc";
  o.debug = l.debug;
  o.identity = identity;
  o.platform_dir = l.platform_dir;
  o.seal_policy = l.seal_policy;
  MEDSTREAM_TRY(core, enclave::EnclaveCore::Create(o));
  return std::unique_ptr<EnclaveTransport>(std::make_unique<InprocTransport>(std::move(core)));
}

Status SignThisExecutableForInproc() {
  MEDSTREAM_TRY(self, SelfPath());
  MEDSTREAM_TRY(key, crypto::EcKey::Generate());
  MEDSTREAM_TRY(measurement, attest::MeasureFile(self));
  MEDSTREAM_TRY(sig, attest::SignMeasurement(measurement, key, 1, 1));
  return WriteFileAtomic(self + ".sig", sig);
}

}  // namespace medstream::host

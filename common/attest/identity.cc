#include "common/attest/identity.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/base/bytes.h"
#include "common/base/file.h"

namespace medstream::attest {

namespace {
constexpr size_t kSignedPart = 4 + 2 + 32 + 2 + 2 + 64;
}

Result<crypto::Digest> MeasureFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return IoError("cannot measure " + path + ": " + std::strerror(errno));
  crypto::Sha256Hasher h;
  std::vector<uint8_t> buf(1 << 20);
  for (;;) {
    const ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      close(fd);
      return IoError("cannot read " + path);
    }
    if (n == 0) break;
    h.Update(std::span(buf).first(static_cast<size_t>(n)));
  }
  close(fd);
  return h.Peek();
}

Result<crypto::Bytes> SignMeasurement(const crypto::Digest& mr_enclave, const crypto::EcKey& key,
                                      uint16_t isv_prod_id, uint16_t isv_svn) {
  crypto::Bytes out;
  ByteWriter w(&out);
  w.Raw("MSIG", 4);
  w.U16(1);
  w.Bytes(mr_enclave);
  w.U16(isv_prod_id);
  w.U16(isv_svn);
  w.Bytes(key.RawPublic());
  MEDSTREAM_TRY(sig, key.Sign(out));
  w.Bytes(sig);
  return out;
}

Result<SignedIdentity> CheckSignature(const crypto::Digest& mr_enclave, crypto::ByteView sigfile) {
  if (sigfile.size() != kSignedPart + 64 || std::memcmp(sigfile.data(), "MSIG", 4) != 0) {
    return Corrupt("not a medstream enclave signature file");
  }
  ByteReader r(sigfile);
  (void)r.Bytes(4, "magic");
  if (*r.U16("format") != 1) return Corrupt("unknown signature file format");
  SignedIdentity id;
  auto signed_mr = *r.Bytes(32, "mrenclave");
  id.isv_prod_id = *r.U16("isv prod id");
  id.isv_svn = *r.U16("isv svn");
  auto signer = *r.Bytes(64, "signer key");
  auto sig = *r.Bytes(64, "signature");
  MEDSTREAM_TRY(key, crypto::EcKey::FromRawPublic(signer));
  if (auto s = key.Verify(sigfile.first(kSignedPart), sig); !s) {
    return Corrupt("enclave signature is invalid (signature file modified)");
  }
  if (std::memcmp(signed_mr.data(), mr_enclave.data(), 32) != 0) {
    return Corrupt("enclave executable does not match its signature: measured " +
                   crypto::ToHex(mr_enclave) + ", signed " + crypto::ToHex(signed_mr) +
                   " (modified executable, or re-sign it with 'medstream enclave sign')");
  }
  id.mr_enclave = mr_enclave;
  id.mr_signer = crypto::Sha256(signer);
  return id;
}

Result<SignedIdentity> LoadIdentity(const std::string& executable) {
  MEDSTREAM_TRY(measurement, MeasureFile(executable));
  auto sig = ReadFileBytes(executable + ".sig");
  if (!sig) {
    return Fail(Error::Code::kNotFound, "enclave is not signed: " + sig.error().message() +
                                            " (create it with 'medstream enclave sign')");
  }
  return CheckSignature(measurement, *sig);
}

}  // namespace medstream::attest

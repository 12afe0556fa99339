#include "enclave/core/sealing.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/base/bytes.h"

namespace medstream::enclave {

namespace {

constexpr size_t kSealHeader = 4 + 2 + 1 + 2 + 2 + 8 + 12;
static_assert(kSealOverhead == kSealHeader + crypto::AesGcm::kTagSize);

Result<crypto::Key256> SealKey(const crypto::Key256& root, const SealIdentity& self,
                               SealPolicy policy, uint16_t svn) {
  crypto::Bytes info;
  ByteWriter w(&info);
  w.Raw("medstream seal key v1", 21);
  w.U8(static_cast<uint8_t>(policy));
  w.U16(self.isv_prod_id);
  w.U16(svn);
  const crypto::Digest& salt = policy == SealPolicy::kMrEnclave ? self.mr_enclave : self.mr_signer;
  crypto::Key256 key;
  if (auto s = crypto::HkdfSha256(root.span(), salt, info, key.span()); !s) {
    return std::unexpected(s.error());
  }
  return key;
}

}  // namespace

Result<crypto::Bytes> SealData(crypto::ByteView plaintext, const crypto::Key256& sealing_root,
                               const SealIdentity& self, SealPolicy policy, uint64_t version) {
  crypto::Bytes out;
  ByteWriter w(&out);
  w.Raw("MSS1", 4);
  w.U16(1);
  w.U8(static_cast<uint8_t>(policy));
  w.U16(self.isv_prod_id);
  w.U16(self.isv_svn);
  w.U64(version);
  std::array<uint8_t, 12> nonce;
  if (auto s = crypto::RandomBytes(nonce); !s) return std::unexpected(s.error());
  w.Bytes(nonce);
  MEDSTREAM_TRY(key, SealKey(sealing_root, self, policy, self.isv_svn));
  MEDSTREAM_TRY(gcm, crypto::AesGcm::Create(key));
  out.resize(kSealHeader + plaintext.size() + crypto::AesGcm::kTagSize);
  if (auto s = gcm.Seal(nonce, std::span(out).first(kSealHeader), plaintext,
                        std::span(out).subspan(kSealHeader));
      !s) {
    return std::unexpected(s.error());
  }
  return out;
}

Result<Unsealed> UnsealData(crypto::ByteView blob, const crypto::Key256& sealing_root,
                            const SealIdentity& self) {
  if (blob.size() < kSealHeader + crypto::AesGcm::kTagSize) return Corrupt("sealed blob truncated");
  ByteReader r(blob.first(kSealHeader));
  auto magic = *r.Bytes(4, "magic");
  if (std::memcmp(magic.data(), "MSS1", 4) != 0) return Corrupt("not a sealed medstream blob");
  if (*r.U16("format") != 1) return Corrupt("unknown sealed blob format");
  const uint8_t policy_byte = *r.U8("policy");
  if (policy_byte != 1 && policy_byte != 2) return Corrupt("unknown sealing policy");
  const auto policy = static_cast<SealPolicy>(policy_byte);
  const uint16_t prod = *r.U16("product id");
  const uint16_t svn = *r.U16("svn");
  const uint64_t version = *r.U64("version");
  auto nonce = *r.Bytes(12, "nonce");
  if (prod != self.isv_prod_id) {
    return Fail(Error::Code::kFailedPrecondition,
                "sealed by another product (ISVPRODID " + std::to_string(prod) + ")");
  }
  if (svn > self.isv_svn) {
    return Fail(Error::Code::kFailedPrecondition,
                "sealed by a newer enclave (ISVSVN " + std::to_string(svn) + " > " +
                    std::to_string(self.isv_svn) + "): downgrades cannot read newer state");
  }
  MEDSTREAM_TRY(key, SealKey(sealing_root, self, policy, svn));
  MEDSTREAM_TRY(gcm, crypto::AesGcm::Create(key));
  Unsealed u;
  u.version = version;
  u.policy = policy;
  u.data.resize(blob.size() - kSealHeader - crypto::AesGcm::kTagSize);
  if (auto s = gcm.Open(nonce, blob.first(kSealHeader), blob.subspan(kSealHeader), u.data); !s) {
    return Corrupt(policy == SealPolicy::kMrEnclave
                       ? "cannot unseal: sealed by another enclave measurement or platform, or "
                         "modified"
                       : "cannot unseal: sealed by another signer or platform, or modified");
  }
  return u;
}

Result<MonotonicCounter> MonotonicCounter::Open(const std::string& path) {
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return IoError("cannot open counter " + path + ": " + std::strerror(errno));
  uint64_t value = 0;
  const ssize_t n = pread(fd, &value, sizeof value, 0);
  if (n != 0 && n != sizeof value) {
    close(fd);
    return Corrupt("counter file " + path + " is damaged");
  }
  return MonotonicCounter(fd, n == 0 ? 0 : value);
}

MonotonicCounter& MonotonicCounter::operator=(MonotonicCounter&& o) noexcept {
  std::swap(fd_, o.fd_);
  std::swap(value_, o.value_);
  return *this;
}

MonotonicCounter::~MonotonicCounter() {
  if (fd_ >= 0) close(fd_);
}

Status MonotonicCounter::Advance(uint64_t to) {
  if (to < value_) return Fail(Error::Code::kFailedPrecondition, "counter cannot go backwards");
  if (pwrite(fd_, &to, sizeof to, 0) != sizeof to || fdatasync(fd_) != 0) {
    return IoError(std::string("cannot persist counter: ") + std::strerror(errno));
  }
  value_ = to;
  return {};
}

}  // namespace medstream::enclave

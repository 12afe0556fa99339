// Hashes, KDFs, X25519 and AES-GCM.
#include "common/crypto/crypto.h"

// Without this, intel-ipsec-mb's pre-0.53 names (SHA1, SHA256...) clash with OpenSSL's.
#define NO_COMPAT_IMB_API_053
#include <intel-ipsec-mb.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "common/crypto/ossl.h"

namespace medstream::crypto {

using internal::MdCtxPtr;
using internal::OpensslFailure;
using internal::PkeyCtxPtr;
using internal::PkeyPtr;

std::string ToHex(ByteView b) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s(b.size() * 2, '0');
  for (size_t i = 0; i < b.size(); ++i) {
    s[2 * i] = kDigits[b[i] >> 4];
    s[2 * i + 1] = kDigits[b[i] & 15];
  }
  return s;
}

Result<Bytes> FromHex(std::string_view hex) {
  if (hex.size() % 2) return InvalidArgument("hex string has an odd number of digits");
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  Bytes out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return InvalidArgument("not a hex digit in '" + std::string(hex) + "'");
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return out;
}

void Wipe(std::span<uint8_t> b) {
  OPENSSL_cleanse(b.data(), b.size());
}

Status RandomBytes(std::span<uint8_t> out) {
  if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) {
    return OpensslFailure("random number generator failed");
  }
  return {};
}

Digest Sha256(ByteView data) {
  Digest d;
  EVP_Digest(data.data(), data.size(), d.data(), nullptr, EVP_sha256(), nullptr);
  return d;
}

struct Sha256Hasher::State {
  MdCtxPtr ctx{EVP_MD_CTX_new()};
};

Sha256Hasher::Sha256Hasher() : state_(std::make_unique<State>()) {
  EVP_DigestInit_ex(state_->ctx.get(), EVP_sha256(), nullptr);
}
Sha256Hasher::~Sha256Hasher() = default;
Sha256Hasher::Sha256Hasher(Sha256Hasher&&) noexcept = default;
Sha256Hasher& Sha256Hasher::operator=(Sha256Hasher&&) noexcept = default;

void Sha256Hasher::Update(ByteView data) {
  EVP_DigestUpdate(state_->ctx.get(), data.data(), data.size());
}

Digest Sha256Hasher::Peek() const {
  MdCtxPtr copy(EVP_MD_CTX_new());
  EVP_MD_CTX_copy_ex(copy.get(), state_->ctx.get());
  Digest d;
  EVP_DigestFinal_ex(copy.get(), d.data(), nullptr);
  return d;
}

Digest HmacSha256(ByteView key, ByteView data) {
  Digest d;
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(), d.data(),
       &len);
  return d;
}

Status HkdfSha256(ByteView ikm, ByteView salt, ByteView info, std::span<uint8_t> out) {
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr));
  size_t len = out.size();
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) <= 0 ||
      EVP_PKEY_CTX_set_hkdf_md(ctx.get(), EVP_sha256()) <= 0 ||
      EVP_PKEY_CTX_set1_hkdf_key(ctx.get(), ikm.data(), static_cast<int>(ikm.size())) <= 0 ||
      (!salt.empty() &&
       EVP_PKEY_CTX_set1_hkdf_salt(ctx.get(), salt.data(), static_cast<int>(salt.size())) <= 0) ||
      (!info.empty() &&
       EVP_PKEY_CTX_add1_hkdf_info(ctx.get(), info.data(), static_cast<int>(info.size())) <= 0) ||
      EVP_PKEY_derive(ctx.get(), out.data(), &len) <= 0 || len != out.size()) {
    return OpensslFailure("HKDF-SHA256 failed");
  }
  return {};
}

Result<X25519KeyPair> X25519Generate() {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519"));
  if (!key) return OpensslFailure("X25519 key generation failed");
  X25519KeyPair pair;
  size_t priv_len = 32, pub_len = 32;
  if (EVP_PKEY_get_raw_private_key(key.get(), pair.private_key.span().data(), &priv_len) != 1 ||
      EVP_PKEY_get_raw_public_key(key.get(), pair.public_key.data(), &pub_len) != 1) {
    return OpensslFailure("X25519 key export failed");
  }
  return pair;
}

Result<Key256> X25519(const Key256& private_key, ByteView peer_public) {
  if (peer_public.size() != 32) {
    return InvalidArgument("X25519 public key must be 32 bytes, got " +
                           std::to_string(peer_public.size()));
  }
  PkeyPtr priv(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, private_key.data(),
                                            private_key.size()));
  PkeyPtr peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peer_public.data(),
                                           peer_public.size()));
  if (!priv || !peer) return OpensslFailure("X25519 key import failed");
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new(priv.get(), nullptr));
  Key256 shared;
  size_t len = shared.size();
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) <= 0 ||
      EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) <= 0 ||
      EVP_PKEY_derive(ctx.get(), shared.span().data(), &len) <= 0) {
    return Corrupt("X25519 failed (low-order or invalid peer key): " + internal::OpensslError());
  }
  uint8_t any = 0;
  for (uint8_t b : shared.span()) any |= b;
  if (any == 0) return Corrupt("X25519 produced the all-zero secret (low-order peer key)");
  return shared;
}

namespace {

// intel-ipsec-mb's manager only selects the code for this CPU (AVX-512 with VAES, AVX2, AVX or
// SSE; AES-NI or not). The GCM functions it points to keep no state in it, so one manager set up
// once serves every thread. Deliberately never freed: an AesGcm may outlive static destructors.
const IMB_MGR* GcmManager() {
  static const IMB_MGR* const manager = [] {
    IMB_MGR* m = alloc_mb_mgr(0);
    if (m == nullptr) return static_cast<const IMB_MGR*>(nullptr);
    init_mb_mgr_auto(m, nullptr);
    if (imb_get_errno(m) != 0) return static_cast<const IMB_MGR*>(nullptr);
    return static_cast<const IMB_MGR*>(m);
  }();
  return manager;
}

}  // namespace

std::string GcmCodePath() {
  const IMB_MGR* m = GcmManager();
  if (m == nullptr) return "intel-ipsec-mb not initialised";
  const bool vaes = (m->features & IMB_FEATURE_VAES) && (m->features & IMB_FEATURE_VPCLMULQDQ);
  switch (m->used_arch) {
    case IMB_ARCH_AVX512:
      return vaes ? "AVX-512 with VAES" : "AVX-512 (no VAES)";
    case IMB_ARCH_AVX2:
      // intel-ipsec-mb 1.3 has VAES code for GCM only with AVX-512.
      return "AVX2 (no VAES)";
    case IMB_ARCH_AVX:
      return "AVX";
    case IMB_ARCH_SSE:
      return "SSE";
    case IMB_ARCH_NOAESNI:
      return "no AES-NI";
    default:
      return "unknown";
  }
}

namespace {

// The library checks its arguments and refuses null pointers even for empty inputs.
const uint8_t* NonNull(ByteView b) {
  static constexpr uint8_t kEmpty[1] = {0};
  return b.data() != nullptr ? b.data() : kEmpty;
}

}  // namespace

struct AesGcm::Ctx {
  const IMB_MGR* manager = nullptr;
  // The expanded round keys and GHASH key powers: secret, wiped on destruction. The vector
  // code stores them with aligned moves, so the 64-byte alignment is required, not a hint.
  alignas(64) gcm_key_data key{};
  ~Ctx() { OPENSSL_cleanse(&key, sizeof(key)); }
};

AesGcm::AesGcm(std::unique_ptr<Ctx> ctx) : ctx_(std::move(ctx)) {}
AesGcm::AesGcm(AesGcm&&) noexcept = default;
AesGcm& AesGcm::operator=(AesGcm&&) noexcept = default;
AesGcm::~AesGcm() = default;

Result<AesGcm> AesGcm::Create(const Key256& key) {
  const IMB_MGR* manager = GcmManager();
  if (manager == nullptr) {
    return Fail(Error::Code::kInternal,
                "AES-256-GCM setup failed: intel-ipsec-mb could not be initialised");
  }
  auto ctx = std::make_unique<Ctx>();
  ctx->manager = manager;
  IMB_AES256_GCM_PRE(manager, key.data(), &ctx->key);
  return AesGcm(std::move(ctx));
}

Status AesGcm::Seal(ByteView nonce, ByteView aad, ByteView plaintext, std::span<uint8_t> out) {
  if (nonce.size() != kNonceSize) return InvalidArgument("AES-GCM nonce must be 12 bytes");
  if (out.size() != plaintext.size() + kTagSize) return InvalidArgument("AES-GCM output size");
  alignas(64) gcm_context_data state;
  IMB_AES256_GCM_ENC(ctx_->manager, &ctx_->key, &state, out.data(), NonNull(plaintext),
                     plaintext.size(), nonce.data(), NonNull(aad), aad.size(),
                     out.data() + plaintext.size(), kTagSize);
  OPENSSL_cleanse(&state, sizeof(state));
  return {};
}

Status AesGcm::Open(ByteView nonce, ByteView aad, ByteView ciphertext, std::span<uint8_t> out) {
  if (nonce.size() != kNonceSize) return InvalidArgument("AES-GCM nonce must be 12 bytes");
  if (ciphertext.size() < kTagSize) return Corrupt("ciphertext shorter than its tag (truncated)");
  const size_t n_plain = ciphertext.size() - kTagSize;
  if (out.size() != n_plain) return InvalidArgument("AES-GCM output size");
  // Copied first: `out` may be the ciphertext itself (opened in place).
  uint8_t tag[kTagSize];
  std::copy_n(ciphertext.data() + n_plain, kTagSize, tag);
  uint8_t computed[kTagSize];
  alignas(64) gcm_context_data state;
  uint8_t empty[1] = {0};
  IMB_AES256_GCM_DEC(ctx_->manager, &ctx_->key, &state, n_plain > 0 ? out.data() : empty,
                     NonNull(ciphertext), n_plain, nonce.data(), NonNull(aad), aad.size(), computed,
                     kTagSize);
  OPENSSL_cleanse(&state, sizeof(state));
  if (CRYPTO_memcmp(tag, computed, kTagSize) != 0) {
    Wipe(out);  // never hand out unauthenticated plaintext
    return Corrupt("authentication failed: ciphertext, header or tag was modified, or wrong key");
  }
  return {};
}

Result<Bytes> AesGcm::Seal(ByteView nonce, ByteView aad, ByteView plaintext) {
  Bytes out(plaintext.size() + kTagSize);
  if (auto s = Seal(nonce, aad, plaintext, out); !s) return std::unexpected(s.error());
  return out;
}

Result<Bytes> AesGcm::Open(ByteView nonce, ByteView aad, ByteView ciphertext) {
  if (ciphertext.size() < kTagSize) return Corrupt("ciphertext shorter than its tag (truncated)");
  Bytes out(ciphertext.size() - kTagSize);
  if (auto s = Open(nonce, aad, ciphertext, out); !s) return std::unexpected(s.error());
  return out;
}

}  // namespace medstream::crypto

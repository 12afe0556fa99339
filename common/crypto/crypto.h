// crypto: the only place medstream touches cryptographic primitives: OpenSSL 3, and for
// AES-256-GCM's bulk work intel-ipsec-mb (Debian's libipsec-mb), whose AVX-512/VAES code seals
// and opens 2.6x as fast as OpenSSL 3.0 on this project's machines (docs/evaluation.md).
//
// Thin, typed wrappers: SHA-256, HMAC/HKDF-SHA256 (RFC 5869), X25519 (RFC 7748), AES-256-GCM,
// ECDSA P-256 with raw r||s signatures (the SGX quote format), X.509 chains anchored on a pinned
// root. Nothing here invents a primitive; the wrappers exist so that the rest of the code sees
// fixed-size types and Result errors instead of OpenSSL's C API. Secret material is wiped
// (OPENSSL_cleanse) when its holder is destroyed.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace medstream::crypto {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;
using Digest = std::array<uint8_t, 32>;

inline ByteView AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
std::string ToHex(ByteView b);
Result<Bytes> FromHex(std::string_view hex);

// Overwrites memory in a way the compiler may not elide.
void Wipe(std::span<uint8_t> b);

// A fixed-size secret that is wiped on destruction.
template <size_t N>
class Secret {
 public:
  Secret() { bytes_.fill(0); }
  explicit Secret(ByteView b) { std::copy_n(b.begin(), N, bytes_.begin()); }
  Secret(const Secret& o) : bytes_(o.bytes_) {}
  Secret& operator=(const Secret& o) {
    bytes_ = o.bytes_;
    return *this;
  }
  ~Secret() { Wipe(bytes_); }
  std::span<uint8_t, N> span() { return bytes_; }
  std::span<const uint8_t, N> span() const { return bytes_; }
  const uint8_t* data() const { return bytes_.data(); }
  static constexpr size_t size() { return N; }

 private:
  std::array<uint8_t, N> bytes_;
};
using Key256 = Secret<32>;

Status RandomBytes(std::span<uint8_t> out);

Digest Sha256(ByteView data);
// Incremental SHA-256 (handshake transcripts).
class Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  Sha256Hasher(Sha256Hasher&&) noexcept;
  Sha256Hasher& operator=(Sha256Hasher&&) noexcept;
  void Update(ByteView data);
  // Digest of everything so far; the hasher stays usable.
  Digest Peek() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

Digest HmacSha256(ByteView key, ByteView data);
// RFC 5869 extract-and-expand; `out` may be up to 255 * 32 bytes.
Status HkdfSha256(ByteView ikm, ByteView salt, ByteView info, std::span<uint8_t> out);

// RFC 7748 X25519.
struct X25519KeyPair {
  Key256 private_key;
  std::array<uint8_t, 32> public_key;
};
Result<X25519KeyPair> X25519Generate();
// Fails on an all-zero shared secret (a low-order peer point), as RFC 7748 section 6.1 allows.
Result<Key256> X25519(const Key256& private_key, ByteView peer_public);

// Which of intel-ipsec-mb's code paths AES-256-GCM runs on this CPU, e.g. "AVX-512 with VAES"
// or "AVX2 (no VAES)": its speed differs about 3x between them (docs/evaluation.md), so
// `medstream bench` states it beside its figures.
std::string GcmCodePath();

// AES-256-GCM with a 96-bit nonce and a 128-bit tag appended to the ciphertext. One object per
// key keeps the expanded key, so sealing many records costs no per-call setup. Seal and Open
// only read the object: several threads may use one at once.
class AesGcm {
 public:
  static constexpr size_t kNonceSize = 12;
  static constexpr size_t kTagSize = 16;
  static Result<AesGcm> Create(const Key256& key);
  AesGcm(AesGcm&&) noexcept;
  AesGcm& operator=(AesGcm&&) noexcept;
  ~AesGcm();

  // out receives plaintext.size() + kTagSize bytes.
  Status Seal(ByteView nonce, ByteView aad, ByteView plaintext, std::span<uint8_t> out);
  // out receives ciphertext.size() - kTagSize bytes; fails with kCorrupt on any tampering.
  Status Open(ByteView nonce, ByteView aad, ByteView ciphertext, std::span<uint8_t> out);

  Result<Bytes> Seal(ByteView nonce, ByteView aad, ByteView plaintext);
  Result<Bytes> Open(ByteView nonce, ByteView aad, ByteView ciphertext);

 private:
  struct Ctx;
  explicit AesGcm(std::unique_ptr<Ctx> ctx);
  std::unique_ptr<Ctx> ctx_;
};

// An ECDSA P-256 key (private or public only).
class EcKey {
 public:
  static Result<EcKey> Generate();
  static Result<EcKey> FromPem(std::string_view pem);  // private or public key PEM
  // Uncompressed point without the 0x04 prefix: x || y, 32 bytes each, big-endian.
  static Result<EcKey> FromRawPublic(ByteView xy);
  EcKey(EcKey&&) noexcept;
  EcKey& operator=(EcKey&&) noexcept;
  ~EcKey();

  bool has_private() const { return has_private_; }
  Result<std::string> PrivatePem() const;
  Result<std::string> PublicPem() const;
  std::array<uint8_t, 64> RawPublic() const;

  // Signs SHA-256(message); the signature is raw r || s (64 bytes).
  Result<std::array<uint8_t, 64>> Sign(ByteView message) const;
  // Verifies a raw r || s signature over SHA-256(message).
  Status Verify(ByteView message, ByteView signature) const;

  void* native() const { return pkey_; }  // EVP_PKEY*, for the certificate code

 private:
  friend class Certificate;
  EcKey(void* pkey, bool has_private) : pkey_(pkey), has_private_(has_private) {}
  void* pkey_ = nullptr;
  bool has_private_ = false;
};

// An X.509 certificate.
class Certificate {
 public:
  static Result<Certificate> FromPem(std::string_view pem);
  static Result<Certificate> FromDer(ByteView der);
  // Every certificate in a PEM bundle, in order. Tolerates a trailing NUL (real SGX quotes).
  static Result<std::vector<Certificate>> ChainFromPem(std::string_view pem);
  Certificate(const Certificate&);
  Certificate& operator=(const Certificate&);
  Certificate(Certificate&&) noexcept;
  Certificate& operator=(Certificate&&) noexcept;
  ~Certificate();

  Result<EcKey> PublicKey() const;
  std::string Subject() const;
  std::string Issuer() const;
  Result<std::string> Pem() const;
  Bytes Der() const;
  // The DER value of the extension with this dotted OID, or NotFound.
  Result<Bytes> ExtensionValue(std::string_view oid) const;
  // Validity window as Unix seconds.
  int64_t NotBefore() const;
  int64_t NotAfter() const;
  void* native() const { return x509_; }

  struct Name {
    std::string common_name;
    std::string organization;
  };
  // Extensions a TLS certificate needs besides the defaults, in OpenSSL's config syntax.
  struct Extras {
    std::string subject_alt_name;    // e.g. "IP:127.0.0.1,DNS:localhost"
    std::string extended_key_usage;  // e.g. "serverAuth" or "clientAuth"
  };
  // A certificate signed by `issuer_key` (self-signed when issuer is null). CA certificates get
  // basicConstraints CA:TRUE and keyCertSign.
  static Result<Certificate> Issue(const Name& subject, const EcKey& subject_key,
                                   const Certificate* issuer, const EcKey& issuer_key, bool ca,
                                   int64_t not_before, int64_t not_after, uint64_t serial,
                                   const Extras& extras = {});

 private:
  explicit Certificate(void* x509) : x509_(x509) {}
  void* x509_ = nullptr;
};

// A random certificate serial number: positive and never 0.
Result<uint64_t> RandomSerial();
// Writes a private key (0600) and its certificate (0644), each atomically: how medstream keeps the
// credentials it issues (the broker's and the NATS cluster's).
Status WriteKeyAndCertificate(const std::string& cert_path, const std::string& key_path,
                              const Certificate& cert, const EcKey& key);

// Verifies leaf -> intermediates -> root with `root` as the only trust anchor (a root carried in
// `intermediates` is ignored), at time `at` (Unix seconds). CRLs (DER), when given, are checked
// for every certificate in the chain.
Status VerifyChain(const Certificate& leaf, const std::vector<Certificate>& intermediates,
                   const Certificate& root, int64_t at, const std::vector<Bytes>& crls = {});

}  // namespace medstream::crypto

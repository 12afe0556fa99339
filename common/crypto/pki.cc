// ECDSA P-256 keys, X.509 certificates and chain verification.
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <ctime>

#include "common/base/bytes.h"
#include "common/base/file.h"
#include "common/crypto/crypto.h"
#include "common/crypto/ossl.h"

namespace medstream::crypto {

using internal::BioPtr;
using internal::MdCtxPtr;
using internal::OpensslFailure;
using internal::PkeyCtxPtr;
using internal::PkeyPtr;
using internal::X509CrlPtr;
using internal::X509Ptr;
using internal::X509StoreCtxPtr;
using internal::X509StorePtr;

namespace {

EVP_PKEY* Pkey(void* p) {
  return static_cast<EVP_PKEY*>(p);
}
X509* Cert(void* p) {
  return static_cast<X509*>(p);
}

bool IsP256(EVP_PKEY* pkey) {
  if (!EVP_PKEY_is_a(pkey, "EC")) return false;
  char group[64] = {0};
  size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) !=
      1) {
    return false;
  }
  return std::string_view(group) == "prime256v1" || std::string_view(group) == "P-256";
}

BioPtr MemBio(std::string_view s) {
  return BioPtr(BIO_new_mem_buf(s.data(), static_cast<int>(s.size())));
}

std::string BioString(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

int64_t AsnTimeToUnix(const ASN1_TIME* t) {
  struct tm tm = {};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

std::string NameString(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253);
  return BioString(bio.get());
}

}  // namespace

EcKey::EcKey(EcKey&& o) noexcept : pkey_(o.pkey_), has_private_(o.has_private_) {
  o.pkey_ = nullptr;
}
EcKey& EcKey::operator=(EcKey&& o) noexcept {
  std::swap(pkey_, o.pkey_);
  std::swap(has_private_, o.has_private_);
  return *this;
}
EcKey::~EcKey() {
  EVP_PKEY_free(Pkey(pkey_));
}

Result<EcKey> EcKey::Generate() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (!key) return OpensslFailure("P-256 key generation failed");
  return EcKey(key, true);
}

Result<EcKey> EcKey::FromPem(std::string_view pem) {
  bool priv = true;
  BioPtr bio = MemBio(pem);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  if (!key) {
    ERR_clear_error();
    priv = false;
    bio = MemBio(pem);
    key = PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
  }
  if (!key) return Corrupt("not a PEM private or public key: " + internal::OpensslError());
  EcKey out(key, priv);
  if (!IsP256(key)) return InvalidArgument("key is not an ECDSA P-256 key");
  return out;
}

Result<EcKey> EcKey::FromRawPublic(ByteView xy) {
  if (xy.size() != 64) return Corrupt("raw P-256 public key must be 64 bytes (x || y)");
  uint8_t point[65];
  point[0] = 0x04;
  std::copy(xy.begin(), xy.end(), point + 1);
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>("prime256v1"),
                                       0),
      OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point),
      OSSL_PARAM_construct_end()};
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* key = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) <= 0 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
    return Corrupt("invalid P-256 public key: " + internal::OpensslError());
  }
  EcKey out(key, false);
  PkeyCtxPtr check(EVP_PKEY_CTX_new(key, nullptr));
  if (!check || EVP_PKEY_public_check(check.get()) != 1) {
    return Corrupt("P-256 public key is not a point on the curve");
  }
  return out;
}

Result<std::string> EcKey::PrivatePem() const {
  if (!has_private_) return InvalidArgument("no private key");
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PrivateKey(bio.get(), Pkey(pkey_), nullptr, nullptr, 0, nullptr, nullptr) !=
      1) {
    return OpensslFailure("PEM export failed");
  }
  return BioString(bio.get());
}

Result<std::string> EcKey::PublicPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PUBKEY(bio.get(), Pkey(pkey_)) != 1) return OpensslFailure("PEM export failed");
  return BioString(bio.get());
}

std::array<uint8_t, 64> EcKey::RawPublic() const {
  std::array<uint8_t, 64> out{};
  uint8_t point[65];
  size_t len = 0;
  if (EVP_PKEY_get_octet_string_param(Pkey(pkey_), OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point,
                                      sizeof point, &len) == 1 &&
      len == 65 && point[0] == 0x04) {
    std::copy(point + 1, point + 65, out.begin());
  }
  return out;
}

Result<std::array<uint8_t, 64>> EcKey::Sign(ByteView message) const {
  if (!has_private_) return InvalidArgument("cannot sign with a public key");
  MdCtxPtr md(EVP_MD_CTX_new());
  size_t der_len = 0;
  if (!md || EVP_DigestSignInit(md.get(), nullptr, EVP_sha256(), nullptr, Pkey(pkey_)) != 1 ||
      EVP_DigestSign(md.get(), nullptr, &der_len, message.data(), message.size()) != 1) {
    return OpensslFailure("ECDSA signing failed");
  }
  Bytes der(der_len);
  if (EVP_DigestSign(md.get(), der.data(), &der_len, message.data(), message.size()) != 1) {
    return OpensslFailure("ECDSA signing failed");
  }
  const uint8_t* p = der.data();
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der_len));
  if (!sig) return OpensslFailure("ECDSA signature decoding failed");
  std::array<uint8_t, 64> raw{};
  BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw.data(), 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw.data() + 32, 32);
  ECDSA_SIG_free(sig);
  return raw;
}

Status EcKey::Verify(ByteView message, ByteView signature) const {
  if (signature.size() != 64) return Corrupt("ECDSA signature must be 64 bytes (r || s)");
  ECDSA_SIG* sig = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(signature.data(), 32, nullptr);
  BIGNUM* s = BN_bin2bn(signature.data() + 32, 32, nullptr);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return OpensslFailure("ECDSA signature setup failed");
  }
  uint8_t* der = nullptr;
  const int der_len = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  if (der_len <= 0) return OpensslFailure("ECDSA signature encoding failed");
  MdCtxPtr md(EVP_MD_CTX_new());
  const int ok =
      md && EVP_DigestVerifyInit(md.get(), nullptr, EVP_sha256(), nullptr, Pkey(pkey_)) == 1
          ? EVP_DigestVerify(md.get(), der, static_cast<size_t>(der_len), message.data(),
                             message.size())
          : -1;
  OPENSSL_free(der);
  ERR_clear_error();
  if (ok != 1) return Corrupt("ECDSA signature does not verify");
  return {};
}

Certificate::Certificate(const Certificate& o) : x509_(o.x509_) {
  X509_up_ref(Cert(x509_));
}
Certificate& Certificate::operator=(const Certificate& o) {
  if (this != &o) {
    X509_up_ref(Cert(o.x509_));
    X509_free(Cert(x509_));
    x509_ = o.x509_;
  }
  return *this;
}
Certificate::Certificate(Certificate&& o) noexcept : x509_(o.x509_) {
  o.x509_ = nullptr;
}
Certificate& Certificate::operator=(Certificate&& o) noexcept {
  std::swap(x509_, o.x509_);
  return *this;
}
Certificate::~Certificate() {
  X509_free(Cert(x509_));
}

Result<Certificate> Certificate::FromPem(std::string_view pem) {
  BioPtr bio = MemBio(pem);
  X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
  if (!x) return Corrupt("not a PEM certificate: " + internal::OpensslError());
  return Certificate(x);
}

Result<Certificate> Certificate::FromDer(ByteView der) {
  const uint8_t* p = der.data();
  X509* x = d2i_X509(nullptr, &p, static_cast<long>(der.size()));
  if (!x) return Corrupt("not a DER certificate: " + internal::OpensslError());
  return Certificate(x);
}

Result<std::vector<Certificate>> Certificate::ChainFromPem(std::string_view pem) {
  while (!pem.empty() && (pem.back() == '\0' || pem.back() == '\n')) pem.remove_suffix(1);
  BioPtr bio = MemBio(pem);
  std::vector<Certificate> out;
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    out.push_back(Certificate(x));
  }
  ERR_clear_error();  // the loop ends on "no start line"
  if (out.empty()) return Corrupt("no PEM certificate in the chain");
  return out;
}

Result<EcKey> Certificate::PublicKey() const {
  EVP_PKEY* key = X509_get_pubkey(Cert(x509_));
  if (!key) return OpensslFailure("certificate has no readable public key");
  EcKey out(key, false);
  if (!IsP256(key)) return InvalidArgument("certificate key is not ECDSA P-256");
  return out;
}

std::string Certificate::Subject() const {
  return NameString(X509_get_subject_name(Cert(x509_)));
}
std::string Certificate::Issuer() const {
  return NameString(X509_get_issuer_name(Cert(x509_)));
}

Result<std::string> Certificate::Pem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_X509(bio.get(), Cert(x509_)) != 1) return OpensslFailure("PEM export failed");
  return BioString(bio.get());
}

Bytes Certificate::Der() const {
  uint8_t* der = nullptr;
  const int len = i2d_X509(Cert(x509_), &der);
  Bytes out(der, der + std::max(len, 0));
  OPENSSL_free(der);
  return out;
}

Result<Bytes> Certificate::ExtensionValue(std::string_view oid) const {
  ASN1_OBJECT* obj = OBJ_txt2obj(std::string(oid).c_str(), 1);
  if (!obj) return InvalidArgument("not an OID: " + std::string(oid));
  const int idx = X509_get_ext_by_OBJ(Cert(x509_), obj, -1);
  ASN1_OBJECT_free(obj);
  if (idx < 0) return NotFound("certificate has no extension " + std::string(oid));
  const ASN1_OCTET_STRING* data = X509_EXTENSION_get_data(X509_get_ext(Cert(x509_), idx));
  const uint8_t* p = ASN1_STRING_get0_data(data);
  return Bytes(p, p + ASN1_STRING_length(data));
}

int64_t Certificate::NotBefore() const {
  return AsnTimeToUnix(X509_get0_notBefore(Cert(x509_)));
}
int64_t Certificate::NotAfter() const {
  return AsnTimeToUnix(X509_get0_notAfter(Cert(x509_)));
}

Result<uint64_t> RandomSerial() {
  uint64_t serial = 0;
  if (auto s = RandomBytes({reinterpret_cast<uint8_t*>(&serial), sizeof serial}); !s) {
    return std::unexpected(s.error());
  }
  return (serial >> 1) | 1;
}

Status WriteKeyAndCertificate(const std::string& cert_path, const std::string& key_path,
                              const Certificate& cert, const EcKey& key) {
  MEDSTREAM_TRY(key_pem, key.PrivatePem());
  if (auto s = WriteFileAtomic(key_path, key_pem, 0600); !s) return s;
  MEDSTREAM_TRY(cert_pem, cert.Pem());
  return WriteFileAtomic(cert_path, cert_pem, 0644);
}

Result<Certificate> Certificate::Issue(const Name& subject, const EcKey& subject_key,
                                       const Certificate* issuer, const EcKey& issuer_key, bool ca,
                                       int64_t not_before, int64_t not_after, uint64_t serial,
                                       const Extras& extras) {
  X509Ptr x(X509_new());
  X509_NAME* name = X509_NAME_new();
  auto add = [&](const char* field, const std::string& value) {
    if (!value.empty()) {
      X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0);
    }
  };
  add("O", subject.organization);
  add("CN", subject.common_name);
  const bool ok =
      x && X509_set_version(x.get(), 2) == 1 &&
      ASN1_INTEGER_set_uint64(X509_get_serialNumber(x.get()), serial) == 1 &&
      ASN1_TIME_set(X509_getm_notBefore(x.get()), static_cast<time_t>(not_before)) != nullptr &&
      ASN1_TIME_set(X509_getm_notAfter(x.get()), static_cast<time_t>(not_after)) != nullptr &&
      X509_set_subject_name(x.get(), name) == 1 &&
      X509_set_issuer_name(x.get(),
                           issuer ? X509_get_subject_name(Cert(issuer->native())) : name) == 1 &&
      X509_set_pubkey(x.get(), Pkey(subject_key.native())) == 1;
  X509_NAME_free(name);
  if (!ok) return OpensslFailure("certificate construction failed");
  X509V3_CTX v3;
  X509V3_set_ctx(&v3, issuer ? Cert(issuer->native()) : x.get(), x.get(), nullptr, nullptr, 0);
  std::vector<std::pair<int, std::string>> exts = {
      {NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE"},
      {NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature"},
      {NID_subject_key_identifier, "hash"},
      {NID_authority_key_identifier, "keyid:always"},
  };
  if (!extras.subject_alt_name.empty())
    exts.emplace_back(NID_subject_alt_name, extras.subject_alt_name);
  if (!extras.extended_key_usage.empty())
    exts.emplace_back(NID_ext_key_usage, extras.extended_key_usage);
  for (const auto& [nid, value] : exts) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str());
    if (!ext || X509_add_ext(x.get(), ext, -1) != 1) {
      X509_EXTENSION_free(ext);
      return OpensslFailure("certificate extension failed");
    }
    X509_EXTENSION_free(ext);
  }
  if (X509_sign(x.get(), Pkey(issuer_key.native()), EVP_sha256()) <= 0) {
    return OpensslFailure("certificate signing failed");
  }
  return Certificate(x.release());
}

Status VerifyChain(const Certificate& leaf, const std::vector<Certificate>& intermediates,
                   const Certificate& root, int64_t at, const std::vector<Bytes>& crls) {
  X509StorePtr store(X509_STORE_new());
  if (!store || X509_STORE_add_cert(store.get(), Cert(root.native())) != 1) {
    return OpensslFailure("trust store setup failed");
  }
  for (const Bytes& der : crls) {
    const uint8_t* p = der.data();
    X509CrlPtr crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size())));
    if (!crl) return Corrupt("CRL is not DER: " + internal::OpensslError());
    X509_STORE_add_crl(store.get(), crl.get());
  }
  STACK_OF(X509)* untrusted = sk_X509_new_null();
  for (const Certificate& c : intermediates) {
    // A self-signed certificate in the evidence is never an anchor: only `root` is.
    if (X509_check_issued(Cert(c.native()), Cert(c.native())) == X509_V_OK) continue;
    sk_X509_push(untrusted, Cert(c.native()));
  }
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), Cert(leaf.native()), untrusted) != 1) {
    sk_X509_free(untrusted);
    return OpensslFailure("chain verification setup failed");
  }
  X509_STORE_CTX_set_time(ctx.get(), 0, static_cast<time_t>(at));
  if (!crls.empty()) {
    X509_STORE_CTX_set_flags(ctx.get(), X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
  }
  const int ok = X509_verify_cert(ctx.get());
  const int err = X509_STORE_CTX_get_error(ctx.get());
  const int depth = X509_STORE_CTX_get_error_depth(ctx.get());
  X509* bad = X509_STORE_CTX_get_current_cert(ctx.get());
  std::string who = bad ? NameString(X509_get_subject_name(bad)) : "?";
  sk_X509_free(untrusted);
  ERR_clear_error();
  if (ok != 1) {
    return Corrupt("certificate chain does not verify against the configured root: " +
                   std::string(X509_verify_cert_error_string(err)) + " (depth " +
                   std::to_string(depth) + ", " + who + ")");
  }
  return {};
}

}  // namespace medstream::crypto

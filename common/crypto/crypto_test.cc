// Known-answer tests for the wrappers, AES-GCM checked against OpenSSL's own implementation,
// and round trips for keys and certificates.
#include "common/crypto/crypto.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <random>
#include <thread>

namespace medstream::crypto {
namespace {

Bytes Hex(std::string_view h) {
  return FromHex(h).value();
}
std::string HexOf(ByteView b) {
  return ToHex(b);
}

TEST(Hash, Sha256AndHmacKnownAnswers) {
  EXPECT_EQ(HexOf(Sha256(AsBytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256Hasher h;
  h.Update(AsBytes("a"));
  h.Update(AsBytes("bc"));
  EXPECT_EQ(HexOf(h.Peek()), HexOf(Sha256(AsBytes("abc"))));
  // RFC 4231 test case 2.
  EXPECT_EQ(HexOf(HmacSha256(AsBytes("Jefe"), AsBytes("what do ya want for nothing?"))),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Hkdf, Rfc5869TestCases1And3) {
  const Bytes ikm(22, 0x0b);
  Bytes okm(42);
  ASSERT_TRUE(HkdfSha256(ikm, Hex("000102030405060708090a0b0c"), Hex("f0f1f2f3f4f5f6f7f8f9"), okm));
  EXPECT_EQ(HexOf(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
  ASSERT_TRUE(HkdfSha256(ikm, {}, {}, okm));
  EXPECT_EQ(HexOf(okm),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8");
}

TEST(X25519Test, Rfc7748Vectors) {
  // Section 5.2, first vector.
  auto out = X25519(Key256(Hex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")),
                    Hex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c"));
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(HexOf(out->span()), "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552");
  // Section 6.1: Alice and Bob agree.
  const Key256 alice(Hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"));
  const Key256 bob(Hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"));
  auto k1 = X25519(alice, Hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"));
  auto k2 = X25519(bob, Hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"));
  ASSERT_TRUE(k1 && k2);
  EXPECT_EQ(HexOf(k1->span()), "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
  EXPECT_EQ(HexOf(k2->span()), HexOf(k1->span()));
  // A low-order point (u = 0) gives the all-zero secret and must be refused.
  EXPECT_FALSE(X25519(alice, Bytes(32, 0)).has_value());
  EXPECT_FALSE(X25519(alice, Bytes(31, 1)).has_value());
}

TEST(X25519Test, GeneratedPairsAgree) {
  auto a = X25519Generate(), b = X25519Generate();
  ASSERT_TRUE(a && b);
  auto k1 = X25519(a->private_key, b->public_key), k2 = X25519(b->private_key, a->public_key);
  ASSERT_TRUE(k1 && k2);
  EXPECT_EQ(HexOf(k1->span()), HexOf(k2->span()));
}

TEST(AesGcmTest, GcmSpecTestCases13To16) {
  // McGrew & Viega, "The Galois/Counter Mode of Operation", AES-256 test cases (NIST SP 800-38D).
  auto zero = AesGcm::Create(Key256(Bytes(32, 0))).value();
  const Bytes iv0(12, 0);
  EXPECT_EQ(HexOf(zero.Seal(iv0, {}, {}).value()), "530f8afbc74536b9a963b4f1c4cb738b");
  EXPECT_EQ(HexOf(zero.Seal(iv0, {}, Bytes(16, 0)).value()),
            "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919");
  auto gcm = AesGcm::Create(
                 Key256(Hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")))
                 .value();
  const Bytes iv = Hex("cafebabefacedbaddecaf888");
  const Bytes aad = Hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
  const Bytes pt = Hex(
      "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6"
      "b525b16aedf5aa0de657ba637b39");
  const Bytes ct = gcm.Seal(iv, aad, pt).value();
  EXPECT_EQ(
      HexOf(ct),
      "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1"
      "056828838c5f61e6393ba7a0abcc9f662"
      "76fc6ece0f4e1768cddf8853bb2d551b");
  EXPECT_EQ(gcm.Open(iv, aad, ct).value(), pt);
  // Any change to ciphertext, tag, AAD or nonce is refused.
  for (size_t at : {size_t{0}, ct.size() - 1}) {
    Bytes bad = ct;
    bad[at] ^= 1;
    auto r = gcm.Open(iv, aad, bad);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code(), Error::Code::kCorrupt);
  }
  Bytes bad_aad = aad;
  bad_aad[3] ^= 0x80;
  EXPECT_FALSE(gcm.Open(iv, bad_aad, ct).has_value());
  Bytes bad_iv = iv;
  bad_iv[11] ^= 1;
  EXPECT_FALSE(gcm.Open(bad_iv, aad, ct).has_value());
  EXPECT_FALSE(gcm.Open(iv, aad, std::span(ct).first(10)).has_value());  // truncated
}

// OpenSSL's AES-256-GCM, an implementation independent of the one AesGcm uses.
Bytes OpensslSeal(const Bytes& key, const Bytes& iv, const Bytes& aad, const Bytes& pt) {
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> c(EVP_CIPHER_CTX_new(),
                                                                    EVP_CIPHER_CTX_free);
  Bytes out(pt.size() + AesGcm::kTagSize);
  int len = 0;
  EXPECT_EQ(EVP_EncryptInit_ex(c.get(), EVP_aes_256_gcm(), nullptr, key.data(), iv.data()), 1);
  if (!aad.empty()) {
    EXPECT_EQ(EVP_EncryptUpdate(c.get(), nullptr, &len, aad.data(), int(aad.size())), 1);
  }
  if (!pt.empty()) {
    EXPECT_EQ(EVP_EncryptUpdate(c.get(), out.data(), &len, pt.data(), int(pt.size())), 1);
  }
  EXPECT_EQ(EVP_EncryptFinal_ex(c.get(), out.data() + pt.size(), &len), 1);
  EXPECT_EQ(
      EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_GET_TAG, AesGcm::kTagSize, out.data() + pt.size()),
      1);
  return out;
}

TEST(AesGcmTest, AgreesWithOpensslAtEverySizeAndOpensInPlace) {
  std::mt19937_64 rng(17);
  auto random = [&](size_t n) {
    Bytes b(n);
    for (uint8_t& x : b) x = static_cast<uint8_t>(rng());
    return b;
  };
  // Every length up to several 512-byte blocks (the vector code's tails), and large ones.
  std::vector<size_t> sizes;
  for (size_t n = 0; n <= 1100; ++n) sizes.push_back(n);
  for (size_t n : {4095u, 4096u, 65537u, 1u << 20, (1u << 20) + 13}) sizes.push_back(n);
  for (size_t n : sizes) {
    const Bytes key = random(32), iv = random(12), aad = random(n % 41), pt = random(n);
    auto gcm = AesGcm::Create(Key256(key)).value();
    Bytes ct = gcm.Seal(iv, aad, pt).value();
    ASSERT_EQ(ct, OpensslSeal(key, iv, aad, pt)) << n << " bytes";
    // Opened in place, as the enclave opens a segment it has copied into private memory.
    Bytes buf = ct;
    ASSERT_TRUE(gcm.Open(iv, aad, buf, std::span(buf).first(n))) << n;
    ASSERT_TRUE(std::equal(pt.begin(), pt.end(), buf.begin())) << n;
    // A flipped bit anywhere is refused, and nothing of the plaintext is handed out.
    if (n > 0) {
      Bytes bad = ct;
      bad[rng() % bad.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
      Bytes out(n, 0xAA);
      auto r = gcm.Open(iv, aad, bad, out);
      ASSERT_FALSE(r) << n;
      EXPECT_EQ(r.error().code(), Error::Code::kCorrupt);
      EXPECT_TRUE(std::all_of(out.begin(), out.end(), [](uint8_t x) { return x == 0; })) << n;
    }
  }
}

TEST(AesGcmTest, OneObjectSealsOnSeveralThreadsAtOnce) {
  auto gcm = AesGcm::Create(Key256(Bytes(32, 7))).value();
  const Bytes pt(300000, 0x5A), aad(20, 1);
  Bytes iv(12, 0);
  const Bytes expected = gcm.Seal(iv, aad, pt).value();
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        auto ct = gcm.Seal(iv, aad, pt);
        if (!ct || *ct != expected) ++mismatches[t];
        auto back = gcm.Open(iv, aad, expected);
        if (!back || *back != pt) ++mismatches[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST(AesGcmTest, NamesTheCodePathItRunsOn) {
  const std::string path = GcmCodePath();
  const bool known = path == "AVX-512 with VAES" || path == "AVX-512 (no VAES)" ||
                     path == "AVX2 (no VAES)" || path == "AVX" || path == "SSE" ||
                     path == "no AES-NI";
  EXPECT_TRUE(known) << path;
}

TEST(Ecdsa, SignVerifyAndRawKeyRoundTrip) {
  auto key = EcKey::Generate().value();
  const auto sig = key.Sign(AsBytes("measurement")).value();
  EXPECT_TRUE(key.Verify(AsBytes("measurement"), sig));
  EXPECT_FALSE(key.Verify(AsBytes("measurement!"), sig));
  auto pub = EcKey::FromRawPublic(key.RawPublic()).value();
  EXPECT_FALSE(pub.has_private());
  EXPECT_TRUE(pub.Verify(AsBytes("measurement"), sig));
  auto pem = EcKey::FromPem(key.PrivatePem().value()).value();
  EXPECT_EQ(pem.RawPublic(), key.RawPublic());
  auto other = EcKey::Generate().value();
  EXPECT_FALSE(other.Verify(AsBytes("measurement"), sig));
  std::array<uint8_t, 64> off_curve{};
  off_curve[0] = 1;
  EXPECT_FALSE(EcKey::FromRawPublic(off_curve).has_value());
}

TEST(Pki, IssueAndVerifyAChainAgainstThePinnedRootOnly) {
  const int64_t t0 = 1'700'000'000, t1 = t0 + 10 * 365 * 86400;
  auto root_key = EcKey::Generate().value();
  auto ca_key = EcKey::Generate().value();
  auto leaf_key = EcKey::Generate().value();
  auto root = Certificate::Issue({"Test Root", "medstream test"}, root_key, nullptr, root_key, true,
                                 t0, t1, 1)
                  .value();
  auto ca =
      Certificate::Issue({"Test CA", "medstream test"}, ca_key, &root, root_key, true, t0, t1, 2)
          .value();
  auto leaf =
      Certificate::Issue({"Test Leaf", "medstream test"}, leaf_key, &ca, ca_key, false, t0, t1, 3)
          .value();
  EXPECT_TRUE(VerifyChain(leaf, {ca}, root, t0 + 100));
  EXPECT_TRUE(VerifyChain(leaf, {ca, root}, root, t0 + 100));
  EXPECT_EQ(leaf.PublicKey().value().RawPublic(), leaf_key.RawPublic());
  EXPECT_NE(leaf.Subject().find("Test Leaf"), std::string::npos);
  // Expired, not yet valid, missing intermediate, another root with the same name.
  EXPECT_FALSE(VerifyChain(leaf, {ca}, root, t1 + 100));
  EXPECT_FALSE(VerifyChain(leaf, {ca}, root, t0 - 100));
  EXPECT_FALSE(VerifyChain(leaf, {}, root, t0 + 100));
  auto fake_key = EcKey::Generate().value();
  auto fake_root = Certificate::Issue({"Test Root", "medstream test"}, fake_key, nullptr, fake_key,
                                      true, t0, t1, 1)
                       .value();
  auto r = VerifyChain(leaf, {ca, root}, fake_root, t0 + 100);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), Error::Code::kCorrupt);
  // PEM bundle with a trailing NUL, as real SGX quotes carry.
  std::string bundle = leaf.Pem().value() + ca.Pem().value() + std::string(1, '\0');
  auto chain = Certificate::ChainFromPem(bundle).value();
  ASSERT_EQ(chain.size(), 2u);
  EXPECT_EQ(chain[1].Der(), ca.Der());
}

}  // namespace
}  // namespace medstream::crypto

// The lake's persistence: the sealed manifest, the pages and the query histories (lake.h).
#include <algorithm>
#include <bit>

#include <fmt/format.h>

#include "enclave/lake/lake_internal.h"

namespace medstream::lake {

namespace internal {

std::vector<uint8_t> PackBits(const std::vector<uint8_t>& rows) {
  std::vector<uint8_t> bits((rows.size() + 7) / 8, 0);
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i]) bits[i / 8] |= static_cast<uint8_t>(1u << (i % 8));
  }
  return bits;
}

uint64_t Differ(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  uint64_t n = 0;
  const size_t common = std::min(a.size(), b.size());
  for (size_t i = 0; i < common; ++i) n += std::popcount(static_cast<unsigned>(a[i] ^ b[i]));
  for (size_t i = common; i < a.size(); ++i) n += std::popcount(static_cast<unsigned>(a[i]));
  for (size_t i = common; i < b.size(); ++i) n += std::popcount(static_cast<unsigned>(b[i]));
  return n;
}

std::unexpected<Error> Denied(std::string why) {
  return Fail(Error::Code::kPermissionDenied, std::move(why));
}

std::string Fingerprint(const PublicKey& k) {
  return crypto::ToHex(crypto::Sha256(k)).substr(0, 16);
}

Result<PublicKey> ReadKey(ByteReader* r) {
  MEDSTREAM_TRY(b, r->Bytes(64, "public key"));
  PublicKey k;
  std::copy(b.begin(), b.end(), k.begin());
  return k;
}

std::string PageKey(const std::string& dataset_id, uint32_t n) {
  return fmt::format("page/{}/{}", dataset_id, n);
}

std::string AuditSegmentKey(uint64_t n) {
  return fmt::format("audit/{:08}", n);
}

}  // namespace internal

using namespace internal;

// ---- persistence ----

Status Lake::Persist(Output* out) {
  // Full segments of the log first (the manifest that pins them lands with them, in one store
  // transaction); nothing is kept unless the manifest is sealed too.
  std::vector<AuditSegment> sealed_now;
  std::vector<Write> segment_writes;
  size_t sealed_until = audit_sealed_;
  while (audit_.size() - sealed_until >= kAuditSegmentEntries) {
    AuditSegment seg;
    seg.key = AuditSegmentKey(audit_segments_.size() + sealed_now.size());
    seg.count = static_cast<uint32_t>(kAuditSegmentEntries);
    seg.loaded = true;  // its entries are in audit_ already
    crypto::Bytes plain;
    ByteWriter sw(&plain);
    sw.Raw(kAuditSegmentMagic, 4);
    sw.String(seg.key);
    sw.U32(seg.count);
    for (size_t i = 0; i < kAuditSegmentEntries; ++i) audit_[sealed_until + i].Encode(&sw);
    auto blob = seal_(plain, version_ + 1);
    crypto::Wipe(plain);
    if (!blob) return std::unexpected(blob.error());
    seg.hash = crypto::Sha256(*blob);
    segment_writes.push_back({seg.key, std::move(*blob)});
    sealed_now.push_back(std::move(seg));
    sealed_until += kAuditSegmentEntries;
  }
  if (audit_segments_.size() + sealed_now.size() > kMaxAuditSegments) {
    return Fail(Error::Code::kResourceExhausted,
                fmt::format("the audit log is full ({} entries)", audit_.size()));
  }
  ++version_;
  crypto::Bytes m;
  ByteWriter w(&m);
  w.Raw(kManifestMagic3, 4);
  w.U64(version_);
  w.U32(static_cast<uint32_t>(identities_.size()));
  for (const auto& [key, id] : identities_) {
    w.Bytes(key);
    w.String(id.name);
    w.U8(static_cast<uint8_t>(id.role));
    w.U32(static_cast<uint32_t>(id.datasets.size()));
    for (const auto& d : id.datasets) w.String(d);
  }
  w.U32(static_cast<uint32_t>(datasets_.size()));
  for (const auto& [name, d] : datasets_) {
    w.String(d->id);
    w.String(d->name);
    w.Bytes(d->owner);
    w.U32(d->k);
    d->policy.Encode(&w);
    w.U32(static_cast<uint32_t>(d->spent.size()));
    for (const auto& [key, eps] : d->spent) {
      w.Bytes(key);
      w.F64(eps);
    }
    w.U32(static_cast<uint32_t>(d->recent.size()));
    for (const auto& [key, h] : d->recent) {
      w.Bytes(key);
      w.String(h.key);
      w.Bytes(h.hash);
    }
    d->table->schema().Encode(&w);
    w.U32(d->next_page);
    w.U32(static_cast<uint32_t>(d->pages.size()));
    for (const auto& p : d->pages) {
      w.String(p.key);
      w.Bytes(p.hash);
      w.U64(p.rows);
    }
  }
  w.U32(static_cast<uint32_t>(audit_segments_.size() + sealed_now.size()));
  for (const auto* list : {&audit_segments_, &sealed_now}) {
    for (const AuditSegment& seg : *list) {
      w.String(seg.key);
      w.Bytes(seg.hash);
      w.U32(seg.count);
    }
  }
  w.U32(static_cast<uint32_t>(audit_.size() - sealed_until));
  for (size_t i = sealed_until; i < audit_.size(); ++i) audit_[i].Encode(&w);
  auto sealed = seal_(m, version_);
  crypto::Wipe(m);
  if (!sealed) {
    --version_;
    return std::unexpected(sealed.error());
  }
  for (AuditSegment& seg : sealed_now) audit_segments_.push_back(std::move(seg));
  audit_sealed_ = sealed_until;
  for (Write& sw : segment_writes) out->writes.push_back(std::move(sw));
  out->writes.push_back({"manifest", std::move(*sealed)});
  out->mutated = true;
  return {};
}

Status Lake::LoadManifest(crypto::ByteView sealed) {
  MEDSTREAM_TRY(opened, unseal_(sealed));
  auto& [m, version] = opened;
  ByteReader r(m);
  MEDSTREAM_TRY(magic, r.Bytes(4, "manifest magic"));
  const bool v3 = std::equal(magic.begin(), magic.end(), kManifestMagic3);
  const bool v2 = v3 || std::equal(magic.begin(), magic.end(), kManifestMagic2);
  if (!v2 && !std::equal(magic.begin(), magic.end(), kManifestMagic)) {
    return Corrupt("not a manifest");
  }
  MEDSTREAM_TRY(v, r.U64("manifest version"));
  if (v != version) return Corrupt("manifest version does not match its seal");
  version_ = v;
  MEDSTREAM_TRY(nid, r.U32("identities"));
  for (uint32_t i = 0; i < nid; ++i) {
    MEDSTREAM_TRY(key, ReadKey(&r));
    Identity id;
    MEDSTREAM_TRY(name, r.String("identity name", 256));
    MEDSTREAM_TRY(role, r.U8("role"));
    MEDSTREAM_TRY(nd, r.U32("granted datasets"));
    id.name = name;
    id.role = static_cast<Role>(role);
    for (uint32_t j = 0; j < nd; ++j) {
      MEDSTREAM_TRY(d, r.String("granted dataset", 256));
      id.datasets.push_back(d);
    }
    identities_[key] = std::move(id);
  }
  MEDSTREAM_TRY(nds, r.U32("datasets"));
  for (uint32_t i = 0; i < nds; ++i) {
    auto d = std::make_unique<Dataset>();
    MEDSTREAM_TRY(id, r.String("dataset id", 64));
    MEDSTREAM_TRY(name, r.String("dataset name", 256));
    MEDSTREAM_TRY(owner, ReadKey(&r));
    MEDSTREAM_TRY(k, r.U32("k"));
    if (v2) {
      MEDSTREAM_TRY(policy, PrivacyPolicy::Decode(&r));
      d->policy = policy;
      MEDSTREAM_TRY(nspent, r.U32("budgets"));
      for (uint32_t j = 0; j < nspent; ++j) {
        MEDSTREAM_TRY(key, ReadKey(&r));
        MEDSTREAM_TRY(eps, r.F64("spent epsilon"));
        d->spent[key] = eps;
      }
      MEDSTREAM_TRY(nrecent, r.U32("query histories"));
      for (uint32_t j = 0; j < nrecent; ++j) {
        MEDSTREAM_TRY(key, ReadKey(&r));
        MEDSTREAM_TRY(blob_key, r.String("history key", 256));
        MEDSTREAM_TRY(hash, r.Bytes(32, "history hash"));
        Dataset::History& h = d->recent[key];
        h.key = blob_key;
        std::copy(hash.begin(), hash.end(), h.hash.begin());
      }
    } else {
      // Made before privacy policies existed: what it answered then (exact), with the new
      // defences of the exact policy.
      d->policy.privacy = Privacy::kExact;
    }
    MEDSTREAM_TRY(schema, Schema::Decode(&r));
    MEDSTREAM_TRY(next_page, r.U32("next page"));
    MEDSTREAM_TRY(np, r.U32("pages"));
    d->id = id;
    d->name = name;
    d->owner = owner;
    d->k = k;
    d->next_page = next_page;
    d->table = std::make_unique<Table>(schema);
    for (uint32_t j = 0; j < np; ++j) {
      Dataset::Page p;
      MEDSTREAM_TRY(key, r.String("page key", 256));
      MEDSTREAM_TRY(hash, r.Bytes(32, "page hash"));
      MEDSTREAM_TRY(rows, r.U64("page rows"));
      p.key = key;
      std::copy(hash.begin(), hash.end(), p.hash.begin());
      p.rows = rows;
      d->pages.push_back(std::move(p));
    }
    datasets_[name] = std::move(d);
  }
  if (v3) {
    MEDSTREAM_TRY(ns, r.U32("audit segments"));
    if (ns > kMaxAuditSegments) return Corrupt(fmt::format("{} audit segments", ns));
    for (uint32_t i = 0; i < ns; ++i) {
      AuditSegment seg;
      MEDSTREAM_TRY(key, r.String("audit segment key", 64));
      MEDSTREAM_TRY(hash, r.Bytes(32, "audit segment hash"));
      MEDSTREAM_TRY(count, r.U32("audit segment entries"));
      if (key != AuditSegmentKey(i) || count != kAuditSegmentEntries) {
        return Corrupt("audit segment " + key + " out of place");
      }
      seg.key = key;
      std::copy(hash.begin(), hash.end(), seg.hash.begin());
      seg.count = count;
      audit_segments_.push_back(std::move(seg));
    }
  }
  // The newest entries (all of them before v3); the chain is verified once the segments are in.
  MEDSTREAM_TRY(na, r.U32("audit entries"));
  if (na > kMaxAuditEntries) return Corrupt(fmt::format("{} audit entries", na));
  for (uint32_t i = 0; i < na; ++i) {
    MEDSTREAM_TRY(e, AuditEntry::Decode(&r));
    audit_tail_.push_back(std::move(e));
  }
  return {};
}

Result<crypto::Bytes> Lake::OpenPinned(const std::string& what, const std::string& dataset,
                                       const crypto::Digest& pinned, bool loaded,
                                       crypto::ByteView sealed) {
  if (loaded) return Corrupt(what + " given twice");
  if (crypto::Sha256(sealed) != pinned) {
    return Corrupt(what + (dataset.empty() ? "" : " of dataset '" + dataset + "'") +
                   " does not match the manifest (swapped, altered or rolled back)");
  }
  MEDSTREAM_TRY(opened, unseal_(sealed));
  return std::move(opened.first);
}

Status Lake::LoadPage(const std::string& key, crypto::ByteView sealed) {
  if (loaded_) return Fail(Error::Code::kFailedPrecondition, "the lake is already loaded");
  for (AuditSegment& seg : audit_segments_) {
    if (seg.key != key) continue;
    MEDSTREAM_TRY(plain, OpenPinned("audit segment " + key, "", seg.hash, seg.loaded, sealed));
    ByteReader r(plain);
    MEDSTREAM_TRY(magic, r.Bytes(4, "audit segment magic"));
    MEDSTREAM_TRY(bound, r.String("audit segment key", 64));
    MEDSTREAM_TRY(count, r.U32("audit segment entries"));
    if (!std::equal(magic.begin(), magic.end(), kAuditSegmentMagic) || bound != key ||
        count != seg.count) {
      return Corrupt("audit segment " + key + " is bound to another position");
    }
    for (uint32_t i = 0; i < count; ++i) {
      MEDSTREAM_TRY(e, AuditEntry::Decode(&r));
      seg.entries.push_back(std::move(e));
    }
    seg.loaded = true;
    return {};
  }
  for (auto& [name, d] : datasets_) {
    for (auto& [analyst, h] : d->recent) {
      if (h.key != key) continue;
      MEDSTREAM_TRY(plain, OpenPinned("query history " + key, name, h.hash, h.loaded, sealed));
      ByteReader r(plain);
      MEDSTREAM_TRY(magic, r.Bytes(4, "history magic"));
      MEDSTREAM_TRY(id, r.String("history dataset", 64));
      if (!std::equal(magic.begin(), magic.end(), kHistoryMagic) || id != d->id) {
        return Corrupt("query history " + key + " is bound to another dataset");
      }
      MEDSTREAM_TRY(n, r.U32("history sets"));
      for (uint32_t i = 0; i < n && i < kOverlapHistory; ++i) {
        MEDSTREAM_TRY(bits, r.Blob("history set", kMaxHistoryBytes));
        h.sets.emplace_back(bits.begin(), bits.end());
      }
      h.loaded = true;
      return {};
    }
  }
  for (auto& [name, d] : datasets_) {
    for (size_t n = 0; n < d->pages.size(); ++n) {
      Dataset::Page& p = d->pages[n];
      if (p.key != key) continue;
      MEDSTREAM_TRY(plain, OpenPinned("page " + key, name, p.hash, p.loaded, sealed));
      ByteReader r(plain);
      MEDSTREAM_TRY(magic, r.Bytes(4, "page magic"));
      MEDSTREAM_TRY(id, r.String("page dataset", 64));
      MEDSTREAM_TRY(index, r.U32("page index"));
      MEDSTREAM_TRY(version, r.U64("page version"));
      (void)version;
      if (!std::equal(magic.begin(), magic.end(), kPageMagic) || id != d->id ||
          PageKey(id, index) != key) {
        return Corrupt("page " + key + " is bound to another dataset or position");
      }
      const size_t before = d->table->rows();
      if (auto s = d->table->AppendPage(&r); !s)
        return std::unexpected(std::move(s.error()).With("page " + key));
      if (d->table->rows() - before != p.rows) return Corrupt("page " + key + ": row count");
      p.loaded = true;
      return {};
    }
  }
  return {};  // not in the manifest: left over from an interrupted ingest
}

Status Lake::FinishLoad() {
  // Once: a second Finish would rebuild the log from segments whose entries were moved out.
  if (loaded_) return Fail(Error::Code::kFailedPrecondition, "the lake is already loaded");
  for (auto& [name, d] : datasets_) {
    for (const auto& p : d->pages) {
      if (!p.loaded) return Corrupt("page " + p.key + " of dataset '" + name + "' is missing");
    }
    for (const auto& [analyst, h] : d->recent) {
      if (!h.loaded) {
        return Corrupt("query history " + h.key + " of dataset '" + name + "' is missing");
      }
    }
  }
  // The log: its segments in order, then the manifest's newest entries, one chain.
  audit_.clear();
  for (AuditSegment& seg : audit_segments_) {
    if (!seg.loaded) return Corrupt("audit segment " + seg.key + " is missing");
    for (AuditEntry& e : seg.entries) audit_.push_back(std::move(e));
    seg.entries = {};
  }
  audit_sealed_ = audit_.size();
  for (AuditEntry& e : audit_tail_) audit_.push_back(std::move(e));
  audit_tail_ = {};
  if (auto s = VerifyAuditChain(audit_); !s) return s;
  loaded_ = true;
  return {};
}

}  // namespace medstream::lake

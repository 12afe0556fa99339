#include "enclave/core/lake_service.h"

#include <algorithm>
#include <utility>

namespace medstream::enclave {

namespace {

// The largest answer a query may give (lake_abi/messages.h: its values, then up to 4096 column
// names of at most a query's length, the dp figures, the channel record's framing, 1 MiB in all
// is ample) fits in what both calls that carry it may return, so core.cc's check of the response
// against its cap never fires on an answer.
static_assert(lake::kMaxAnswerBytes + lake::kMaxResultColumns * (4 + 256 + 8) +
                  lake::kMaxQueryBytes + (1 << 20) <=
              std::min(MaxResponse(Call::kLakeRequest), MaxResponse(Call::kLakeCommit)));

// Every blob the lake stores, sealed (a header, nonce and tag of well under 1 KiB), comes back in
// one lake_load with its kind and key.
static_assert(lake::kMaxStoredBlobBytes + 1024 + 16 + kMaxLakeKey <= MaxRequest(Call::kLakeLoad));

std::unexpected<Error> Refuse(std::string why) {
  return Fail(Error::Code::kFailedPrecondition, std::move(why));
}

}  // namespace

Result<crypto::Bytes> LakeService::Load(crypto::ByteView request) {
  MEDSTREAM_TRY(load, enclave::LakeLoad::Decode(request));
  const crypto::ByteView blob = load.blob;
  const bool manifest = load.kind == LakeLoadKind::kManifest;
  if (manifest || !lake_) {
    if (lake_ && manifest) return Refuse("the lake is already loaded");
    auto seal = [this](crypto::ByteView plain, uint64_t version) {
      return SealData(plain, platform_->sealing_root(), self_, policy_, version);
    };
    auto unseal = [this](crypto::ByteView b) -> Result<std::pair<crypto::Bytes, uint64_t>> {
      MEDSTREAM_TRY(u, UnsealData(b, platform_->sealing_root(), self_));
      return std::pair{std::move(u.data), u.version};
    };
    lake_ = std::make_unique<lake::Lake>(seal, unseal, [this] { return platform_->Now(); });
  }
  switch (load.kind) {
    case LakeLoadKind::kManifest: {
      auto s = lake_->LoadManifest(blob);
      if (!s) {
        lake_.reset();
        return std::unexpected(std::move(s.error()).With("lake manifest"));
      }
      const uint64_t committed = platform_->counter(CounterId::kLake);
      const uint64_t v = lake_->version();
      if (v < committed) {
        lake_.reset();
        return Fail(Error::Code::kRolledBack,
                    "lake manifest version " + std::to_string(v) + " is older than the committed " +
                        std::to_string(committed) + ": the storage was rolled back");
      }
      if (v > committed + 1) {
        lake_.reset();
        return Refuse("lake manifest version " + std::to_string(v) + " is ahead of the counter");
      }
      if (v == committed + 1) {  // stored but not committed before a crash: commit it now
        if (auto c = platform_->AdvanceCounter(CounterId::kLake, v); !c)
          return std::unexpected(c.error());
      }
      return crypto::Bytes{};
    }
    case LakeLoadKind::kPage:
      if (auto s = lake_->LoadPage(load.key, blob); !s) return std::unexpected(s.error());
      return crypto::Bytes{};
    case LakeLoadKind::kDone:
      if (lake_->version() == 0 && platform_->counter(CounterId::kLake) > 0) {
        lake_.reset();
        return Fail(Error::Code::kRolledBack,
                    "the lake's manifest is missing but version " +
                        std::to_string(platform_->counter(CounterId::kLake)) +
                        " was committed: the storage was rolled back or replaced");
      }
      if (auto s = lake_->FinishLoad(); !s) return std::unexpected(s.error());
      return crypto::Bytes{};
    default:
      return InvalidArgument("lake_load: unknown kind");
  }
}

Result<crypto::Bytes> LakeService::Request(crypto::ByteView request) {
  if (!lake_) return Refuse("the lake is not loaded");
  MEDSTREAM_TRY(in, SessionRecord::Decode(request));
  const uint64_t id = in.session;
  channel::ServerHandshake* hs = sessions_->Find(id);
  if (!hs || !hs->ready()) return Refuse("unknown or unfinished session " + std::to_string(id));
  auto& records = hs->records();
  auto message = records.Open(in.record, channel::RecordType::kApplication);
  if (!message) {
    sessions_->Erase(id);
    lake_->EndSession(id);
    return std::unexpected(message.error());
  }
  lake::Output out = lake_->Handle(id, *message);
  crypto::Wipe(*message);
  LakeResponse response;
  MEDSTREAM_TRY(record, records.Seal(channel::RecordType::kApplication, out.reply));
  crypto::Wipe(out.reply);
  response.version = lake_->version();
  response.mutated = out.mutated;
  if (out.mutated) {
    // Withheld until lake_commit of this version (core.h). A reply still held from an earlier
    // request whose version was never committed is dropped: its effects are in this version.
    pending_record_ = std::move(record);
    pending_version_ = response.version;
  } else {
    response.record = std::move(record);
  }
  for (auto& w : out.writes) response.writes.emplace_back(std::move(w.key), std::move(w.blob));
  return response.Encode();
}

Result<crypto::Bytes> LakeService::Commit(crypto::ByteView request) {
  MEDSTREAM_TRY(commit, CommitVersion::Decode(request));
  const uint64_t version = commit.version;
  if (!lake_ || version > lake_->version())
    return Refuse("lake_commit: version " + std::to_string(version) + " was never produced");
  if (version > platform_->counter(CounterId::kLake)) {
    if (auto s = platform_->AdvanceCounter(CounterId::kLake, version); !s)
      return std::unexpected(s.error());
  }
  if (pending_version_ != 0 && pending_version_ <= version) {
    pending_version_ = 0;
    return std::exchange(pending_record_, {});
  }
  return crypto::Bytes{};
}

}  // namespace medstream::enclave

#include "enclave/core/core.h"

#include <condition_variable>
#include <ctime>
#include <mutex>
#include <optional>
#include <utility>

namespace medstream::enclave {

namespace {

constexpr size_t kMaxSessions = 64;

std::unexpected<Error> Refuse(std::string why) {
  return Fail(Error::Code::kFailedPrecondition, std::move(why));
}

}  // namespace

std::string HonestNote(std::string_view backend, bool debug) {
  std::string note =
      backend == "process"
          ? "software-simulated TEE: a separate hardened process (no ptrace, no core dumps, "
            "seccomp, locked memory); protects against the untrusted host process, not against "
            "root or a hypervisor"
          : "in-process simulation: same address space as the host; the protocol and crypto are "
            "real but nothing isolates the enclave from the host";
  if (debug) note += "; DEBUG enclave: hardening disabled, memory readable";
  return note;
}

Result<std::unique_ptr<EnclaveCore>> EnclaveCore::Create(const CoreOptions& options) {
  const crypto::Digest& counter_owner = options.seal_policy == SealPolicy::kMrEnclave
                                            ? options.identity.mr_enclave
                                            : options.identity.mr_signer;
  MEDSTREAM_TRY(platform, OpenSimulatedPlatform(options.platform_dir, counter_owner));
  return std::unique_ptr<EnclaveCore>(new EnclaveCore(options, std::move(platform)));
}

SealIdentity EnclaveCore::Self() const {
  return {options_.identity.mr_enclave, options_.identity.mr_signer, options_.identity.isv_prod_id,
          options_.identity.isv_svn};
}

Result<crypto::Bytes> EnclaveCore::Handle(uint16_t call_id, crypto::ByteView request) {
  const CallSpec* spec = FindCall(call_id);
  if (!spec)
    return InvalidArgument("call " + std::to_string(call_id) + " is not in the edge interface");
  if (request.size() > spec->max_request) {
    return ResourceExhausted(std::string(spec->name) + ": request of " +
                             std::to_string(request.size()) + " bytes exceeds the cap of " +
                             std::to_string(spec->max_request));
  }
  Result<crypto::Bytes> out = [&]() -> Result<crypto::Bytes> {
    switch (spec->call) {
      case Call::kInfo:
        return Info();
      case Call::kHandshake:
        return Handshake(request);
      case Call::kChannel:
        return Channel(request);
      case Call::kProcessBatch:
        return ProcessBatch(request, nullptr);
      case Call::kCheckpoint:
        return Checkpoint();
      case Call::kCommit:
        return Commit(request);
      case Call::kRestore:
        return Restore(request);
      case Call::kStats: {
        EnclaveStats s = stats_;
        s.streams = streams_.size();
        s.sessions = sessions_.size();
        s.keys = keys_.size();
        s.checkpoint_version = platform_->counter(CounterId::kCheckpoint);
        return s.Encode();
      }
      case Call::kShutdown:
        shutdown_ = true;
        return crypto::Bytes{};
      case Call::kLakeLoad:
        return LakeLoad(request);
      case Call::kLakeRequest:
        return LakeRequest(request);
      case Call::kLakeCommit:
        return LakeCommit(request);
    }
    return InvalidArgument("unhandled call");
  }();
  if (out && out->size() > spec->max_response) {
    return Fail(Error::Code::kInternal, std::string(spec->name) + ": response exceeds its cap");
  }
  return out;
}

Result<crypto::Bytes> EnclaveCore::Info() const {
  EnclaveInfo info;
  info.backend = options_.backend;
  info.simulated = true;
  info.debug = options_.debug;
  info.mr_enclave = options_.identity.mr_enclave;
  info.mr_signer = options_.identity.mr_signer;
  info.isv_prod_id = options_.identity.isv_prod_id;
  info.isv_svn = options_.identity.isv_svn;
  info.note = HonestNote(options_.backend, options_.debug);
  if (!options_.hardening.empty()) info.note += " [" + options_.hardening + "]";
  return info.Encode();
}

Result<crypto::Bytes> EnclaveCore::Handshake(crypto::ByteView request) {
  auto quote = [this](const channel::ReportData& rd) -> Result<crypto::Bytes> {
    attest::ReportBody body;
    body.attributes_flags =
        attest::kAttrInit | attest::kAttrMode64 | (options_.debug ? attest::kAttrDebug : 0);
    body.attributes_xfrm = 0x3;
    body.mr_enclave = options_.identity.mr_enclave;
    body.mr_signer = options_.identity.mr_signer;
    body.isv_prod_id = options_.identity.isv_prod_id;
    body.isv_svn = options_.identity.isv_svn;
    body.report_data = rd;
    return platform_->Quote(body);
  };
  const uint64_t id = next_session_++;
  MEDSTREAM_TRY(handshake, channel::ServerHandshake::Respond(request, id, quote));
  if (sessions_.size() >= kMaxSessions) sessions_.erase(sessions_.begin());  // oldest
  auto hs = std::make_unique<channel::ServerHandshake>(std::move(handshake));
  crypto::Bytes reply = hs->reply();
  sessions_[id].handshake = std::move(hs);
  return reply;
}

Result<crypto::Bytes> EnclaveCore::Channel(crypto::ByteView request) {
  MEDSTREAM_TRY(in, SessionRecord::Decode(request));
  const uint64_t id = in.session;
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return Refuse("unknown or expired session " + std::to_string(id));
  channel::ServerHandshake& hs = *it->second.handshake;
  const crypto::ByteView record = in.record;
  if (!hs.ready()) {
    auto fin = hs.OnClientFinished(record);
    if (!fin) sessions_.erase(it);
    return fin;
  }
  auto message = hs.records().Open(record, channel::RecordType::kApplication);
  if (!message) {
    sessions_.erase(it);  // a channel that saw a bad record is not trusted again
    return std::unexpected(message.error());
  }
  auto reply = ApplicationMessage(*message);
  crypto::Wipe(*message);
  crypto::Bytes plain;
  if (reply) {
    plain = *reply;
  } else {
    ByteWriter w(&plain);
    w.U8(static_cast<uint8_t>(ChannelMessage::kError));
    w.String(reply.error().message());
  }
  return hs.records().Seal(channel::RecordType::kApplication, plain);
}

Result<crypto::Bytes> EnclaveCore::ApplicationMessage(crypto::ByteView message) {
  MEDSTREAM_TRY(p, ProvisionKey::Decode(message));
  auto it = keys_.find(p.key_id);
  if (it != keys_.end()) {
    if (!std::equal(it->second.key.span().begin(), it->second.key.span().end(),
                    p.key.span().begin())) {
      return Refuse("key id " + std::to_string(p.key_id) +
                    " is already provisioned with another key");
    }
  } else {
    KeyEntry& e = keys_[p.key_id];
    e.key = p.key;
    e.config = p.config;
  }
  return crypto::Bytes{static_cast<uint8_t>(ChannelMessage::kOk)};
}

Result<crypto::AesGcm*> EnclaveCore::StreamCipher(uint32_t key_id, const wire::StreamId& stream,
                                                  bool for_worker) {
  auto it = keys_.find(key_id);
  if (it == keys_.end()) {
    return Refuse("no key provisioned for key id " + std::to_string(key_id) +
                  " (the data owner must attest this enclave and provision its key first)");
  }
  auto& slot = (for_worker ? it->second.worker_ciphers : it->second.ciphers)[stream];
  if (!slot) {
    MEDSTREAM_TRY(key, wire::StreamKey(it->second.key, stream));
    MEDSTREAM_TRY(gcm, crypto::AesGcm::Create(key));
    slot = std::make_unique<crypto::AesGcm>(std::move(gcm));
  }
  return slot.get();
}

// Decrypts and analyses one batch. Segment 0 is authenticated first (it authenticates the header
// before any stream state is touched); the worker then authenticates the remaining segments while
// this thread analyses the beats of those already authenticated. Should a later segment fail, the
// stream is put back as it was and nothing from this batch is released.
Result<crypto::Bytes> EnclaveCore::HandleBatchWithFill(crypto::ByteView request, const Fill& fill) {
  const CallSpec* spec = FindCall(static_cast<uint16_t>(Call::kProcessBatch));
  if (request.size() > spec->max_request) {
    return InvalidArgument("process_batch: request exceeds its cap");
  }
  return ProcessBatch(request, &fill);
}

Result<crypto::Bytes> EnclaveCore::ProcessBatch(crypto::ByteView request, const Fill* fill) {
  auto ensure = [&](size_t n) {
    if (fill) (*fill)(std::min(n, request.size()));
  };
  auto result = [&]() -> Result<crypto::Bytes> {
    ensure(wire::kHeaderSize);
    wire::SegmentLayout layout;
    MEDSTREAM_TRY(header, wire::PrepareBatch(request, &beats_, &layout));
    if (!header.encrypted()) {
      return Refuse("plaintext batch refused: the enclave takes only encrypted batches");
    }
    MEDSTREAM_TRY(gcm, StreamCipher(header.key_id, header.stream));
    auto* plain = reinterpret_cast<uint8_t*>(beats_.data());
    auto open = [&](size_t i) {
      ensure(wire::kHeaderSize + layout.CipherOffset(i) + layout.PlainSize(i) +
             crypto::AesGcm::kTagSize);
      return wire::OpenSegment(request, header, layout, i, gcm,
                               {plain + layout.PlainOffset(i), layout.PlainSize(i)});
    };
    if (auto s = open(0); !s) return std::unexpected(s.error());
    const StreamConfig& config = keys_.at(header.key_id).config;
    MEDSTREAM_TRY(batch, streams_.Begin(header.stream, header.seq, header.key_id, config));
    constexpr size_t kBeatsPerSegment = wire::kSegmentBytes / sizeof(hrv::Beat);
    std::mutex mu;
    std::condition_variable cv;
    size_t authenticated = 1;  // segments
    std::optional<Error> failure;
    if (layout.count > 1) {
      worker_.Start([&] {
        for (size_t i = 1; i < layout.count; ++i) {
          auto s = open(i);
          std::lock_guard lock(mu);
          if (!s) {
            failure = s.error();
            break;
          }
          authenticated = i + 1;
          cv.notify_one();
        }
        cv.notify_one();
      });
    }
    size_t done = 0;  // segments analysed
    while (done < layout.count) {
      size_t ready;
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return authenticated > done || failure; });
        if (failure) break;
        ready = authenticated;
      }
      const size_t from = done * kBeatsPerSegment;
      const size_t to = std::min(beats_.size(), ready * kBeatsPerSegment);
      streams_.Push(batch, std::span(beats_).subspan(from, to - from));
      done = ready;
    }
    if (layout.count > 1) worker_.Wait();
    if (failure) {
      streams_.Abort(batch);
      return std::unexpected(*failure);
    }
    const wire::BatchResult r = streams_.Commit(batch);
    result_.clear();
    wire::EncodeResult(r, &result_);
    wire::Header out = header;
    out.kind = wire::Kind::kResult;
    // A large result (identity echoes every beat) is sealed on both threads.
    MEDSTREAM_TRY(worker_gcm, StreamCipher(header.key_id, header.stream, /*for_worker=*/true));
    const wire::Helper helper{
        .gcm = worker_gcm,
        .start = [this](std::function<void()> task) { worker_.Start(std::move(task)); },
        .wait = [this] { worker_.Wait(); }};
    auto file = wire::MakeFile(out, result_, gcm, &helper);
    // The beat buffer is reused by the next batch and never leaves the enclave; the encoded
    // results are wiped because they are about to be dropped.
    crypto::Wipe(result_);
    if (file) stats_.beats += r.beats;
    return file;
  }();
  ++(result ? stats_.batches_ok : stats_.batches_refused);
  return result;
}

Result<crypto::Bytes> EnclaveCore::Checkpoint() {
  crypto::Bytes state;
  ByteWriter w(&state);
  w.U32(static_cast<uint32_t>(keys_.size()));
  for (const auto& [id, e] : keys_) {
    w.U32(id);
    w.Bytes(e.key.span());
    e.config.Encode(&w);
  }
  streams_.Save(&w);
  w.U64(stats_.batches_ok);
  w.U64(stats_.batches_refused);
  w.U64(stats_.beats);
  const uint64_t version = platform_->counter(CounterId::kCheckpoint) + 1;
  auto blob = SealData(state, platform_->sealing_root(), Self(), options_.seal_policy, version);
  crypto::Wipe(state);
  if (blob) pending_checkpoint_ = version;
  return blob;
}

Result<crypto::Bytes> EnclaveCore::Commit(crypto::ByteView request) {
  MEDSTREAM_TRY(commit, CommitVersion::Decode(request));
  const uint64_t version = commit.version;
  if (version != pending_checkpoint_ || version == 0) {
    return Refuse("commit of checkpoint " + std::to_string(version) +
                  ", but the pending checkpoint is " + std::to_string(pending_checkpoint_));
  }
  if (auto s = platform_->AdvanceCounter(CounterId::kCheckpoint, version); !s)
    return std::unexpected(s.error());
  pending_checkpoint_ = 0;
  return crypto::Bytes{};
}

Result<crypto::Bytes> EnclaveCore::Restore(crypto::ByteView request) {
  if (!keys_.empty() || streams_.size() > 0) {
    return Refuse("restore must come before any key is provisioned or batch processed");
  }
  MEDSTREAM_TRY(u, UnsealData(request, platform_->sealing_root(), Self()));
  const uint64_t committed = platform_->counter(CounterId::kCheckpoint);
  if (u.version < committed) {
    return Fail(Error::Code::kRolledBack,
                "rollback refused: sealed state version " + std::to_string(u.version) +
                    " is older than the last committed checkpoint " + std::to_string(committed));
  }
  if (u.version > committed + 1) {
    return Refuse("sealed state version " + std::to_string(u.version) +
                  " is ahead of the platform counter " + std::to_string(committed) +
                  " (counter store lost or replaced?)");
  }
  ByteReader r(u.data);
  std::map<uint32_t, KeyEntry> keys;
  MEDSTREAM_TRY(nkeys, r.U32("key count"));
  for (uint32_t i = 0; i < nkeys; ++i) {
    MEDSTREAM_TRY(id, r.U32("key id"));
    MEDSTREAM_TRY(key, r.Bytes(32, "key"));
    MEDSTREAM_TRY(config, StreamConfig::Decode(&r));
    KeyEntry& e = keys[id];
    e.key = crypto::Key256(key);
    e.config = std::move(config);
  }
  streams::StreamTable streams;
  auto config_of = [&](uint32_t id) -> const StreamConfig* {
    auto it = keys.find(id);
    return it == keys.end() ? nullptr : &it->second.config;
  };
  if (auto s = streams.Load(&r, config_of); !s) return std::unexpected(s.error());
  MEDSTREAM_TRY(ok, r.U64("stats"));
  MEDSTREAM_TRY(refused, r.U64("stats"));
  MEDSTREAM_TRY(beats, r.U64("stats"));
  crypto::Wipe(u.data);
  if (u.version == committed + 1) {
    if (auto s = platform_->AdvanceCounter(CounterId::kCheckpoint, u.version); !s)
      return std::unexpected(s.error());
  }
  keys_ = std::move(keys);
  streams_ = std::move(streams);
  stats_.batches_ok = ok;
  stats_.batches_refused = refused;
  stats_.beats = beats;
  return crypto::Bytes{};
}

// ---- the data lake ----

Result<crypto::Bytes> EnclaveCore::LakeLoad(crypto::ByteView request) {
  MEDSTREAM_TRY(load, enclave::LakeLoad::Decode(request));
  const crypto::ByteView blob = load.blob;
  const bool manifest = load.kind == LakeLoadKind::kManifest;
  if (manifest || !lake_) {
    if (lake_ && manifest) return Refuse("the lake is already loaded");
    auto seal = [this](crypto::ByteView plain, uint64_t version) {
      return SealData(plain, platform_->sealing_root(), Self(), options_.seal_policy, version);
    };
    auto unseal = [this](crypto::ByteView b) -> Result<std::pair<crypto::Bytes, uint64_t>> {
      MEDSTREAM_TRY(u, UnsealData(b, platform_->sealing_root(), Self()));
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

Result<crypto::Bytes> EnclaveCore::LakeRequest(crypto::ByteView request) {
  if (!lake_) return Refuse("the lake is not loaded");
  MEDSTREAM_TRY(in, SessionRecord::Decode(request));
  const uint64_t id = in.session;
  auto it = sessions_.find(id);
  if (it == sessions_.end() || !it->second.handshake->ready())
    return Refuse("unknown or unfinished session " + std::to_string(id));
  auto& records = it->second.handshake->records();
  auto message = records.Open(in.record, channel::RecordType::kApplication);
  if (!message) {
    sessions_.erase(it);
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

Result<crypto::Bytes> EnclaveCore::LakeCommit(crypto::ByteView request) {
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

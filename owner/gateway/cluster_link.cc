#include "owner/gateway/cluster_link.h"

#include <charconv>
#include <chrono>
#include <map>
#include <thread>
#include <unordered_map>

#include "common/base/file.h"
#include "common/wire/cluster.h"
#include "host/worker/edge_relay.h"
#include "host/worker/worker.h"

namespace medstream::gateway {

namespace {

namespace cl = wire::cluster;

class Cluster : public ServerLink {
 public:
  Cluster(ClusterLinkOptions o, std::unique_ptr<nats::Connection> c,
          std::unique_ptr<nats::KeyValue> workers, std::unique_ptr<nats::PullConsumer> results)
      : options_(std::move(o)),
        nats_(std::move(c)),
        workers_(std::move(workers)),
        results_(std::move(results)) {}

  Status Upload(const std::string& name, crypto::ByteView data) override {
    MEDSTREAM_TRY(header, wire::Header::Decode(data));
    const uint32_t p = wire::PartitionOf(header.stream, options_.partitions);
    // Acknowledged by the stream (a quorum of its replicas) before the spool lets it go.
    auto ack = nats_->Publish(cl::BatchSubject(p), data, name, 10);
    if (!ack) return std::unexpected(std::move(ack.error()).With("publishing " + name));
    return {};
  }
  Status UploadFile(const std::string& name, const std::string& path) override {
    MEDSTREAM_TRY(data, ReadFileBytes(path, MaxBatchBytes()));
    return Upload(name, data);
  }
  Result<crypto::Bytes> ReadResult(const std::string& name) override {
    MEDSTREAM_TRY(ref, ParseName(name, ".result"));
    const std::string subject = cl::ResultSubject(ref.first, ref.second);
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_poll_) {
      next_poll_ = now + kPollInterval;
      if (auto s = Poll(); !s) return std::unexpected(s.error());
    }
    if (auto it = ready_.find(subject); it != ready_.end()) {
      crypto::Bytes bytes = std::move(it->second);
      ready_bytes_ -= bytes.size();
      ready_.erase(it);
      direct_.erase(subject);
      return bytes;
    }
    // Not delivered by the consumer (yet): after kDirectAfter, and then that often, from the
    // stream itself (a result the consumer handed to a gateway that crashed before storing it).
    auto [it, fresh] = direct_.try_emplace(subject, now + kDirectAfter);
    if (fresh || now < it->second) return NotFound(name);
    it->second = now + kDirectAfter;
    auto bytes = nats_->LastMessage(cl::kResultStream, subject);
    if (bytes) direct_.erase(it);
    return bytes;
  }
  Result<std::string> QuarantineReason(const std::string& batch_name) override {
    MEDSTREAM_TRY(ref, ParseName(batch_name, ".batch"));
    std::string reason;
    MEDSTREAM_TRY(data, nats_->LastMessage(cl::kQuarantineStream,
                                           cl::QuarantineSubject(ref.first, ref.second),
                                           "Medstream-Reason", &reason));
    (void)data;
    return reason;
  }
  Result<std::unique_ptr<host::EnclaveTransport>> Relay() override {
    return Fail(Error::Code::kFailedPrecondition,
                "a cluster has an enclave per worker, not one to attest at start");
  }
  bool SingleEnclave() const override { return false; }
  Result<std::vector<std::string>> NewEnclaves() override {
    MEDSTREAM_TRY(names, workers_->Keys());
    std::vector<std::string> out;
    std::map<std::string, std::string> registered;  // worker -> enclave instance
    for (const std::string& n : names) {
      if (!cl::ValidWorkerName(n)) continue;
      auto e = workers_->Get(n);
      if (!e) continue;  // gone meanwhile
      // "<instance>" or "<instance> ready" (worker.h): a restarted worker is a new instance.
      std::string instance(e->value.begin(), e->value.end());
      instance = instance.substr(0, instance.find(' '));
      registered[n] = instance;
      auto it = done_.find(n);
      if (it != done_.end() && it->second == instance) continue;
      out.push_back(n);
    }
    // Workers whose registration expired are forgotten (one that comes back is attested again,
    // which gives an enclave holding the key the same key), so that names made up and dropped
    // do not pile up here.
    std::erase_if(done_, [&](const auto& d) { return !registered.contains(d.first); });
    pending_ = std::move(registered);
    return out;
  }
  Result<std::unique_ptr<host::EnclaveTransport>> RelayTo(const std::string& enclave) override {
    // A worker's relay answers in milliseconds (its enclave's next free moment); 10 s bounds what
    // one that never answers costs the provisioning thread, and the gateway's stop.
    return host::NatsEdgeTransport(*nats_, cl::EdgeSubject(enclave), 10);
  }
  void Attested(const std::string& enclave) override { done_[enclave] = pending_[enclave]; }
  size_t MaxBatchBytes() const override {
    // Results can outgrow their batch (hrv-full windows at a short step carry more bytes than
    // their beats): half the payload leaves them room.
    return static_cast<size_t>(nats_->max_payload()) / 2;
  }

 private:
  // NAME is <stream>-<seq><suffix> (wire::ResultFileName, wire::BatchFileName).
  static Result<std::pair<wire::StreamId, uint64_t>> ParseName(const std::string& name,
                                                               std::string_view suffix) {
    const size_t dash = name.find('-');
    if (dash == std::string::npos || !name.ends_with(suffix) ||
        name.size() - suffix.size() <= dash + 1) {
      return InvalidArgument("not a batch or result name: " + name);
    }
    MEDSTREAM_TRY(id, wire::ParseStreamName(name.substr(0, dash)));
    const char* first = name.data() + dash + 1;
    const char* last = name.data() + name.size() - suffix.size();
    uint64_t seq = 0;
    const auto [end, ec] = std::from_chars(first, last, seq);
    if (ec != std::errc() || end != last) {
      return InvalidArgument("not a batch or result name: " + name);
    }
    return std::pair{id, seq};
  }

  static constexpr auto kPollInterval = std::chrono::milliseconds(50);
  static constexpr auto kDirectAfter = std::chrono::seconds(5);
  static constexpr size_t kMaxReadyBytes = size_t{512} << 20;

  // Takes what the results consumer has now. Acknowledged once held here: a gateway that dies
  // before storing one reads it from the stream (ReadResult's direct read).
  Status Poll() {
    for (int round = 0; round < 64; ++round) {
      MEDSTREAM_TRY(msgs, results_->Fetch(256, 0.005));
      for (nats::Message& m : msgs) {
        const std::string subject = m.subject();
        const auto data = m.data();
        // Over the cap (results nobody asks for: read already through the stream, or another
        // gateway's): some go; one asked for later is read from the stream.
        while (ready_bytes_ + data.size() > kMaxReadyBytes && !ready_.empty()) {
          ready_bytes_ -= ready_.begin()->second.size();
          ready_.erase(ready_.begin());
        }
        if (ready_.try_emplace(subject, data.begin(), data.end()).second) {
          ready_bytes_ += data.size();
        }
        (void)m.Ack();
      }
      if (msgs.size() < 256) break;
    }
    return {};
  }

  ClusterLinkOptions options_;
  std::unique_ptr<nats::Connection> nats_;
  std::unique_ptr<nats::KeyValue> workers_;
  std::unique_ptr<nats::PullConsumer> results_;
  std::unordered_map<std::string, crypto::Bytes> ready_;  // subject -> result, not yet asked for
  size_t ready_bytes_ = 0;
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> direct_;
  std::chrono::steady_clock::time_point next_poll_{};
  std::map<std::string, std::string> done_, pending_;  // worker -> enclave instance
};

}  // namespace

Result<std::unique_ptr<ServerLink>> ClusterLink(const ClusterLinkOptions& o) {
  if (o.partitions == 0 || o.partitions > enclave::kMaxPartitions) {
    return InvalidArgument("partitions must be 1 to " + std::to_string(enclave::kMaxPartitions));
  }
  MEDSTREAM_TRY(c, nats::Connection::Connect(o.nats));
  // A cluster just started may answer "no responders" for a moment: retried for 30 s.
  Status layout = host::EnsureClusterLayout(*c, o.replicas, o.lease_s);
  for (int i = 0; i < 150 && !layout &&
                  (layout.error().code() == Error::Code::kIo ||
                   layout.error().code() == Error::Code::kDeadlineExceeded);
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    layout = host::EnsureClusterLayout(*c, o.replicas, o.lease_s);
  }
  if (!layout) {
    return std::unexpected(std::move(layout.error()).With("setting up the cluster's streams"));
  }
  MEDSTREAM_TRY(workers, c->EnsureKeyValue({.bucket = cl::kWorkerBucket}));
  if (!cl::ValidWorkerName(o.consumer)) {
    return InvalidArgument("bad results consumer name '" + o.consumer +
                           "' (1-64 of A-Z a-z 0-9 - _)");
  }
  MEDSTREAM_TRY(results, c->PullSubscribe(cl::kResultStream, o.consumer, "medstream.result.>", 60));
  return std::unique_ptr<ServerLink>(
      new Cluster(o, std::move(c), std::move(workers), std::move(results)));
}

}  // namespace medstream::gateway

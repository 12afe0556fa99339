#include "owner/gateway/cluster_link.h"

#include <charconv>
#include <chrono>
#include <map>
#include <thread>

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
          std::unique_ptr<nats::KeyValue> workers)
      : options_(std::move(o)), nats_(std::move(c)), workers_(std::move(workers)) {}

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
    return nats_->LastMessage(cl::kResultStream, cl::ResultSubject(ref.first, ref.second));
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
    for (const std::string& n : names) {
      if (!cl::ValidWorkerName(n)) continue;
      auto e = workers_->Get(n);
      if (!e) continue;  // gone meanwhile
      // "<instance>" or "<instance> ready" (worker.h): a restarted worker is a new instance.
      std::string instance(e->value.begin(), e->value.end());
      instance = instance.substr(0, instance.find(' '));
      auto it = done_.find(n);
      if (it != done_.end() && it->second == instance) continue;
      pending_[n] = instance;
      out.push_back(n);
    }
    return out;
  }
  Result<std::unique_ptr<host::EnclaveTransport>> RelayTo(const std::string& enclave) override {
    return host::NatsEdgeTransport(*nats_, cl::EdgeSubject(enclave), 30);
  }
  void Attested(const std::string& enclave) override { done_[enclave] = pending_[enclave]; }
  size_t MaxBatchBytes() const override {
    // Results can outgrow their batch (the identity job returns the beats and its windows):
    // half the payload leaves them room.
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

  ClusterLinkOptions options_;
  std::unique_ptr<nats::Connection> nats_;
  std::unique_ptr<nats::KeyValue> workers_;
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
  return std::unique_ptr<ServerLink>(new Cluster(o, std::move(c), std::move(workers)));
}

}  // namespace medstream::gateway

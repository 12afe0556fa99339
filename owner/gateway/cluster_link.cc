#include "owner/gateway/cluster_link.h"

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
    // NAME is <stream>-<seq>.result (wire::ResultFileName).
    const size_t dash = name.find('-');
    const size_t dot = name.rfind(".result");
    if (dash == std::string::npos || dot == std::string::npos || dot <= dash + 1) {
      return InvalidArgument("not a result name: " + name);
    }
    MEDSTREAM_TRY(id, wire::ParseStreamName(name.substr(0, dash)));
    const uint64_t seq = std::stoull(name.substr(dash + 1, dot - dash - 1));
    return nats_->LastMessage(cl::kResultStream, cl::ResultSubject(id, seq));
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

// cluster_link: the gateway's link to a NATS JetStream cluster of workers (docs/scale-out.md),
// instead of one server's inbox. A sealed batch is published on its partition's subject
// (wire::PartitionOf of its stream id) with its file name as Nats-Msg-Id and counts as uploaded
// once the replicated stream acknowledged it (the spool keeps it until then; a re-send is stored
// once). Results come through a durable pull consumer of the results stream (one fetch of what
// is there per poll, kept in memory until asked for, at most kMaxReadyBytes); a result asked for
// and not delivered that way (acknowledged before a gateway crash) is read from the stream by its
// subject, at most every few seconds. Workers are found in the workers bucket; each new enclave
// instance is attested and provisioned through NATS request/reply.
// Thread-safety: as ServerLink: NewEnclaves, RelayTo and Attested (the gateway's provisioning
// thread) run at the same time as the rest (its main loop); the two sets share only the NATS
// connection, which libnats locks.
#pragma once

#include <memory>

#include "adapters/nats/nats.h"
#include "owner/gateway/gateway.h"

namespace medstream::gateway {

struct ClusterLinkOptions {
  nats::ConnectOptions nats;
  uint32_t partitions = 16;
  int replicas = 3;    // of the streams and buckets it creates if absent
  double lease_s = 6;  // the lease and registration buckets' expiry, if it creates them
  // The durable consumer of results: one per gateway (two gateways of one cluster each need a
  // name of their own). Letters, digits, - and _.
  std::string consumer = "gateway";
};

Result<std::unique_ptr<ServerLink>> ClusterLink(const ClusterLinkOptions& options);

}  // namespace medstream::gateway

// cluster names: the subjects, streams and buckets through which gateways and workers meet on a
// NATS JetStream cluster (docs/scale-out.md). Shared format, like the batch files' names: both
// sides derive the same names from a stream id and sequence, with no table. Pure; thread-safe.
//
//   MEDSTREAM_BATCHES   stream; subject medstream.batch.<partition>: sealed batches (Nats-Msg-Id
//                       = the batch's file name, so a re-sent batch is stored once)
//   MEDSTREAM_RESULTS   stream; subject medstream.result.<stream hex>.<seq>: sealed results
//   MEDSTREAM_QUARANTINE  stream; subject medstream.quarantine.<stream hex>.<seq>: batches the
//                       enclave refused or that killed enclaves, with the reason in the
//                       Medstream-Reason header (the gateway reads it to skip the result)
//   KV medstream-leases    p<partition> -> the owning worker (expires unless renewed)
//   KV medstream-state     p<partition> -> next batch stream sequence, the suspect batch and its
//                       tries, the in-flight batch, clean flag, consumer | portable state
//   KV medstream-workers   <worker> -> its enclave instance (expires unless renewed)
//   medstream.edge.<worker>  request/reply: the edge calls a relay may forward (attestation,
//                            provisioning), call id u16 | payload -> status u16 | payload
#pragma once

#include <cstdint>
#include <string>

#include "common/wire/wire.h"

namespace medstream::wire::cluster {

inline constexpr const char* kBatchStream = "MEDSTREAM_BATCHES";
inline constexpr const char* kResultStream = "MEDSTREAM_RESULTS";
inline constexpr const char* kQuarantineStream = "MEDSTREAM_QUARANTINE";
inline constexpr const char* kLeaseBucket = "medstream-leases";
inline constexpr const char* kStateBucket = "medstream-state";
inline constexpr const char* kWorkerBucket = "medstream-workers";
inline constexpr uint32_t kDefaultPartitions = 16;

inline std::string BatchSubject(uint32_t partition) {
  return "medstream.batch." + std::to_string(partition);
}
inline std::string ResultSubject(const StreamId& id, uint64_t seq) {
  return "medstream.result." + StreamName(id) + "." + std::to_string(seq);
}
// A quarantined batch, by the stream id and sequence in its header; one whose header does not
// read, by its sequence in MEDSTREAM_BATCHES.
inline std::string QuarantineSubject(const StreamId& id, uint64_t seq) {
  return "medstream.quarantine." + StreamName(id) + "." + std::to_string(seq);
}
inline std::string QuarantineSubjectUnreadable(uint64_t batch_stream_seq) {
  return "medstream.quarantine.unreadable." + std::to_string(batch_stream_seq);
}
inline std::string PartitionKey(uint32_t partition) {
  return "p" + std::to_string(partition);
}
inline std::string EdgeSubject(const std::string& worker) {
  return "medstream.edge." + worker;
}
// Worker names: 1-64 of A-Z a-z 0-9 - _ (they are subject tokens and key names).
bool ValidWorkerName(const std::string& name);

}  // namespace medstream::wire::cluster

// nats: a NATS client over TLS with user credentials (libnats), with the JetStream parts medstream
// uses: replicated streams, acknowledged publishing deduplicated by message id, durable pull
// consumers with explicit acknowledgement, key-value buckets with compare-and-set, and core
// request/reply. Untrusted transport: what crosses it is ciphertext (sealed batches, results,
// checkpoints) or attestation messages; the enclave links none of it.
//
// Every call is bounded by a timeout the caller states (or the connection's default). Errors
// carry codes a caller branches on: kDeadlineExceeded (no answer in time), kIo (no server, the
// connection closed), kNotFound (no such stream, consumer, key), kFailedPrecondition (a
// compare-and-set lost: someone else wrote first), kResourceExhausted (over the server's max
// payload), kPermissionDenied (credentials or permissions refused).
//
// Thread-safety: a Connection may be used from several threads at once (libnats locks inside);
// a PullConsumer, a Message and a KeyValue handle belong to one thread at a time. Handlers given
// to Serve run on libnats's delivery thread, one message at a time per subscription.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/base/result.h"

namespace medstream::nats {

// The same types as crypto::Bytes and crypto::ByteView (this module links no crypto).
using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

struct ConnectOptions {
  std::vector<std::string> servers;  // "tls://127.0.0.1:4222", ... (any node of the cluster)
  std::string ca;                    // PEM file the servers' certificates chain to (required)
  std::string user, password;        // the client's credentials (required)
  std::string name = "medstream";    // shown in the server's connection list
  double timeout_s = 5;              // connecting, and JetStream API calls
  // Reconnect for good (a node restart, a network outage): calls fail meanwhile with kIo or
  // kDeadlineExceeded and succeed again after.
  bool reconnect = true;
};

struct StreamSpec {
  std::string name;
  std::vector<std::string> subjects;
  int replicas = 3;
  double duplicate_window_s = 600;  // how long a Nats-Msg-Id is remembered
  int64_t max_bytes = -1;           // -1: no limit
  double max_age_s = 0;             // 0: kept until deleted
  bool work_queue = false;          // a message is removed once a consumer acknowledged it
};

struct PubAck {
  std::string stream;
  uint64_t sequence = 0;
  bool duplicate = false;  // the stream already had this message id: not stored again
};

// A message delivered by a pull consumer or a subscription.
class Message {
 public:
  ~Message();
  Message(Message&&) noexcept;
  Message& operator=(Message&&) noexcept;
  std::string subject() const;
  ByteView data() const;
  std::optional<std::string> header(const std::string& key) const;
  // JetStream metadata (pull consumers only): the message's sequence in its stream, and how many
  // times it has been delivered (1 the first time).
  uint64_t stream_sequence() const { return stream_seq_; }
  uint64_t deliveries() const { return deliveries_; }
  // Acknowledges and waits for the server to confirm it (a consumer that then dies does not get
  // it again).
  Status Ack();
  Status Nak();   // deliver again (after the consumer's ack wait at the latest)
  Status Term();  // never deliver again (a poison message)

 private:
  friend class PullConsumer;
  friend class Connection;
  explicit Message(void* msg);
  void* msg_ = nullptr;
  uint64_t stream_seq_ = 0, deliveries_ = 0;
};

class PullConsumer {
 public:
  ~PullConsumer();
  // Up to `max` messages, waiting at most `timeout_s` for the first; an empty vector when none
  // came in time (not an error). Asks for what is there first (libnats: a "no wait" request when
  // max > 1) and only then waits, so a short timeout costs that long only when there is nothing.
  Result<std::vector<Message>> Fetch(int max, double timeout_s);

 private:
  friend class Connection;
  explicit PullConsumer(void* sub) : sub_(sub) {}
  // A fetch's messages (a natsMsgList*) as ours; none when it timed out or found nothing.
  static Result<std::vector<Message>> TakeFetched(void* list, int status);
  void* sub_ = nullptr;
};

struct KvEntry {
  Bytes value;
  uint64_t revision = 0;
};

// A key-value bucket (a JetStream stream underneath). Keys: letters, digits, - _ = . and /.
// The handle must not outlive its Connection.
class KeyValue {
 public:
  ~KeyValue();
  Result<KvEntry> Get(const std::string& key);  // kNotFound if absent or deleted
  // Writes only if the key does not exist (or was deleted / expired): kFailedPrecondition if it
  // does. Returns the new revision.
  Result<uint64_t> Create(const std::string& key, ByteView value);
  // Writes only if the key's revision is still `last`: kFailedPrecondition if another write came
  // between. Returns the new revision.
  Result<uint64_t> Update(const std::string& key, ByteView value, uint64_t last);
  Result<uint64_t> Put(const std::string& key, ByteView value);
  Status Delete(const std::string& key);
  // The keys present now (none deleted or expired).
  Result<std::vector<std::string>> Keys();

 private:
  friend class Connection;
  KeyValue(void* kv, void* js) : kv_(kv), js_(js) {}
  void* kv_ = nullptr;
  void* js_ = nullptr;  // the connection's JetStream context (outlived by the connection)
};

struct KvSpec {
  std::string bucket;
  int replicas = 3;
  double ttl_s = 0;  // entries expire this long after their last write (0: never)
  int history = 1;
  int32_t max_value_size = -1;
};

class Connection {
 public:
  static Result<std::unique_ptr<Connection>> Connect(const ConnectOptions& options);
  ~Connection();

  // The largest message the servers accept (their max_payload), in bytes.
  int64_t max_payload() const;

  // Creates the stream, or updates it to `spec` if it exists.
  Status EnsureStream(const StreamSpec& spec);
  Status DeleteStream(const std::string& name);
  // Publishes and waits for the stream's acknowledgement (stored on a quorum of its replicas).
  // `msg_id`: the stream drops a second message with the same id inside its duplicate window.
  Result<PubAck> Publish(const std::string& subject, ByteView data, const std::string& msg_id,
                         double timeout_s,
                         const std::vector<std::pair<std::string, std::string>>& headers = {});
  // The number of messages in the stream now.
  Result<uint64_t> StreamMessages(const std::string& stream);
  // Whether the stream has a leader and at least `replicas` peers (the leader included) that are
  // online and caught up: a node restarted into the cluster has rejoined it.
  Result<bool> StreamReplicasCurrent(const std::string& stream, size_t replicas);
  // The same for consumer `durable` of `stream`. A consumer created after a node's restart and
  // current on it shows that the node has applied the cluster's metadata up to that consumer.
  Result<bool> ConsumerReplicasCurrent(const std::string& stream, const std::string& durable,
                                       size_t replicas);
  // The last message on `subject` in `stream` (kNotFound if none); `header_value`, if given,
  // receives its header `header` ("" if it has none).
  Result<Bytes> LastMessage(const std::string& stream, const std::string& subject,
                            const std::string& header = "", std::string* header_value = nullptr);

  // A durable pull consumer on `stream` (created if absent) delivering `filter_subject`, with
  // explicit acks; a message not acknowledged within `ack_wait_s` is delivered again.
  // `start_seq` > 0: the consumer starts at that stream sequence (a consumer of that name must
  // not exist yet), not at the first message.
  Result<std::unique_ptr<PullConsumer>> PullSubscribe(const std::string& stream,
                                                      const std::string& durable,
                                                      const std::string& filter_subject,
                                                      double ack_wait_s, uint64_t start_seq = 0);
  Status DeleteConsumer(const std::string& stream, const std::string& durable);

  Result<std::unique_ptr<KeyValue>> EnsureKeyValue(const KvSpec& spec);

  // Core request/reply (no JetStream): sends `data` to `subject`, waits for one reply.
  Result<Bytes> Request(const std::string& subject, ByteView data, double timeout_s);
  // Answers requests on `subject` with `handler`'s reply until the returned handle is destroyed.
  // A handler's error is not sent (the requester times out); say errors in the reply instead.
  class Service {
   public:
    virtual ~Service() = default;
  };
  using Handler = std::function<Bytes(ByteView request)>;
  Result<std::unique_ptr<Service>> Serve(const std::string& subject, Handler handler);

  // Whether JetStream answers (a cluster has elected its meta leader): kDeadlineExceeded or kIo
  // while it does not.
  Status PingJetStream();

  // Waits until every published message reached the server.
  Status Flush(double timeout_s);

 private:
  Connection() = default;
  void* nc_ = nullptr;
  void* js_ = nullptr;
  ConnectOptions options_;
};

}  // namespace medstream::nats

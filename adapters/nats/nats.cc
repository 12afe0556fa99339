#include "adapters/nats/nats.h"

#include <nats/nats.h>

#include <algorithm>
#include <cstring>
#include <utility>

namespace medstream::nats {

namespace {

constexpr int64_t kNanos = 1000000000;

int64_t Millis(double s) {
  return s <= 0 ? 1 : static_cast<int64_t>(s * 1000 + 0.5);
}
int64_t Nanos(double s) {
  return static_cast<int64_t>(s * kNanos);
}

// The code a caller branches on, from libnats's status and, for JetStream calls, the server's
// error code.
Error::Code CodeOf(natsStatus s, jsErrCode js) {
  switch (js) {
    case JSStreamWrongLastSequenceErr:
      return Error::Code::kFailedPrecondition;
    case JSStreamNotFoundErr:
    case JSConsumerNotFoundErr:
    case JSNoMessageFoundErr:
      return Error::Code::kNotFound;
    // The cluster cannot do it now: its peers are still joining (a cluster just started), or too
    // few are up for the replicas asked. Transient, as a node that is not there: kIo, which
    // callers retry. Before, kInternal made a worker or gateway that started with the cluster
    // give up (WorkerTest failed 1 run in 40 at "creating stream MEDSTREAM_BATCHES").
    case JSClusterNoPeersErr:
    case JSClusterNotAvailErr:
      return Error::Code::kIo;
    default:
      break;
  }
  switch (s) {
    case NATS_TIMEOUT:
      return Error::Code::kDeadlineExceeded;
    case NATS_NOT_FOUND:
      return Error::Code::kNotFound;
    case NATS_MAX_PAYLOAD:
    case NATS_INSUFFICIENT_BUFFER:
    case NATS_SLOW_CONSUMER:
      return Error::Code::kResourceExhausted;
    case NATS_NOT_PERMITTED:
    case NATS_CONNECTION_AUTH_FAILED:
      return Error::Code::kPermissionDenied;
    case NATS_INVALID_ARG:
    case NATS_INVALID_SUBJECT:
      return Error::Code::kInvalidArgument;
    case NATS_SSL_ERROR:
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NO_SERVER:
    case NATS_IO_ERROR:
    case NATS_STALE_CONNECTION:
    case NATS_NO_RESPONDERS:
      return Error::Code::kIo;
    default:
      return Error::Code::kInternal;
  }
}

std::unexpected<Error> Failed(const std::string& what, natsStatus s, jsErrCode js = jsErrCode(0)) {
  std::string text = what + ": " + natsStatus_GetText(s);
  natsStatus last = NATS_OK;
  if (const char* detail = nats_GetLastError(&last); detail != nullptr && *detail != '\0') {
    text += std::string(" (") + detail + ")";
  }
  if (js != 0) text += " [JetStream error " + std::to_string(static_cast<int>(js)) + "]";
  return std::unexpected(Error(CodeOf(s, js), std::move(text)));
}

natsConnection* Nc(void* p) {
  return static_cast<natsConnection*>(p);
}
jsCtx* Js(void* p) {
  return static_cast<jsCtx*>(p);
}

// "tls://host:port" -> host (the name the servers' certificates must carry).
std::string HostOf(const std::string& url) {
  std::string rest = url;
  if (auto p = rest.find("://"); p != std::string::npos) rest = rest.substr(p + 3);
  if (auto p = rest.find('@'); p != std::string::npos) rest = rest.substr(p + 1);
  if (!rest.empty() && rest.front() == '[') return rest.substr(1, rest.find(']') - 1);
  return rest.substr(0, rest.rfind(':'));
}

}  // namespace

// --- Message -------------------------------------------------------------------------------

Message::Message(void* msg) : msg_(msg) {
  jsMsgMetaData* meta = nullptr;
  if (natsMsg_GetMetaData(&meta, static_cast<natsMsg*>(msg)) == NATS_OK && meta != nullptr) {
    stream_seq_ = meta->Sequence.Stream;
    deliveries_ = meta->NumDelivered;
    jsMsgMetaData_Destroy(meta);
  }
}
Message::~Message() {
  if (msg_ != nullptr) natsMsg_Destroy(static_cast<natsMsg*>(msg_));
}
Message::Message(Message&& o) noexcept
    : msg_(std::exchange(o.msg_, nullptr)),
      stream_seq_(o.stream_seq_),
      deliveries_(o.deliveries_) {}
Message& Message::operator=(Message&& o) noexcept {
  if (this != &o) {
    if (msg_ != nullptr) natsMsg_Destroy(static_cast<natsMsg*>(msg_));
    msg_ = std::exchange(o.msg_, nullptr);
    stream_seq_ = o.stream_seq_;
    deliveries_ = o.deliveries_;
  }
  return *this;
}
std::string Message::subject() const {
  return natsMsg_GetSubject(static_cast<natsMsg*>(msg_));
}
ByteView Message::data() const {
  auto* m = static_cast<natsMsg*>(msg_);
  return {reinterpret_cast<const uint8_t*>(natsMsg_GetData(m)),
          static_cast<size_t>(natsMsg_GetDataLength(m))};
}
std::optional<std::string> Message::header(const std::string& key) const {
  const char* v = nullptr;
  if (natsMsgHeader_Get(static_cast<natsMsg*>(msg_), key.c_str(), &v) != NATS_OK || !v) {
    return std::nullopt;
  }
  return std::string(v);
}
Status Message::Ack() {
  jsErrCode js = jsErrCode(0);
  if (natsStatus s = natsMsg_AckSync(static_cast<natsMsg*>(msg_), nullptr, &js); s != NATS_OK) {
    return Failed("acknowledging message " + std::to_string(stream_seq_), s, js);
  }
  return {};
}
Status Message::Nak() {
  if (natsStatus s = natsMsg_Nak(static_cast<natsMsg*>(msg_), nullptr); s != NATS_OK) {
    return Failed("refusing message " + std::to_string(stream_seq_), s);
  }
  return {};
}
Status Message::Term() {
  if (natsStatus s = natsMsg_Term(static_cast<natsMsg*>(msg_), nullptr); s != NATS_OK) {
    return Failed("terminating message " + std::to_string(stream_seq_), s);
  }
  return {};
}

// --- PullConsumer --------------------------------------------------------------------------

PullConsumer::~PullConsumer() {
  if (sub_ != nullptr) natsSubscription_Destroy(static_cast<natsSubscription*>(sub_));
}

Result<std::vector<Message>> PullConsumer::TakeFetched(void* l, int status) {
  natsMsgList& list = *static_cast<natsMsgList*>(l);
  const auto s = static_cast<natsStatus>(status);
  std::vector<Message> out;
  if (s == NATS_TIMEOUT || s == NATS_NOT_FOUND) {
    natsMsgList_Destroy(&list);
    return out;
  }
  if (s != NATS_OK) {
    natsMsgList_Destroy(&list);
    return Failed("fetching messages", s);
  }
  out.reserve(static_cast<size_t>(list.Count));
  for (int i = 0; i < list.Count; ++i) {
    out.push_back(Message(list.Msgs[i]));
    list.Msgs[i] = nullptr;  // ours now
  }
  natsMsgList_Destroy(&list);
  return out;
}

Result<std::vector<Message>> PullConsumer::Fetch(int max, double timeout_s) {
  natsMsgList list{};
  jsErrCode js = jsErrCode(0);
  natsStatus s = natsSubscription_Fetch(&list, static_cast<natsSubscription*>(sub_),
                                        std::max(1, max), Millis(timeout_s), &js);
  if (s != NATS_OK && s != NATS_TIMEOUT && s != NATS_NOT_FOUND) {
    natsMsgList_Destroy(&list);
    return Failed("fetching messages", s, js);
  }
  return TakeFetched(&list, s);
}

// --- KeyValue ------------------------------------------------------------------------------

KeyValue::~KeyValue() {
  if (kv_ != nullptr) kvStore_Destroy(static_cast<kvStore*>(kv_));
}

Result<KvEntry> KeyValue::Get(const std::string& key) {
  kvEntry* e = nullptr;
  natsStatus s = kvStore_Get(&e, static_cast<kvStore*>(kv_), key.c_str());
  if (s != NATS_OK) return Failed("reading key " + key, s);
  KvEntry out;
  const auto* v = static_cast<const uint8_t*>(kvEntry_Value(e));
  out.value.assign(v, v + kvEntry_ValueLen(e));
  out.revision = kvEntry_Revision(e);
  kvEntry_Destroy(e);
  return out;
}

Result<uint64_t> KeyValue::Put(const std::string& key, ByteView value) {
  uint64_t rev = 0;
  natsStatus s = kvStore_Put(&rev, static_cast<kvStore*>(kv_), key.c_str(), value.data(),
                             static_cast<int>(value.size()));
  if (s != NATS_OK) return Failed("writing key " + key, s);
  return rev;
}

// Create and Update publish themselves (as libnats's kvStore_Update does) to learn the server's
// error code: a lost compare-and-set is JSStreamWrongLastSequenceErr, which kvStore_Update does
// not hand back.
Result<uint64_t> KeyValue::Update(const std::string& key, ByteView value, uint64_t last) {
  const char* bucket = kvStore_Bucket(static_cast<kvStore*>(kv_));
  jsCtx* js = Js(js_);
  jsPubOptions po;
  jsPubOptions_Init(&po);
  if (last == 0) {
    po.ExpectNoMessage = true;
  } else {
    po.ExpectLastSubjectSeq = last;
  }
  const std::string subject = std::string("$KV.") + bucket + "." + key;
  jsPubAck* ack = nullptr;
  jsErrCode jerr = jsErrCode(0);
  natsStatus s = js_Publish(&ack, js, subject.c_str(), value.data(), static_cast<int>(value.size()),
                            &po, &jerr);
  if (s != NATS_OK) return Failed("writing key " + key, s, jerr);
  const uint64_t rev = ack->Sequence;
  jsPubAck_Destroy(ack);
  return rev;
}

Result<uint64_t> KeyValue::Create(const std::string& key, ByteView value) {
  auto r = Update(key, value, 0);
  if (r || r.error().code() != Error::Code::kFailedPrecondition) return r;
  // The key's last message may be a delete marker: then the key is free, at that revision.
  auto* kv = static_cast<kvStore*>(kv_);
  const std::string subject = std::string("$KV.") + kvStore_Bucket(kv) + "." + key;
  const std::string stream = std::string("KV_") + kvStore_Bucket(kv);
  natsMsg* msg = nullptr;
  jsErrCode jerr = jsErrCode(0);
  if (js_GetLastMsg(&msg, Js(js_), stream.c_str(), subject.c_str(), nullptr, &jerr) != NATS_OK) {
    return r;
  }
  const char* op = nullptr;
  const bool deleted = natsMsgHeader_Get(msg, "KV-Operation", &op) == NATS_OK && op != nullptr &&
                       (std::strcmp(op, "DEL") == 0 || std::strcmp(op, "PURGE") == 0);
  const uint64_t seq = natsMsg_GetSequence(msg);
  natsMsg_Destroy(msg);
  if (!deleted) return r;
  return Update(key, value, seq);
}

Status KeyValue::Delete(const std::string& key) {
  if (natsStatus s = kvStore_Delete(static_cast<kvStore*>(kv_), key.c_str()); s != NATS_OK) {
    return Failed("deleting key " + key, s);
  }
  return {};
}

// From the stream's per-subject counts, not kvStore_Keys: that one builds an ordered push
// consumer, which kept timing out for minutes while a node of three was down; stream info (and
// the direct gets below) are answered by any current replica.
Result<std::vector<std::string>> KeyValue::Keys() {
  auto* kv = static_cast<kvStore*>(kv_);
  const std::string prefix = std::string("$KV.") + kvStore_Bucket(kv) + ".";
  const std::string stream = std::string("KV_") + kvStore_Bucket(kv);
  const std::string filter = prefix + ">";
  jsOptions o;
  jsOptions_Init(&o);
  o.Stream.Info.SubjectsFilter = filter.c_str();
  jsStreamInfo* si = nullptr;
  jsErrCode js = jsErrCode(0);
  if (natsStatus s = js_GetStreamInfo(&si, Js(js_), stream.c_str(), &o, &js); s != NATS_OK) {
    return Failed("listing keys", s, js);
  }
  std::vector<std::string> subjects;
  if (si->State.Subjects != nullptr) {
    for (int i = 0; i < si->State.Subjects->Count; ++i) {
      subjects.emplace_back(si->State.Subjects->List[i].Subject);
    }
  }
  jsStreamInfo_Destroy(si);
  std::vector<std::string> out;
  for (const std::string& subject : subjects) {
    if (subject.rfind(prefix, 0) != 0) continue;
    std::string key = subject.substr(prefix.size());
    auto e = Get(key);  // a deleted key's last message is its delete marker
    if (e) {
      out.push_back(std::move(key));
    } else if (e.error().code() != Error::Code::kNotFound) {
      return std::unexpected(e.error());
    }
  }
  return out;
}

// --- Connection ----------------------------------------------------------------------------

Result<std::unique_ptr<Connection>> Connection::Connect(const ConnectOptions& o) {
  if (o.servers.empty()) return InvalidArgument("no NATS server given");
  if (o.ca.empty()) return InvalidArgument("no CA file for the NATS servers' certificates");
  if (o.user.empty()) return InvalidArgument("no NATS user given");
  natsOptions* opts = nullptr;
  if (natsStatus s = natsOptions_Create(&opts); s != NATS_OK) return Failed("NATS options", s);
  std::vector<const char*> urls;
  for (const std::string& u : o.servers) urls.push_back(u.c_str());
  const std::string host = HostOf(o.servers.front());
  natsStatus s = natsOptions_SetServers(opts, urls.data(), static_cast<int>(urls.size()));
  if (s == NATS_OK) s = natsOptions_SetSecure(opts, true);
  if (s == NATS_OK) s = natsOptions_LoadCATrustedCertificates(opts, o.ca.c_str());
  // The servers' certificates name the host the client dials (IP addresses too: see
  // host/cluster, which issues them).
  if (s == NATS_OK) s = natsOptions_SetExpectedHostname(opts, host.c_str());
  if (s == NATS_OK) s = natsOptions_SetUserInfo(opts, o.user.c_str(), o.password.c_str());
  if (s == NATS_OK) s = natsOptions_SetName(opts, o.name.c_str());
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts, Millis(o.timeout_s));
  if (s == NATS_OK) s = natsOptions_SetAllowReconnect(opts, o.reconnect);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, o.reconnect ? -1 : 0);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts, 250);
  if (s != NATS_OK) {
    natsOptions_Destroy(opts);
    return Failed("NATS options", s);
  }
  std::unique_ptr<Connection> c(new Connection());
  c->options_ = o;
  natsConnection* nc = nullptr;
  s = natsConnection_Connect(&nc, opts);
  natsOptions_Destroy(opts);
  if (s != NATS_OK) return Failed("connecting to NATS at " + o.servers.front(), s);
  c->nc_ = nc;
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = Millis(o.timeout_s);
  jsCtx* js = nullptr;
  if (s = natsConnection_JetStream(&js, nc, &jo); s != NATS_OK) return Failed("JetStream", s);
  c->js_ = js;
  return c;
}

Connection::~Connection() {
  if (js_ != nullptr) jsCtx_Destroy(Js(js_));
  if (nc_ != nullptr) {
    natsConnection_Close(Nc(nc_));
    natsConnection_Destroy(Nc(nc_));
  }
}

int64_t Connection::max_payload() const {
  return natsConnection_GetMaxPayload(Nc(nc_));
}

Status Connection::EnsureStream(const StreamSpec& spec) {
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  std::vector<const char*> subjects;
  for (const std::string& x : spec.subjects) subjects.push_back(x.c_str());
  cfg.Name = spec.name.c_str();
  cfg.Subjects = subjects.data();
  cfg.SubjectsLen = static_cast<int>(subjects.size());
  cfg.Storage = js_FileStorage;
  cfg.Replicas = spec.replicas;
  cfg.Duplicates = Nanos(spec.duplicate_window_s);
  cfg.MaxBytes = spec.max_bytes;
  cfg.MaxAge = Nanos(spec.max_age_s);
  cfg.Retention = spec.work_queue ? js_WorkQueuePolicy : js_LimitsPolicy;
  cfg.AllowDirect = true;
  jsStreamInfo* si = nullptr;
  jsErrCode js = jsErrCode(0);
  natsStatus s = js_AddStream(&si, Js(js_), &cfg, nullptr, &js);
  if (s != NATS_OK && js == JSStreamNameExistErr) {
    js = jsErrCode(0);
    s = js_UpdateStream(&si, Js(js_), &cfg, nullptr, &js);
  }
  jsStreamInfo_Destroy(si);
  if (s != NATS_OK) return Failed("creating stream " + spec.name, s, js);
  return {};
}

Status Connection::DeleteStream(const std::string& name) {
  jsErrCode js = jsErrCode(0);
  if (natsStatus s = js_DeleteStream(Js(js_), name.c_str(), nullptr, &js); s != NATS_OK) {
    return Failed("deleting stream " + name, s, js);
  }
  return {};
}

Result<PubAck> Connection::Publish(
    const std::string& subject, ByteView data, const std::string& msg_id, double timeout_s,
    const std::vector<std::pair<std::string, std::string>>& headers) {
  if (static_cast<int64_t>(data.size()) > max_payload()) {
    return Fail(Error::Code::kResourceExhausted, "a message of " + std::to_string(data.size()) +
                                                     " bytes is over the servers' max_payload of " +
                                                     std::to_string(max_payload()));
  }
  natsMsg* m = nullptr;
  natsStatus s =
      natsMsg_Create(&m, subject.c_str(), nullptr, reinterpret_cast<const char*>(data.data()),
                     static_cast<int>(data.size()));
  for (const auto& [k, v] : headers) {
    if (s == NATS_OK) s = natsMsgHeader_Set(m, k.c_str(), v.c_str());
  }
  if (s != NATS_OK) {
    natsMsg_Destroy(m);
    return Failed("publishing on " + subject, s);
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = Millis(timeout_s);
  if (!msg_id.empty()) po.MsgId = msg_id.c_str();
  jsPubAck* ack = nullptr;
  jsErrCode js = jsErrCode(0);
  s = js_PublishMsg(&ack, Js(js_), m, &po, &js);
  natsMsg_Destroy(m);
  if (s != NATS_OK) return Failed("publishing on " + subject, s, js);
  PubAck out{ack->Stream ? ack->Stream : "", ack->Sequence, ack->Duplicate};
  jsPubAck_Destroy(ack);
  return out;
}

Result<uint64_t> Connection::StreamMessages(const std::string& stream) {
  jsStreamInfo* si = nullptr;
  jsErrCode js = jsErrCode(0);
  if (natsStatus s = js_GetStreamInfo(&si, Js(js_), stream.c_str(), nullptr, &js); s != NATS_OK) {
    return Failed("reading stream " + stream, s, js);
  }
  const uint64_t n = si->State.Msgs;
  jsStreamInfo_Destroy(si);
  return n;
}

namespace {
// How many of a replicated asset's peers are caught up: its leader (not among Replicas, which
// lists the other peers) and each online, current replica. A single-node asset has no Cluster.
size_t PeersCurrent(const jsClusterInfo* c) {
  size_t current = c != nullptr && c->Leader != nullptr && c->Leader[0] != '\0' ? 1 : 0;
  for (int i = 0; c != nullptr && i < c->ReplicasLen; ++i) {
    const jsPeerInfo* p = c->Replicas[i];
    current += p != nullptr && p->Current && !p->Offline ? 1 : 0;
  }
  return current;
}
}  // namespace

Result<bool> Connection::StreamReplicasCurrent(const std::string& stream, size_t replicas) {
  jsStreamInfo* si = nullptr;
  jsErrCode js = jsErrCode(0);
  if (natsStatus s = js_GetStreamInfo(&si, Js(js_), stream.c_str(), nullptr, &js); s != NATS_OK) {
    return Failed("reading stream " + stream, s, js);
  }
  const size_t current = PeersCurrent(si->Cluster);
  jsStreamInfo_Destroy(si);
  return current >= replicas;
}

Result<bool> Connection::ConsumerReplicasCurrent(const std::string& stream,
                                                 const std::string& durable, size_t replicas) {
  jsConsumerInfo* ci = nullptr;
  jsErrCode js = jsErrCode(0);
  if (natsStatus s =
          js_GetConsumerInfo(&ci, Js(js_), stream.c_str(), durable.c_str(), nullptr, &js);
      s != NATS_OK) {
    return Failed("reading consumer " + durable + " of " + stream, s, js);
  }
  const size_t current = PeersCurrent(ci->Cluster);
  jsConsumerInfo_Destroy(ci);
  return current >= replicas;
}

Result<Bytes> Connection::LastMessage(const std::string& stream, const std::string& subject,
                                      const std::string& header, std::string* header_value) {
  natsMsg* m = nullptr;
  jsErrCode js = jsErrCode(0);
  natsStatus s = js_GetLastMsg(&m, Js(js_), stream.c_str(), subject.c_str(), nullptr, &js);
  if (s != NATS_OK) return Failed("reading " + subject + " in " + stream, s, js);
  const auto* d = reinterpret_cast<const uint8_t*>(natsMsg_GetData(m));
  Bytes out(d, d + natsMsg_GetDataLength(m));
  if (header_value != nullptr) {
    const char* v = nullptr;
    *header_value = natsMsgHeader_Get(m, header.c_str(), &v) == NATS_OK && v != nullptr ? v : "";
  }
  natsMsg_Destroy(m);
  return out;
}

Result<std::unique_ptr<PullConsumer>> Connection::PullSubscribe(const std::string& stream,
                                                                const std::string& durable,
                                                                const std::string& filter_subject,
                                                                double ack_wait_s,
                                                                uint64_t start_seq) {
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream.c_str();
  so.Config.AckPolicy = js_AckExplicit;
  so.Config.AckWait = Nanos(ack_wait_s);
  so.Config.DeliverPolicy = start_seq > 0 ? js_DeliverByStartSequence : js_DeliverAll;
  so.Config.OptStartSeq = start_seq;
  so.Config.FilterSubject = filter_subject.c_str();
  natsSubscription* sub = nullptr;
  jsErrCode js = jsErrCode(0);
  natsStatus s =
      js_PullSubscribe(&sub, Js(js_), filter_subject.c_str(), durable.c_str(), nullptr, &so, &js);
  if (s != NATS_OK) return Failed("pull consumer " + durable + " on " + stream, s, js);
  return std::unique_ptr<PullConsumer>(new PullConsumer(sub));
}

Status Connection::DeleteConsumer(const std::string& stream, const std::string& durable) {
  jsErrCode js = jsErrCode(0);
  natsStatus s = js_DeleteConsumer(Js(js_), stream.c_str(), durable.c_str(), nullptr, &js);
  if (s != NATS_OK) return Failed("deleting consumer " + durable, s, js);
  return {};
}

Result<std::unique_ptr<KeyValue>> Connection::EnsureKeyValue(const KvSpec& spec) {
  kvConfig cfg;
  kvConfig_Init(&cfg);
  cfg.Bucket = spec.bucket.c_str();
  cfg.Replicas = spec.replicas;
  cfg.TTL = Nanos(spec.ttl_s);
  cfg.History = static_cast<uint8_t>(std::clamp(spec.history, 1, 64));
  cfg.MaxValueSize = spec.max_value_size;
  cfg.StorageType = js_FileStorage;
  kvStore* kv = nullptr;
  natsStatus s = js_CreateKeyValue(&kv, Js(js_), &cfg);
  if (s != NATS_OK) {
    // Made before (with this configuration, or the caller must delete it first).
    s = js_KeyValue(&kv, Js(js_), spec.bucket.c_str());
  }
  if (s != NATS_OK) return Failed("key-value bucket " + spec.bucket, s);
  return std::unique_ptr<KeyValue>(new KeyValue(kv, js_));
}

Result<Bytes> Connection::Request(const std::string& subject, ByteView data, double timeout_s) {
  natsMsg* reply = nullptr;
  natsStatus s = natsConnection_Request(&reply, Nc(nc_), subject.c_str(), data.data(),
                                        static_cast<int>(data.size()), Millis(timeout_s));
  if (s != NATS_OK) return Failed("request on " + subject, s);
  const auto* d = reinterpret_cast<const uint8_t*>(natsMsg_GetData(reply));
  Bytes out(d, d + natsMsg_GetDataLength(reply));
  natsMsg_Destroy(reply);
  return out;
}

namespace {

class ServiceImpl : public Connection::Service {
 public:
  ServiceImpl(natsConnection* nc, Connection::Handler h) : nc_(nc), handler_(std::move(h)) {}
  ~ServiceImpl() override {
    if (sub_ != nullptr) {
      natsSubscription_Unsubscribe(sub_);
      natsSubscription_Destroy(sub_);
    }
  }
  static void OnMessage(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
    auto* self = static_cast<ServiceImpl*>(closure);
    const char* reply = natsMsg_GetReply(msg);
    if (reply != nullptr) {
      ByteView req(reinterpret_cast<const uint8_t*>(natsMsg_GetData(msg)),
                   static_cast<size_t>(natsMsg_GetDataLength(msg)));
      Bytes answer = self->handler_(req);
      natsConnection_Publish(self->nc_, reply, answer.data(), static_cast<int>(answer.size()));
    }
    natsMsg_Destroy(msg);
  }
  natsConnection* nc_;
  Connection::Handler handler_;
  natsSubscription* sub_ = nullptr;
};

}  // namespace

Result<std::unique_ptr<Connection::Service>> Connection::Serve(const std::string& subject,
                                                               Handler handler) {
  auto svc = std::make_unique<ServiceImpl>(Nc(nc_), std::move(handler));
  natsStatus s = natsConnection_Subscribe(&svc->sub_, Nc(nc_), subject.c_str(),
                                          &ServiceImpl::OnMessage, svc.get());
  if (s != NATS_OK) return Failed("serving " + subject, s);
  return std::unique_ptr<Service>(std::move(svc));
}

Status Connection::PingJetStream() {
  jsAccountInfo* ai = nullptr;
  jsErrCode js = jsErrCode(0);
  if (natsStatus s = js_GetAccountInfo(&ai, Js(js_), nullptr, &js); s != NATS_OK) {
    return Failed("JetStream account", s, js);
  }
  jsAccountInfo_Destroy(ai);
  return {};
}

Status Connection::Flush(double timeout_s) {
  if (natsStatus s = natsConnection_FlushTimeout(Nc(nc_), Millis(timeout_s)); s != NATS_OK) {
    return Failed("flushing", s);
  }
  return {};
}

}  // namespace medstream::nats

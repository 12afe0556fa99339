#include "adapters/mqtt/mqtt.h"

#include "common/base/address.h"

#include <mosquitto.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

namespace medstream::mqtt {

namespace {

std::once_flag g_init;

std::string MosqError(int rc) {
  return mosquitto_strerror(rc);
}

}  // namespace

struct Client::Impl {
  mosquitto* m = nullptr;
  Handler handler;
  std::string pattern;  // re-subscribed on every (re)connection
  int qos = 1;
  std::atomic<int> connects{0};
  std::atomic<int> connack{-1};  // the first CONNACK's code, -1 until it arrives
  int connects_seen = 1;
  std::mutex mu;
  std::condition_variable cv;
  uint64_t published = 0;
  std::atomic<uint64_t> acked{0};
  std::atomic<int> subacks{0};
  std::atomic<int> refused{0};
  std::vector<std::string> extra;  // further subscriptions, same handler
  std::atomic<bool> stop{false};
  std::thread network;

  void NetworkLoop();
};

// The network thread. libmosquitto's own (mosquitto_loop_start) ends for good on errors it deems
// fatal, a TLS error among them, and a broker stopped in the middle of a TLS record is one: after
// that nothing is sent or received and publishers wait forever. This loop treats every error as a
// lost connection and reconnects, 0.25 s after the first failure and then up to every 2 s, until
// the client is destroyed.
void Client::Impl::NetworkLoop() {
  Impl* i = this;
  int delay_ms = 250;
  while (!i->stop.load()) {
    const int rc = mosquitto_loop(i->m, 100, 1);
    if (rc == MOSQ_ERR_SUCCESS) {
      delay_ms = 250;
      continue;
    }
    if (i->stop.load()) break;
    {
      std::unique_lock lock(i->mu);
      i->cv.wait_for(lock, std::chrono::milliseconds(delay_ms), [&] { return i->stop.load(); });
    }
    if (i->stop.load()) break;
    delay_ms = std::min(2000, delay_ms * 2);
    mosquitto_reconnect(i->m);  // a failure shows in the next mosquitto_loop, and is retried
  }
}

Result<std::unique_ptr<Client>> Client::Connect(const Options& o) {
  std::call_once(g_init, [] { mosquitto_lib_init(); });
  const std::string& host = o.host;
  const int port = o.port;
  for (const auto& [what, path] : {std::pair{"--ca (the broker's CA certificate)", o.tls.ca},
                                   {"--cert (this client's certificate)", o.tls.cert},
                                   {"--key (this client's private key)", o.tls.key}}) {
    if (path.empty()) {
      return InvalidArgument(std::string("MQTT over TLS needs ") + what +
                             "; `medstream broker init` and `medstream broker enroll` make them");
    }
    if (access(path.c_str(), R_OK) != 0) {
      return InvalidArgument(std::string(what) + ": cannot read " + path + ": " +
                             std::strerror(errno));
    }
  }
  std::optional<Subscription> subscription = o.subscription;
  std::unique_ptr<Client> c(new Client);
  c->impl_ = std::make_unique<Impl>();
  Impl* impl = c->impl_.get();
  if (subscription) {
    impl->handler = std::move(subscription->handler);
    impl->pattern = subscription->pattern;
    impl->qos = subscription->qos;
  }
  impl->extra = o.also_subscribe;
  impl->m = mosquitto_new(o.client_id.c_str(), o.clean_session, impl);
  if (!impl->m) return Fail(Error::Code::kInternal, "mosquitto_new failed");
  // Verify the broker (its chain to our CA, and its name against `host`), and present our own
  // certificate: the broker takes our identity from it.
  if (const int trc = mosquitto_tls_set(impl->m, o.tls.ca.c_str(), nullptr, o.tls.cert.c_str(),
                                        o.tls.key.c_str(), nullptr);
      trc != MOSQ_ERR_SUCCESS) {
    return InvalidArgument("MQTT TLS files (" + o.tls.ca + ", " + o.tls.cert + ", " + o.tls.key +
                           "): " + MosqError(trc));
  }
  mosquitto_tls_opts_set(impl->m, /*SSL_VERIFY_PEER*/ 1, "tlsv1.2", nullptr);
  mosquitto_tls_insecure_set(impl->m, false);
  mosquitto_int_option(impl->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
  mosquitto_max_inflight_messages_set(impl->m, 1000);
  // After a broker restart the network thread reconnects (NetworkLoop); subscribe again each time.
  mosquitto_connect_callback_set(impl->m, [](mosquitto* m, void* obj, int rc) {
    auto* i = static_cast<Impl*>(obj);
    if (rc == 0) i->connects.fetch_add(1);
    if (i->connack.load() < 0) {
      std::lock_guard lock(i->mu);
      i->connack = rc;
      i->cv.notify_all();
    }
    if (rc == 0 && !i->pattern.empty()) {
      mosquitto_subscribe(m, nullptr, i->pattern.c_str(), i->qos);
      for (const std::string& p : i->extra) mosquitto_subscribe(m, nullptr, p.c_str(), i->qos);
    }
  });
  mosquitto_subscribe_callback_set(impl->m,
                                   [](mosquitto*, void* obj, int, int count, const int* granted) {
                                     auto* i = static_cast<Impl*>(obj);
                                     // 0x80: the broker refused the subscription (its ACL).
                                     for (int k = 0; k < count; ++k) {
                                       if (granted[k] >= 0x80) i->refused.fetch_add(1);
                                     }
                                     std::lock_guard lock(i->mu);
                                     i->subacks.fetch_add(1);
                                     i->cv.notify_all();
                                   });
  if (std::getenv("MEDSTREAM_MQTT_DEBUG")) {
    // libmosquitto's own log, for finding out why a connection fails.
    mosquitto_log_callback_set(impl->m, [](mosquitto*, void*, int, const char* line) {
      std::fprintf(stderr, "mqtt: %s\n", line);
    });
  }
  // Our own network thread calls mosquitto_loop (NetworkLoop), other threads publish.
  mosquitto_threaded_set(impl->m, true);
  mosquitto_publish_callback_set(impl->m, [](mosquitto*, void* obj, int) {
    auto* i = static_cast<Impl*>(obj);
    // Counted under the lock Flush waits with: counted and notified between Flush's check and
    // its wait, the wake-up was lost and Flush slept its whole timeout (a sensor run once took
    // 30 s longer than its messages, all of them acknowledged).
    std::lock_guard lock(i->mu);
    i->acked.fetch_add(1);
    i->cv.notify_all();
  });
  mosquitto_message_callback_set(impl->m, [](mosquitto*, void* obj, const mosquitto_message* msg) {
    auto* i = static_cast<Impl*>(obj);
    if (!i->handler) return;
    i->handler({msg->topic,
                {static_cast<const uint8_t*>(msg->payload), static_cast<size_t>(msg->payloadlen)},
                msg->retain});
  });
  const std::string where = "the MQTT broker at " + host + ":" + std::to_string(port);
  const std::string refused_tls = "TLS with " + where +
                                  " failed: its certificate is not from our CA (--ca " + o.tls.ca +
                                  ") or does not name " + host + ", or it refused ours (--cert " +
                                  o.tls.cert + ": not from its CA?)";
  int rc = mosquitto_connect(impl->m, host.c_str(), port, 30);
  if (rc == MOSQ_ERR_ERRNO && errno == ECONNREFUSED) {
    return Fail(Error::Code::kNotFound,
                "cannot connect to " + where + ": nothing listens there (is Mosquitto running?)");
  }
  if (rc == MOSQ_ERR_TLS || rc == MOSQ_ERR_ERRNO) {
    return Fail(Error::Code::kPermissionDenied, refused_tls + " (" + MosqError(rc) + ")");
  }
  if (rc != MOSQ_ERR_SUCCESS) {
    return Fail(Error::Code::kNotFound, "cannot connect to " + where + ": " + MosqError(rc));
  }
  // The handshake and the CONNACK on this thread, before the network thread takes over: a failure
  // here is reported (libmosquitto's own loop would only retry it in silence).
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (impl->connack.load() < 0 && std::chrono::steady_clock::now() < until) {
    rc = mosquitto_loop(impl->m, 100, 1);
    if (rc != MOSQ_ERR_SUCCESS) {
      return Fail(Error::Code::kPermissionDenied,
                  where + " closed the connection before accepting it. " + refused_tls + " (" +
                      MosqError(rc) + ")");
    }
  }
  if (impl->connack.load() < 0) {
    return Fail(Error::Code::kIo, where +
                                      " did not answer the connection within 10 s (is it an "
                                      "MQTT over TLS listener?)");
  }
  impl->network = std::thread([impl] { impl->NetworkLoop(); });
  std::unique_lock lock(impl->mu);
  if (impl->connack != 0) {
    return Fail(Error::Code::kPermissionDenied,
                where + " refused the connection: " + mosquitto_connack_string(impl->connack));
  }
  if (subscription) {
    // Subscribed means the broker has confirmed it: from then on nothing published is missed.
    const int want = 1 + static_cast<int>(impl->extra.size());
    if (!impl->cv.wait_for(lock, std::chrono::seconds(10), [&] { return impl->subacks >= want; })) {
      return Fail(Error::Code::kIo, "the MQTT broker did not confirm the subscription to " +
                                        impl->pattern + " within 10 s");
    }
    if (impl->refused > 0) {
      return Fail(Error::Code::kPermissionDenied,
                  where + " refused the subscription to " + impl->pattern +
                      " (its ACL: is this client's certificate the gateway's?)");
    }
  }
  lock.unlock();
  return c;
}

Client::~Client() {
  if (!impl_ || !impl_->m) return;
  {
    std::lock_guard lock(impl_->mu);
    impl_->stop = true;
    impl_->cv.notify_all();
  }
  mosquitto_disconnect(impl_->m);
  if (impl_->network.joinable()) impl_->network.join();
  mosquitto_destroy(impl_->m);
}

Status Client::Publish(const std::string& topic, std::span<const uint8_t> payload, int qos,
                       bool retain) {
  // While the broker is away (a restart), libmosquitto refuses new messages until its network
  // thread has reconnected: hold on to this one and retry, for up to a minute, rather than drop it.
  // After a reconnection, messages in flight before it are sent again by the network thread; let
  // them be acknowledged before anything newer goes out, so a topic's messages stay in order.
  if (impl_->connects.load() != impl_->connects_seen && impl_->connects.load() > 0) {
    if (auto s = Flush(30000); !s) return s;
    impl_->connects_seen = impl_->connects.load();
  }
  int rc = MOSQ_ERR_NO_CONN;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (;;) {
    rc = mosquitto_publish(impl_->m, nullptr, topic.c_str(), static_cast<int>(payload.size()),
                           payload.data(), qos, retain);
    if (rc != MOSQ_ERR_NO_CONN || std::chrono::steady_clock::now() > until) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (rc != MOSQ_ERR_SUCCESS) {
    return Fail(Error::Code::kIo, "MQTT publish to " + topic + ": " + MosqError(rc));
  }
  std::lock_guard lock(impl_->mu);
  if (qos > 0) ++impl_->published;
  return {};
}

Status Client::Subscribe(const std::string& pattern, int qos, Handler handler) {
  impl_->handler = std::move(handler);
  impl_->pattern = pattern;
  impl_->qos = qos;
  const int rc = mosquitto_subscribe(impl_->m, nullptr, pattern.c_str(), qos);
  if (rc != MOSQ_ERR_SUCCESS) return Fail(Error::Code::kIo, "MQTT subscribe: " + MosqError(rc));
  return {};
}

Status Client::Resubscribe(const std::string& pattern, int timeout_ms) {
  // Unsubscribed first: the broker sends retained messages on a subscription it did not have.
  std::unique_lock lock(impl_->mu);
  const int before = impl_->subacks.load();
  lock.unlock();
  mosquitto_unsubscribe(impl_->m, nullptr, pattern.c_str());
  const int rc = mosquitto_subscribe(impl_->m, nullptr, pattern.c_str(), impl_->qos);
  if (rc != MOSQ_ERR_SUCCESS) return Fail(Error::Code::kIo, "MQTT subscribe: " + MosqError(rc));
  if (timeout_ms <= 0) return {};
  lock.lock();
  if (!impl_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                          [&] { return impl_->subacks.load() > before; })) {
    return Fail(Error::Code::kIo, "the MQTT broker did not confirm the subscription to " + pattern);
  }
  return {};
}

Status Client::Flush(int timeout_ms) {
  std::unique_lock lock(impl_->mu);
  const bool ok = impl_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                                     [&] { return impl_->acked.load() >= impl_->published; });
  if (!ok) {
    return Fail(Error::Code::kIo, "MQTT broker acknowledged " +
                                      std::to_string(impl_->acked.load()) + " of " +
                                      std::to_string(impl_->published) + " messages");
  }
  return {};
}

uint64_t Client::acknowledged() const {
  return impl_->acked.load();
}

Result<std::pair<std::string, int>> ParseAddress(const std::string& address) {
  auto hp = ParseHostPort(address, "broker address", {.default_port = 1883});
  if (!hp) return std::unexpected(hp.error());
  return std::make_pair(hp->host, hp->port);
}

}  // namespace medstream::mqtt

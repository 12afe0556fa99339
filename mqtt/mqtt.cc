#include "mqtt/mqtt.h"

#include "base/address.h"

#include <mosquitto.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
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
  int connects_seen = 1;
  std::mutex mu;
  std::condition_variable cv;
  uint64_t published = 0;
  std::atomic<uint64_t> acked{0};
  std::atomic<int> subacks{0};
};

Result<std::unique_ptr<Client>> Client::Connect(const std::string& host, int port,
                                                const std::string& client_id, bool clean_session,
                                                std::optional<Subscription> subscription) {
  std::call_once(g_init, [] { mosquitto_lib_init(); });
  std::unique_ptr<Client> c(new Client);
  c->impl_ = std::make_unique<Impl>();
  Impl* impl = c->impl_.get();
  if (subscription) {
    impl->handler = std::move(subscription->handler);
    impl->pattern = subscription->pattern;
    impl->qos = subscription->qos;
  }
  impl->m = mosquitto_new(client_id.c_str(), clean_session, impl);
  if (!impl->m) return Fail(Error::Code::kInternal, "mosquitto_new failed");
  mosquitto_int_option(impl->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
  mosquitto_max_inflight_messages_set(impl->m, 1000);
  // After a broker restart libmosquitto reconnects by itself; subscribe again each time.
  mosquitto_connect_callback_set(impl->m, [](mosquitto* m, void* obj, int rc) {
    auto* i = static_cast<Impl*>(obj);
    if (rc == 0) i->connects.fetch_add(1);
    if (rc == 0 && !i->pattern.empty()) mosquitto_subscribe(m, nullptr, i->pattern.c_str(), i->qos);
  });
  mosquitto_subscribe_callback_set(impl->m, [](mosquitto*, void* obj, int, int, const int*) {
    auto* i = static_cast<Impl*>(obj);
    i->subacks.fetch_add(1);
    i->cv.notify_all();
  });
  mosquitto_reconnect_delay_set(impl->m, 1, 2, false);
  mosquitto_publish_callback_set(impl->m, [](mosquitto*, void* obj, int) {
    auto* i = static_cast<Impl*>(obj);
    i->acked.fetch_add(1);
    i->cv.notify_all();
  });
  mosquitto_message_callback_set(impl->m, [](mosquitto*, void* obj, const mosquitto_message* msg) {
    auto* i = static_cast<Impl*>(obj);
    if (!i->handler) return;
    i->handler({msg->topic,
                {static_cast<const uint8_t*>(msg->payload), static_cast<size_t>(msg->payloadlen)}});
  });
  const int rc = mosquitto_connect(impl->m, host.c_str(), port, 30);
  if (rc != MOSQ_ERR_SUCCESS) {
    return Fail(Error::Code::kNotFound, "cannot connect to the MQTT broker at " + host + ":" +
                                            std::to_string(port) + ": " + MosqError(rc));
  }
  if (const int lrc = mosquitto_loop_start(impl->m); lrc != MOSQ_ERR_SUCCESS) {
    return Fail(Error::Code::kInternal, "MQTT network thread: " + MosqError(lrc));
  }
  if (subscription) {
    // Subscribed means the broker has confirmed it: from then on nothing published is missed.
    std::unique_lock lock(impl->mu);
    if (!impl->cv.wait_for(lock, std::chrono::seconds(10), [&] { return impl->subacks > 0; })) {
      return Fail(Error::Code::kIo, "the MQTT broker did not confirm the subscription to " +
                                        impl->pattern + " within 10 s");
    }
  }
  return c;
}

Client::~Client() {
  if (!impl_ || !impl_->m) return;
  mosquitto_disconnect(impl_->m);
  mosquitto_loop_stop(impl_->m, false);
  mosquitto_destroy(impl_->m);
}

Status Client::Publish(const std::string& topic, std::span<const uint8_t> payload, int qos) {
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
                           payload.data(), qos, false);
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

#include "mqtt/mqtt.h"

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
  std::mutex mu;
  std::condition_variable cv;
  uint64_t published = 0;
  std::atomic<uint64_t> acked{0};
};

Result<std::unique_ptr<Client>> Client::Connect(const std::string& host, int port,
                                                const std::string& client_id, bool clean_session) {
  std::call_once(g_init, [] { mosquitto_lib_init(); });
  std::unique_ptr<Client> c(new Client);
  c->impl_ = std::make_unique<Impl>();
  Impl* impl = c->impl_.get();
  impl->m = mosquitto_new(client_id.c_str(), clean_session, impl);
  if (!impl->m) return Fail(Error::Code::kInternal, "mosquitto_new failed");
  mosquitto_int_option(impl->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
  mosquitto_max_inflight_messages_set(impl->m, 1000);
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
  return c;
}

Client::~Client() {
  if (!impl_ || !impl_->m) return;
  mosquitto_disconnect(impl_->m);
  mosquitto_loop_stop(impl_->m, false);
  mosquitto_destroy(impl_->m);
}

Status Client::Publish(const std::string& topic, std::span<const uint8_t> payload, int qos) {
  const int rc = mosquitto_publish(impl_->m, nullptr, topic.c_str(),
                                   static_cast<int>(payload.size()), payload.data(), qos, false);
  if (rc != MOSQ_ERR_SUCCESS) {
    return Fail(Error::Code::kIo, "MQTT publish to " + topic + ": " + MosqError(rc));
  }
  std::lock_guard lock(impl_->mu);
  if (qos > 0) ++impl_->published;
  return {};
}

Status Client::Subscribe(const std::string& pattern, int qos, Handler handler) {
  impl_->handler = std::move(handler);
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
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return std::make_pair(address, 1883);
  try {
    const int port = std::stoi(address.substr(colon + 1));
    if (port <= 0 || port > 65535) throw std::out_of_range("port");
    return std::make_pair(address.substr(0, colon), port);
  } catch (const std::exception&) {
    return InvalidArgument("bad broker address '" + address + "': expected host:port");
  }
}

}  // namespace medstream::mqtt

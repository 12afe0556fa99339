// The gateway's side of attestation (gateway.h): the one enclave of a server, attested and
// provisioned at start, and a cluster's workers, attested on the gateway's provisioning thread
// (ProvisionLoop) several at once, outside the lock its main loop and message callback take.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "common/base/file.h"
#include "owner/gateway/gateway.h"

namespace medstream::gateway {

Status Gateway::AttestAndProvision() {
  MEDSTREAM_TRY(relay, link_->Relay());
  return AttestAndProvision(*relay);
}

Status Gateway::AttestAndProvision(host::EnclaveTransport& relay) {
  MEDSTREAM_TRY(pem, ReadFileText(options_.root_ca));
  MEDSTREAM_TRY(root, crypto::Certificate::FromPem(pem));
  auto session = client::Attest(relay, {.root = &root, .policy = options_.policy});
  if (!session) return std::unexpected(std::move(session.error()).With("attesting the enclave"));
  {
    std::lock_guard lock(mu_);
    claims_ = session->claims;
  }
  enclave::ProvisionKey p;
  p.key_id = keys_.key_id();
  p.key = keys_.data_key();
  p.config = options_.config;
  return client::Provision(relay, *session, p);
}

void Gateway::ProvisionWorkers() {
  auto fresh = link_->NewEnclaves();
  if (!fresh) {
    // Every scan (twice a second) while the cluster cannot be reached: once in 10 s.
    SayRepeated("list-workers", "listing the cluster's workers: " + fresh.error().message());
    return;
  }
  // Every worker registered and not attested yet: one seen for the first time is due now, behind
  // the ones due before it; one that could not be reached is due once its delay is over. Workers
  // no longer registered (their registration expired) are forgotten, so that names a hostile
  // holder of the worker role makes up and drops do not pile up here.
  const auto now = std::chrono::steady_clock::now();
  std::map<std::string, WorkerRetry> registered;
  for (const std::string& name : *fresh) {
    auto known = worker_retry_.find(name);
    registered[name] = known != worker_retry_.end() ? known->second : WorkerRetry{.next = now};
  }
  worker_retry_ = std::move(registered);
  std::vector<std::pair<std::chrono::steady_clock::time_point, std::string>> due;
  for (const auto& [name, r] : worker_retry_) {
    if (now >= r.next) due.emplace_back(r.next, name);
  }
  std::stable_sort(due.begin(), due.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  // At most kParallelAttestations a scan, each on a thread of its own, each outcome taken as it
  // comes: one that never answers costs the others nothing but its thread, and a scan lasts at
  // most one request's limit (the next scan takes the ones seen meanwhile in their turn).
  const size_t n = std::min(kParallelAttestations, due.size());
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<size_t, Status>> done;  // under mu
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      auto relay = link_->RelayTo(due[i].second);
      Status s = relay ? AttestAndProvision(**relay) : Status(std::unexpected(relay.error()));
      std::lock_guard lock(mu);
      done.emplace_back(i, std::move(s));
      cv.notify_one();
    });
  }
  for (size_t taken = 0; taken < n;) {
    std::vector<std::pair<size_t, Status>> now_done;
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return !done.empty(); });
      now_done.swap(done);
    }
    for (const auto& [i, s] : now_done) Provisioned(due[i].second, s);
    taken += now_done.size();
  }
  for (std::thread& t : threads) t.join();
  size_t unreachable = 0;
  for (const auto& [name, r] : worker_retry_) unreachable += r.delay.count() > 0;
  std::lock_guard lock(mu_);
  stats_.workers_unreachable = unreachable;
}

void Gateway::Provisioned(const std::string& name, const Status& s) {
  std::lock_guard lock(mu_);  // stats_
  if (s) {
    ++stats_.workers_attested;
    std::fprintf(stderr, "gateway: worker %s attested and provisioned\n", name.c_str());
    link_->Attested(name);
    worker_retry_.erase(name);
  } else if (s.error().code() == Error::Code::kIo ||
             s.error().code() == Error::Code::kDeadlineExceeded) {
    // Not reachable now: asked again later, less often each time, so that workers that never
    // answer cost the other workers' provisioning little.
    WorkerRetry& r = worker_retry_[name];
    r.delay = std::min<std::chrono::milliseconds>(
        kMaxWorkerRetry, r.delay.count() == 0 ? std::chrono::seconds(1) : 2 * r.delay);
    r.next = std::chrono::steady_clock::now() + r.delay;
    std::fprintf(
        stderr, "gateway: worker %s: %s (asked again in %lld s)\n", name.c_str(),
        s.error().message().c_str(),
        static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(r.delay).count()));
  } else {
    // Refused by the policy (or it failed the protocol): it gets no key, and is not asked again
    // until it restarts. Its partitions go to workers that do have the key.
    ++stats_.workers_refused;
    std::fprintf(stderr, "gateway: worker %s refused, no key given: %s\n", name.c_str(),
                 s.error().message().c_str());
    link_->Attested(name);
    worker_retry_.erase(name);
  }
}

void Gateway::ProvisionLoop() {
  for (;;) {
    ProvisionWorkers();
    std::unique_lock lock(provision_mu_);
    if (provision_cv_.wait_for(lock, kWorkerScanInterval, [this] { return provision_stop_; })) {
      return;
    }
  }
}

}  // namespace medstream::gateway

// The NATS JetStream cluster medstream scales out on, as host/cluster sets it up, with real
// nats-server processes (Debian's package) on loopback: TLS on the client and route hops,
// passwords, a stream replicated on 3 nodes that deduplicates by message id, durable pull
// consumers, key-value compare-and-set with expiry (the leases' primitive), and a node killed
// -9 mid-stream then restarted without a message lost or doubled.
#include "host/cluster/cluster.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "common/base/file.h"
#include "tests/wait.h"

namespace medstream::cluster {
namespace {

namespace fs = std::filesystem;

nats::ByteView View(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
std::string Text(nats::ByteView b) {
  return std::string(b.begin(), b.end());
}

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ms-cluster-" + std::to_string(getpid()) + "-" + std::to_string(counter_++));
    fs::remove_all(dir_);
    ASSERT_TRUE(Init({.dir = dir_.string(), .now = time(nullptr)}));
    auto c = LocalCluster::Start(dir_.string());
    ASSERT_TRUE(c) << c.error().message();
    cluster_ = std::move(*c);
  }
  void TearDown() override {
    cluster_.reset();
    // A failed run keeps the nodes' logs (node*/nats.log): a cluster's failure is read there.
    if (HasFailure()) {
      std::fprintf(stderr, "kept the cluster's folder for its logs: %s\n", dir_.c_str());
      return;
    }
    fs::remove_all(dir_);
  }
  std::unique_ptr<nats::Connection> Connect(const std::string& role) {
    auto o = ClientOptions(dir_.string(), role);
    EXPECT_TRUE(o) << o.error().message();
    if (!o) return nullptr;
    auto c = nats::Connection::Connect(*o);
    EXPECT_TRUE(c) << c.error().message();
    return c ? std::move(*c) : nullptr;
  }
  static inline int counter_ = 0;
  fs::path dir_;
  std::unique_ptr<LocalCluster> cluster_;
};

// Regression: a damaged cluster.txt threw std::invalid_argument out of std::stoi (the process
// died). It is refused as kCorrupt, naming the line; a good file still loads.
TEST(ClusterFile, ADamagedNodeListIsRefusedNotThrown) {
  const fs::path dir = fs::temp_directory_path() / ("ms-cluster-file-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string file = (dir / "cluster.txt").string();
  ASSERT_TRUE(WriteFileAtomic(file, "tls://localhost:4222 6222\ntls://localhost:4223 6223\n"));
  auto good = Load(dir.string());
  ASSERT_TRUE(good) << good.error().message();
  ASSERT_EQ(good->nodes.size(), 2u);
  EXPECT_EQ(good->nodes[1].client_port, 4223);
  EXPECT_EQ(good->nodes[1].route_port, 6223);
  for (const char* bad :
       {"tls://localhost:abc 6222\n", "tls://localhost 6222\n", "tls://localhost:4222 x\n",
        "tls://localhost:70000 6222\n", "tls://localhost:4222 0\n", "tls://localhost:4222\n",
        "tls://localhost:4222 6222 7\n", "tls://localhost:99999999999999 1\n"}) {
    ASSERT_TRUE(WriteFileAtomic(file, std::string("tls://localhost:4222 6222\n") + bad));
    auto r = Load(dir.string());
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), Error::Code::kCorrupt) << r.error().message();
  }
  fs::remove_all(dir);
}

TEST_F(ClusterTest, SetUpIsTlsOnlyWithPrivateSecrets) {
  const Info info = *Load(dir_.string());
  ASSERT_EQ(info.nodes.size(), 3u);
  EXPECT_EQ(fs::status(dir_ / "private").permissions() & fs::perms::all, fs::perms::owner_all);
  EXPECT_EQ(fs::status(dir_ / "users" / "worker.password").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(fs::status(info.nodes[0].config).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  // A plain TCP client gets the server's INFO, which demands TLS before anything else.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(info.nodes[0].client_port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  char buf[2048] = {};
  const ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  ASSERT_GT(n, 0);
  EXPECT_NE(std::string(buf).find("\"tls_required\":true"), std::string::npos) << buf;
  EXPECT_NE(std::string(buf).find("\"auth_required\":true"), std::string::npos) << buf;
}

TEST_F(ClusterTest, ClientsNeedTheRightPasswordAndCa) {
  auto o = *ClientOptions(dir_.string(), kWorkerRole);
  o.reconnect = false;
  o.timeout_s = 2;
  auto wrong = o;
  wrong.password = "not-the-password";
  auto c = nats::Connection::Connect(wrong);
  ASSERT_FALSE(c);
  // Another CA (a man in the middle's): the client refuses the node's certificate.
  const std::string other = (dir_ / "other").string();
  ASSERT_TRUE(Init({.dir = other, .nodes = 1, .now = time(nullptr)}));
  auto foreign = o;
  foreign.ca = other + "/ca.crt";
  auto f = nats::Connection::Connect(foreign);
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().code(), Error::Code::kIo) << f.error().message();
  EXPECT_TRUE(nats::Connection::Connect(o)) << "the right credentials connect";
}

TEST_F(ClusterTest, ReplicatedStreamDeduplicatesAndDeliversOnceInOrder) {
  auto gw = Connect(kGatewayRole);
  auto worker = Connect(kWorkerRole);
  ASSERT_TRUE(gw && worker);
  ASSERT_TRUE(gw->EnsureStream({.name = "T", .subjects = {"t.>"}, .replicas = 3}));
  for (int i = 1; i <= 50; ++i) {
    auto ack = gw->Publish("t.p" + std::to_string(i % 4), View("m" + std::to_string(i)),
                           "id-" + std::to_string(i), 5);
    ASSERT_TRUE(ack) << ack.error().message();
    EXPECT_FALSE(ack->duplicate);
    EXPECT_EQ(ack->sequence, static_cast<uint64_t>(i));
  }
  // Sent again (a gateway that crashed before it dropped its spool): the stream keeps one.
  for (int i = 1; i <= 50; i += 7) {
    auto ack = gw->Publish("t.p" + std::to_string(i % 4), View("m" + std::to_string(i)),
                           "id-" + std::to_string(i), 5);
    ASSERT_TRUE(ack);
    EXPECT_TRUE(ack->duplicate);
  }
  EXPECT_EQ(*gw->StreamMessages("T"), 50u);
  // One partition's durable consumer sees its messages once, in order.
  auto sub = worker->PullSubscribe("T", "part-1", "t.p1", 30);
  ASSERT_TRUE(sub) << sub.error().message();
  std::vector<std::string> got;
  while (true) {
    auto batch = (*sub)->Fetch(10, 1);
    ASSERT_TRUE(batch) << batch.error().message();
    if (batch->empty()) break;
    for (nats::Message& m : *batch) {
      got.push_back(Text(m.data()));
      EXPECT_EQ(m.deliveries(), 1u);
      ASSERT_TRUE(m.Ack());
    }
  }
  std::vector<std::string> want;
  for (int i = 1; i <= 50; ++i) {
    if (i % 4 == 1) want.push_back("m" + std::to_string(i));
  }
  EXPECT_EQ(got, want);
  // A message not acknowledged is delivered again after the ack wait (a worker that died).
  ASSERT_TRUE(gw->Publish("t.p1", View("again"), "id-again", 5));
  auto short_wait = worker->PullSubscribe("T", "part-1b", "t.p1", 1);
  ASSERT_TRUE(short_wait);
  auto first = (*short_wait)->Fetch(100, 2);
  ASSERT_TRUE(first && !first->empty());
  const uint64_t last_seq = first->back().stream_sequence();
  first->clear();  // not acknowledged
  std::optional<uint64_t> redelivered;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        auto again = (*short_wait)->Fetch(100, 0.5);
        for (nats::Message& m : *again) {
          if (m.stream_sequence() == last_seq) redelivered = m.deliveries();
          (void)m.Ack();
        }
        return redelivered.has_value();
      },
      10));
  EXPECT_EQ(*redelivered, 2u);
  // Over the nodes' max_payload: refused before sending, with a code.
  std::string big(static_cast<size_t>(gw->max_payload()) + 1, 'x');
  auto over = gw->Publish("t.p0", View(big), "big", 5);
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code(), Error::Code::kResourceExhausted);
}

TEST_F(ClusterTest, KeyValueCompareAndSetWithExpiry) {
  auto a = Connect(kWorkerRole);
  auto b = Connect(kWorkerRole);
  ASSERT_TRUE(a && b);
  // The TTL leaves room for the steps before the expiry check on a loaded 2-core machine (with
  // 2 s, one full-suite run saw the entry expire before the renewal).
  auto kva = a->EnsureKeyValue({.bucket = "leases", .replicas = 3, .ttl_s = 5});
  ASSERT_TRUE(kva) << kva.error().message();
  auto kvb = b->EnsureKeyValue({.bucket = "leases", .replicas = 3, .ttl_s = 5});
  ASSERT_TRUE(kvb) << kvb.error().message();
  auto mine = (*kva)->Create("p7", View("a"));
  ASSERT_TRUE(mine) << mine.error().message();
  auto theirs = (*kvb)->Create("p7", View("b"));
  ASSERT_FALSE(theirs);
  EXPECT_EQ(theirs.error().code(), Error::Code::kFailedPrecondition) << theirs.error().message();
  auto renewed = (*kva)->Update("p7", View("a"), *mine);
  ASSERT_TRUE(renewed) << renewed.error().message();
  // A stale revision (a paused owner that did not see the renewal) loses.
  auto stale = (*kvb)->Update("p7", View("b"), *mine);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code(), Error::Code::kFailedPrecondition);
  // A read may be served by any replica (the buckets allow direct gets), so one connection sees
  // another's write a moment later: waited for, not assumed (a loaded full-suite run read the
  // entry after its delete). Writes that depend on a read are compare-and-set at the leader, so a
  // stale read only makes one fail.
  EXPECT_TRUE(testing::WaitFor(
      [&] {
        auto read = (*kvb)->Get("p7");
        return read && Text(read->value) == "a" && read->revision == *renewed;
      },
      20));
  // Not renewed: the entry expires and another may create it.
  ASSERT_TRUE(
      testing::WaitFor([&] { return static_cast<bool>((*kvb)->Create("p7", View("b"))); }, 20));
  auto reads = [&](const char* want) {
    return testing::WaitFor(
        [&] {
          auto e = (*kva)->Get("p7");
          return want ? e && Text(e->value) == want
                      : !e && e.error().code() == Error::Code::kNotFound;
        },
        20);
  };
  EXPECT_TRUE(reads("b"));
  // Deleted: free again.
  ASSERT_TRUE((*kvb)->Delete("p7"));
  EXPECT_TRUE(reads(nullptr));
  EXPECT_TRUE((*kva)->Create("p7", View("a")));
}

TEST_F(ClusterTest, ANodeKilledMidStreamLosesNothing) {
  auto gw = Connect(kGatewayRole);
  ASSERT_TRUE(gw);
  ASSERT_TRUE(gw->EnsureStream({.name = "K", .subjects = {"k.>"}, .replicas = 3}));
  // Publish as the gateway does: retry until acknowledged, with the same message id.
  auto publish = [&](int i) {
    for (int attempt = 0; attempt < 200; ++attempt) {
      auto ack = gw->Publish("k.p" + std::to_string(i % 3), View("m" + std::to_string(i)),
                             "id-" + std::to_string(i), 2);
      if (ack) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  };
  for (int i = 1; i <= 100; ++i) ASSERT_TRUE(publish(i));
  ASSERT_TRUE(cluster_->Kill(0, SIGKILL));
  for (int i = 101; i <= 200; ++i) ASSERT_TRUE(publish(i)) << i;
  ASSERT_TRUE(cluster_->Restart(0));
  for (int i = 201; i <= 300; ++i) ASSERT_TRUE(publish(i)) << i;
  // Re-sent after the restart: still deduplicated.
  for (int i = 150; i <= 160; ++i) ASSERT_TRUE(publish(i));
  auto n = gw->StreamMessages("K");
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(*n, 300u);
  auto worker = Connect(kWorkerRole);
  ASSERT_TRUE(worker);
  std::multiset<std::string> got;
  for (int p = 0; p < 3; ++p) {
    // Right after a node's restart the cluster may take seconds to answer a consumer's creation
    // or a fetch (leaders moving): asked again until it does, as a worker does at its next round.
    Result<std::unique_ptr<nats::PullConsumer>> sub =
        Fail(Error::Code::kDeadlineExceeded, "not tried");
    ASSERT_TRUE(testing::WaitFor(
        [&] {
          sub = worker->PullSubscribe("K", "part-" + std::to_string(p), "k.p" + std::to_string(p),
                                      30);
          return sub.has_value();
        },
        60))
        << sub.error().message();
    size_t mine = 0;
    ASSERT_TRUE(testing::WaitFor(
        [&] {
          auto batch = (*sub)->Fetch(50, 1);
          if (!batch) return false;
          for (nats::Message& m : *batch) {
            got.insert(Text(m.data()));
            ++mine;
            EXPECT_TRUE(m.Ack());
          }
          return mine >= 100;
        },
        60))
        << "partition " << p << ": " << mine << " of 100";
    auto extra = (*sub)->Fetch(50, 1);
    ASSERT_TRUE(extra);
    EXPECT_TRUE(extra->empty()) << "more than each message once";
  }
  ASSERT_EQ(got.size(), 300u);
  for (int i = 1; i <= 300; ++i) EXPECT_EQ(got.count("m" + std::to_string(i)), 1u) << i;
}

}  // namespace
}  // namespace medstream::cluster

namespace medstream::cluster {
namespace {

TEST_F(ClusterTest, ConsumersAndKeysWorkWhileANodeIsDown) {
  auto gw = Connect(kGatewayRole);
  ASSERT_TRUE(gw);
  ASSERT_TRUE(gw->EnsureStream({.name = "D", .subjects = {"d.>"}, .replicas = 3}));
  auto kv = gw->EnsureKeyValue({.bucket = "dk", .replicas = 3, .ttl_s = 5});
  ASSERT_TRUE(kv);
  ASSERT_TRUE((*kv)->Put("a", View("1")));
  ASSERT_TRUE(gw->Publish("d.1", View("x"), "x", 5));
  for (size_t node = 0; node < 3; ++node) {
    ASSERT_TRUE(cluster_->Kill(node, SIGKILL));
    const auto t0 = std::chrono::steady_clock::now();
    std::string last;
    const bool ok = testing::WaitFor(
        [&] {
          auto sub = gw->PullSubscribe(
              "D",
              "c" + std::to_string(node) + "-" +
                  std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()),
              "d.1", 30);
          if (!sub) {
            last = sub.error().message();
            return false;
          }
          auto keys = (*kv)->Keys();
          if (!keys) {
            last = keys.error().message();
            return false;
          }
          return true;
        },
        90);  // measured: 0.2 s to 31 s on this 2-core machine (a new meta leader, reconnects),
              // once over 60 s in CI beside other clusters' tests
    EXPECT_TRUE(ok) << "node " << node << " down: " << last;
    std::fprintf(stderr, "node %zu down: consumer and keys after %.1f s\n", node,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    ASSERT_TRUE(cluster_->Restart(node));
    // Back in the cluster, caught up, before the next node goes: otherwise two of three are out
    // of date at once and JetStream has no quorum until the restarted one catches up (once
    // 30 s in CI). The streams being current is not enough: the cluster's metadata group is
    // separate, and a restarted node behind in it left the next two without a metadata leader
    // for over 60 s in CI. A consumer created now and current on all three shows the restarted
    // node has applied the metadata up to it.
    const std::string probe = "probe" + std::to_string(node);
    std::string behind;
    EXPECT_TRUE(testing::WaitFor(
        [&] {
          auto d = gw->StreamReplicasCurrent("D", 3);
          auto k = gw->StreamReplicasCurrent("KV_dk", 3);
          if (!(d && *d && k && *k)) {
            behind = "the streams' replicas";
            return false;
          }
          if (auto sub = gw->PullSubscribe("D", probe, "d.1", 30); !sub) {
            behind = "the probe consumer: " + sub.error().message();
            return false;
          }
          auto c = gw->ConsumerReplicasCurrent("D", probe, 3);
          behind = c ? "the probe consumer's replicas" : c.error().message();
          return c && *c;
        },
        90))
        << "node " << node << " did not catch up after its restart: " << behind;
  }
}

// A stream the cluster cannot place now (more replicas than it has peers: a cluster whose nodes
// are still joining, or nodes down) is kIo, which the worker and the gateway retry at start. It
// was kInternal, and a worker started with its cluster gave up at once ("creating stream
// MEDSTREAM_BATCHES: no suitable peers for placement"; WorkerTest, 1 run in 40).
TEST_F(ClusterTest, AStreamTheClusterCannotPlaceNowIsATransientError) {
  auto gw = Connect(kGatewayRole);
  ASSERT_TRUE(gw);
  const Status s = gw->EnsureStream({.name = "P", .subjects = {"p.>"}, .replicas = 5});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), Error::Code::kIo) << s.error().message();
}

// Each role publishes only its part (docs/scale-out.md, Security): a worker cannot inject or
// replay batches, a gateway cannot forge results, and neither can delete or purge a stream.
TEST_F(ClusterTest, RolesMayPublishOnlyTheirPart) {
  auto gw = Connect(kGatewayRole);
  auto worker = Connect(kWorkerRole);
  ASSERT_TRUE(gw && worker);
  ASSERT_TRUE(gw->EnsureStream({.name = "B", .subjects = {"medstream.batch.*"}, .replicas = 3}));
  ASSERT_TRUE(
      worker->EnsureStream({.name = "R", .subjects = {"medstream.result.>"}, .replicas = 3}));
  // What each may do.
  ASSERT_TRUE(gw->Publish("medstream.batch.0", View("b"), "b1", 5));
  ASSERT_TRUE(worker->Publish("medstream.result.ab.1", View("r"), "r1", 5));
  // What each may not: refused by the nodes (the publish gets no acknowledgement).
  EXPECT_FALSE(worker->Publish("medstream.batch.0", View("forged"), "b2", 2));
  EXPECT_FALSE(gw->Publish("medstream.result.ab.2", View("forged"), "r2", 2));
  EXPECT_FALSE(worker->DeleteStream("B"));
  EXPECT_FALSE(gw->DeleteStream("R"));
  EXPECT_EQ(*gw->StreamMessages("B"), 1u);
  EXPECT_EQ(*gw->StreamMessages("R"), 1u);
}

}  // namespace
}  // namespace medstream::cluster

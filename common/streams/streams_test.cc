// The analysis pool: every window index run once, and a stream table analysing on several threads
// gives results bit-identical to the single-threaded table (issue 17).
#include <gtest/gtest.h>

#include <array>
#include <atomic>

#include "common/streams/pool.h"
#include "common/streams/streams.h"
#include "tests/test_data.h"

namespace medstream::streams {
namespace {

TEST(ThreadPool, RunsEveryIndexOnceOnItsWorkers) {
  ThreadPool pool(4);
  ASSERT_EQ(pool.workers(), 4u);
  for (size_t n : {0, 1, 2, 7, 10000}) {
    std::vector<std::atomic<int>> seen(n);
    std::vector<std::atomic<int>> by_worker(pool.workers());
    pool.Run(n, [&](size_t w, size_t i) {
      ASSERT_LT(w, pool.workers());
      seen[i].fetch_add(1);
      by_worker[w].fetch_add(1);
    });
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(seen[i].load(), 1) << n << " " << i;
  }
  EXPECT_EQ(ThreadPool(1).workers(), 1u);
  EXPECT_GE(ThreadPool(0).workers(), 1u);
  EXPECT_EQ(ThreadPool(1000).workers(), ThreadPool::kMaxWorkers);
}

// Run returns as soon as its own thread is done and the pool threads that joined have finished
// (one not yet scheduled skips the run): back-to-back runs never see a call after Run returned, nor
// one of an earlier run's indices, and every index is still run once.
TEST(ThreadPool, BackToBackRunsCallEveryIndexOnceAndNothingAfterReturning) {
  ThreadPool pool(2);
  std::atomic<uint64_t> total{0};
  for (int r = 0; r < 20000; ++r) {
    std::array<std::atomic<int>, 3> seen{};
    pool.Run(seen.size(), [&](size_t, size_t i) {
      seen[i].fetch_add(1);
      total.fetch_add(1);
    });
    for (size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i].load(), 1) << r << " " << i;
    ASSERT_EQ(total.load(), 3u * static_cast<uint64_t>(r + 1)) << r;
  }
}

// A 24 h real record through every windowed job, in batches of uneven sizes: each batch's encoded
// result from the table with three analysis threads equals, byte for byte, the serial table's.
TEST(ThreadPool, ParallelResultsAreBitIdenticalToSerial) {
  const auto day = testing::LoadBeats("rr/chf2db_chf201_rr_secs.txt");
  ASSERT_GT(day.size(), 100000u);
  for (hrv::SpectralMethod method :
       {hrv::SpectralMethod::kWelch, hrv::SpectralMethod::kLombScargle}) {
    // Lomb-Scargle costs ~50x Welch per window: two hours of it.
    const auto beats =
        std::span(day).first(method == hrv::SpectralMethod::kWelch ? day.size() : 9000);
    StreamConfig config;
    config.jobs = {hrv::JobKind::kIdentity, hrv::JobKind::kSdnn, hrv::JobKind::kHrvBands,
                   hrv::JobKind::kHrvFull};
    config.spectral = method;
    ThreadPool pool(3);
    StreamTable serial, parallel;
    parallel.set_parallel(&pool);
    const wire::StreamId id{1, 2, 3};
    size_t windows = 0;
    uint64_t seq = 0;
    for (size_t from = 0, n = 1; from < beats.size(); from += n, n = n * 3 + 17) {
      const auto chunk = beats.subspan(from, std::min(n, beats.size() - from));
      ++seq;
      auto a = serial.Process(id, seq, 1, config, chunk);
      auto b = parallel.Process(id, seq, 1, config, chunk);
      ASSERT_TRUE(a.has_value() && b.has_value());
      for (const auto& [kind, out] : b->jobs) windows += out.windows.size();
      crypto::Bytes ea, eb;
      wire::EncodeResult(*a, &ea);
      wire::EncodeResult(*b, &eb);
      ASSERT_EQ(ea, eb) << "batch " << seq;
    }
    // Every windowed job reported its windows (a day: 2754 each).
    EXPECT_GT(windows, method == hrv::SpectralMethod::kWelch ? 3 * 2700u : 3 * 200u);
  }
}

}  // namespace
}  // namespace medstream::streams

// metrics: the Prometheus text exposition format (version 0.0.4) for the /metrics endpoints of
// the gateway, the server and the lake host. A process fills a Text from a snapshot of its
// counters at each scrape; nothing here keeps state between scrapes.
//
// Names follow Prometheus conventions (snake_case, unit suffixes _seconds/_bytes, counters end in
// _total); each family's HELP and TYPE are written once, before its first sample. Label values
// are escaped (\\, \", \n). Pure; thread-compatible.
#pragma once

#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace medstream::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Observations counted into fixed buckets as they come (memory stays constant, unlike keeping
// every observation). Thread-compatible.
class Histogram {
 public:
  explicit Histogram(std::span<const double> bounds);
  void Observe(double v);
  std::span<const double> bounds() const { return bounds_; }
  const std::vector<uint64_t>& counts() const { return counts_; }  // per bucket, not cumulative
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // bounds_.size() + 1 (the last: above every bound)
  uint64_t count_ = 0;
  double sum_ = 0;
};

class Text {
 public:
  void Counter(std::string_view name, std::string_view help, double value,
               const Labels& labels = {});
  void Gauge(std::string_view name, std::string_view help, double value, const Labels& labels = {});
  // A histogram of `observations` with cumulative buckets at `bounds` (ascending) and +Inf.
  void Histogram(std::string_view name, std::string_view help, std::span<const double> bounds,
                 std::span<const double> observations);
  void Histogram(std::string_view name, std::string_view help, const metrics::Histogram& h);
  const std::string& str() const { return out_; }

 private:
  void Family(std::string_view name, std::string_view help, std::string_view type);
  void Sample(std::string_view name, const Labels& labels, double value);
  std::string out_;
  std::set<std::string, std::less<>> families_;
};

// Latency buckets in seconds, 1 ms to 5 min.
std::span<const double> LatencyBuckets();

}  // namespace medstream::metrics

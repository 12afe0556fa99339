// metrics: the Prometheus text exposition format (version 0.0.4) for the /metrics endpoints of
// the gateway, the server and the lake host. A process fills a Text from a snapshot of its
// counters at each scrape; nothing here keeps state between scrapes.
//
// Names follow Prometheus conventions (snake_case, unit suffixes _seconds/_bytes, counters end in
// _total); each family's HELP and TYPE are written once, before its first sample. Label values
// are escaped (\\, \", \n). Pure; thread-compatible.
#pragma once

#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace medstream::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Text {
 public:
  void Counter(std::string_view name, std::string_view help, double value,
               const Labels& labels = {});
  void Gauge(std::string_view name, std::string_view help, double value, const Labels& labels = {});
  // A histogram of `observations` with cumulative buckets at `bounds` (ascending) and +Inf.
  void Histogram(std::string_view name, std::string_view help, std::span<const double> bounds,
                 std::span<const double> observations);
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

// stats: small summaries of measured samples (latencies, batch times) for reports and benchmarks.
#pragma once

#include <cstddef>
#include <vector>

namespace medstream {

// Nearest-rank percentile, q in [0, 1]; 0 for no samples.
double Percentile(std::vector<double> v, double q);

struct Spread {
  size_t count = 0;
  double mean = 0, p50 = 0, p99 = 0, max = 0;
};
Spread Summarize(const std::vector<double>& v);

}  // namespace medstream

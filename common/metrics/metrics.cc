#include "common/metrics/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

namespace medstream::metrics {

namespace {

std::string Escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string Value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", static_cast<int64_t>(v));
  return fmt::format("{}", v);
}

}  // namespace

void Text::Family(std::string_view name, std::string_view help, std::string_view type) {
  if (families_.contains(name)) return;
  families_.emplace(name);
  out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void Text::Sample(std::string_view name, const Labels& labels, double value) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    for (size_t i = 0; i < labels.size(); ++i) {
      out_ += fmt::format("{}{}=\"{}\"", i ? "," : "", labels[i].first, Escape(labels[i].second));
    }
    out_ += '}';
  }
  out_ += ' ';
  out_ += Value(value);
  out_ += '\n';
}

void Text::Counter(std::string_view name, std::string_view help, double value,
                   const Labels& labels) {
  Family(name, help, "counter");
  Sample(name, labels, value);
}

void Text::Gauge(std::string_view name, std::string_view help, double value, const Labels& labels) {
  Family(name, help, "gauge");
  Sample(name, labels, value);
}

void Text::Histogram(std::string_view name, std::string_view help, std::span<const double> bounds,
                     std::span<const double> observations) {
  Family(name, help, "histogram");
  std::vector<double> sorted(observations.begin(), observations.end());
  std::sort(sorted.begin(), sorted.end());
  double sum = 0;
  for (double v : sorted) sum += v;
  const std::string bucket = std::string(name) + "_bucket";
  for (double b : bounds) {
    const auto n = std::upper_bound(sorted.begin(), sorted.end(), b) - sorted.begin();
    Sample(bucket, {{"le", Value(b)}}, static_cast<double>(n));
  }
  Sample(bucket, {{"le", "+Inf"}}, static_cast<double>(sorted.size()));
  Sample(std::string(name) + "_sum", {}, sum);
  Sample(std::string(name) + "_count", {}, static_cast<double>(sorted.size()));
}

Histogram::Histogram(std::span<const double> bounds)
    : bounds_(bounds.begin(), bounds.end()), counts_(bounds.size() + 1, 0) {}

void Histogram::Observe(double v) {
  const auto i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  ++counts_[static_cast<size_t>(i)];
  ++count_;
  sum_ += v;
}

void Text::Histogram(std::string_view name, std::string_view help, const metrics::Histogram& h) {
  Family(name, help, "histogram");
  const std::string bucket = std::string(name) + "_bucket";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.bounds().size(); ++i) {
    cumulative += h.counts()[i];
    Sample(bucket, {{"le", Value(h.bounds()[i])}}, static_cast<double>(cumulative));
  }
  Sample(bucket, {{"le", "+Inf"}}, static_cast<double>(h.count()));
  Sample(std::string(name) + "_sum", {}, h.sum());
  Sample(std::string(name) + "_count", {}, static_cast<double>(h.count()));
}

std::span<const double> LatencyBuckets() {
  static constexpr std::array kBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,  0.25,
                                          0.5,   1.0,    2.5,   5.0,  10.0,  30.0, 60.0, 300.0};
  return kBuckets;
}

}  // namespace medstream::metrics

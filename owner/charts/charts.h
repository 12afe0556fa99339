// charts: server-side SVG plots for the owner's report and dashboard (no JavaScript, no CDN, no
// external assets: an SVG string to inline in a page or serve as image/svg+xml).
//
// Each chart is an <svg> element with id = Chart::id and data-points = the number of data points
// drawn, so a test (or a person with a DOM inspector) can check a figure is really there. Large
// series are reduced to what the pixels can show: lines to the min and max of each pixel column,
// points to one per occupied pixel; the shape drawn is the same.
//
// Pure (no I/O); thread-compatible.
#pragma once

#include <limits>
#include <string>
#include <vector>

namespace medstream::charts {

struct Series {
  std::string label;
  std::string color = "#1f77b4";
  std::vector<double> x, y;  // same length; non-finite points are skipped (a line breaks there)
  enum class Kind { kLine, kPoints, kArea } kind = Kind::kLine;

  Series() = default;
  Series(std::string l, std::string c, Kind k = Kind::kLine)
      : label(std::move(l)), color(std::move(c)), kind(k) {}
};

// A shaded x range (a frequency band, an alert range), drawn under the series.
struct Band {
  double from = 0, to = 0;
  std::string label;
  std::string color = "#dddddd";
};

struct Chart {
  std::string id;  // the <svg> element's id
  std::string title;
  std::string x_label, y_label;
  int width = 720, height = 260;
  bool x_is_time = false;  // x in Unix seconds: ticks as UTC clock times (dates when days apart)
  bool square = false;     // same scale on both axes, one range for both (Poincare plots)
  // Axis ranges; NaN = from the data (with a margin).
  static constexpr double kAuto = std::numeric_limits<double>::quiet_NaN();
  double x_min = kAuto, x_max = kAuto, y_min = kAuto, y_max = kAuto;
  std::vector<Band> bands;
  std::vector<Series> series;

  Chart() = default;
  Chart(std::string i, std::string t, std::string xl, std::string yl, int w, int h)
      : id(std::move(i)),
        title(std::move(t)),
        x_label(std::move(xl)),
        y_label(std::move(yl)),
        width(w),
        height(h) {}
};

// The chart as an <svg> element. A chart without finite points says "no data" in its frame.
std::string Render(const Chart& chart);

// "Nice" tick values (1, 2, 5 x 10^k steps) covering [lo, hi], about `target` of them.
std::vector<double> Ticks(double lo, double hi, int target);

// Escapes text for HTML and SVG (& < > " ').
std::string Escape(std::string_view text);

}  // namespace medstream::charts

#include "owner/charts/charts.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <map>
#include <set>

namespace medstream::charts {

namespace {

constexpr int kLeft = 64, kRight = 16, kTop = 30, kBottom = 42;

struct Range {
  double lo = INFINITY, hi = -INFINITY;
  void Add(double v) {
    if (!std::isfinite(v)) return;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  bool ok() const { return lo <= hi; }
  void Pad() {
    if (!ok()) {
      lo = 0;
      hi = 1;
    } else if (lo == hi) {
      const double d = lo == 0 ? 1 : std::fabs(lo) * 0.05;
      lo -= d;
      hi += d;
    } else {
      const double d = (hi - lo) * 0.04;
      lo -= d;
      hi += d;
    }
  }
};

std::string Num(double v) {
  if (v == 0) return "0";
  const double a = std::fabs(v);
  if (a >= 1e5 || a < 1e-3) return fmt::format("{:.3g}", v);
  return fmt::format("{:.6g}", v);
}

std::string TimeLabel(double t, double span) {
  const auto secs = static_cast<time_t>(std::floor(t));
  std::tm tm{};
  gmtime_r(&secs, &tm);
  if (span > 3 * 86400) return fmt::format("{:02}-{:02}", tm.tm_mon + 1, tm.tm_mday);
  if (span > 600) return fmt::format("{:02}:{:02}", tm.tm_hour, tm.tm_min);
  return fmt::format("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec);
}

// Time ticks on whole seconds, minutes, hours or days.
std::vector<double> TimeTicks(double lo, double hi, int target) {
  static const double kSteps[] = {1,     2,     5,     10,    15,     30,    60,
                                  120,   300,   600,   900,   1800,   3600,  7200,
                                  10800, 21600, 43200, 86400, 172800, 604800};
  double step = kSteps[std::size(kSteps) - 1];
  for (double s : kSteps) {
    if ((hi - lo) / s <= target) {
      step = s;
      break;
    }
  }
  std::vector<double> out;
  for (double t = std::ceil(lo / step) * step; t <= hi && out.size() < 64; t += step)
    out.push_back(t);
  return out;
}

}  // namespace

std::string Escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::vector<double> Ticks(double lo, double hi, int target) {
  std::vector<double> out;
  if (!std::isfinite(lo) || !std::isfinite(hi) || hi <= lo || target < 1) return out;
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    if (raw <= m * mag) {
      step = m * mag;
      break;
    }
  }
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9 && out.size() < 64; v += step)
    out.push_back(std::fabs(v) < step * 1e-9 ? 0 : v);
  return out;
}

std::string Render(const Chart& c) {
  Range xr, yr;
  size_t points = 0;
  for (const Series& s : c.series) {
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      xr.Add(s.x[i]);
      yr.Add(s.y[i]);
      ++points;
    }
  }
  if (c.square) {
    xr.Add(yr.lo);
    xr.Add(yr.hi);
    yr = xr;
  }
  const bool empty = points == 0;
  xr.Pad();
  yr.Pad();
  if (c.square) yr = xr;
  if (std::isfinite(c.x_min)) xr.lo = c.x_min;
  if (std::isfinite(c.x_max)) xr.hi = c.x_max;
  if (std::isfinite(c.y_min)) yr.lo = c.y_min;
  if (std::isfinite(c.y_max)) yr.hi = c.y_max;
  if (!(xr.hi > xr.lo)) xr.hi = xr.lo + 1;
  if (!(yr.hi > yr.lo)) yr.hi = yr.lo + 1;

  int w = c.width, h = c.height;
  if (c.square) w = h = std::min(w, h) + kLeft - kBottom;
  const double pw = w - kLeft - kRight, ph = h - kTop - kBottom;
  auto X = [&](double x) { return kLeft + (x - xr.lo) / (xr.hi - xr.lo) * pw; };
  auto Y = [&](double y) { return kTop + ph - (y - yr.lo) / (yr.hi - yr.lo) * ph; };

  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"{}\" class=\"chart\" data-points=\"{}\" "
      "width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{}\" "
      "font-family=\"sans-serif\" font-size=\"11\">\n",
      Escape(c.id), points, w, h, w, h, Escape(c.title));
  svg += fmt::format("<text x=\"{}\" y=\"18\" font-size=\"13\" font-weight=\"bold\">{}</text>\n",
                     kLeft, Escape(c.title));
  svg += fmt::format(
      "<clipPath id=\"{}-clip\"><rect x=\"{}\" y=\"{}\" width=\"{:.1f}\" height=\"{:.1f}\"/>"
      "</clipPath>\n",
      Escape(c.id), kLeft, kTop, pw, ph);
  // Bands under everything, labelled at the top.
  for (const Band& b : c.bands) {
    const double x0 = X(std::max(b.from, xr.lo)), x1 = X(std::min(b.to, xr.hi));
    if (x1 <= x0) continue;
    svg += fmt::format(
        "<rect class=\"band\" x=\"{:.1f}\" y=\"{}\" width=\"{:.1f}\" height=\"{:.1f}\" "
        "fill=\"{}\" opacity=\"0.45\"/><text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\" "
        "fill=\"#555\">{}</text>\n",
        x0, kTop, x1 - x0, ph, Escape(b.color), (x0 + x1) / 2, kTop + 12, Escape(b.label));
  }
  // Grid and ticks.
  const auto yt = Ticks(yr.lo, yr.hi, std::max(3, static_cast<int>(ph / 30)));
  for (double v : yt) {
    svg += fmt::format(
        "<line x1=\"{}\" x2=\"{:.1f}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#e5e5e5\"/>"
        "<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\" fill=\"#333\">{}</text>\n",
        kLeft, kLeft + pw, Y(v), Y(v), kLeft - 4, Y(v) + 4, Num(v));
  }
  const int xtarget = std::max(2, static_cast<int>(pw / 90));
  const auto xt = c.x_is_time ? TimeTicks(xr.lo, xr.hi, xtarget) : Ticks(xr.lo, xr.hi, xtarget);
  for (double v : xt) {
    svg += fmt::format(
        "<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{}\" y2=\"{:.1f}\" stroke=\"#e5e5e5\"/>"
        "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" fill=\"#333\">{}</text>\n",
        X(v), X(v), kTop, kTop + ph, X(v), kTop + ph + 14,
        c.x_is_time ? TimeLabel(v, xr.hi - xr.lo) : Num(v));
  }
  svg += fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" "
      "stroke=\"#999\"/>\n",
      kLeft, kTop, pw, ph);
  svg += fmt::format(
      "<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\" fill=\"#333\">{}</text>\n"
      "<text transform=\"translate(14 {:.1f}) rotate(-90)\" text-anchor=\"middle\" "
      "fill=\"#333\">{}</text>\n",
      kLeft + pw / 2, h - 6, Escape(c.x_label + (c.x_is_time ? " (UTC)" : "")), kTop + ph / 2,
      Escape(c.y_label));
  if (empty) {
    svg += fmt::format(
        "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n",
        kLeft + pw / 2, kTop + ph / 2);
  }
  // Series, clipped to the plot area.
  svg += fmt::format("<g clip-path=\"url(#{}-clip)\">\n", Escape(c.id));
  for (const Series& s : c.series) {
    const size_t n = std::min(s.x.size(), s.y.size());
    if (s.kind == Series::Kind::kPoints) {
      std::set<std::pair<int, int>> pixels;  // one dot per occupied pixel
      std::string dots;
      for (size_t i = 0; i < n; ++i) {
        if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
        const int px = static_cast<int>(std::lround(X(s.x[i]))),
                  py = static_cast<int>(std::lround(Y(s.y[i])));
        if (!pixels.insert({px, py}).second) continue;
        dots += fmt::format("M{} {}h0", px, py);
      }
      svg += fmt::format(
          "<path class=\"series\" data-label=\"{}\" d=\"{}\" stroke=\"{}\" stroke-width=\"3\" "
          "stroke-linecap=\"round\" opacity=\"0.6\"/>\n",
          Escape(s.label), dots, Escape(s.color));
      continue;
    }
    // Lines: per pixel column, the first, min, max and last value (the shape stays exact).
    std::string d;
    bool pen_down = false;
    int column = INT32_MIN;
    double first = 0, lo = 0, hi = 0, last = 0;
    auto flush = [&] {
      if (column == INT32_MIN) return;
      d += fmt::format("{}{} {:.1f}", pen_down ? "L" : "M", column, Y(first));
      if (lo != first) d += fmt::format("L{} {:.1f}", column, Y(lo));
      if (hi != lo) d += fmt::format("L{} {:.1f}", column, Y(hi));
      if (last != hi) d += fmt::format("L{} {:.1f}", column, Y(last));
      pen_down = true;
    };
    double area_x0 = NAN, area_x1 = NAN;
    for (size_t i = 0; i < n; ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) {
        flush();
        column = INT32_MIN;
        pen_down = false;
        continue;
      }
      const int px = static_cast<int>(std::lround(X(s.x[i])));
      if (px != column) {
        flush();
        column = px;
        first = lo = hi = last = s.y[i];
      } else {
        lo = std::min(lo, s.y[i]);
        hi = std::max(hi, s.y[i]);
        last = s.y[i];
      }
      if (std::isnan(area_x0)) area_x0 = px;
      area_x1 = px;
    }
    flush();
    if (s.kind == Series::Kind::kArea && !d.empty()) {
      svg += fmt::format(
          "<path class=\"series\" data-label=\"{}\" d=\"{}L{} {:.1f}L{} {:.1f}Z\" fill=\"{}\" "
          "fill-opacity=\"0.25\" stroke=\"{}\"/>\n",
          Escape(s.label), d, area_x1, Y(std::max(0.0, yr.lo)), area_x0, Y(std::max(0.0, yr.lo)),
          Escape(s.color), Escape(s.color));
    } else {
      svg += fmt::format(
          "<path class=\"series\" data-label=\"{}\" d=\"{}\" fill=\"none\" stroke=\"{}\" "
          "stroke-width=\"1.3\"/>\n",
          Escape(s.label), d, Escape(s.color));
    }
  }
  svg += "</g>\n";
  // A legend when there is more than one labelled series.
  int legend = 0;
  for (const Series& s : c.series) {
    if (c.series.size() < 2 || s.label.empty()) continue;
    svg += fmt::format(
        "<rect x=\"{:.1f}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.1f}\" "
        "y=\"{}\" fill=\"#333\">{}</text>\n",
        kLeft + pw - 150, kTop + 6 + 14 * legend, Escape(s.color), kLeft + pw - 136,
        kTop + 15 + 14 * legend, Escape(s.label));
    ++legend;
  }
  return svg + "</svg>\n";
}

}  // namespace medstream::charts

#include "owner/dashboard/dashboard.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cmath>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "common/base/bytes.h"
#include "owner/charts/charts.h"
#include "owner/fhir/fhir.h"
#include "owner/results/results.h"

namespace medstream::dashboard {

namespace {

using json = nlohmann::ordered_json;
using charts::Escape;

constexpr char kScript[] = R"JS('use strict';
// medstream dashboard: polls the JSON API every 2 s and redraws what changed. Errors (the
// gateway restarting) are retried quietly.
const POLL_MS = 2000;
function fill(cells) {
  for (const [key, cell] of Object.entries(cells || {})) {
    for (const el of document.querySelectorAll('[data-cell="' + CSS.escape(key) + '"]')) {
      el.textContent = cell.text;
      if (el.hasAttribute('data-value')) el.setAttribute('data-value', cell.value);
      if (cell.alert !== undefined) el.classList.toggle('alert', cell.alert);
    }
  }
}
async function poll() {
  const body = document.body;
  try {
    if (body.dataset.user) {
      const r = await fetch('/api/user/' + encodeURIComponent(body.dataset.user) + '?charts=1');
      if (r.ok) {
        const j = await r.json();
        if (String(j.windows) !== body.dataset.windows) {
          body.dataset.windows = String(j.windows);
          for (const [id, svg] of Object.entries(j.charts)) {
            const el = document.getElementById(id);
            if (el) el.outerHTML = svg;
          }
          fill(j.cells);
        }
      }
    } else {
      const r = await fetch('/api/users');
      if (r.ok) {
        const j = await r.json();
        if (String(j.users.length) !== body.dataset.users) { location.reload(); return; }
        fill(j.cells);
      }
    }
  } catch (e) {
    // the server is away for a moment: try again at the next tick
  }
  setTimeout(poll, POLL_MS);
}
setTimeout(poll, POLL_MS);
)JS";

constexpr char kStyle[] =
    "<style>body{font-family:sans-serif;margin:24px;color:#222}"
    "table{border-collapse:collapse;font-size:14px}td,th{border-bottom:1px solid #ddd;"
    "padding:3px 10px;text-align:right}td:first-child,th:first-child{text-align:left}"
    ".alert{color:#b00;font-weight:bold}.meta{color:#555;font-size:13px}"
    ".row{display:flex;flex-wrap:wrap;gap:12px}</style>";

std::string Text(double v) {
  return std::isnan(v) ? "–" : fmt::format("{:.1f}", v);
}
std::string Exact(double v) {
  return std::isnan(v) ? "null" : fmt::format("{}", v);
}

bool Outside(const Range& r, double v) {
  return !std::isnan(v) && (v < r.lo || v > r.hi);
}

}  // namespace

Result<Range> ParseRange(const std::string& text, const std::string& what) {
  const size_t dots = text.find("..");
  if (dots == std::string::npos)
    return InvalidArgument(what + ": expected LO..HI (either may be left out), got '" + text + "'");
  Range r;
  auto number = [&](const std::string& s, double* out) -> Status {
    if (s.empty()) return {};
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (end != s.c_str() + s.size() || !std::isfinite(v))
      return InvalidArgument(what + ": '" + s + "' is not a number");
    *out = v;
    return {};
  };
  if (auto s = number(text.substr(0, dots), &r.lo); !s) return std::unexpected(s.error());
  if (auto s = number(text.substr(dots + 2), &r.hi); !s) return std::unexpected(s.error());
  if (r.lo > r.hi) return InvalidArgument(what + ": the low end is above the high end");
  return r;
}

struct Dashboard::State {
  Options options;
  std::mutex mu;
  struct Cached {
    off_t size = -1;
    int64_t mtime_ns = 0;
    std::shared_ptr<const results::UserResults> results;
  };
  std::map<std::string, Cached> cache;

  // The user's results, read again only when the file changed.
  Result<std::shared_ptr<const results::UserResults>> Read(const std::string& user) {
    struct stat st {};
    const std::string path = options.results_dir + "/" + user + ".jsonl";
    if (user.find('/') != std::string::npos || ::stat(path.c_str(), &st) != 0)
      return NotFound("no results for " + user);
    const int64_t mtime = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
    {
      std::lock_guard lock(mu);
      auto it = cache.find(user);
      if (it != cache.end() && it->second.size == st.st_size && it->second.mtime_ns == mtime)
        return it->second.results;
    }
    MEDSTREAM_TRY(r, results::ReadUser(options.results_dir, user));
    auto shared = std::make_shared<const results::UserResults>(std::move(r));
    std::lock_guard lock(mu);
    cache[user] = {st.st_size, mtime, shared};
    return shared;
  }

  std::vector<std::string> Alerts(const results::Latest& l) const {
    std::vector<std::string> out;
    if (!l.ok) return out;
    if (Outside(options.heart_rate_bpm, l.metrics.mean_hr_bpm))
      out.push_back(fmt::format("HR {:.0f} bpm", l.metrics.mean_hr_bpm));
    if (Outside(options.sdnn_ms, l.metrics.sdnn_ms))
      out.push_back(fmt::format("SDNN {:.0f} ms", l.metrics.sdnn_ms));
    if (l.lost_beats > 0) out.push_back(fmt::format("{} beats lost", l.lost_beats));
    return out;
  }

  // The cells of one user's latest window, keyed "<user>/<metric>".
  void Cells(const std::string& user, const results::Latest& l, json* cells) const {
    for (const hrv::MetricInfo* m : results::HeadlineMetrics()) {
      const double v = l.ok ? l.metrics.*(m->field) : hrv::kNaN;
      json cell{{"text", Text(v)}, {"value", Exact(v)}};
      if (m->name == "mean_hr_bpm") cell["alert"] = Outside(options.heart_rate_bpm, v);
      if (m->name == "sdnn_ms") cell["alert"] = Outside(options.sdnn_ms, v);
      (*cells)[user + "/" + std::string(m->name)] = cell;
    }
    (*cells)[user + "/window"] = {{"text", l.ok ? results::IsoUtc(l.t_end) : "–"}};
    const auto alerts = Alerts(l);
    std::string text;
    for (const auto& a : alerts) text += (text.empty() ? "" : ", ") + a;
    (*cells)[user + "/alerts"] = {{"text", text}, {"alert", !alerts.empty()}};
  }

  json UsersJson() {
    json users = json::array(), cells = json::object();
    auto list = results::ListUsers(options.results_dir);
    for (const std::string& user : list ? *list : std::vector<std::string>{}) {
      auto r = Read(user);
      if (!r) continue;
      const results::Latest l = results::LatestWindow((*r)->windows);
      json row{{"user", user}, {"windows", (*r)->windows.size()}};
      if (l.ok) {
        row["t_end"] = l.t_end;
        row["end_utc"] = results::IsoUtc(l.t_end);
        for (const hrv::MetricInfo* m : results::HeadlineMetrics()) {
          const double v = l.metrics.*(m->field);
          row[std::string(m->name)] = std::isnan(v) ? json() : json(v);
        }
        row["lost_beats"] = l.lost_beats;
      }
      row["alerts"] = Alerts(l);
      users.push_back(row);
      Cells(user, l, &cells);
    }
    return {{"users", users}, {"cells", cells}};
  }

  std::vector<std::string> TrendCharts(const results::UserResults& r) const {
    auto merged = results::MergeByWindow(r.windows);
    if (merged.size() > options.trend_windows)
      merged.erase(merged.begin(), merged.end() - static_cast<ptrdiff_t>(options.trend_windows));
    struct Trend {
      const char* id;
      const char* metric;
      const char* color;
      Range range;
    };
    std::vector<std::string> out;
    for (const Trend& t : {Trend{"trend-hr", "mean_hr_bpm", "#d62728", options.heart_rate_bpm},
                           Trend{"trend-sdnn", "sdnn_ms", "#1f77b4", options.sdnn_ms},
                           Trend{"trend-rmssd", "rmssd_ms", "#2ca02c", Range{}},
                           Trend{"trend-lf-hf", "lf_hf", "#9467bd", Range{}}}) {
      const hrv::MetricInfo& m = *hrv::FindMetric(t.metric);
      charts::Chart c(t.id, results::Label(m), "window end", results::Label(m), 560, 220);
      c.x_is_time = true;
      charts::Series s(std::string(results::DisplayName(m)), t.color);
      for (const auto& w : merged) {
        s.x.push_back(w.t_end);
        s.y.push_back(w.metrics.*(m.field));
      }
      c.series.push_back(std::move(s));
      out.push_back(charts::Render(c));
    }
    return out;
  }

  http::Response Overview() {
    const json data = UsersJson();
    std::string rows;
    for (const auto& u : data["users"]) {
      const std::string user = u["user"];
      rows +=
          fmt::format("<tr><td><a href=\"/user/{}\">{}</a></td><td data-cell=\"{}/window\">{}</td>",
                      Escape(user), Escape(user), Escape(user),
                      Escape(data["cells"][user + "/window"]["text"].get<std::string>()));
      for (const hrv::MetricInfo* m : results::HeadlineMetrics()) {
        const json& cell = data["cells"][user + "/" + std::string(m->name)];
        rows += fmt::format("<td data-cell=\"{}/{}\" data-value=\"{}\"{}>{}</td>", Escape(user),
                            m->name, cell["value"].get<std::string>(),
                            cell.value("alert", false) ? " class=\"alert\"" : "",
                            cell["text"].get<std::string>());
      }
      const json& alerts = data["cells"][user + "/alerts"];
      rows += fmt::format("<td data-cell=\"{}/alerts\"{}>{}</td></tr>\n", Escape(user),
                          alerts["alert"].get<bool>() ? " class=\"alert\"" : "",
                          Escape(alerts["text"].get<std::string>()));
    }
    std::string head = "<tr><th>user</th><th>latest window end (UTC)</th>";
    for (const hrv::MetricInfo* m : results::HeadlineMetrics())
      head += "<th>" + Escape(results::Label(*m)) + "</th>";
    head += "<th>alerts</th></tr>\n";
    return {
        200, "text/html; charset=utf-8",
        fmt::format("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                    "<title>medstream: users</title>{}</head>\n<body data-users=\"{}\">\n"
                    "<h1>Users</h1><p class=\"meta\">Latest complete window per user; "
                    "alerts: HR outside {}..{} bpm, SDNN outside {}..{} ms, beats lost. "
                    "Updates every 2 s.</p>\n<table id=\"users\">{}{}</table>\n"
                    "<script src=\"/app.js\"></script></body></html>\n",
                    kStyle, data["users"].size(), options.heart_rate_bpm.lo,
                    options.heart_rate_bpm.hi, options.sdnn_ms.lo, options.sdnn_ms.hi, head, rows)};
  }

  json UserJson(const std::string& user, const results::UserResults& r, bool with_charts) const {
    const results::Latest l = results::LatestWindow(r.windows);
    json cells = json::object();
    Cells(user, l, &cells);
    json j{{"user", user}, {"windows", r.windows.size()}, {"cells", cells}};
    if (l.ok) {
      json latest{{"t_start", l.t_start}, {"t_end", l.t_end}, {"lost_beats", l.lost_beats}};
      for (const hrv::MetricInfo& m : hrv::kMetricTable) {
        const double v = l.metrics.*(m.field);
        latest[std::string(m.name)] = std::isnan(v) ? json() : json(v);
      }
      j["latest"] = latest;
    }
    if (with_charts) {
      const auto svgs = TrendCharts(r);
      json charts = json::object();
      const char* ids[] = {"trend-hr", "trend-sdnn", "trend-rmssd", "trend-lf-hf"};
      for (size_t i = 0; i < svgs.size(); ++i) charts[ids[i]] = svgs[i];
      j["charts"] = charts;
    }
    return j;
  }

  http::Response UserPage(const std::string& user) {
    auto r = Read(user);
    if (!r) return http::NotFound();
    const json data = UserJson(user, **r, false);
    std::string table;
    for (const hrv::MetricInfo* m : results::HeadlineMetrics()) {
      const json& cell = data["cells"][user + "/" + std::string(m->name)];
      table += fmt::format(
          "<tr><td>{}</td><td data-cell=\"{}/{}\" data-metric=\"{}\" data-value=\"{}\"{}>{}</td>"
          "</tr>\n",
          Escape(results::Label(*m)), Escape(user), m->name, m->name,
          cell["value"].get<std::string>(), cell.value("alert", false) ? " class=\"alert\"" : "",
          cell["text"].get<std::string>());
    }
    std::string figures;
    for (const std::string& svg : TrendCharts(**r)) figures += svg;
    return {200, "text/html; charset=utf-8",
            fmt::format("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                        "<title>medstream: {}</title>{}</head>\n"
                        "<body data-user=\"{}\" data-windows=\"{}\">\n<p><a href=\"/\">all "
                        "users</a> · <a href=\"/fhir/{}\">FHIR</a></p><h1>{}</h1>\n"
                        "<p class=\"meta\">Latest window ending <span data-cell=\"{}/window\">{}"
                        "</span> (UTC) · <span data-cell=\"{}/alerts\">{}</span></p>\n"
                        "<table id=\"latest\">{}</table>\n<div class=\"row\">{}</div>\n"
                        "<script src=\"/app.js\"></script></body></html>\n",
                        Escape(user), kStyle, Escape(user), (*r)->windows.size(), Escape(user),
                        Escape(user), Escape(user),
                        Escape(data["cells"][user + "/window"]["text"].get<std::string>()),
                        Escape(user),
                        Escape(data["cells"][user + "/alerts"]["text"].get<std::string>()), table,
                        figures)};
  }
};

Result<std::unique_ptr<Dashboard>> Dashboard::Start(Options options) {
  if (!options.clock) {
    options.clock = [] {
      return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
          .count();
    };
  }
  auto state = std::make_shared<State>();
  state->options = std::move(options);
  auto dump = [](const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); };
  std::vector<http::Route> routes = {
      {"/", [state](const http::Request&) { return state->Overview(); }},
      {"/app.js",
       [](const http::Request&) {
         return http::Response{200, "text/javascript; charset=utf-8", kScript};
       }},
      // Browsers ask for it: "no icon" rather than a 404 in their console.
      {"/favicon.ico",
       [](const http::Request&) {
         return http::Response{204, "image/x-icon", ""};
       }},
      {"/api/users",
       [state, dump](const http::Request&) { return http::Json(dump(state->UsersJson())); }},
      {"/api/user/",
       [state, dump](const http::Request& req) {
         const std::string user = req.path.substr(10);
         auto r = state->Read(user);
         if (!r) return http::NotFound();
         return http::Json(dump(state->UserJson(user, **r, req.params.contains("charts"))));
       }},
      {"/user/", [state](const http::Request& req) { return state->UserPage(req.path.substr(6)); }},
      {"/fhir/",
       [state, dump](const http::Request& req) {
         auto r = state->Read(req.path.substr(6));
         if (!r) return http::NotFound();
         fhir::BundleOptions o;
         o.timestamp = state->options.clock();
         return http::Response{200, "application/fhir+json", dump(fhir::Bundle({**r}, o))};
       }},
  };
  for (http::Route& r : http::MetricsRoutes(state->options.metrics)) routes.push_back(std::move(r));
  MEDSTREAM_TRY(server, http::Server::Start(state->options.http, std::move(routes)));
  auto d = std::unique_ptr<Dashboard>(new Dashboard());
  d->state_ = std::move(state);
  d->server_ = std::move(server);
  return d;
}

Dashboard::~Dashboard() = default;

}  // namespace medstream::dashboard

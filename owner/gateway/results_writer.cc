// The gateway's outputs: decrypted results appended as JSON lines and CSV, the kept beats, and
// the counters in the Prometheus text format (gateway.h: Gateway::ReadResults, RecordBeats,
// MetricsText). The keys and the message merge are in gateway.cc, the batch cutting in tick.cc.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <limits>
#include <map>

#include "common/base/file.h"
#include "common/metrics/metrics.h"
#include "owner/gateway/gateway.h"
#include "owner/results/results.h"

namespace medstream::gateway {

namespace {

namespace fs = std::filesystem;

std::chrono::steady_clock::duration QuarantineWait(const Options& o) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(o.quarantine_check_s));
}

Status AppendBlock(const std::string& path, const std::string& block, const std::string& header) {
  // Absent, or emptied by cutting off a torn header (result_files.h).
  std::error_code ec;
  const bool fresh = !FileExists(path) || fs::file_size(path, ec) == 0;
  // One write per result: a crash cannot leave half a result's lines behind the seq marker.
  // Results are plaintext health data: the file is 0600 (its folder 0700).
  return AppendPrivateFile(path, (fresh ? header : std::string()) + block);
}

// A JSON number as nlohmann::json writes one: shortest round-trip digits, ".0" on integral
// values, null for NaN and infinities.
void AppendJsonNumber(fmt::memory_buffer& out, double v) {
  if (!std::isfinite(v)) {
    out.append(std::string_view("null"));
    return;
  }
  const size_t at = out.size();
  fmt::format_to(std::back_inserter(out), "{}", v);
  if (std::string_view(out.data() + at, out.size() - at).find_first_of(".e") ==
      std::string_view::npos) {
    out.append(std::string_view(".0"));
  }
}

}  // namespace

void Gateway::RecordBeats(const Stream& s, std::span<const hrv::Beat> beats) {
  fmt::memory_buffer text;
  for (const hrv::Beat& b : beats)
    fmt::format_to(std::back_inserter(text), "{},{}\n", b.t_s, b.rr_ms);
  const std::string path = options_.results_dir + "/" + s.user + ".beats.csv";
  bool created = false;
  if (!FileExists(path)) {
    if (auto st = AppendPrivateFile(path, "time_s,rr_ms\n", &created); !st) {
      SayRepeated("record-beats", "warning: " + st.error().message());
      return;
    }
  }
  if (auto st = AppendPrivateFile(path, std::string_view(text.data(), text.size())); !st)
    SayRepeated("record-beats", "warning: " + st.error().message());
}

Result<bool> Gateway::SkipIfQuarantined(Stream& s) {
  const auto now = options_.clock();
  if (s.quarantine_check_at == std::chrono::steady_clock::time_point{}) {
    s.quarantine_check_at = now + QuarantineWait(options_);
    return false;
  }
  if (now < s.quarantine_check_at || s.next_result >= s.next_seq) return false;
  s.quarantine_check_at = now + QuarantineWait(options_) / 3;
  const std::string batch = wire::BatchFileName(s.id, s.next_result);
  auto reason = link_->QuarantineReason(batch);
  if (!reason) {
    // Not quarantined (or the server cannot say now): the result is waited for, and asked about
    // again later; this never counts as a refused result.
    if (reason.error().code() != Error::Code::kNotFound) {
      std::fprintf(stderr, "gateway: %s: asking whether batch %s was quarantined: %s\n",
                   s.user.c_str(), batch.c_str(), reason.error().message().c_str());
    }
    return false;
  }
  // The server's words: printable, bounded, one line.
  std::string why = Printable(*reason, 500);
  while (!why.empty() && (why.back() == '?' || why.back() == ' ')) why.pop_back();
  const nlohmann::json line = {
      {"seq", s.next_result}, {"windows", 0}, {"quarantined", why}, {"end", true}};
  if (s.next_result <= s.jsonl_last) {
    // Read again for a results file that lost it to a torn append: the jsonl has it already.
    ++s.next_result;
    return true;
  }
  if (auto st = AppendBlock(options_.results_dir + "/" + s.user + ".jsonl", line.dump() + "\n", "");
      !st) {
    return std::unexpected(st.error());
  }
  s.jsonl_last = s.next_result;
  std::fprintf(stderr,
               "gateway: %s: batch %llu was quarantined by the server (%s): its beats are not "
               "analysed\n",
               s.user.c_str(), static_cast<unsigned long long>(s.next_result), why.c_str());
  ++stats_.batches_quarantined;
  s.in_flight.erase(s.next_result);
  ++s.next_result;
  return true;
}

Status Gateway::ReadResults(Stream& s) {
  for (;;) {
    const std::string path = wire::ResultFileName(s.id, s.next_result);
    auto bytes = link_->ReadResult(path);
    if (!bytes) {
      if (bytes.error().code() != Error::Code::kNotFound) {
        return std::unexpected(std::move(bytes.error()).With("result " + path));
      }
      if (s.next_result <= s.reread_until) {
        // Read again for a file that lost it to a torn append, but gone from the server since:
        // its lines in that file are lost. Said, counted, and the results after it go on.
        ++stats_.results_torn_gone;
        std::fprintf(stderr,
                     "gateway: warning: %s: result %llu, cut from a results file as a torn "
                     "append, is no longer on the server: its lines there are lost\n",
                     s.user.c_str(), static_cast<unsigned long long>(s.next_result));
        ++s.next_result;
        continue;
      }
      MEDSTREAM_TRY(skipped, SkipIfQuarantined(s));
      if (skipped) continue;
      return {};  // not there yet
    }
    s.quarantine_check_at = options_.clock() + QuarantineWait(options_);
    uint64_t seq = 0;
    auto r = s.sealer->OpenResult(*bytes, &seq);
    if (!r) return std::unexpected(std::move(r.error()).With("result " + path));
    if (seq != s.next_result)
      return Corrupt("result " + path + " carries sequence " + std::to_string(seq));
    // Formatted directly: a Stream-Big result carries tens of thousands of windows.
    fmt::memory_buffer jsonl;
    std::map<hrv::JobKind, fmt::memory_buffer> csv;
    double last_window_start = -std::numeric_limits<double>::infinity();
    uint64_t windows = 0;
    for (const auto& [kind, out] : r->jobs) {
      const auto metrics = hrv::JobMetrics(kind);
      auto& rows = csv[kind];
      for (const hrv::WindowResult& w : out.windows) {
        fmt::format_to(std::back_inserter(jsonl), "{{\"seq\":{},\"job\":\"{}\"", seq,
                       hrv::JobName(kind));
        fmt::format_to(std::back_inserter(rows), "{}", seq);
        auto field = [&](std::string_view name, double v) {
          fmt::format_to(std::back_inserter(jsonl), ",\"{}\":", name);
          AppendJsonNumber(jsonl, v);
          rows.push_back(',');
          if (!std::isnan(v)) fmt::format_to(std::back_inserter(rows), "{}", v);
        };
        field("t_start", w.t_start);
        field("t_end", w.t_end);
        // ISO-8601 UTC beside the epoch seconds, for people and for tools that read dates.
        const std::string start_utc = results::IsoUtc(w.t_start);
        const std::string end_utc = results::IsoUtc(w.t_end);
        fmt::format_to(std::back_inserter(jsonl), ",\"start_utc\":\"{}\",\"end_utc\":\"{}\"",
                       start_utc, end_utc);
        field("coverage", w.coverage);
        for (const hrv::MetricInfo* m : metrics) field(m->name, w.metrics.*(m->field));
        // Beats the device sent inside this window that never arrived: the window is not the
        // complete data its numbers would suggest.
        const uint64_t lost = devices_.LostBeatsIn(s.user, w.t_start, w.t_end);
        fmt::format_to(std::back_inserter(jsonl), ",\"lost_beats\":{}", lost);
        fmt::format_to(std::back_inserter(rows), ",{},{},{}", lost, start_utc, end_utc);
        last_window_start = std::max(last_window_start, w.t_start);
        jsonl.append(std::string_view("}\n"));
        rows.push_back('\n');
        ++stats_.windows;
        ++windows;
      }
    }
    for (const auto& [kind, rows] : csv) {
      // A result a file holds already is not appended again (result_files.h).
      if (seq <= s.csv_last[kind]) continue;
      std::string header = "seq,t_start,t_end,coverage";
      for (const hrv::MetricInfo* m : hrv::JobMetrics(kind)) header += "," + std::string(m->name);
      header += ",lost_beats,start_utc,end_utc";
      if (auto st = AppendBlock(
              options_.results_dir + "/" + s.user + "." + std::string(hrv::JobName(kind)) + ".csv",
              fmt::to_string(rows), header + "\n");
          !st) {
        return st;
      }
      s.csv_last[kind] = seq;
    }
    if (seq <= s.jsonl_last) {
      // Read again only for a CSV file that lost it to a torn append: said and counted before.
      ++s.next_result;
      continue;
    }
    // The block's last line, so that a restart knows the block whole (result_files.h); for a
    // result with no complete window, it records the position.
    fmt::format_to(std::back_inserter(jsonl), "{{\"seq\":{},\"windows\":{},\"end\":true}}\n", seq,
                   windows);
    if (auto st =
            AppendBlock(options_.results_dir + "/" + s.user + ".jsonl", fmt::to_string(jsonl), "");
        !st) {
      return st;
    }
    s.jsonl_last = seq;
    // Later windows start later: a gap ending before this one's start marks none of them.
    // (Results carry windows of every job; the longest job's windows start earliest.)
    if (std::isfinite(last_window_start)) {
      devices_.ForgetGapsBefore(s.user, last_window_start - options_.config.windows.window_s);
      devices_unsynced_.insert(s.user);
    }
    ++stats_.results;
    stats_.beats_processed += r->beats;
    if (r->missing_before) ++stats_.gaps_reported;
    if (auto it = s.in_flight.find(seq); it != s.in_flight.end()) {
      stats_.latency_s.push_back(
          std::chrono::duration<double>(options_.clock() - it->second).count());
      s.in_flight.erase(it);
    }
    ++s.next_result;
  }
}

std::string Gateway::MetricsText() const {
  const Stats s = stats();
  uint64_t wal_bytes = 0;
  std::error_code ec;
  for (fs::directory_iterator it(options_.state_dir + "/wal", ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->is_regular_file(ec)) wal_bytes += it->file_size(ec);
  }
  metrics::Text t;
  auto counter = [&](const char* name, const char* help, uint64_t v) {
    t.Counter(name, help, static_cast<double>(v));
  };
  counter("medstream_gateway_messages_total", "MQTT messages received on the sensor topics.",
          s.messages);
  counter("medstream_gateway_malformed_messages_total",
          "Messages refused as malformed (counted and logged, never fatal).", s.malformed);
  counter("medstream_gateway_beats_received_total", "Beats received and merged into batches.",
          s.beats_in);
  counter("medstream_gateway_beats_recovered_total",
          "Beats recovered from the write-ahead log at start.", s.beats_recovered);
  counter("medstream_gateway_wal_damaged_bytes_total",
          "Bytes of the write-ahead logs that could not be read at start (kept aside).",
          s.wal_bytes_damaged);
  counter("medstream_gateway_devices_state_damaged_total",
          "Times the devices' sequence state was found damaged at start (set aside; loss "
          "counting started again).",
          s.devices_state_damaged);
  counter("medstream_gateway_spool_batches_damaged_total",
          "Batches found damaged in the spool at start (sealed again from the write-ahead log).",
          s.spool_batches_damaged);
  counter("medstream_gateway_duplicate_beats_total",
          "Beats delivered again after they were sealed (dropped as duplicates).", s.beats_stale);
  counter("medstream_gateway_batches_sealed_total", "Micro-batches sealed for the enclave.",
          s.batches_sealed);
  counter("medstream_gateway_batches_uploaded_total", "Sealed batches uploaded to the server.",
          s.batches_uploaded);
  counter("medstream_gateway_results_total", "Results opened and written.", s.results);
  counter("medstream_gateway_results_refused_total",
          "Result files from the server that failed to open.", s.results_refused);
  counter("medstream_gateway_results_torn_total",
          "Results whose lines a results file lost to a torn append (read again at start).",
          s.results_torn);
  counter("medstream_gateway_results_torn_gone_total",
          "Results read again after a torn append but no longer on the server (lines lost).",
          s.results_torn_gone);
  counter("medstream_gateway_wal_append_failed_total",
          "Messages the write-ahead log could not take (a full disk); lost only on a crash "
          "before their batch is cut, and then counted in lost_messages.",
          s.wal_append_failed);
  counter("medstream_gateway_beats_dropped_backlog_total",
          "Beats of messages dropped because the open batches held --max-open-beats (cuts "
          "failing); counted as lost too.",
          s.beats_dropped_backlog);
  counter("medstream_gateway_wal_sync_failed_total",
          "Flushes of a write-ahead log that failed (its messages durable again at its cut).",
          s.wal_sync_failed);
  counter("medstream_gateway_batches_quarantined_total",
          "Batches the server quarantined (their results skipped, said in the user's .jsonl).",
          s.batches_quarantined);
  counter("medstream_gateway_beats_processed_total", "Beats the enclave reports processed.",
          s.beats_processed);
  counter("medstream_gateway_windows_total", "HRV windows written.", s.windows);
  counter("medstream_gateway_lost_messages_total",
          "Messages the devices sent that never arrived (from their sequence numbers).",
          s.lost_messages);
  counter("medstream_gateway_lost_beats_total",
          "Beats the devices sent that never arrived (from their sequence numbers).", s.lost_beats);
  counter("medstream_gateway_late_beats_total", "Beats first counted lost that arrived late.",
          s.recovered_beats);
  counter("medstream_gateway_too_late_beats_total",
          "Beats that arrived after a later batch was sealed (counted in the lost beats).",
          s.beats_too_late);
  counter("medstream_gateway_unsequenced_messages_total",
          "Messages without a sequence (v1, JSON without one, Bluetooth): losses not countable.",
          s.old_format_messages);
  t.Gauge("medstream_gateway_outstanding_batches", "Batches sealed whose results are not read yet.",
          static_cast<double>(outstanding()));
  t.Gauge("medstream_gateway_wal_bytes", "Size of the write-ahead log of open batches.",
          static_cast<double>(wal_bytes));
  t.Histogram("medstream_gateway_result_latency_seconds",
              "Per batch: its first beat received by the gateway to its result read.",
              metrics::LatencyBuckets(), s.latency_s);
  return t.str();
}

}  // namespace medstream::gateway

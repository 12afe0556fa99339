#include "owner/devices/devices.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "adapters/mqtt/mqtt.h"
#include "adapters/recording/recording.h"
#include "adapters/wfdb/ecg_file.h"
#include "adapters/wfdb/wfdb.h"
#include "common/base/bytes.h"
#include "common/base/file.h"
#include "common/crypto/crypto.h"
#include "owner/broker/broker.h"
#include "owner/sensor/sensor.h"

namespace medstream::devices {

namespace {

// One user's beats, made (or replayed) as they are sent.
struct Source {
  Source(const std::string& site, std::string name)
      : user(std::move(name)), topic(sensor::Topic(site, user)) {}
  // The next message: up to `n` beats until `end_s` (dropouts are not sent).
  void Fill(size_t n, double end_s) {
    message.clear();
    while (message.size() < n) {
      hrv::Beat b;
      if (generator) {
        b = generator->Next();
        if (b.t_s > end_s) break;
        if (generator->dropped()) continue;
      } else {
        if (next >= replay.size()) break;
        if (!ready.empty()) ready_last = ready[next];
        b = replay[next++];
      }
      message.push_back(b);
    }
  }
  // Keeps the message just published: the record holds what was sent, not what was made ahead.
  void Sent() {
    if (!record) return;
    for (const hrv::Beat& b : message)
      *record << b.t_s << "," << static_cast<float>(b.rr_ms) << "\n";
  }
  // Recordings are plaintext health data: 0600 files (in a 0700 folder, see the caller).
  Status Record(const std::string& dir) {
    const std::string path = dir + "/" + user + ".csv";
    if (auto s = CreatePrivateFile(path); !s) return s;
    record = std::make_unique<std::ofstream>(path);
    if (!*record) return IoError("cannot open " + path);
    *record << "time_s,rr_ms\n";
    record->precision(17);
    return {};
  }

  // This device's own connection (its certificate is its identity at the broker) and where its
  // session stands.
  Status Connect(const mqtt::Client::Options& options) {
    MEDSTREAM_TRY(c, mqtt::Client::Connect(options));
    client = std::move(c);
    return crypto::RandomBytes(
        {reinterpret_cast<uint8_t*>(&sequence.session), sizeof sequence.session});
  }
  // What the device has sent so far, retained by the broker (see sensor.h).
  Status PublishStatus(const std::string& site, bool final) {
    const auto payload =
        sensor::EncodeStatus({sequence.session, sequence.seq, sequence.first_beat, final});
    return client->Publish(sensor::StatusTopic(site, user), payload, 1, /*retain=*/true);
  }

  std::string user, topic;
  std::unique_ptr<mqtt::Client> client;
  sensor::Sequence sequence;  // of the next message
  std::optional<sensor::Generator> generator;
  std::vector<hrv::Beat> replay;
  // --replay-ecg: when each replayed beat became known to the detector (seconds, like t_s); the
  // message goes out then, as a device would send it.
  std::vector<double> ready;
  double ready_last = -1;  // of the message being filled
  size_t next = 0;
  std::vector<hrv::Beat> message;
  std::unique_ptr<std::ofstream> record;
};

// Replays keep the file's times unless --start moves them (see above).
constexpr double kReplayStartS = 0;
}  // namespace

std::string ReplayDeviceName(const std::string& path) {
  std::string stem = std::filesystem::path(path).stem().string();
  for (char& c : stem) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
  }
  return ("replay-" + stem).substr(0, 64);
}

Result<PublishSummary> Publish(const PublishOptions& o,
                               const std::function<void(const std::string&)>& say) {
  MEDSTREAM_TRY(addr, mqtt::ParseAddress(o.broker));
  const bool single = !o.cert.empty() || !o.key.empty();
  if (single && !o.credentials.empty()) {
    return Fail(Error::Code::kInvalidArgument, "--credentials DIR or --ca/--cert/--key, not both");
  }
  if (!single && o.credentials.empty()) {
    return Fail(Error::Code::kInvalidArgument,
                "the broker takes TLS clients with certificates only: pass --credentials DIR (a "
                "`medstream broker init` folder with the devices enrolled) or --ca/--cert/--key");
  }
  // Beats are made as they are sent (a Stream-Big run makes tens of millions), one message's
  // worth per user ahead.
  std::vector<Source> users;
  const double end_s = o.start_s + o.duration_s;
  if (!o.replay_ecg.empty()) {
    if (!o.replay.empty())
      return Fail(Error::Code::kInvalidArgument, "--replay or --replay-ecg, not both");
    // The detector runs here, on the sensor's side; each beat carries the time the detector
    // decided it, and is sent then (pacing below).
    auto ecg = wfdb::LoadEcg(o.replay_ecg, o.channel);
    if (!ecg) return std::unexpected(ecg.error());
    auto beats = wfdb::DetectBeats(*ecg);
    if (!beats) return std::unexpected(beats.error());
    if (beats->size() < 2)
      return Fail(Error::Code::kInvalidArgument, o.replay_ecg + ": fewer than two beats detected");
    Source src(o.site, o.device.empty()
                           ? "ecg-" + ReplayDeviceName(wfdb::RecordBase(o.replay_ecg)).substr(7)
                           : o.device);
    const double start = o.start_given ? o.start_s : kReplayStartS;
    for (size_t i = 1; i < beats->size(); ++i) {
      const auto& b = (*beats)[i];
      src.replay.push_back(
          {start + static_cast<double>(b.sample) / ecg->fs,
           static_cast<double>(b.sample - (*beats)[i - 1].sample) * 1000 / ecg->fs});
      src.ready.push_back(start + static_cast<double>(b.decided_at) / ecg->fs);
    }
    users.push_back(std::move(src));
  } else if (!o.replay.empty()) {
    auto rec = recording::ReadRecording(o.replay, {});
    if (!rec) return std::unexpected(rec.error());
    if (rec->beats.empty()) return Fail(Error::Code::kInvalidArgument, o.replay + " has no beats");
    // Its own device (a replay as user-0001 would collide with a simulated user and be dropped
    // as repeats), with the file's own beat times by default (a running sum from 0 for rr
    // files): windows then fall on exactly the beats `medstream hrv` sees offline. (An offset
    // of ~1.7e9 s would round times a hair below a window boundary onto it.)
    Source src(o.site, o.device.empty() ? ReplayDeviceName(o.replay) : o.device);
    const double start = o.start_given ? o.start_s : kReplayStartS;
    for (hrv::Beat b : rec->beats) {
      b.t_s += start;
      src.replay.push_back(b);
    }
    users.push_back(std::move(src));
  } else {
    for (int u = 1; u <= o.users; ++u) {
      Source src(o.site, sensor::UserName(u));
      src.generator.emplace(o.seed, u, o.start_s);
      users.push_back(std::move(src));
    }
  }
  if (single && users.size() != 1) {
    return Fail(Error::Code::kInvalidArgument, "--cert/--key are one device's; " +
                                                   std::to_string(users.size()) +
                                                   " users need --credentials DIR");
  }
  // Each device connects as itself. A persistent session, so messages in flight when the broker
  // goes away are sent again after it returns (a clean session would drop them); duplicates are
  // harmless downstream.
  for (Source& src : users) {
    broker::Credentials c = single ? broker::Credentials{o.ca, o.cert, o.key}
                                   : broker::ClientCredentials(o.credentials, src.user);
    mqtt::Client::Options co;
    co.host = addr.first;
    co.port = addr.second;
    co.client_id = "medstream-sensor-" + o.site + "-" + src.user;
    co.tls = {c.ca, c.cert, c.key};
    co.clean_session = false;
    if (auto s = src.Connect(co); !s) {
      return std::unexpected(std::move(s.error()).With(src.user));
    }
    // A new session starts: say so before its first message (sensor.h).
    if (auto s = src.PublishStatus(o.site, false); !s) return std::unexpected(s.error());
  }
  double speed = o.speed;
  if (o.rate > 0) {
    // Beats per second of heart time across users, from their profiles (or the recording).
    double per_heart_second = 0;
    if (users[0].generator == std::nullopt) {
      const auto& r = users[0].replay;
      per_heart_second = static_cast<double>(r.size()) / std::max(1.0, r.back().t_s - r[0].t_s);
    } else {
      for (const Source& src : users) {
        const auto& p = src.generator->profile();
        per_heart_second += p.mean_hr_bpm / 60 * (1 - p.dropout_rate);
      }
    }
    speed = o.rate / per_heart_second;
  }
  if (!o.record.empty()) {
    bool tightened = false;
    if (auto s = MakePrivateDir(o.record, &tightened); !s) return std::unexpected(s.error());
    if (tightened) say(o.record + " is now 0700 (it holds recorded beats)");
    for (Source& src : users) {
      if (auto s = src.Record(o.record); !s) return std::unexpected(s.error());
    }
  }
  const double heart_span =
      users[0].generator ? o.duration_s : users[0].replay.back().t_s - users[0].replay[0].t_s;
  say(fmt::format("{} users, {:.0f} s of heart time, {}", users.size(), heart_span,
                  speed == 0 ? "as fast as possible" : fmt::format("{:.6g}x real time", speed)));
  for (Source& src : users) src.Fill(static_cast<size_t>(o.per_message), end_s);
  // Heart time 0 of the pacing: the start (simulated users) or the replay's first beat (its
  // times can be anything, epoch seconds included).
  const double origin = !users[0].ready.empty() ? users[0].ready.front()
                        : !users[0].generator   ? users[0].replay.front().t_s
                                                : o.start_s;
  const auto wall0 = std::chrono::steady_clock::now();
  size_t published = 0, messages = 0;
  auto last_report = wall0;
  for (;;) {
    // The user whose next message is due first.
    Source* due = nullptr;
    for (Source& src : users) {
      if (!src.message.empty() && (!due || src.message.front().t_s < due->message.front().t_s)) {
        due = &src;
      }
    }
    if (!due) break;
    if (o.for_s > 0 &&
        std::chrono::steady_clock::now() - wall0 > std::chrono::duration<double>(o.for_s)) {
      break;
    }
    const double at = (due->ready.empty() ? due->message.back().t_s : due->ready_last) - origin;
    if (speed > 0) {
      std::this_thread::sleep_until(wall0 + std::chrono::duration<double>(at / speed));
    }
    const auto payload = sensor::EncodePayload(due->sequence, due->message);
    if (auto s = due->client->Publish(due->topic, payload, 1); !s) {
      return std::unexpected(s.error());
    }
    ++due->sequence.seq;
    due->sequence.first_beat += due->message.size();
    due->Sent();
    published += due->message.size();
    ++messages;
    due->Fill(static_cast<size_t>(o.per_message), end_s);
    const auto now = std::chrono::steady_clock::now();
    if (now - last_report > std::chrono::seconds(5)) {
      say(fmt::format("  {} beats published ({:.0f} % of the heart time)", published,
                      100 * std::min(1.0, at / heart_span)));
      last_report = now;
      for (Source& src : users) {
        if (auto s = src.PublishStatus(o.site, false); !s) return std::unexpected(s.error());
      }
    }
  }
  // The final status: how much each device sent, kept by the broker for the gateway.
  for (Source& src : users) {
    if (auto s = src.PublishStatus(o.site, true); !s) return std::unexpected(s.error());
  }
  for (Source& src : users) {
    if (auto s = src.client->Flush(30000); !s)
      return std::unexpected(std::move(s.error()).With(src.user));
  }
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  // Everything is acknowledged; closing the connections should take a moment. Said when it does
  // not (a harness waiting for this process to end would otherwise see only a slow run).
  const size_t devices = users.size();
  const auto closing = std::chrono::steady_clock::now();
  users.clear();
  if (const double s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - closing).count();
      s > 1) {
    say(fmt::format("closing {} connections took {:.1f} s", devices, s));
  }
  PublishSummary summary;
  summary.users = devices;
  summary.beats = published;
  summary.messages = messages;
  summary.seconds = wall;
  return summary;
}

}  // namespace medstream::devices

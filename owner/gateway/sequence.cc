#include "owner/gateway/sequence.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

namespace medstream::gateway {

namespace {

double Finite(const nlohmann::json& j) {
  // JSON has no infinities: they are stored as null with their sign in the key's meaning.
  return j.is_null() ? std::numeric_limits<double>::quiet_NaN() : j.get<double>();
}

// A count from the state file: a JSON whole number, as Save writes it. nlohmann's get<uint64_t>()
// would wrap a negative one and hit undefined behaviour on a huge float; get_ref throws
// json::type_error for anything but an unsigned integer, and Load turns that into kCorrupt.
uint64_t Count(const nlohmann::json& j) {
  return j.get_ref<const nlohmann::json::number_unsigned_t&>();
}

nlohmann::json Time(double t) {
  if (std::isinf(t)) return t > 0 ? "+inf" : "-inf";
  return t;
}

double TimeFrom(const nlohmann::json& j) {
  if (j.is_string()) {
    if (j == "+inf") return std::numeric_limits<double>::infinity();
    if (j == "-inf") return -std::numeric_limits<double>::infinity();
    throw nlohmann::json::type_error::create(302, "bad time", &j);
  }
  return Finite(j);
}

// A device may claim up to 2^53 messages in its status; across many devices the sum must not wrap.
uint64_t SaturatingAdd(uint64_t a, uint64_t b) {
  return a > std::numeric_limits<uint64_t>::max() - b ? std::numeric_limits<uint64_t>::max()
                                                      : a + b;
}

}  // namespace

void SequenceTracker::Start(DeviceCount& d, uint64_t session, Observation& o) {
  if (d.known) {
    o.new_session = true;
    d.previous = d.current;
    d.has_previous = true;
  }
  const double last_t = d.current.last_t;
  d.known = true;
  d.current = SessionCount{.session = session, .last_t = last_t};
  ++d.sessions;
}

void SequenceTracker::Advance(DeviceCount& d, SessionCount& c, const sensor::Sequence& sq,
                              uint64_t count, double t_first, double t_last, Observation& o) {
  const uint64_t lost_messages = sq.seq - c.next_seq;
  const uint64_t lost_beats = sq.first_beat > c.next_beat ? sq.first_beat - c.next_beat : 0;
  if (lost_messages > 0 || lost_beats > 0) {
    d.gaps.push_back({.session = c.session,
                      .seq_from = c.next_seq,
                      .seq_to = sq.seq,
                      .beat_from = c.next_beat,
                      .beat_to = c.next_beat + lost_beats,
                      .t_before = c.last_t,
                      .t_after = t_first});
    if (d.gaps.size() > kMaxGapsPerDevice) d.gaps.pop_front();
    d.lost_messages += lost_messages;
    d.lost_beats += lost_beats;
    o.lost_messages += lost_messages;
    o.lost_beats += lost_beats;
  }
  c.next_seq = sq.seq + 1;
  c.next_beat = std::max(c.next_beat, sq.first_beat + count);
  c.last_t = std::max(c.last_t, t_last);
}

void SequenceTracker::Fill(DeviceCount& d, const sensor::Sequence& sq, uint64_t count,
                           double t_first, double t_last, Observation& o) {
  for (auto it = d.gaps.begin(); it != d.gaps.end(); ++it) {
    if (it->session != sq.session || sq.seq < it->seq_from || sq.seq >= it->seq_to) continue;
    const Gap g = *it;
    const uint64_t from = std::clamp(sq.first_beat, g.beat_from, g.beat_to);
    const uint64_t to = std::clamp(sq.first_beat + count, g.beat_from, g.beat_to);
    d.lost_messages -= 1;
    d.lost_beats -= to - from;
    d.recovered_beats += to - from;
    o.recovered_beats += to - from;
    // What is left of the gap on either side of this message.
    Gap left = g, right = g;
    left.seq_to = sq.seq;
    left.beat_to = from;
    left.t_after = t_first;
    right.seq_from = sq.seq + 1;
    right.beat_from = to;
    right.t_before = t_last;
    it = d.gaps.erase(it);
    for (const Gap& part : {right, left}) {
      if (part.seq_from < part.seq_to) {
        it = d.gaps.insert(it, part);
      } else {
        d.lost_beats -= part.beats();  // beats counted without a message: nothing left to wait for
      }
    }
    return;
  }
  o.repeat = true;
}

Observation SequenceTracker::OnMessage(const std::string& device, const sensor::Sequence& sq,
                                       uint64_t count, double t_first, double t_last) {
  Observation o;
  DeviceCount& d = devices_[device];
  if (d.has_previous && sq.session == d.previous.session && sq.session != d.current.session) {
    // A late message of the session before.
    if (sq.seq >= d.previous.next_seq) {
      Advance(d, d.previous, sq, count, t_first, t_last, o);
    } else {
      Fill(d, sq, count, t_first, t_last, o);
    }
    return o;
  }
  if (!d.known && resume_unknown_) {
    Start(d, sq.session, o);
    d.current.next_seq = sq.seq;  // counted from here: nothing before it is known
    d.current.next_beat = sq.first_beat;
  }
  if (!d.known || d.current.session != sq.session) Start(d, sq.session, o);
  if (sq.seq >= d.current.next_seq) {
    Advance(d, d.current, sq, count, t_first, t_last, o);
  } else {
    Fill(d, sq, count, t_first, t_last, o);
  }
  return o;
}

Observation SequenceTracker::OnStatus(const std::string& device, const sensor::DeviceStatus& st) {
  Observation o;
  DeviceCount& d = devices_[device];
  SessionCount* c = nullptr;
  if (d.known && st.session == d.current.session) {
    c = &d.current;
  } else if (d.has_previous && st.session == d.previous.session) {
    c = &d.previous;
  } else {
    // A session none of whose messages arrived yet: a device publishes its status when a session
    // starts, so this is its newest one.
    const bool resume = !d.known && resume_unknown_;
    Start(d, st.session, o);
    c = &d.current;
    if (resume) {  // counted from what it says it has sent: nothing before it is known
      c->next_seq = st.messages;
      c->next_beat = st.beats;
    }
  }
  if (st.messages > c->next_seq) {
    // The tail of the session, sent but not (yet) here: lost until it arrives.
    const double t_after = std::numeric_limits<double>::infinity();
    Advance(d, *c, {st.session, st.messages, st.beats}, 0, t_after, c->last_t, o);
    c->next_seq = st.messages;
  }
  return o;
}

uint64_t SequenceTracker::LostBeatsIn(const std::string& device, double t_start,
                                      double t_end) const {
  auto it = devices_.find(device);
  if (it == devices_.end()) return 0;
  uint64_t n = 0;
  for (const Gap& g : it->second.gaps) {
    if (g.t_before < t_end && g.t_after > t_start) n += g.beats();
  }
  return n;
}

void SequenceTracker::ForgetGapsBefore(const std::string& device, double t) {
  auto it = devices_.find(device);
  if (it == devices_.end()) return;
  auto& gaps = it->second.gaps;
  std::erase_if(gaps, [&](const Gap& g) { return g.t_after < t; });
}

void SequenceTracker::CopyDevice(const SequenceTracker& other, const std::string& device) {
  resume_unknown_ = other.resume_unknown_;
  if (auto it = other.devices_.find(device); it != other.devices_.end()) {
    devices_.insert_or_assign(device, it->second);
  } else {
    devices_.erase(device);
  }
}

uint64_t SequenceTracker::lost_messages() const {
  uint64_t n = 0;
  for (const auto& [name, d] : devices_) n = SaturatingAdd(n, d.lost_messages);
  return n;
}
uint64_t SequenceTracker::lost_beats() const {
  uint64_t n = 0;
  for (const auto& [name, d] : devices_) n = SaturatingAdd(n, d.lost_beats);
  return n;
}
uint64_t SequenceTracker::recovered_beats() const {
  uint64_t n = 0;
  for (const auto& [name, d] : devices_) n = SaturatingAdd(n, d.recovered_beats);
  return n;
}

std::string SequenceTracker::Save() const {
  auto session = [](const SessionCount& c) {
    return nlohmann::json::array({c.session, c.next_seq, c.next_beat, Time(c.last_t)});
  };
  std::string out;
  if (resume_unknown_) out += nlohmann::json({{"resume_unknown", true}}).dump() + "\n";
  for (const auto& [name, d] : devices_) {
    nlohmann::json gaps = nlohmann::json::array();
    for (const Gap& g : d.gaps) {
      gaps.push_back({g.session, g.seq_from, g.seq_to, g.beat_from, g.beat_to, Time(g.t_before),
                      Time(g.t_after)});
    }
    nlohmann::json j = {{"device", name},
                        {"known", d.known},
                        {"current", session(d.current)},
                        {"sessions", d.sessions},
                        {"lost_messages", d.lost_messages},
                        {"lost_beats", d.lost_beats},
                        {"recovered_beats", d.recovered_beats},
                        {"gaps", gaps}};
    if (d.has_previous) j["previous"] = session(d.previous);
    out += j.dump() + "\n";
  }
  return out;
}

Result<SequenceTracker> SequenceTracker::Load(std::string_view text) {
  SequenceTracker t;
  size_t at = 0, line_no = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(at, end - at);
    at = end + 1;
    ++line_no;
    if (line.empty()) continue;
    try {
      const auto j = nlohmann::json::parse(line);
      if (line_no == 1 && j.is_object() && j.size() == 1 && j.contains("resume_unknown")) {
        t.resume_unknown_ = j.at("resume_unknown").get<bool>();
        continue;
      }
      auto session = [](const nlohmann::json& a) {
        return SessionCount{Count(a.at(0)), Count(a.at(1)), Count(a.at(2)), TimeFrom(a.at(3))};
      };
      DeviceCount d;
      d.known = j.at("known").get<bool>();
      d.current = session(j.at("current"));
      if (j.contains("previous")) {
        d.has_previous = true;
        d.previous = session(j.at("previous"));
      }
      d.sessions = Count(j.at("sessions"));
      d.lost_messages = Count(j.at("lost_messages"));
      d.lost_beats = Count(j.at("lost_beats"));
      d.recovered_beats = Count(j.at("recovered_beats"));
      for (const auto& g : j.at("gaps")) {
        if (d.gaps.size() == kMaxGapsPerDevice) break;
        d.gaps.push_back({Count(g.at(0)), Count(g.at(1)), Count(g.at(2)), Count(g.at(3)),
                          Count(g.at(4)), TimeFrom(g.at(5)), TimeFrom(g.at(6))});
      }
      t.devices_[j.at("device").get<std::string>()] = std::move(d);
    } catch (const nlohmann::json::exception& e) {
      return Corrupt("device sequence state line " + std::to_string(line_no) + ": " + e.what());
    }
  }
  return t;
}

}  // namespace medstream::gateway

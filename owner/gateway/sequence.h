// sequence: the gateway's count of what each device sent and what never arrived.
//
// Every sensor message carries (session, seq, first_beat) (sensor.h, payload version 2), and each
// device's retained status says how much it has sent. SequenceTracker follows them per device:
// a message past the next expected one opens a gap (its messages and beats lost); a status past
// what arrived closes the session's tail the same way; a late message that falls into a gap fills
// it again (counted as recovered, no longer lost); a repeat (QoS 1 is at least once) changes
// nothing. Observing a message twice is a no-op, so the gateway can replay its write-ahead log
// into a tracker restored from its last saved state and reach the same counts.
//
// A gap also remembers the times around it (the last beat before, the first after; +inf for a
// lost tail), so the results can mark the windows built over a hole.
//
// Limits: at most kMaxGapsPerDevice gaps are remembered per device (older ones keep their counts
// but can no longer be filled or mark windows); state is bounded by the number of devices.
// Not thread-safe: the gateway calls it under its lock. No I/O: Save/Load go through text.
#pragma once

#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <string>

#include "common/base/result.h"
#include "owner/sensor/sensor.h"

namespace medstream::gateway {

inline constexpr size_t kMaxGapsPerDevice = 1024;

struct Gap {
  uint64_t session = 0;
  uint64_t seq_from = 0, seq_to = 0;                           // messages [from, to) missing
  uint64_t beat_from = 0, beat_to = 0;                         // beats [from, to) missing
  double t_before = -std::numeric_limits<double>::infinity();  // last beat received before
  double t_after = std::numeric_limits<double>::infinity();    // first beat received after
  uint64_t beats() const { return beat_to - beat_from; }
};

// Where a device's session stands.
struct SessionCount {
  uint64_t session = 0;
  uint64_t next_seq = 0, next_beat = 0;                      // the next message expected
  double last_t = -std::numeric_limits<double>::infinity();  // last beat of the newest message
};

struct DeviceCount {
  bool known = false;  // a version 2 message or a status was seen
  SessionCount current;
  // The session before (a late message or the final status of a restarted device may still come).
  bool has_previous = false;
  SessionCount previous;
  uint64_t sessions = 0;
  uint64_t lost_messages = 0, lost_beats = 0;  // still missing, over all sessions
  uint64_t recovered_beats = 0;                // arrived late, into a gap
  std::deque<Gap> gaps;
};

// What one observation changed, for a log line.
struct Observation {
  bool new_session = false;
  bool repeat = false;
  uint64_t lost_messages = 0, lost_beats = 0;  // newly found missing
  uint64_t recovered_beats = 0;                // newly filled
};

class SequenceTracker {
 public:
  // A tracker for state that was lost (STATE/devices damaged): a device it does not know yet
  // starts where it is first seen (its first message, or its status), instead of from message
  // 0, so that what the gateway received before the loss is not counted as lost. What a device
  // lost before that point cannot be counted. Saved and loaded with the state.
  static SequenceTracker Resuming() {
    SequenceTracker t;
    t.resume_unknown_ = true;
    return t;
  }

  // A version 2 message of `device` with `count` beats from t_first to t_last.
  Observation OnMessage(const std::string& device, const sensor::Sequence& sq, uint64_t count,
                        double t_first, double t_last);
  // A device's status (its retained one included).
  Observation OnStatus(const std::string& device, const sensor::DeviceStatus& status);

  // Lost beats of `device` whose gap overlaps the window [t_start, t_end].
  uint64_t LostBeatsIn(const std::string& device, double t_start, double t_end) const;
  // Forgets gaps that end before `t` (no later window can overlap them).
  void ForgetGapsBefore(const std::string& device, double t);
  // Takes `device`'s entry (and the Resuming() flag) from `other`, or drops it if `other` has
  // none: the gateway keeps a second tracker of what is durable and brings one device up to date
  // in it once that device's beats are.
  void CopyDevice(const SequenceTracker& other, const std::string& device);

  uint64_t lost_messages() const;
  uint64_t lost_beats() const;
  uint64_t recovered_beats() const;
  const std::map<std::string, DeviceCount>& devices() const { return devices_; }

  // One line per device (and a first line {"resume_unknown":true} for a Resuming() tracker); Load
  // refuses anything malformed (kCorrupt).
  std::string Save() const;
  static Result<SequenceTracker> Load(std::string_view text);

 private:
  static void Advance(DeviceCount& d, SessionCount& c, const sensor::Sequence& sq, uint64_t count,
                      double t_first, double t_last, Observation& o);
  static void Fill(DeviceCount& d, const sensor::Sequence& sq, uint64_t count, double t_first,
                   double t_last, Observation& o);
  static void Start(DeviceCount& d, uint64_t session, Observation& o);
  std::map<std::string, DeviceCount> devices_;
  bool resume_unknown_ = false;  // see Resuming()
};

}  // namespace medstream::gateway

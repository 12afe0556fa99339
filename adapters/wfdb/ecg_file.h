// wfdb/ecg_file: an ECG to analyse, from a WFDB record (DIR/NAME or DIR/NAME.hea) or a CSV file
// (header row; a time_s column and signal columns, e.g. "time_s,MLII_mV,V5_mV"), and its reference
// beats (a WFDB annotator, or an annotation CSV with sample and is_beat or symbol columns).
// File readers on top of wfdb.h; thread-safe (no shared state).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "algo/ecg/qrs.h"
#include "algo/ecg/score.h"
#include "algo/hrv/types.h"
#include "common/base/result.h"

namespace medstream::wfdb {

struct Ecg {
  std::string name;     // the record's name
  std::string channel;  // the signal's description or column name
  double fs = 0;
  std::vector<double> samples;  // physical units (mV for MIT-BIH)
};

// `channel`: 0-based signal index.
Result<Ecg> LoadEcg(const std::string& path, int channel);

// Reference beat samples (EC57 beat labels only), in order: from `reference_csv` if given, else
// from the record's annotator file.
Result<std::vector<int64_t>> LoadReferenceBeats(const std::string& path,
                                                const std::string& annotator,
                                                const std::string& reference_csv);

// The QRS detector over a whole ECG.
Result<std::vector<ecg::Beat>> DetectBeats(const Ecg& ecg);

// A record scored against its reference beats (EC57, 150 ms; reference beats past the signal's
// end are dropped, so an excerpt is scored over its own span).
struct Evaluation {
  std::string name;
  uint64_t reference_beats = 0;
  ecg::Score score;
  double decision_max_s = 0;  // first-pass beats after the learning period (algo/ecg/qrs.h)
  uint64_t searchback = 0;
};
Result<Evaluation> EvaluateRecord(const std::string& path, const std::string& annotator,
                                  const std::string& reference_csv, int channel);

// A record's beats for HRV: its annotator's beats, with NN intervals only between normal
// (sinus-conducted: N, L, R) beats as the Task Force defines them, the others excluded and counted
// by the beat kind next to them; or, with `detect`, the QRS detector's beats on `channel` (every
// interval kept: the HRV cleaning judges them). `source` says which and what was excluded.
struct BeatSeries {
  std::vector<hrv::Beat> beats;
  std::string source;
  uint64_t excluded = 0;  // intervals left out (annotations only)
};
Result<BeatSeries> ReadRecordBeats(const std::string& path, const std::string& annotator,
                                   bool detect, int channel);

}  // namespace medstream::wfdb

// wfdb: PhysioNet's WFDB records (the format of MIT-BIH and most public ECG databases), read on
// the data owner's or the sensor's side: headers (.hea), signal files in formats 212 and 16, and
// MIT-format annotation files (.atr and other annotators).
//
// Everything read is checked: header fields and their ranges, every signal's checksum and initial
// value against the header, annotation codes and AUX lengths. Errors name the file and the line
// or byte offset. Limits: at most 64 signals, 2^31 samples per signal, 16 MiB of header; multi-
// segment (and other layout) records are refused clearly.
//
// Pure parsing functions over bytes (ParseHeader, DecodeSignals, ParseAnnotations) plus thin file
// readers; no shared state, thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/base/result.h"

namespace medstream::wfdb {

struct Signal {
  std::string file;
  int format = 0;     // 212 or 16
  double gain = 200;  // ADC units per physical unit (0 in a header means 200)
  int baseline = 0;   // ADC value of physical 0 (defaults to adc_zero)
  std::string units = "mV";
  int adc_resolution = 12;
  int adc_zero = 0;
  int initial = 0;   // first sample, checked on read
  int checksum = 0;  // 16-bit sum of all samples, checked on read
  bool has_checksum = false;
  std::string description;
};

struct Header {
  std::string record;
  double fs = 250;      // samples per second per signal
  int64_t samples = 0;  // per signal (0: unknown, read to the end of the file)
  std::vector<Signal> signals;
};

// A header's text; `where` names it in errors.
Result<Header> ParseHeader(std::string_view text, const std::string& where);
// The samples of every signal (ADC units), from the files' bytes (one blob for all signals of
// one file, interleaved as the format says). Checks the checksums and initial values.
Result<std::vector<std::vector<int>>> DecodeSignals(const Header& h, std::span<const uint8_t> data,
                                                    const std::string& where);

struct Annotation {
  int64_t sample = 0;
  char symbol = '?';  // MIT code as its one-letter mnemonic ('N', 'V', '+', ...)
  int code = 0;
  int subtype = 0, chan = 0, num = 0;
  std::string aux;
  bool IsBeat() const;  // ANSI/AAMI EC57 beat labels: N L R B A a J S V r F e j n E / f Q ?
};
Result<std::vector<Annotation>> ParseAnnotations(std::span<const uint8_t> data,
                                                 const std::string& where);

// A record on disk: `path` is DIR/NAME or DIR/NAME.hea.
struct Record {
  Header header;
  std::vector<std::vector<int>> samples;  // [signal][sample], ADC units
  // Physical value (e.g. mV) of signal s at sample i.
  double Physical(size_t s, size_t i) const;
  std::string dir;
};
Result<Record> ReadRecord(const std::string& path);
// DIR/NAME.<annotator>.
Result<std::vector<Annotation>> ReadAnnotations(const std::string& record_path,
                                                const std::string& annotator);
// DIR/NAME for DIR/NAME or DIR/NAME.hea.
std::string RecordBase(const std::string& path);

}  // namespace medstream::wfdb

// Vanilla mode: no enclave and no crypto, the performance baseline of the original research.
// The host processes plaintext batch files with the same StreamTable (the same job code) the
// enclave runs, and writes plaintext result files.
#pragma once

#include "common/streams/pool.h"
#include "common/streams/streams.h"

namespace medstream::host {

class VanillaProcessor {
 public:
  // Windows analysed on one thread per CPU, as the enclave does (a fair baseline).
  explicit VanillaProcessor(enclave::StreamConfig config) : config_(std::move(config)), pool_(0) {
    streams_.set_parallel(&pool_);
  }
  // A plaintext batch file in, a plaintext result file out.
  Result<crypto::Bytes> ProcessBatch(crypto::ByteView file);
  // Checkpoints (plaintext: vanilla protects nothing).
  void Save(ByteWriter* w) const { streams_.Save(w); }
  Status Load(ByteReader* r) {
    return streams_.Load(r, [this](uint32_t) { return &config_; });
  }

 private:
  enclave::StreamConfig config_;
  streams::ThreadPool pool_;
  streams::StreamTable streams_;
  crypto::Bytes result_;  // reused across batches
  std::vector<hrv::Beat> beats_;
};

}  // namespace medstream::host

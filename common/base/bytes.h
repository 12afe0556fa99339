// Little-endian binary encoding for medstream's wire formats and sealed state.
//
// ByteWriter appends fixed-width integers, IEEE doubles and length-prefixed blobs; ByteReader
// reads them back with bounds checks, so a truncated or hostile buffer becomes a Corrupt error
// naming the field, never an out-of-bounds read.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.h"

namespace medstream {

static_assert(std::endian::native == std::endian::little, "wire formats assume little-endian");

class ByteWriter {
 public:
  explicit ByteWriter(std::vector<uint8_t>* out) : out_(out) {}

  void U8(uint8_t v) { out_->push_back(v); }
  void U16(uint16_t v) { Raw(&v, sizeof v); }
  void U32(uint32_t v) { Raw(&v, sizeof v); }
  void U64(uint64_t v) { Raw(&v, sizeof v); }
  void I64(int64_t v) { Raw(&v, sizeof v); }
  void F64(double v) { Raw(&v, sizeof v); }
  void Bytes(std::span<const uint8_t> b) { Raw(b.data(), b.size()); }
  // u32 length, then the bytes.
  void Blob(std::span<const uint8_t> b) {
    U32(static_cast<uint32_t>(b.size()));
    Bytes(b);
  }
  void String(std::string_view s) { Blob({reinterpret_cast<const uint8_t*>(s.data()), s.size()}); }
  void Raw(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    out_->insert(out_->end(), b, b + n);
  }
  size_t size() const { return out_->size(); }

 private:
  std::vector<uint8_t>* out_;
};

class ByteReader {
 public:
  explicit ByteReader(std::span<const uint8_t> in) : in_(in) {}

  Result<uint8_t> U8(const char* what) { return Fixed<uint8_t>(what); }
  Result<uint16_t> U16(const char* what) { return Fixed<uint16_t>(what); }
  Result<uint32_t> U32(const char* what) { return Fixed<uint32_t>(what); }
  Result<uint64_t> U64(const char* what) { return Fixed<uint64_t>(what); }
  Result<int64_t> I64(const char* what) { return Fixed<int64_t>(what); }
  Result<double> F64(const char* what) { return Fixed<double>(what); }
  Result<std::span<const uint8_t>> Bytes(size_t n, const char* what) {
    if (remaining() < n) return Truncated(what, n);
    auto out = in_.subspan(pos_, n);
    pos_ += n;
    return out;
  }
  // A u32 length then that many bytes, refusing lengths over `max`.
  Result<std::span<const uint8_t>> Blob(const char* what, size_t max = SIZE_MAX) {
    auto n = U32(what);
    if (!n) return std::unexpected(n.error());
    if (*n > max) {
      return Corrupt(std::string(what) + ": length " + std::to_string(*n) + " exceeds the limit " +
                     std::to_string(max));
    }
    return Bytes(*n, what);
  }
  Result<std::string> String(const char* what, size_t max = SIZE_MAX) {
    auto b = Blob(what, max);
    if (!b) return std::unexpected(b.error());
    return std::string(b->begin(), b->end());
  }

  size_t remaining() const { return in_.size() - pos_; }
  size_t position() const { return pos_; }
  bool done() const { return pos_ == in_.size(); }
  Status ExpectDone(const char* what) const {
    if (!done()) {
      return Corrupt(std::string(what) + ": " + std::to_string(remaining()) +
                     " unexpected trailing bytes");
    }
    return {};
  }

 private:
  template <class T>
  Result<T> Fixed(const char* what) {
    if (remaining() < sizeof(T)) return Truncated(what, sizeof(T));
    T v;
    std::memcpy(&v, in_.data() + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }
  std::unexpected<Error> Truncated(const char* what, size_t need) const {
    return Corrupt(std::string("truncated ") + what + ": need " + std::to_string(need) +
                   " bytes at offset " + std::to_string(pos_) + ", have " +
                   std::to_string(remaining()));
  }

  std::span<const uint8_t> in_;
  size_t pos_ = 0;
};

// Shorthand for the common "read or return the error" step.
#define MEDSTREAM_TRY(var, expr)                                   \
  auto var##_result = (expr);                                      \
  if (!var##_result) return std::unexpected(var##_result.error()); \
  auto var = std::move(*var##_result)

}  // namespace medstream

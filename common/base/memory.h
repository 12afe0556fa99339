// Allocator tuning for processes that handle large batches.
//
// glibc serves allocations above its mmap threshold (at most 32 MiB) with fresh mappings and
// returns them on free, so every large batch buffer is page-faulted and zeroed anew: measured at
// 60 % of the time of a 32 MB SDNN batch. Raising the mmap threshold to its maximum and keeping
// freed memory in the heap makes those buffers reusable.
//
// RecentPeak and WorthReleasing size what a long-lived process keeps to its recent work: buffers
// stay for reuse while batches of their size keep coming, and go back to the system once the last
// kRecentCalls calls needed a quarter of them or less. MappedBuffer is such a buffer in a mapping
// of its own, which can be given back even where memory is locked (the enclave: the heap's free
// pages cannot be returned there, madvise(MADV_DONTNEED) refuses locked memory). Neither is
// thread-safe (one owner each).
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>

namespace medstream {

void TuneAllocatorForLargeBuffers();

inline constexpr size_t kRecentCalls = 16;
// Below this a buffer is always kept: releasing it would save little and cost faults.
inline constexpr size_t kMinReleaseBytes = size_t{8} << 20;

// The largest of the last kRecentCalls values added.
class RecentPeak {
 public:
  void Add(size_t bytes) { ring_[next_++ % ring_.size()] = bytes; }
  size_t value() const { return *std::max_element(ring_.begin(), ring_.end()); }

 private:
  std::array<size_t, kRecentCalls> ring_{};
  size_t next_ = 0;
};

// Whether `held` bytes are worth giving back when recent calls needed at most `needed`: over
// kMinReleaseBytes and over four times the need, so steady work never frees and faults anew.
inline bool WorthReleasing(size_t held, size_t needed) {
  return held > kMinReleaseBytes && held / 4 > needed;
}

// Memory for n trivially copyable values in an anonymous mapping of its own. Resize keeps the
// mapping while n fits; growing maps anew without copying (the contents are the caller's to fill).
// Mappings are wiped before they are unmapped: they may have held plaintext.
class MappedBytes {
 public:
  MappedBytes() = default;
  MappedBytes(const MappedBytes&) = delete;
  MappedBytes& operator=(const MappedBytes&) = delete;
  ~MappedBytes() { Release(); }
  // False when the system refuses the memory (the old mapping is gone then too).
  bool Resize(size_t bytes);
  void Release();
  void* data() const { return data_; }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0, capacity_ = 0;
  size_t touched_ = 0;  // the most bytes in use since mapped: what may hold old contents
};

template <class T>
class MappedBuffer {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  bool Resize(size_t n) { return n <= SIZE_MAX / sizeof(T) && bytes_.Resize(n * sizeof(T)); }
  void Release() { bytes_.Release(); }
  T* data() const { return static_cast<T*>(bytes_.data()); }
  size_t size() const { return bytes_.size() / sizeof(T); }
  size_t capacity_bytes() const { return bytes_.capacity(); }
  std::span<T> span() const { return {data(), size()}; }

 private:
  MappedBytes bytes_;
};

}  // namespace medstream

#include "common/base/memory.h"

#include <malloc.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>

namespace medstream {

void TuneAllocatorForLargeBuffers() {
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
  mallopt(M_TOP_PAD, 64 * 1024 * 1024);
}

bool MappedBytes::Resize(size_t bytes) {
  if (bytes <= capacity_) {
    size_ = bytes;
    touched_ = std::max(touched_, bytes);
    return true;
  }
  Release();
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t capacity = (bytes + page - 1) / page * page;
  void* p = mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  data_ = p;
  size_ = touched_ = bytes;
  capacity_ = capacity;
  return true;
}

void MappedBytes::Release() {
  if (!data_) return;
  // Only what was used: untouched pages are still zero and would be faulted in just to be wiped.
  explicit_bzero(data_, touched_);
  munmap(data_, capacity_);
  data_ = nullptr;
  size_ = capacity_ = touched_ = 0;
}

}  // namespace medstream

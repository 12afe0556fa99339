#include "common/base/memory.h"

#include <malloc.h>

namespace medstream {

void TuneAllocatorForLargeBuffers() {
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
  mallopt(M_TOP_PAD, 64 * 1024 * 1024);
}

}  // namespace medstream

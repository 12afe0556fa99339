// Allocator tuning for processes that handle large batches.
//
// glibc serves allocations above its mmap threshold (at most 32 MiB) with fresh mappings and
// returns them on free, so every large batch buffer is page-faulted and zeroed anew: measured at
// 60 % of the time of a 32 MB SDNN batch. Raising the mmap threshold to its maximum and keeping
// freed memory in the heap makes those buffers reusable.
#pragma once

namespace medstream {

void TuneAllocatorForLargeBuffers();

}  // namespace medstream

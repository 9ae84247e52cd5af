#pragma once
// Splits rows [0, rows) of a loop into one contiguous range per OpenMP thread, for the runtime's
// own row loops (the depthwise and stem loops): fn(begin, end) on each thread that has rows.
#include <omp.h>

#include <cstdint>

namespace arcforge::runtime::detail {

template <class Fn>
void for_rows_on_each_thread(int64_t rows, const Fn& fn) {
#pragma omp parallel
  {
    const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t begin = rows * t / threads, end = rows * (t + 1) / threads;
    if (begin < end) fn(begin, end);
  }
}

}  // namespace arcforge::runtime::detail

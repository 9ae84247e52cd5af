#pragma once
// One item per thread at a time, for work whose items are large and uneven (a photo through the
// face pipeline): each of `workers` threads, the caller's included, takes the next index until none
// are left. Running one photo per core with single-threaded models keeps every core busy through
// the single-threaded stages (JPEG decoding) and has no per-operator barrier between cores.
#include <cstddef>
#include <functional>

namespace arcforge {

// Calls body(i) for every i in [0, count), in no particular order across threads (each thread's
// own indices ascend). The first exception stops the others from taking new indices and is
// rethrown here once every thread has finished. workers < 1 counts as 1.
void parallel_for_each(size_t count, int workers, const std::function<void(size_t)>& body);

// `requested` if positive, else the machine's hardware threads (at least 1).
int worker_count(int requested);

}  // namespace arcforge

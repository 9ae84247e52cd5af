#pragma once
// Large batches in slices ("micro-batches"). A light network on large images (SCRFD-500m at
// 640x640: 16 MB of live activations per image) runs faster one image at a time than 32 at once:
// one image's layer outputs stay in the last-level cache between layers, 32 images' go out to
// memory and back at every layer. Where the graph computes each image from that image alone, the
// Session runs such a batch as slices through the plan for the slice's size, writing each slice's
// outputs in place in the whole batch's.
#include <cstdint>
#include <string>

#include "plan.hpp"

namespace arcforge::runtime::detail {

// Why `graph` may not run a batch as independent slices along axis 0, judged from its plans for a
// batch of 1 (`one`) and of 2 (`two`): every value computed from the inputs must carry the batch on
// axis 0 (size 1 in `one`, 2 in `two`, the other dims alike) and every node must compute each
// image from that image alone (no softmax, concatenation or transposition across axis 0, no batch
// size read as data, ...). Returns "" where it may.
std::string batch_split_obstacle(const Graph& graph, const Plan& one, const Plan& two);

// Whether the graph's inputs leave axis 0 free (declared -1 or undeclared) and its nodes are all
// of a kind batch_split_obstacle can judge: the cheap test before any plan is built.
bool may_split_batch(const Graph& graph);

// Images per slice for a batch of `n` (n itself: no split). As many images as keep one slice's
// activations (`arena_per_image` bytes each) within half of `cache_bytes`, at least one; but the
// whole batch where the weights, read once per slice, would then cost more than twice an image's
// activations per image (r50: 174 MB of weights, 14 MB of activations, so no split).
int64_t micro_batch_size(int64_t n, std::size_t arena_per_image, std::size_t weight_bytes, std::size_t cache_bytes);

// The largest data cache one core of this CPU sees, in bytes (sysfs, else sysconf, else 8 MiB),
// at most kCoreCacheShareCap.
std::size_t last_level_cache_bytes();
// One core's working share of a last-level cache: an L3 larger than this is a whole server
// socket's, shared by all its cores (Intel's mesh; a VM sees the host's whole, 260 MiB on a
// 2-core Emerald Rapids guest), of which one core's layers keep no more than an AMD core
// complex's 32 MiB. Measured: SCRFD-500m 640x640 at batch 16 on that guest ran 13.2 ms per image
// in the slices of 8 the whole L3 gave, 11.5 ms in slices of 1.
constexpr std::size_t kCoreCacheShareCap = std::size_t{32} << 20;

// Bytes of the graph's constants as the convolutions and inner products read them: 1 per value of
// an int8 kernel's weights, 2 per other value where they compute in bf16, else 4.
std::size_t weight_bytes(const Graph& graph, Precision precision);

}  // namespace arcforge::runtime::detail

#pragma once
// The only place that knows which libtorch version we build against (Debian's 1.13 on CPU, the 2.x
// of the GPU machine's PyTorch). Everything else calls these.
#include <torch/torch.h>
#include <ATen/autocast_mode.h>

#include <sstream>
#include <string>
#include <type_traits>
#include <variant>

#ifdef ARCFORGE_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace arcforge::compat {

inline constexpr int torch_major() { return TORCH_VERSION_MAJOR; }

// Autocast's on/off flag on a device type alone: the dtype and the cast cache stay as they are.
inline void set_autocast_flag(torch::DeviceType device, bool enabled) {
#if TORCH_VERSION_MAJOR >= 2 && TORCH_VERSION_MINOR >= 4 || TORCH_VERSION_MAJOR >= 3
  at::autocast::set_autocast_enabled(device, enabled);
#else
  if (device == torch::kCPU) {
    at::autocast::set_cpu_enabled(enabled);
  } else {
    at::autocast::set_enabled(enabled);
  }
#endif
}

// Enables or disables autocast on a device type. The dtype is set only when enabling: libtorch
// refuses a float32 "low precision" dtype for CPU autocast (1.13 throws).
inline void set_autocast(torch::DeviceType device, bool enabled, at::ScalarType dtype) {
  if (enabled) {
#if TORCH_VERSION_MAJOR >= 2 && TORCH_VERSION_MINOR >= 4 || TORCH_VERSION_MAJOR >= 3
    at::autocast::set_autocast_dtype(device, dtype);
#else
    if (device == torch::kCPU) {
      at::autocast::set_autocast_cpu_dtype(dtype);
    } else {
      at::autocast::set_autocast_gpu_dtype(dtype);
    }
#endif
  }
  set_autocast_flag(device, enabled);
  if (!enabled) at::autocast::clear_cache();
}

// Whether autocast is on for `device` on this thread, and the dtype it casts to.
inline bool autocast_enabled(torch::DeviceType device) {
#if TORCH_VERSION_MAJOR >= 2 && TORCH_VERSION_MINOR >= 4 || TORCH_VERSION_MAJOR >= 3
  return at::autocast::is_autocast_enabled(device);
#else
  return device == torch::kCPU ? at::autocast::is_cpu_enabled() : at::autocast::is_enabled();
#endif
}
inline at::ScalarType autocast_dtype(torch::DeviceType device) {
#if TORCH_VERSION_MAJOR >= 2 && TORCH_VERSION_MINOR >= 4 || TORCH_VERSION_MAJOR >= 3
  return at::autocast::get_autocast_dtype(device);
#else
  return device == torch::kCPU ? at::autocast::get_autocast_cpu_dtype() : at::autocast::get_autocast_gpu_dtype();
#endif
}

// A convolution's padding when it is given as numbers (alternative 0, not kValid or kSame), else
// nullptr. The variant is c10::variant in 1.13 and std::variant in later 2.x: the unqualified
// get_if finds either (by argument-dependent lookup).
template <typename Padding>
auto explicit_padding(const Padding& padding) {
  using std::get_if;
  return get_if<0>(&padding);
}
// Whether a c10:: or std::variant holds a T (found the same way).
template <typename T, typename Variant>
bool holds(const Variant& v) {
  using std::holds_alternative;
  return holds_alternative<T>(v);
}

// Autocast for the lifetime of the guard; restores "off" on exit (we never nest autocast regions).
class AutocastGuard {
 public:
  AutocastGuard(torch::DeviceType device, bool enabled, at::ScalarType dtype)
      : device_(device), enabled_(enabled) {
    if (enabled_) set_autocast(device_, true, dtype);
  }
  ~AutocastGuard() {
    if (enabled_) set_autocast(device_, false, at::kBFloat16);
  }
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  torch::DeviceType device_;
  bool enabled_;
};

// Autocast off on the CPU for the guard's lifetime when it was on, then on again with the same
// dtype; the cast cache is kept (this pauses autocast for one layer, it does not end a region).
class CpuAutocastPause {
 public:
  CpuAutocastPause() : was_on_(autocast_enabled(torch::kCPU)) {
    if (was_on_) set_autocast_flag(torch::kCPU, false);
  }
  ~CpuAutocastPause() {
    if (was_on_) set_autocast_flag(torch::kCPU, true);
  }
  CpuAutocastPause(const CpuAutocastPause&) = delete;
  CpuAutocastPause& operator=(const CpuAutocastPause&) = delete;

 private:
  bool was_on_;
};

// Makes `index` the current CUDA device of this thread (kernels and allocations go there).
inline void set_cuda_device(int index) {
#ifdef ARCFORGE_WITH_CUDA
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(index));
#else
  (void)index;
#endif
}

// PyTorch's CUDA sync debug mode: while on, a CUDA operation that makes the host wait for the
// device (a blocking copy, item(), a stream or device synchronize) throws "called a synchronizing
// CUDA operation" with the C++ backtrace of the caller. Without CUDA it does nothing.
inline void set_cuda_sync_check(bool on) {
#ifdef ARCFORGE_WITH_CUDA
  c10::cuda::warning_state().set_sync_debug_mode(on ? c10::cuda::SyncDebugMode::L_ERROR
                                                    : c10::cuda::SyncDebugMode::L_DISABLED);
#else
  (void)on;
#endif
}

// torch::optim keys its per-parameter state by the TensorImpl: as a string in libtorch 1.13,
// as the pointer itself in 2.x. The key type comes from the map, not from the version number.
template <typename StateMap>
typename StateMap::key_type optimizer_state_key(const torch::Tensor& p) {
  using Key = typename StateMap::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream text;  // the address as libtorch 1.13 prints it (c10::guts::to_string)
    text << p.unsafeGetTensorImpl();
    return text.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

// Peak bytes allocated on CUDA device `index` since the last reset (0 without CUDA). Each rank
// trains on its LOCAL_RANK GPU, so the caller names the device rather than reading GPU 0.
inline int64_t cuda_peak_allocated_bytes(int index) {
#ifdef ARCFORGE_WITH_CUDA
  if (!torch::cuda::is_available() || index < 0 || index >= static_cast<int>(torch::cuda::device_count())) return 0;
  auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(index));
  // Index 0 is StatType::AGGREGATE; the enum moved namespaces between 1.13 and 2.x, the layout did not.
  return stats.allocated_bytes[0].peak;
#else
  (void)index;
  return 0;
#endif
}

inline void cuda_reset_peak_memory(int index) {
#ifdef ARCFORGE_WITH_CUDA
  if (torch::cuda::is_available() && index >= 0 && index < static_cast<int>(torch::cuda::device_count()))
    c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(index));
#else
  (void)index;
#endif
}

inline std::string torch_version_string() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

}  // namespace arcforge::compat

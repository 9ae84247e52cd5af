// fp32 3x3 stride-1 convolutions as Winograd F(4x4, 3x3) (winograd.hpp). oneDNN's direct kernels
// already run near the CPU's peak (AVX2 and AVX-512 alike), so the only way past them is to do fewer
// multiplications; oneDNN 2.6's own Winograd convolution is for AVX-512 only and refuses these
// convolutions on the AMD EPYC (Zen 4) measured ("could not create a primitive descriptor").
// Here 36 products per tile replace 144 per 16 outputs, with the input and output transforms and
// the node's post-ops (bias, activations, PReLU, the residual sum) in arcforge's own loops, on the
// blocked layout oneDNN's kernels use on this CPU (nChw8c on AVX2, nChw16c on AVX-512), so that the
// neighbouring steps need no reorder.
//
// Two schedules. With few channels (up to about 200 in and out together), each thread takes a block
// of tiles at a time through all three stages in its own cache, with arcforge's own products
// (winograd_products.cpp): the transformed tiles never travel to memory, which is what a memory-bound
// neighbour on a shared machine slows down. With more channels, the weights (4x their direct size)
// are too large to read once per thread block: all threads work on one chunk of tiles at a time,
// stage by stage, with the products on oneDNN's batched matmul. A run whose tiles are too few to
// amortise the weights (r50's last layer at batch 1: 4 tiles) keeps oneDNN's direct kernel, as do
// convolutions with few channels, channel counts that are not a multiple of 8 and every other
// precision. ARCFORGE_RUNTIME_WINOGRAD=0 turns the method off, to compare or to bisect; =all uses it
// wherever it can run, below those thresholds too (to measure them: bench/runtime/winograd_layers.sh).
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>

#include "arcforge/cpu/isa.hpp"
#include "conv_geometry.hpp"
#include "winograd.hpp"

namespace arcforge::runtime::detail {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;
namespace wg = winograd;

// Measured with bench/runtime/winograd_layers.sh (2 threads), speed against oneDNN's direct kernel.
// Below this many tiles in a run the 36 products are too short to amortise reading the transformed
// weights. 512 channels at 7x7, 4, 8 and 16 tiles: AVX2 EPYC (Zen 3) 0.94x, 1.37x, 1.78x; AVX-512
// EPYC (Zen 4) 0.46x, 0.78x, 1.16x (there 256 channels at 14x14, 16 tiles: 2.55x).
int64_t min_tiles() { return cpu::cpu_kernel_active_isa() >= cpu::CpuKernelIsa::avx512 ? 16 : 8; }
// With fewer channels on either side the products are too short for the transforms' memory traffic.
// AVX2 EPYC: 24 channels 0.83-1.02x (in SCRFD-2.5g's backbone 0.58-0.75x), 32 channels 1.10-1.64x,
// 48 1.79x. AVX-512 EPYC, whose transforms take 16 channels at a time: 16 channels 1.49x, 24
// 1.72-2.16x, 32 1.71-2.05x.
int64_t min_channels() { return cpu::cpu_kernel_active_isa() >= cpu::CpuKernelIsa::avx512 ? 16 : 32; }
// Transformed input and products of one chunk together, unless the weights are larger.
constexpr double kChunkBytes = 8.0 * (1 << 20);

// ARCFORGE_RUNTIME_WINOGRAD: "0" never, "all" wherever the method can run (the thresholds above
// ignored, and at any instruction-set level: the baseline copy of the transforms too, which is what
// the fuzz build has); otherwise where it pays, at the AVX2 and AVX-512 levels.
enum class Use { never, where_faster, wherever_possible };

Use use() {
  const char* env = std::getenv("ARCFORGE_RUNTIME_WINOGRAD");
  if (env && std::strcmp(env, "0") == 0) return Use::never;
  if (env && std::strcmp(env, "all") == 0) return Use::wherever_possible;
  return cpu::cpu_kernel_active_isa() >= cpu::CpuKernelIsa::avx2 ? Use::where_faster : Use::never;
}

// The activations' layout: the one oneDNN's direct kernels on this CPU read and write, so that the
// neighbouring steps need no reorder (on AVX-512, oneDNN's batch norm and binary kernels take no
// nChw8c and ran their reference code, 10x slower, when this step wrote it).
int64_t layout_block(const wg::Geometry& g) {
  // oneDNN's ISA values are sets of feature bits (avx2_vnni is numerically above avx512_core).
  const auto core = static_cast<unsigned>(dnnl::cpu_isa::avx512_core);
  const bool avx512 = cpu::cpu_kernel_active_isa() >= cpu::CpuKernelIsa::avx512 &&
                      (static_cast<unsigned>(dnnl::get_effective_cpu_isa()) & core) == core;
  return avx512 && g.in_channels % 16 == 0 && g.out_channels % 16 == 0 ? 16 : wg::kBlock;
}

// The node's post-ops as the output transform applies them; false when one is not supported.
bool epilogue_of(PlanBuilder& b, const Node& n, const Dims& out_dims, std::vector<wg::Epilogue>& epilogue,
                 std::vector<std::string>& addends) {
  for (const PostOp& p : n.post_ops) {
    wg::Epilogue e;
    switch (p.kind) {
      case PostOp::Kind::relu:
        e.kind = wg::Epilogue::Kind::clamp;
        e.alpha = 0;
        e.beta = std::numeric_limits<float>::infinity();
        break;
      case PostOp::Kind::clip:
        e.kind = wg::Epilogue::Kind::clamp;
        e.alpha = p.alpha;
        e.beta = p.beta;
        break;
      case PostOp::Kind::leaky_relu:
        e.kind = wg::Epilogue::Kind::leaky_relu;
        e.alpha = p.alpha;
        break;
      case PostOp::Kind::scale:
        e.kind = wg::Epilogue::Kind::scale;
        e.alpha = p.alpha;
        break;
      case PostOp::Kind::prelu: {
        const HostTensor* slope = b.host(p.operand);
        if (!slope || slope->dtype != DType::f32) return false;
        if (slope->numel() != 1 && slope->numel() != out_dims[1]) return false;
        e.kind = wg::Epilogue::Kind::prelu;
        e.slope = slope->f.data();
        e.per_channel = slope->numel() != 1;
        break;
      }
      case PostOp::Kind::sum:
        if (b.dims(p.operand) != out_dims) return false;  // broadcasting addends stay with oneDNN
        e.kind = wg::Epilogue::Kind::add;
        e.addend = static_cast<int>(addends.size());
        addends.push_back(p.operand);
        break;
      default: return false;
    }
    epilogue.push_back(e);
  }
  return true;
}

// Runs one chunk's work items [0, items) of a transform over the OpenMP team, contiguous per thread.
template <class Transform>
void parallel_items(int64_t items, Transform transform) {
#pragma omp parallel
  {
    const int64_t threads = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t begin = items * t / threads, end = items * (t + 1) / threads;
    if (begin < end) transform(begin, end);
  }
}

// What every schedule of the step needs at run time.
struct Step {
  wg::Geometry g;
  std::vector<wg::Epilogue> epilogue;
  std::vector<float> bias;
  std::size_t addends = 0;  // inputs after the source, before the output
  const float* bias_or_null() const { return bias.empty() ? nullptr : bias.data(); }
  std::vector<const float*> addend_pointers(const std::vector<char*>& p) const {
    std::vector<const float*> a;
    for (std::size_t j = 0; j < addends; ++j) a.push_back(reinterpret_cast<const float*>(p[1 + j]));
    return a;
  }
};

// One thread's block of tiles: its transformed inputs and products together fit in this much of its
// own cache (L2: 1 MiB per core on Zen 4, 512 KiB on Zen 3, 2 MiB on Sapphire Rapids).
constexpr double kThreadBlockBytes = 384.0 * 1024;
// Below this many tiles per block the weights, read once per block, cost more than the cache saves:
// (measured, Zen 4, per-thread against chunked) 64 channels and 18 tiles 1.0x, 128 channels forced
// to 6 tiles 1.0x, 256 channels forced to 6 tiles 0.66x.
constexpr int64_t kMinThreadBlockTiles = 12;

// ARCFORGE_RUNTIME_WINOGRAD_SCHEDULE: "chunked" or "per_thread" forces that schedule wherever the
// method runs (to compare them, and for the tests); otherwise the channels choose.
enum class Schedule { by_channels, chunked, per_thread };

Schedule schedule() {
  const char* env = std::getenv("ARCFORGE_RUNTIME_WINOGRAD_SCHEDULE");
  if (env && std::strcmp(env, "chunked") == 0) return Schedule::chunked;
  if (env && std::strcmp(env, "per_thread") == 0) return Schedule::per_thread;
  return Schedule::by_channels;
}

int64_t round_up_to_rows(int64_t tiles) {
  return (tiles + wg::kProductRows - 1) / wg::kProductRows * wg::kProductRows;
}

// Tiles per block of the per-thread schedule (a multiple of the products' row block), or 0 for the
// chunked schedule: where the channels are too many for a block worth running.
int64_t tiles_per_thread_block(const wg::Geometry& g) {
  const double bytes_per_tile = 4.0 * wg::kPoints * static_cast<double>(g.in_channels + g.out_channels);
  const int64_t fitting =
      static_cast<int64_t>(kThreadBlockBytes / bytes_per_tile) / wg::kProductRows * wg::kProductRows;  // rounded down
  switch (schedule()) {
    case Schedule::chunked: return 0;
    case Schedule::per_thread: return std::max(wg::kProductRows, fitting);
    case Schedule::by_channels: break;
  }
  return fitting >= kMinThreadBlockTiles ? fitting : 0;
}

// The transformed weights [36][C][K], computed when a plan first needs them (then kept per layout).
std::function<HostTensor()> transformed_weights(const HostTensor& w, int64_t c, int64_t k) {
  return [&w, c, k] { return HostTensor::from_f32({wg::kPoints, c, k}, wg::transform_weights(w.f.data(), k, c)); };
}

// Per thread, a block of tiles at a time through all three stages in its own cache: input transform,
// the 36 products (winograd_products.cpp), output transform. Nothing but the activations and the
// weights leaves the thread's cache, and the blocks are dealt out dynamically, so that a thread
// slowed by another tenant of the machine takes fewer of them.
void add_per_thread(PlanBuilder& b, const Node& n, const HostTensor& w, const Step& step, int64_t block,
                    std::vector<MemRef> refs) {
  const wg::Geometry& g = step.g;
  const int64_t c = g.in_channels, k = g.out_channels;
  const md_t u_md = plain_md({wg::kPoints, c, k});
  const MemRef u_ref = b.weights(n.name + "/winograd_weights", transformed_weights(w, c, k), u_md, u_md);
  const dnnl::memory weights = u_ref.fixed;
  // Blocks small enough to give every thread one where the tiles are few; each thread's buffers in
  // one temporary of the plan, which runs with the thread count it is built for (model.cpp).
  const int64_t tiles = g.tiles(), threads = omp_get_max_threads();
  const int64_t size = std::min(block, round_up_to_rows((tiles + threads - 1) / threads));
  const int64_t blocks = (tiles + size - 1) / size;
  const int64_t per_thread_floats = wg::kPoints * size * (c + k);
  const std::size_t scratch = refs.size();
  refs.push_back(b.temporary(md_t({threads * per_thread_floats}, dt::f32, tag::a)));
  b.add_custom(std::move(refs), [=](const std::vector<char*>& p) {
    const float* src = reinterpret_cast<const float*>(p[0]);
    const float* u = static_cast<const float*>(weights.get_data_handle());
    const std::vector<const float*> addends = step.addend_pointers(p);
    float* dst = reinterpret_cast<float*>(p[scratch - 1]);
    float* buffers = reinterpret_cast<float*>(p[scratch]);
#pragma omp parallel num_threads(static_cast<int>(threads))
    {
      float* v = buffers + omp_get_thread_num() * per_thread_floats;
      float* m = v + wg::kPoints * size * c;
#pragma omp for schedule(dynamic)
      for (int64_t i = 0; i < blocks; ++i) {
        const int64_t first = i * size, count = std::min(size, tiles - first);
        const int64_t rows = round_up_to_rows(count);
        const wg::TileRun run{first, count, rows};
        // The rows past the last tile are multiplied too: zeros, not stale values that may be denormal.
        for (int64_t point = 0; point < wg::kPoints && rows > count; ++point) {
          std::memset(v + (point * rows + count) * c, 0, sizeof(float) * (rows - count) * c);
        }
        wg::transform_input(g, src, run, v, 0, count * c / g.layout_block);
        wg::multiply_points(v, u, m, rows, c, k, g.layout_block);
        wg::transform_output(g, m, run, step.bias_or_null(), step.epilogue, addends, dst, 0,
                             count * k / g.layout_block);
      }
    }
  }, "winograd_f4x4_3x3:per_thread");
}

// All threads on one chunk of tiles at a time, stage by stage, with the products on oneDNN's batched
// matmul: for many channels, whose weights are too large to read once per thread block.
void add_chunked(PlanBuilder& b, const Node& n, const HostTensor& w, const Step& step, std::vector<MemRef> refs) {
  const wg::Geometry& g = step.g;
  const int64_t c = g.in_channels, k = g.out_channels, tiles = g.tiles();
  const double weight_bytes = 4.0 * wg::kPoints * c * k;
  const double bytes_per_tile = 4.0 * wg::kPoints * static_cast<double>(c + k);
  // As many chunks as the bytes need, of equal size: the last one's unused rows are multiplied too.
  const auto fitting =
      std::max<int64_t>(32, static_cast<int64_t>(std::max(kChunkBytes, weight_bytes) / bytes_per_tile));
  const int64_t chunks = (tiles + fitting - 1) / fitting;
  const int64_t chunk = (tiles + chunks - 1) / chunks;
  const md_t v_md({wg::kPoints, chunk, c}, dt::f32, tag::abc);
  const md_t m_md({wg::kPoints, chunk, k}, dt::f32, tag::abc);
  const md_t u_md({wg::kPoints, c, k}, dt::f32, tag::any);
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(v_md, u_md, m_md), b.engine());

  const MemRef u_ref = b.weights(n.name + "/winograd_weights", transformed_weights(w, c, k),
                                 plain_md({wg::kPoints, c, k}), pd.weights_desc());
  const std::size_t first_temporary = refs.size();
  refs.push_back(b.temporary(v_md));
  refs.push_back(b.temporary(m_md));

  auto products = std::make_shared<dnnl::matmul>(pd);
  const dnnl::engine engine = b.engine();
  const dnnl::memory weights = u_ref.fixed;
  b.add_custom(std::move(refs), [=](const std::vector<char*>& p) {
    const float* src = reinterpret_cast<const float*>(p[0]);
    const std::vector<const float*> addends = step.addend_pointers(p);
    float* dst = reinterpret_cast<float*>(p[first_temporary - 1]);
    float* v = reinterpret_cast<float*>(p[first_temporary]);
    float* m = reinterpret_cast<float*>(p[first_temporary + 1]);
    dnnl::memory v_mem(v_md, engine, v), m_mem(m_md, engine, m);
    dnnl::stream stream(engine);
    for (int64_t first = 0; first < tiles; first += chunk) {
      const wg::TileRun run{first, std::min(chunk, tiles - first), chunk};
      // The last chunk's unused rows are multiplied too: zeros, not stale values that may be denormal.
      if (run.count < chunk) {
        for (int64_t point = 0; point < wg::kPoints; ++point) {
          std::memset(v + (point * chunk + run.count) * c, 0, sizeof(float) * (chunk - run.count) * c);
        }
      }
      parallel_items(run.count * c / g.layout_block,
                     [&](int64_t begin, int64_t end) { wg::transform_input(g, src, run, v, begin, end); });
      products->execute(stream, {{DNNL_ARG_SRC, v_mem}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, m_mem}});
      stream.wait();
      parallel_items(run.count * k / g.layout_block, [&](int64_t begin, int64_t end) {
        wg::transform_output(g, m, run, step.bias_or_null(), step.epilogue, addends, dst, begin, end);
      });
    }
  }, "winograd_f4x4_3x3:" + std::string(pd.impl_info_str()));
}

}  // namespace

bool plan_conv_winograd(PlanBuilder& b, const Node& n, const ConvGeometry& geo, const HostTensor& w,
                        const HostTensor* bias) {
  const Use mode = use();
  if (mode == Use::never || geo.group != 1 || geo.kernel_h != 3 || geo.kernel_w != 3 || geo.stride_h != 1 ||
      geo.stride_w != 1 || geo.dilation_h != 1 || geo.dilation_w != 1) {
    return false;
  }
  const Dims& x = geo.in_dims;
  wg::Geometry g;
  g.batch = x[0];
  g.in_channels = x[1];
  g.out_channels = geo.out_channels;
  g.in_h = x[2];
  g.in_w = x[3];
  g.out_h = geo.out_h;
  g.out_w = geo.out_w;
  g.pad_t = geo.pad_t;
  g.pad_l = geo.pad_l;
  if (g.in_channels % wg::kBlock != 0 || g.out_channels % wg::kBlock != 0 || g.out_h < 1 || g.out_w < 1 ||
      g.tiles() < 1 || w.numel() != g.out_channels * g.in_channels * 9) {
    return false;
  }
  if (mode == Use::where_faster &&
      (g.in_channels < min_channels() || g.out_channels < min_channels() || g.tiles() < min_tiles())) {
    return false;
  }
  g.layout_block = layout_block(g);
  const tag layout = g.layout_block == 16 ? tag::nChw16c : tag::nChw8c;
  const Dims out_dims = {g.batch, g.out_channels, g.out_h, g.out_w};
  std::vector<wg::Epilogue> epilogue;
  std::vector<std::string> addend_values;
  if (!epilogue_of(b, n, out_dims, epilogue, addend_values)) return false;

  std::vector<MemRef> refs = {b.input(n.input(0), md_t(x, dt::f32, layout))};
  for (const auto& value : addend_values) refs.push_back(b.input(value, md_t(out_dims, dt::f32, layout)));
  refs.push_back(b.output(n.outputs.at(0), md_t(out_dims, dt::f32, layout)));
  const Step step{g, epilogue, bias ? bias->f : std::vector<float>(), addend_values.size()};
  const int64_t block = tiles_per_thread_block(g);
  if (block > 0) {
    add_per_thread(b, n, w, step, block, std::move(refs));
  } else {
    add_chunked(b, n, w, step, std::move(refs));
  }
  return true;
}

}  // namespace arcforge::runtime::detail

#pragma once
// Winograd F(4x4, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks"): a 3x3
// stride-1 convolution as 36 matrix products of transformed 6x6 input tiles by transformed
// weights, 4x4 outputs per tile. The products take 36 multiply-adds per 16 outputs and channel
// pair instead of 144. These are the transforms around the products, on activations in oneDNN's
// nChw8c or nChw16c layout (blocks of 8 or 16 channels, each pixel's values side by side); ops_conv_winograd.cpp
// runs the products on oneDNN's batched matmul and decides where the method is used.
#include <cstdint>
#include <vector>

namespace arcforge::runtime::detail::winograd {

constexpr int64_t kTile = 4;    // outputs per tile side
constexpr int64_t kPoints = 36;  // 6x6 transform points per tile
constexpr int64_t kBlock = 8;   // the smallest layout block (nChw8c)

struct Geometry {
  int64_t batch = 0, in_channels = 0, out_channels = 0;  // both channel counts multiples of layout_block
  // Channels per block of the activations' layout, and per vector of the transforms: 8 (nChw8c, what
  // oneDNN's AVX2 kernels use) or 16 (nChw16c, AVX-512's; only where AVX-512 runs).
  int64_t layout_block = kBlock;
  int64_t in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int64_t pad_t = 0, pad_l = 0;  // the bottom and right padding follow from the output size
  int64_t tiles_h() const { return (out_h + kTile - 1) / kTile; }
  int64_t tiles_w() const { return (out_w + kTile - 1) / kTile; }
  int64_t tiles() const { return batch * tiles_h() * tiles_w(); }
};

// U = G g G^T for every output and input channel pair, from ONNX weights [K][C][3][3], computed in
// double; laid out [36][C][K] (point, then the matmul's [C, K] operand).
std::vector<float> transform_weights(const float* weights, int64_t out_channels, int64_t in_channels);

// What follows the products, applied per output value in order (the optimiser's post-ops).
struct Epilogue {
  enum class Kind { clamp, leaky_relu, scale, prelu, add };
  Kind kind = Kind::clamp;
  float alpha = 0, beta = 0;     // clamp: [alpha, beta]; leaky_relu, scale: alpha
  const float* slope = nullptr;  // prelu: one value, or one per output channel
  bool per_channel = false;
  int addend = 0;                // add: index into the `addends` of transform_output
};

// A run of `count` tiles from `first_tile` (tiles numbered image by image, row by row), with
// `stride` rows per point in the product operands (the chunk size the products were built for).
struct TileRun {
  int64_t first_tile = 0, count = 0, stride = 0;
};

// Transformed input tiles V = B^T d B into v [36][stride][C], for work items [begin, end) of
// count * C / g.layout_block (tile-major). src: nChw8c or nChw16c (g.layout_block).
void transform_input(const Geometry& g, const float* src, const TileRun& run, float* v, int64_t begin, int64_t end);

// Output tiles A^T m A (+ bias, then the epilogue) from m [36][stride][K] into dst (layout as src), for
// work items [begin, end) of count * K / g.layout_block; tiles are cropped at the right and bottom edges.
// `addends` are tensors of dst's dims and layout.
void transform_output(const Geometry& g, const float* m, const TileRun& run, const float* bias,
                      const std::vector<Epilogue>& epilogue, const std::vector<const float*>& addends, float* dst,
                      int64_t begin, int64_t end);

// Tiles per register block of multiply_points: its row counts are multiples of this.
constexpr int64_t kProductRows = 6;

// The 36 products m[p] = v[p] u[p] of one thread's block of tiles, in its cache: v [36][rows][C]
// (transform_input with stride = rows), u [36][C][K] (transform_weights), m [36][rows][K]. rows: a
// multiple of kProductRows (rows past the tiles are computed and ignored); K a multiple of
// layout_block, the vector width (winograd_products.cpp).
void multiply_points(const float* v, const float* u, float* m, int64_t rows, int64_t in_channels,
                     int64_t out_channels, int64_t layout_block);

}  // namespace arcforge::runtime::detail::winograd

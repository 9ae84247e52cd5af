#pragma once
// NumPy .npy files holding float32 arrays: the tensor format of `arcforge infer` and of the
// runtime parity tests. Only little-endian float32 in C order is accepted; everything else in the
// header is checked strictly, because the file comes from outside.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace arcforge {

struct NpyArray {
  std::vector<int64_t> shape;  // empty for a scalar
  std::vector<float> data;     // product(shape) values, C order
};

// Throws InputError naming the file on a bad magic, version, header or size, on a dtype other than
// '<f4', on Fortran order, or when the data is shorter or longer than the shape says.
NpyArray read_npy(const std::string& path);
NpyArray parse_npy(std::string_view bytes, const std::string& name_for_errors);

// Writes version 1.0 (2.0 when the header needs it); the file is replaced atomically.
void write_npy(const std::string& path, const std::vector<int64_t>& shape, const float* data);
std::string format_npy(const std::vector<int64_t>& shape, const float* data);

}  // namespace arcforge

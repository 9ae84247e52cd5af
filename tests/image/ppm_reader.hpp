#pragma once
// Reads the binary PPMs (P6, maxval 255) that djpeg writes: the independent JPEG decoder the codec
// tests compare against.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "arcforge/image/image.hpp"

namespace arcforge::image::test {

inline Image read_ppm(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string magic;
  int width = 0, height = 0, maxval = 0;
  in >> magic >> width >> height >> maxval;
  in.get();
  EXPECT_EQ(magic, "P6");
  EXPECT_EQ(maxval, 255);
  Image image(width, height, 3);
  in.read(reinterpret_cast<char*>(image.pixels.data()), static_cast<std::streamsize>(image.pixels.size()));
  EXPECT_TRUE(in) << path;
  return image;
}

}  // namespace arcforge::image::test

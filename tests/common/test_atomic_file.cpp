#include <gtest/gtest.h>

#include <filesystem>

#include "arcforge/common/atomic_file.hpp"
#include "arcforge/common/error.hpp"

namespace fs = std::filesystem;

TEST(AtomicFile, WritesAndReplacesWholeFile) {
  fs::path dir = fs::temp_directory_path() / "arcforge_atomic_test";
  fs::remove_all(dir);
  std::string path = (dir / "sub" / "file.bin").string();
  arcforge::write_file_atomically(path, std::string("first version"));
  EXPECT_EQ(arcforge::read_file(path), "first version");
  std::string big(1 << 20, 'x');
  arcforge::write_file_atomically(path, big);
  EXPECT_EQ(arcforge::read_file(path), big);
  // No temp files are left behind.
  int entries = 0;
  for (auto& e : fs::directory_iterator(dir / "sub")) { (void)e; ++entries; }
  EXPECT_EQ(entries, 1);
  fs::remove_all(dir);
}

TEST(AtomicFile, ReadMissingFileNamesTheFile) {
  try {
    arcforge::read_file("/nonexistent/arcforge/x.bin");
    FAIL() << "expected an error";
  } catch (const arcforge::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/arcforge/x.bin"), std::string::npos);
  }
}

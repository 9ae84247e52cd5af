// The training build's two binaries (apps/arcforge/train_binary.hpp): `arcforge` runs without
// libtorch and hands the commands it does not hold to `arcforge-train`, unchanged.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tests/train/child_process.hpp"

namespace fs = std::filesystem;
using arcforge::test::run_cli;

namespace {

#ifdef ARCFORGE_CLI_SPLIT
// What the dynamic loader maps for `binary` (ldd's own mechanism: it lists, then exits).
std::string loaded_libraries(const std::string& binary) {
  std::string text;
  FILE* pipe = popen(("LD_TRACE_LOADED_OBJECTS=1 " + binary + " 2>&1").c_str(), "r");
  if (!pipe) return text;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe)) text.append(buffer, n);
  pclose(pipe);
  return text;
}

std::string train_binary() { return (fs::path(ARCFORGE_CLI).parent_path() / "arcforge-train").string(); }
#endif

}  // namespace

#ifdef ARCFORGE_CLI_SPLIT
TEST(CliBinaries, ArcforgeLoadsNoLibtorchAndArcforgeTrainDoes) {
  ASSERT_TRUE(fs::exists(train_binary())) << train_binary();
  const std::string light = loaded_libraries(ARCFORGE_CLI);
  const std::string full = loaded_libraries(train_binary());
  ASSERT_NE(light.find("libc.so"), std::string::npos) << light;  // the listing itself worked
  EXPECT_EQ(light.find("libtorch"), std::string::npos) << light;
  EXPECT_EQ(light.find("libc10"), std::string::npos) << light;
  EXPECT_NE(full.find("libtorch"), std::string::npos) << full;
}

TEST(CliBinaries, TrainingCommandsRunThroughArcforgeWithTheirOutputAndExitCode) {
  std::string out;
  ASSERT_EQ(run_cli("model-info mbf --json", &out), 0) << out;
  EXPECT_NE(out.find("\"params\""), std::string::npos) << out;
  // A failing command keeps its exit status and its message.
  EXPECT_EQ(run_cli("train --config /nonexistent/arcforge.toml", &out), 1) << out;
  EXPECT_NE(out.find("/nonexistent/arcforge.toml"), std::string::npos) << out;
  // Top-level help comes from arcforge-train and lists both halves.
  ASSERT_EQ(run_cli("--help", &out), 0) << out;
  for (const char* command : {"train", "eval", "export", "verify", "serve", "gallery", "pack"})
    EXPECT_NE(out.find(command), std::string::npos) << command << "\n" << out;
  // A command arcforge holds runs there: its help works without arcforge-train.
  ASSERT_EQ(run_cli("verify --help", &out), 0) << out;
  EXPECT_NE(out.find("--pack"), std::string::npos) << out;
}

TEST(CliBinaries, WithoutArcforgeTrainBesideItTheErrorNamesTheMissingFile) {
  const fs::path dir = fs::temp_directory_path() / ("arcforge_cli_alone_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path alone = dir / "arcforge";
  fs::copy_file(ARCFORGE_CLI, alone, fs::copy_options::overwrite_existing);
  std::string out;
  const auto run = [&](const std::string& args) {
    FILE* pipe = popen((alone.string() + " " + args + " 2>&1").c_str(), "r");
    out.clear();
    char buffer[4096];
    while (size_t n = fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
    const int status = pclose(pipe);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  EXPECT_EQ(run("train --steps 1"), 1) << out;
  EXPECT_NE(out.find((dir / "arcforge-train").string()), std::string::npos) << out;
  EXPECT_NE(out.find("'train'"), std::string::npos) << out;
  EXPECT_EQ(run("verify --help"), 0) << out;  // what it holds still runs
  EXPECT_EQ(run("--version"), 0) << out;
  fs::remove_all(dir);
}
#else
TEST(CliBinaries, OneBinaryWithoutTheDeployHalf) {
  std::string out;
  ASSERT_EQ(run_cli("model-info mbf --json", &out), 0) << out;
}
#endif

// main() for the libtorch test binaries: libtorch starts with one thread on these VMs, so pin the
// thread count (ARCFORGE_TEST_THREADS, default 2) before any test runs.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const char* threads = std::getenv("ARCFORGE_TEST_THREADS");
  at::set_num_threads(threads ? std::atoi(threads) : 2);
  torch::manual_seed(0);
  return RUN_ALL_TESTS();
}

# libtorch: Debian's 1.13 here and in CI, the PyTorch 2.x wheel's libtorch on the GPU machine
# (pass -DCMAKE_PREFIX_PATH=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')).
find_package(Torch REQUIRED)
message(STATUS "libtorch ${Torch_VERSION} from ${Torch_DIR}")

# tcmalloc: glibc malloc page-faults on large activations (halved batch-32 speed, see DESIGN.md).
find_library(TCMALLOC_LIBRARY NAMES tcmalloc_minimal libtcmalloc_minimal.so.4)

# A CUDA-enabled libtorch (PyTorch's, on the GPU machine) ships c10_cuda; Debian's CPU build does not.
find_library(ARCFORGE_C10_CUDA_LIBRARY c10_cuda PATHS ${TORCH_INSTALL_PREFIX}/lib NO_DEFAULT_PATH)
if(ARCFORGE_C10_CUDA_LIBRARY)
  message(STATUS "libtorch has CUDA: ${ARCFORGE_C10_CUDA_LIBRARY}")
  set(ARCFORGE_TORCH_CUDA ON)
endif()

#pragma once
// Compile-check stand-in for the CUDA driver header (see cuda_runtime_api.h here).
#include "cuda_runtime_api.h"
#define CUDA_VERSION 11070

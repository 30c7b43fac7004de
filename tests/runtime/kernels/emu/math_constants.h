// Host stand-in for CUDA's math_constants.h (only what cpp_ext/ uses), for the CPU emulator.
#pragma once
#include <limits>
#define CUDART_INF_F (std::numeric_limits<float>::infinity())
#define CUDART_INF (std::numeric_limits<double>::infinity())

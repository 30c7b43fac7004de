// Shared device helpers for the icnseg CUDA kernels (header-only, no host code).
#pragma once

#include <stdint.h>

#define ICN_WARP 32
#define ICN_FULL_MASK 0xffffffffu

// Sum of v over the 32 lanes of a full warp; every lane gets the total.
__device__ __forceinline__ unsigned int icn_warp_sum(unsigned int v) {
    for (int off = ICN_WARP / 2; off > 0; off >>= 1) {
        v += __shfl_xor_sync(ICN_FULL_MASK, v, off);
    }
    return v;
}

// Global warp id and lane for a 1-D launch whose blockDim.x is a multiple of 32.
__device__ __forceinline__ long long icn_global_warp() {
    return ((long long)blockIdx.x * blockDim.x + threadIdx.x) / ICN_WARP;
}

__device__ __forceinline__ long long icn_warp_count() {
    return ((long long)gridDim.x * blockDim.x) / ICN_WARP;
}

__device__ __forceinline__ int icn_lane() {
    return (int)(threadIdx.x & (ICN_WARP - 1));
}

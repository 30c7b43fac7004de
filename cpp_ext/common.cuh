// Shared device helpers for the icnseg CUDA kernels (header-only, no host code).
//
// Conventions of every .cu file here: plain extern "C" __global__ kernels launched from Python
// (pycuda, icnseg.runtime.cuda_launch) with 1-D blocks of 256 threads (8 warps) and 1-D grids;
// loops are grid-stride, so any grid size >= 1 is correct. Packed masks use the layout of
// icnseg.proposals.types.pack_masks: W32 = ceil(H*W / 32) uint32 words per mask, pixel
// p = y*W + x is bit p % 32 of word p / 32, padding bits 0. All arrays are C-contiguous.
#pragma once

#include <stdint.h>

#include <math_constants.h>

#define ICN_WARP 32
#define ICN_FULL_MASK 0xffffffffu

// Dynamic shared memory of a kernel (its size is the launch's `shared` bytes).
#ifndef ICN_DYNAMIC_SHARED
#define ICN_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif

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

// |a & b| and |a | b| of two packed rows [W32], summed by one warp (every lane gets both).
__device__ __forceinline__ void icn_warp_overlap(const uint32_t* a, const uint32_t* b, int w32,
                                                 unsigned int* inter, unsigned int* uni) {
    unsigned int i = 0u, u = 0u;
    for (int w = icn_lane(); w < w32; w += ICN_WARP) {
        const uint32_t x = a[w];
        const uint32_t y = b[w];
        i += __popc(x & y);
        u += __popc(x | y);
    }
    *inter = icn_warp_sum(i);
    *uni = icn_warp_sum(u);
}

// First global thread index and grid stride of a 1-D grid-stride loop.
__device__ __forceinline__ long long icn_thread() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ long long icn_stride() {
    return (long long)gridDim.x * blockDim.x;
}

// num / den, or 0 when den is 0 (icnseg.matching._ratio), correctly rounded.
__device__ __forceinline__ double icn_ratio(double num, double den) {
    return den > 0.0 ? __ddiv_rn(num, den) : 0.0;
}

// Jaccard index from exact pixel counts, as icnseg.matching.match_scores (scoring="iou"):
// inter = |V & P|, union = (|V| + |P|) - inter (= |V | P|), 0 when the union is empty.
__device__ __forceinline__ double icn_jaccard(double inter, double vt, double area) {
    return icn_ratio(inter, __dsub_rn(__dadd_rn(vt, area), inter));
}

// Eq. 5 "icn" score from exact pixel counts, in double with the operation order of
// icnseg.matching.match_scores (alpha*r1 + beta*r2) - gamma*r3 and no fused multiply-add,
// so it is bit-identical to the numpy reference:
//   vp = |V & P|, ep = |E & P|, bp = |B & P|, area = |P|, et = |E|.
__device__ __forceinline__ double icn_eq5(double vp, double ep, double bp, double area,
                                          double et, double alpha, double beta,
                                          double gamma) {
    const double first = __dmul_rn(alpha, icn_ratio(vp, area));
    const double second = __dmul_rn(beta, icn_ratio(ep, et));
    const double third = __dmul_rn(gamma, icn_ratio(bp, area));
    return __dsub_rn(__dadd_rn(first, second), third);
}

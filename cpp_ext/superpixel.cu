// icnseg superpixel kernels: proposals that are unions of one superpixel map.
//
// A proposal set factorised as labels int32 [H*W] (values 0..S-1) and membership uint8
// [N, S] (proposal n = union of the superpixels s with member[n, s] != 0) lets every Eq. 5
// sum over a proposal be computed from per-superpixel sums:
//   sum_p map_t[p] * P_n[p] = sum_s (sum_{p in s} map_t[p]) * member[n, s]
// i.e. maps [T, HW] -> per-superpixel sums [T, S] (sp_sums_kernel / sp_counts_kernel) ->
// [T, S] x member^T -> [T, N] (member_matmul_kernel) -> scores (eq5_sums_kernel), as
// icnseg.matching._sums does with np.bincount and a matrix product. All sums are double; for
// 0/1 maps they are exact integers, so the scores are bit-identical to the numpy reference.
// Launch conventions: common.cuh.

#include "common.cuh"

// (a) Packed masks of the unions: packed[n, word] bit i = member[n, labels[32*word + i]] != 0.
// One thread per output word. Recommended: block 256, grid ceil(N*W32 / 256) (capped).
extern "C" __global__ void pack_unions_kernel(const int* __restrict__ labels,
                                              const uint8_t* __restrict__ member,
                                              uint32_t* __restrict__ packed,
                                              int n, int hw, int w32, int s) {
    const long long total = (long long)n * w32;
    for (long long i = icn_thread(); i < total; i += icn_stride()) {
        const long long row = i / w32;
        const int start = (int)(i % w32) * 32;
        const int stop = min(start + 32, hw);
        const uint8_t* m = member + row * s;
        uint32_t bits = 0u;
        for (int p = start; p < stop; ++p) {
            if (m[labels[p]] != 0) {
                bits |= 1u << (p - start);
            }
        }
        packed[i] = bits;
    }
}

// (b) Per-superpixel sums of float maps [T, HW] -> double [T, S] (np.bincount with weights).
// One block per map (grid-stride over maps). use_shared != 0: the block accumulates in a
// dynamic shared histogram of S doubles (launch with shared = 8*S bytes, S <= 6144 for the
// default 48 KiB), else it zeroes its output row and adds to it with global atomics. The order
// of the additions is not fixed: sums of non-integer values may differ from numpy in the last
// bits. Recommended: block 256, grid min(T, 65535).
extern "C" __global__ void sp_sums_kernel(const float* __restrict__ maps,
                                          const int* __restrict__ labels,
                                          double* __restrict__ out,
                                          int t, int hw, int s, int use_shared) {
    ICN_DYNAMIC_SHARED(double, icn_sp_sums_smem);
    for (long long row = blockIdx.x; row < t; row += gridDim.x) {
        double* acc = use_shared ? icn_sp_sums_smem : out + row * s;
        for (int j = threadIdx.x; j < s; j += blockDim.x) {
            acc[j] = 0.0;
        }
        __syncthreads();
        const float* x = maps + row * (long long)hw;
        for (int p = threadIdx.x; p < hw; p += blockDim.x) {
            const float v = x[p];
            if (v != 0.0f) {
                atomicAdd(&acc[labels[p]], (double)v);
            }
        }
        __syncthreads();
        if (use_shared) {
            for (int j = threadIdx.x; j < s; j += blockDim.x) {
                out[row * s + j] = acc[j];
            }
            __syncthreads();  // the row is written before the next one re-zeroes the histogram
        }
    }
}

// (c) Per-superpixel pixel counts of packed 0/1 maps [T, W32] -> double [T, S] (exact).
// One block per map, one thread per word. use_shared != 0: an unsigned int histogram of S
// counts in dynamic shared memory (shared = 4*S bytes, S <= 12288 for 48 KiB), else global
// double atomics on the zeroed output row. Recommended: block 256, grid min(T, 65535).
extern "C" __global__ void sp_counts_kernel(const uint32_t* __restrict__ bits,
                                            const int* __restrict__ labels,
                                            double* __restrict__ out,
                                            int t, int hw, int w32, int s, int use_shared) {
    ICN_DYNAMIC_SHARED(unsigned int, icn_sp_counts_smem);
    for (long long row = blockIdx.x; row < t; row += gridDim.x) {
        double* out_row = out + row * s;
        for (int j = threadIdx.x; j < s; j += blockDim.x) {
            if (use_shared) {
                icn_sp_counts_smem[j] = 0u;
            } else {
                out_row[j] = 0.0;
            }
        }
        __syncthreads();
        const uint32_t* r = bits + row * (long long)w32;
        for (int w = threadIdx.x; w < w32; w += blockDim.x) {
            uint32_t word = r[w];
            while (word != 0u) {
                const int p = w * 32 + __ffs((int)word) - 1;
                word &= word - 1u;
                if (p >= hw) {
                    break;  // padding bits (0 in a well-formed packed map)
                }
                if (use_shared) {
                    atomicAdd(&icn_sp_counts_smem[labels[p]], 1u);
                } else {
                    atomicAdd(&out_row[labels[p]], 1.0);
                }
            }
        }
        __syncthreads();
        if (use_shared) {
            for (int j = threadIdx.x; j < s; j += blockDim.x) {
                out_row[j] = (double)icn_sp_counts_smem[j];
            }
            __syncthreads();  // the row is written before the next one re-zeroes the histogram
        }
    }
}

// (d) out[t, n] = sum_s sums[t, s] * (member[n, s] != 0): double [T, S] x uint8 [N, S]^T.
// 32x32 output tiles (grid-stride over tiles), S in chunks of 32 through shared memory; each
// thread owns 4 outputs. blockDim.x must be 256. Recommended: grid ceil(T/32)*ceil(N/32)
// (capped).
extern "C" __global__ void member_matmul_kernel(const double* __restrict__ sums,
                                                const uint8_t* __restrict__ member,
                                                double* __restrict__ out,
                                                int t, int n, int s) {
    __shared__ double a_tile[32][33];
    __shared__ uint8_t m_tile[32][33];
    const int tx = (int)(threadIdx.x % 32);
    const int ty = (int)(threadIdx.x / 32);
    const long long tiles_n = (n + 31) / 32;
    const long long tiles = ((t + 31) / 32) * tiles_n;
    for (long long tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
        const int t0 = (int)(tile / tiles_n) * 32;
        const int n0 = (int)(tile % tiles_n) * 32;
        double acc[4] = {0.0, 0.0, 0.0, 0.0};
        for (int s0 = 0; s0 < s; s0 += 32) {
            for (int e = threadIdx.x; e < 32 * 32; e += blockDim.x) {
                const int row = e / 32;
                const int sc = s0 + e % 32;
                a_tile[row][e % 32] =
                    (t0 + row < t && sc < s) ? sums[(long long)(t0 + row) * s + sc] : 0.0;
                m_tile[row][e % 32] =
                    (n0 + row < n && sc < s) ? member[(long long)(n0 + row) * s + sc] : 0;
            }
            __syncthreads();
            for (int c = 0; c < 32; ++c) {
                if (m_tile[tx][c] != 0) {
                    for (int q = 0; q < 4; ++q) {
                        acc[q] = __dadd_rn(acc[q], a_tile[ty + 8 * q][c]);
                    }
                }
            }
            __syncthreads();
        }
        for (int q = 0; q < 4; ++q) {
            const int row = t0 + ty + 8 * q;
            if (row < t && n0 + tx < n) {
                out[(long long)row * n + n0 + tx] = acc[q];
            }
        }
    }
}

// (e) Eq. 5 "icn" scores double [K, N] from per-proposal sums [3K, N] (rows 0..K-1 |V_k & P_n|,
// K..2K-1 |E_k & P_n|, 2K..3K-1 |B_k & P_n|), areas int32 [N] and contour sizes int32 [K]
// (icn_eq5 in common.cuh). One thread per score. Recommended: block 256, grid
// ceil(K*N / 256) (capped).
extern "C" __global__ void eq5_sums_kernel(const double* __restrict__ sums,
                                           const int* __restrict__ areas,
                                           const int* __restrict__ edge_total,
                                           double* __restrict__ scores,
                                           int k, int n,
                                           double alpha, double beta, double gamma) {
    const long long total = (long long)k * n;
    const long long plane = total;
    for (long long i = icn_thread(); i < total; i += icn_stride()) {
        const long long ki = i / n;
        const long long ni = i % n;
        scores[i] = icn_eq5(sums[i], sums[plane + i], sums[2 * plane + i], (double)areas[ni],
                            (double)edge_total[ki], alpha, beta, gamma);
    }
}

// (f) Jaccard scores double [K, N] (scoring="iou", icn_jaccard in common.cuh) from the
// per-proposal sums |V_k & P_n| [K, N], areas int32 [N] and map sizes |V_k| int32 [K]. One
// thread per score. Recommended: block 256, grid ceil(K*N / 256) (capped).
extern "C" __global__ void jaccard_sums_kernel(const double* __restrict__ sums,
                                               const int* __restrict__ areas,
                                               const int* __restrict__ v_total,
                                               double* __restrict__ scores,
                                               int k, int n) {
    const long long total = (long long)k * n;
    for (long long i = icn_thread(); i < total; i += icn_stride()) {
        scores[i] = icn_jaccard(sums[i], (double)v_total[i / n], (double)areas[i % n]);
    }
}

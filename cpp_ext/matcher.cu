// icnseg matcher kernels: bit-packing, Eq. 5 ("icn") and Jaccard ("iou") score matrices
// over packed proposals, row arg-max, per-row popcount, pairwise popcount IoU and
// per-sample min-max binarisation.
// Layout and launch conventions: common.cuh. The sizes below are only the recommended ones;
// kernels that use warps need blockDim.x to be a multiple of 32.

#include "common.cuh"

// (a) uint8 masks [N, HW] (0 = off, anything else = on) -> packed uint32 [N, W32].
// One thread per output word. Recommended: block 256, grid ceil(N*W32 / 256) (capped).
extern "C" __global__ void pack_masks_kernel(const uint8_t* __restrict__ masks,
                                             uint32_t* __restrict__ packed,
                                             int n, int hw, int w32) {
    const long long total = (long long)n * w32;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += stride) {
        const long long row = i / w32;
        const int word = (int)(i % w32);
        const uint8_t* src = masks + row * (long long)hw;
        const int start = word * 32;
        const int stop = min(start + 32, hw);
        uint32_t bits = 0u;
        for (int p = start; p < stop; ++p) {
            if (src[p] != 0) {
                bits |= 1u << (p - start);
            }
        }
        packed[i] = bits;
    }
}

// (b) Eq. 5 "icn" scores double [K, N] (icn_eq5 in common.cuh, bit-identical to numpy):
//   S[k, n] = alpha * |V_k & P_n| / |P_n| + beta * |E_k & P_n| / |E_k|
//             - gamma * |B_k & P_n| / |P_n|
// with a term 0 when its denominator is 0 (empty proposal or empty contour).
// v, e, b: packed [K, W32]; props: packed [N, W32]; areas: |P_n| as int32 [N].
// |E_k| is counted here (one extra popcount per word). One warp per (k, n) pair.
// Recommended: block 256 (8 pairs), grid ceil(K*N / 8) (capped); K*N == 0 launches nothing.
extern "C" __global__ void match_scores_kernel(const uint32_t* __restrict__ v,
                                               const uint32_t* __restrict__ e,
                                               const uint32_t* __restrict__ b,
                                               const uint32_t* __restrict__ props,
                                               const int* __restrict__ areas,
                                               double* __restrict__ scores,
                                               int k, int n, int w32,
                                               double alpha, double beta, double gamma) {
    const long long pairs = (long long)k * n;
    const int lane = icn_lane();
    for (long long pair = icn_global_warp(); pair < pairs; pair += icn_warp_count()) {
        const long long ki = pair / n;
        const long long ni = pair % n;
        const uint32_t* vk = v + ki * w32;
        const uint32_t* ek = e + ki * w32;
        const uint32_t* bk = b + ki * w32;
        const uint32_t* pn = props + ni * w32;
        unsigned int vp = 0u, ep = 0u, bp = 0u, et = 0u;
        for (int w = lane; w < w32; w += ICN_WARP) {
            const uint32_t p = pn[w];
            const uint32_t ew = ek[w];
            vp += __popc(vk[w] & p);
            ep += __popc(ew & p);
            bp += __popc(bk[w] & p);
            et += __popc(ew);
        }
        vp = icn_warp_sum(vp);
        ep = icn_warp_sum(ep);
        bp = icn_warp_sum(bp);
        et = icn_warp_sum(et);
        if (lane == 0) {
            scores[pair] = icn_eq5((double)vp, (double)ep, (double)bp, (double)areas[ni],
                                   (double)et, alpha, beta, gamma);
        }
    }
}

// (b') Jaccard scores double [K, N] (scoring="iou", |V & P| / |V | P|) from packed V
// [K, W32] and proposals [N, W32]. One warp per pair, as match_scores_kernel.
extern "C" __global__ void jaccard_scores_kernel(const uint32_t* __restrict__ v,
                                                 const uint32_t* __restrict__ props,
                                                 double* __restrict__ scores,
                                                 int k, int n, int w32) {
    const long long pairs = (long long)k * n;
    for (long long pair = icn_global_warp(); pair < pairs; pair += icn_warp_count()) {
        unsigned int inter, uni;
        icn_warp_overlap(v + (pair / n) * w32, props + (pair % n) * w32, w32, &inter, &uni);
        if (icn_lane() == 0) {
            scores[pair] = icn_ratio((double)inter, (double)uni);  // = icn_jaccard's
        }
    }
}

// Arg-max of the rows of scores [K, N] (one warp per row): NaN counts as -inf; ties go to the
// lowest index (numpy argmax); a row whose best value is not finite (or N == 0) gives index -1
// and value -inf (icnseg.matching.best_proposals).
template <typename T>
__device__ __forceinline__ void icn_argmax_rows(const T* __restrict__ scores,
                                                int* __restrict__ index,
                                                T* __restrict__ value, int k, int n) {
    const T neg_inf = -(T)CUDART_INF;
    const int lane = icn_lane();
    for (long long row = icn_global_warp(); row < k; row += icn_warp_count()) {
        const T* r = scores + row * (long long)n;
        T best = neg_inf;
        int best_i = 0x7fffffff;  // "none yet": any index, even of -inf, beats it on a tie
        for (int j = lane; j < n; j += ICN_WARP) {
            T s = r[j];
            if (isnan(s)) {
                s = neg_inf;
            }
            if (s > best || (s == best && j < best_i)) {
                best = s;
                best_i = j;
            }
        }
        for (int off = ICN_WARP / 2; off > 0; off >>= 1) {
            const T ob = __shfl_xor_sync(ICN_FULL_MASK, best, off);
            const int oi = __shfl_xor_sync(ICN_FULL_MASK, best_i, off);
            if (ob > best || (ob == best && oi < best_i)) {
                best = ob;
                best_i = oi;
            }
        }
        if (lane == 0) {
            const bool ok = best_i != 0x7fffffff && isfinite(best);
            index[row] = ok ? best_i : -1;
            value[row] = ok ? best : neg_inf;
        }
    }
}

// (c) Row arg-max of float [K, N] -> index int32 [K], value float [K] (see icn_argmax_rows).
// Recommended: block 256 (8 rows), grid ceil(K / 8) (capped).
extern "C" __global__ void argmax_kernel(const float* __restrict__ scores,
                                         int* __restrict__ index,
                                         float* __restrict__ value,
                                         int k, int n) {
    icn_argmax_rows<float>(scores, index, value, k, n);
}

// (c') The same for double [K, N] (the scores of match_scores_kernel) -> value double [K].
extern "C" __global__ void argmax_f64_kernel(const double* __restrict__ scores,
                                             int* __restrict__ index,
                                             double* __restrict__ value,
                                             int k, int n) {
    icn_argmax_rows<double>(scores, index, value, k, n);
}

// (c'') Set bits of every packed row [M, W32] -> int32 [M] (mask areas |P_n|, |E_k|).
// One warp per row. Recommended: block 256 (8 rows), grid ceil(M / 8) (capped).
extern "C" __global__ void popcount_rows_kernel(const uint32_t* __restrict__ packed,
                                                int* __restrict__ out, int m, int w32) {
    const int lane = icn_lane();
    for (long long row = icn_global_warp(); row < m; row += icn_warp_count()) {
        const uint32_t* r = packed + row * w32;
        unsigned int c = 0u;
        for (int w = lane; w < w32; w += ICN_WARP) {
            c += __popc(r[w]);
        }
        c = icn_warp_sum(c);
        if (lane == 0) {
            out[row] = (int)c;
        }
    }
}

// (d) IoU of every pair of packed masks [M, W32] -> float [M, M]; an empty union gives 0.
// One warp per (i, j) pair. Recommended: block 256 (8 pairs), grid ceil(M*M / 8) (capped).
extern "C" __global__ void pairwise_iou_kernel(const uint32_t* __restrict__ packed,
                                               float* __restrict__ iou,
                                               int m, int w32) {
    const long long pairs = (long long)m * m;
    for (long long pair = icn_global_warp(); pair < pairs; pair += icn_warp_count()) {
        unsigned int inter, uni;
        icn_warp_overlap(packed + (pair / m) * w32, packed + (pair % m) * w32, w32, &inter,
                         &uni);
        if (icn_lane() == 0) {
            iou[pair] = uni > 0u ? (float)inter / (float)uni : 0.0f;
        }
    }
}

// (e) Binarise maps float [K, HW] as uint8 0/1. normalize != 0: per-sample min-max first,
//   out[k, p] = ((x - min_k) / max(max_k - min_k, 1e-12) >= t)
// (icnseg.postprocess.minmax then ">= t"; a constant map normalises to 0); normalize == 0:
// out = (x >= t) (an ICN output in [0, 1], icnseg.postprocess.binary_maps).
// One block per sample (grid-stride over samples); blockDim.x must be a power of two
// between 32 and 1024 and the launch needs 2 * blockDim.x * sizeof(float) dynamic shared
// memory. Recommended: block 256, grid min(K, 65535), shared 2048 bytes.
extern "C" __global__ void minmax_binarize_kernel(const float* __restrict__ maps,
                                                  uint8_t* __restrict__ out,
                                                  int k, int hw, float t, int normalize) {
    ICN_DYNAMIC_SHARED(float, icn_minmax_smem);
    float* s_lo = icn_minmax_smem;
    float* s_hi = icn_minmax_smem + blockDim.x;
    for (long long row = blockIdx.x; row < k; row += gridDim.x) {
        const float* x = maps + row * (long long)hw;
        uint8_t* o = out + row * (long long)hw;
        if (!normalize) {
            for (int p = threadIdx.x; p < hw; p += blockDim.x) {
                o[p] = x[p] >= t ? 1 : 0;
            }
            continue;
        }
        float lo = CUDART_INF_F, hi = -CUDART_INF_F;
        for (int p = threadIdx.x; p < hw; p += blockDim.x) {
            lo = fminf(lo, x[p]);
            hi = fmaxf(hi, x[p]);
        }
        s_lo[threadIdx.x] = lo;
        s_hi[threadIdx.x] = hi;
        __syncthreads();
        for (unsigned int half = blockDim.x / 2; half > 0; half >>= 1) {
            if (threadIdx.x < half) {
                s_lo[threadIdx.x] = fminf(s_lo[threadIdx.x], s_lo[threadIdx.x + half]);
                s_hi[threadIdx.x] = fmaxf(s_hi[threadIdx.x], s_hi[threadIdx.x + half]);
            }
            __syncthreads();
        }
        lo = s_lo[0];
        const float span = fmaxf(s_hi[0] - lo, 1e-12f);
        __syncthreads();  // everyone has read s_lo/s_hi before the next row overwrites them
        for (int p = threadIdx.x; p < hw; p += blockDim.x) {
            o[p] = (__fdiv_rn(x[p] - lo, span) >= t) ? 1 : 0;
        }
    }
}

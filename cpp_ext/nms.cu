// icnseg instance scoring and class-aware greedy mask NMS (icnseg.nms.mask_nms semantics).
//
// M candidates, candidate i being packed mask rows[i] of packed [R, W32], of class classes[i],
// with score[i] and a flag valid[i] (invalid candidates are never kept and suppress nothing).
//   nms_suppress_kernel: suppress[i, j] = 1 when i != j are valid, of one class, and
//     IoU(mask i, mask j) >= thr or the masks are identical (empty duplicates included);
//     IoU = |a & b| / (|a| + |b| - |a & b|) in double, 0 for an empty union (icnseg.nms._iou).
//   nms_walk_kernel (one block): visits candidates by descending score, ties lower index
//     first, NaN scores last (np.lexsort((arange, -score))); keeps a valid candidate not yet
//     removed and removes every candidate it suppresses. Writes kept indices in visit order
//     (highest score first) and their count.
// instance_scores_kernel computes the score and valid flag of icnseg.postprocess
// .select_instances from the match quality. Launch conventions: common.cuh.

#include "common.cuh"

// (a) score[i] = conf[i] * clip(quality[i], 0, 1); valid[i] = isfinite(q) && q >= min_quality.
// One thread per instance. Recommended: block 256, grid ceil(K / 256) (capped).
extern "C" __global__ void instance_scores_kernel(const double* __restrict__ quality,
                                                  const double* __restrict__ conf,
                                                  double* __restrict__ score,
                                                  uint8_t* __restrict__ valid,
                                                  int k, double min_quality) {
    for (long long i = icn_thread(); i < k; i += icn_stride()) {
        const double q = quality[i];
        const double clipped = isnan(q) ? q : fmin(fmax(q, 0.0), 1.0);
        score[i] = __dmul_rn(conf[i], clipped);
        valid[i] = (isfinite(q) && q >= min_quality) ? 1 : 0;
    }
}

// (b) Suppression matrix uint8 [M, M] (see the top). One warp per pair; the warp of i < j
// writes both (i, j) and (j, i), the one of i == j writes 0. Recommended: block 256
// (8 pairs), grid ceil(M*M / 8) (capped).
extern "C" __global__ void nms_suppress_kernel(const uint32_t* __restrict__ packed,
                                               const int* __restrict__ rows,
                                               const uint8_t* __restrict__ valid,
                                               const int* __restrict__ classes,
                                               uint8_t* __restrict__ suppress,
                                               int m, int w32, double thr) {
    const long long pairs = (long long)m * m;
    const int lane = icn_lane();
    for (long long pair = icn_global_warp(); pair < pairs; pair += icn_warp_count()) {
        const int i = (int)(pair / m);
        const int j = (int)(pair % m);
        if (i >= j) {
            if (i == j && lane == 0) {
                suppress[pair] = 0;
            }
            continue;
        }
        int result = 0;
        if (valid[i] && valid[j] && classes[i] == classes[j]) {
            const int ri = rows[i];
            const int rj = rows[j];
            if (ri == rj) {
                result = 1;  // the same proposal: identical masks
            } else {
                unsigned int inter, uni;
                icn_warp_overlap(packed + (long long)ri * w32, packed + (long long)rj * w32,
                                 w32, &inter, &uni);
                // |a | b| equals |a| + |b| - |a & b| exactly; the masks are identical (empty
                // ones too) exactly when the overlap is the union
                const bool identical = inter == uni;
                result = (icn_ratio((double)inter, (double)uni) >= thr || identical) ? 1 : 0;
            }
        }
        if (lane == 0) {
            suppress[pair] = (uint8_t)result;
            suppress[(long long)j * m + i] = (uint8_t)result;
        }
    }
}

// True when candidate j is visited before candidate i: higher score first, ties (and NaN
// with NaN) by lower index, NaN scores after every number.
__device__ __forceinline__ bool icn_visits_before(double sj, int j, double si, int i) {
    const bool nan_j = isnan(sj);
    const bool nan_i = isnan(si);
    if (nan_j || nan_i) {
        return (nan_j && nan_i) ? j < i : nan_i;
    }
    return sj > si || (sj == si && j < i);
}

// (c) The greedy walk in a single block (blocks other than 0 return at once). Scratch:
// order int32 [M] (visit order), removed uint8 [M]. Output: kept int32 [M] (first n_kept
// entries used), n_kept int32 [1]. Recommended: block 256, grid 1.
extern "C" __global__ void nms_walk_kernel(const double* __restrict__ score,
                                           const uint8_t* __restrict__ valid,
                                           const uint8_t* __restrict__ suppress,
                                           int* order, uint8_t* removed,
                                           int* __restrict__ kept, int* __restrict__ n_kept,
                                           int m) {
    __shared__ int s_keep;
    __shared__ int s_count;
    if (blockIdx.x != 0) {
        return;
    }
    for (int i = threadIdx.x; i < m; i += blockDim.x) {
        const double si = score[i];
        int rank = 0;
        for (int j = 0; j < m; ++j) {
            rank += icn_visits_before(score[j], j, si, i) ? 1 : 0;
        }
        order[rank] = i;  // a total order: the ranks are a permutation of 0..M-1
        removed[i] = 0;
    }
    if (threadIdx.x == 0) {
        s_count = 0;
    }
    __syncthreads();
    for (int pos = 0; pos < m; ++pos) {
        const int i = order[pos];
        if (threadIdx.x == 0) {
            s_keep = (valid[i] != 0 && removed[i] == 0) ? 1 : 0;
            if (s_keep) {
                kept[s_count] = i;
                s_count += 1;
            }
        }
        __syncthreads();
        if (s_keep) {
            const uint8_t* row = suppress + (long long)i * m;
            for (int j = threadIdx.x; j < m; j += blockDim.x) {
                if (row[j] != 0) {
                    removed[j] = 1;
                }
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        *n_kept = s_count;
    }
}

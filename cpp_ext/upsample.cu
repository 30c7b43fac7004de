// icnseg upsampling kernel: the final maps, made at the model input size, brought to the
// matching size (the image's own, capped), as icnseg.upsample.upsample_maps does on the host.
//
// Bilinear with aligned pixel centres. The taps (lower index, upper index, float32 weight of
// the upper one) of every output column and row are computed on the host by the same numpy
// code as the reference (icnseg.upsample._taps) and passed in, so only the interpolation runs
// here; it rounds every float32 operation separately (no FMA contraction), in the
// reference's order, so the values are bit-identical and so are the binarised pixels:
//   row(y) = a + (b - a) * wx     with a = in[y, x0[x]], b = in[y, x1[x]]
//   out    = t + (u - t) * wy[y]  with t = row(y0[y]), u = row(y1[y])
// Launch conventions: common.cuh.

#include "common.cuh"

__device__ __forceinline__ float icn_lerp(float a, float b, float t) {
    return __fadd_rn(a, __fmul_rn(__fsub_rn(b, a), t));
}

// out[k, Y, X] from in[k, h, w]. One thread per output pixel.
// Recommended: block 256, grid ceil(K*H*W / 256) (capped).
extern "C" __global__ void upsample_kernel(const float* __restrict__ in,
                                           float* __restrict__ out,
                                           const int* __restrict__ x0,
                                           const int* __restrict__ x1,
                                           const float* __restrict__ wx,
                                           const int* __restrict__ y0,
                                           const int* __restrict__ y1,
                                           const float* __restrict__ wy,
                                           int k, int h, int w, int out_h, int out_w) {
    const long long plane = (long long)out_h * out_w;
    const long long total = (long long)k * plane;
    for (long long i = icn_thread(); i < total; i += icn_stride()) {
        const long long in_plane = i % plane;
        const int y = (int)(in_plane / out_w);
        const int x = (int)(in_plane % out_w);
        const float* src = in + (i / plane) * (long long)h * w;
        const float* top = src + (long long)y0[y] * w;
        const float* bottom = src + (long long)y1[y] * w;
        const float t = icn_lerp(top[x0[x]], top[x1[x]], wx[x]);
        const float u = icn_lerp(bottom[x0[x]], bottom[x1[x]], wx[x]);
        out[i] = icn_lerp(t, u, wy[y]);
    }
}

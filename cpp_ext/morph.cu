// icnseg morphology kernels: the contour E(V) and the "dilate" background B(V) of Eq. 5.
//
// Binary masks uint8 [K, H, W] (0 = off, anything else = on) go through a (2r+1)^2 square
// window, separably: morph_rows_kernel takes the horizontal window, morph_cols_kernel the
// vertical one. Pixels outside the image are ignored (OpenCV's default border, as in
// icnseg.matching._morph): dilate = any in-image pixel of the window is on, erode = every
// in-image pixel of the window is on, so the image border itself is never a contour.
//   mode 0 (icnseg.matching.contour):       out = dilate(V) XOR erode(V) = dilate & !erode
//   mode 1 (background_template "dilate"):  out = NOT dilate(V)
// Outputs are uint8 0/1 [K, H, W]; pack them with pack_masks_kernel. Radius 0 gives an empty
// contour and B = NOT V, like the reference. Launch conventions: common.cuh.

#include "common.cuh"

// Row pass: tmp[k, y, x] = any | all << 1 over in[k, y, max(0, x-r) .. min(W-1, x+r)].
// One thread per pixel. Recommended: block 256, grid ceil(K*H*W / 256) (capped).
extern "C" __global__ void morph_rows_kernel(const uint8_t* __restrict__ in,
                                             uint8_t* __restrict__ tmp,
                                             int k, int h, int w, int r) {
    const long long total = (long long)k * h * w;
    for (long long i = icn_thread(); i < total; i += icn_stride()) {
        const int x = (int)(i % w);
        const uint8_t* row = in + (i - x);
        const int x0 = max(x - r, 0);
        const int x1 = min(x + r, w - 1);
        int any = 0, all = 1;
        for (int xx = x0; xx <= x1; ++xx) {
            const int on = row[xx] != 0;
            any |= on;
            all &= on;
        }
        tmp[i] = (uint8_t)(any | (all << 1));
    }
}

// Column pass over the row results: dilate = any bit 0, erode = all bit 1 over
// tmp[k, max(0, y-r) .. min(H-1, y+r), x]; writes the mode's output (see the top).
// One thread per pixel. Recommended: block 256, grid ceil(K*H*W / 256) (capped).
extern "C" __global__ void morph_cols_kernel(const uint8_t* __restrict__ tmp,
                                             uint8_t* __restrict__ out,
                                             int k, int h, int w, int r, int mode) {
    const long long plane = (long long)h * w;
    const long long total = (long long)k * plane;
    for (long long i = icn_thread(); i < total; i += icn_stride()) {
        const long long in_plane = i % plane;
        const int y = (int)(in_plane / w);
        const int x = (int)(in_plane % w);
        const uint8_t* col = tmp + (i - in_plane) + x;
        const int y0 = max(y - r, 0);
        const int y1 = min(y + r, h - 1);
        int dilate = 0, erode = 1;
        for (int yy = y0; yy <= y1; ++yy) {
            const uint8_t t = col[(long long)yy * w];
            dilate |= t & 1;
            erode &= t >> 1;
        }
        out[i] = (uint8_t)(mode == 0 ? (dilate & !erode) : !dilate);
    }
}

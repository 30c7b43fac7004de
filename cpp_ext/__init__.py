"""CUDA C++ kernels (bit-packing, Eq. 5 scores, morphology, superpixel sums, NMS), loaded by
icnseg.runtime.cuda_launch as fatbins or compiled with pycuda."""

"""CUDA C++ kernels for matching and NMS, loaded by the runtime as a fatbin or compiled with pycuda."""

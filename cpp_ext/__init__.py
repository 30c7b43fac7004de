"""CUDA C++ kernels for matching and NMS, loaded as a fatbin or compiled with pycuda."""

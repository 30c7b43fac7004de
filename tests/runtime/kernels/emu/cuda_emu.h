// CPU emulation of the CUDA features cpp_ext/*.cu uses, for tests on machines without a GPU.
//
// Force-included before a .cu compiled as C++ into a shared library (tests/cpp_ext/_emu.py
// adds one emu_launch_<kernel> entry point per kernel). Every CUDA thread of a block is a
// fiber on one OS thread: a fiber runs until it reaches __syncthreads() or a warp shuffle,
// then yields to a scheduler (a new pseudo-random order each round) that releases a barrier
// once every thread of the block (or warp) waits at it. Blocks run one after another, so
// __shared__ variables are function statics. A barrier that can never be released
// (divergent __syncthreads or shuffle) makes the launch fail instead of hanging. Fibers start
// through ucontext and switch with _setjmp/_longjmp (no system call per switch). 1-D
// launches whose block size is a multiple of 32 only, like every launch in icnseg.
#pragma once

#include <setjmp.h>
#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

struct emu_dim3 {
    unsigned int x, y, z;
};

inline emu_dim3 threadIdx{0u, 0u, 0u};  // the running fiber's; set by the scheduler
inline emu_dim3 blockIdx{0u, 0u, 0u};
inline emu_dim3 blockDim{32u, 1u, 1u};
inline emu_dim3 gridDim{1u, 1u, 1u};

enum EmuState { EMU_RUN, EMU_AT_BLOCK, EMU_AT_WARP, EMU_DONE };

struct EmuFiber {
    jmp_buf env;
    ucontext_t boot;
    std::vector<char> stack;
    EmuState state = EMU_RUN;
    bool started = false;
    unsigned int parity = 0u;  // alternate shuffle slot banks (see __shfl_xor_sync)
};

inline std::vector<EmuFiber> emu_fibers;
inline std::vector<uint64_t> emu_lane_slots;
inline std::vector<double> emu_dynamic_smem;  // double elements: 8-byte aligned
inline std::function<void()> emu_kernel;
inline jmp_buf emu_scheduler;
inline unsigned int emu_current = 0u;

#define ICN_DYNAMIC_SHARED(type, name) \
    type* name = reinterpret_cast<type*>(emu_dynamic_smem.data())

// The running fiber waits in `state` until the scheduler releases it.
inline void emu_yield(EmuState state) {
    EmuFiber& f = emu_fibers[emu_current];
    f.state = state;
    if (_setjmp(f.env) == 0) {
        _longjmp(emu_scheduler, 1);
    }
}

inline void __syncthreads() { emu_yield(EMU_AT_BLOCK); }

// Consecutive shuffles use alternate slot banks, so a lane that runs ahead after a release
// writes the other bank, never the one its warp is still reading.
template <typename T>
inline T __shfl_xor_sync(unsigned int, T value, int lane_mask) {
    static_assert(sizeof(T) <= sizeof(uint64_t), "shuffle of a type wider than 8 bytes");
    const unsigned int tid = threadIdx.x;
    EmuFiber& f = emu_fibers[tid];
    const size_t bank = f.parity * (emu_lane_slots.size() / 2u);
    f.parity ^= 1u;
    uint64_t bits = 0u;
    std::memcpy(&bits, &value, sizeof(T));
    emu_lane_slots[bank + tid] = bits;
    emu_yield(EMU_AT_WARP);
    const uint64_t other = emu_lane_slots[bank + (tid ^ (unsigned int)lane_mask)];
    T out;
    std::memcpy(&out, &other, sizeof(T));
    return out;
}

// One OS thread runs every fiber, so plain read-modify-writes are atomic.
template <typename T>
inline T atomicAdd(T* address, T value) {
    const T old = *address;
    *address = old + value;
    return old;
}

inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
using std::fmax;
using std::fmin;
using std::isfinite;
using std::isnan;

// Fiber body: every block of the grid in turn, each ending at a block-wide barrier.
inline void emu_fiber_main() {
    for (unsigned int b = 0; b < gridDim.x; ++b) {
        blockIdx = emu_dim3{b, 0u, 0u};  // every fiber finished block b-1 before any gets here
        emu_kernel();
        emu_yield(EMU_AT_BLOCK);
    }
    emu_fibers[emu_current].state = EMU_DONE;
    _longjmp(emu_scheduler, 1);
}

// Release the block barrier or full warp barriers; false when nothing can move (deadlock).
inline bool emu_release(unsigned int block) {
    bool any = false;
    unsigned int at_block = 0u;
    for (const EmuFiber& f : emu_fibers) {
        at_block += f.state == EMU_AT_BLOCK ? 1u : 0u;
    }
    if (at_block == block) {
        for (EmuFiber& f : emu_fibers) {
            f.state = EMU_RUN;
        }
        return true;
    }
    for (unsigned int w = 0; w < block / 32u; ++w) {
        bool all = true;
        for (unsigned int l = 0; l < 32u; ++l) {
            all = all && emu_fibers[w * 32u + l].state == EMU_AT_WARP;
        }
        if (all) {
            for (unsigned int l = 0; l < 32u; ++l) {
                emu_fibers[w * 32u + l].state = EMU_RUN;
            }
            any = true;
        }
    }
    return any;
}

// Run fiber i until it yields (or finishes); returns like a normal call afterwards.
__attribute__((noinline)) inline void emu_resume(unsigned int i) {
    EmuFiber& f = emu_fibers[i];
    emu_current = i;
    threadIdx = emu_dim3{i, 0u, 0u};
    if (_setjmp(emu_scheduler) == 0) {
        if (!f.started) {
            f.started = true;
            getcontext(&f.boot);
            f.boot.uc_stack.ss_sp = f.stack.data();
            f.boot.uc_stack.ss_size = f.stack.size();
            f.boot.uc_link = nullptr;
            makecontext(&f.boot, emu_fiber_main, 0);
            setcontext(&f.boot);
        }
        _longjmp(f.env, 1);
    }
}

// Rounds over the runnable fibers, in a new pseudo-random order each round (so a race
// between barriers, e.g. reading what thread 0 writes without a __syncthreads, shows);
// release barriers when none can run. 0 when every fiber finished, 1 on a barrier that can
// never be released.
inline int emu_schedule(unsigned int block) {
    std::vector<unsigned int> order(block);
    for (unsigned int i = 0; i < block; ++i) {
        order[i] = i;
    }
    uint64_t rng = 0x9E3779B97F4A7C15ull;  // fixed seed: reproducible interleavings
    for (;;) {
        for (unsigned int i = block - 1u; i > 0u; --i) {  // Fisher-Yates with xorshift64
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            const unsigned int j = (unsigned int)(rng % (i + 1u));
            const unsigned int t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        bool ran = false;
        for (unsigned int i : order) {
            if (emu_fibers[i].state == EMU_RUN) {
                ran = true;
                emu_resume(i);
            }
        }
        bool done = true;
        for (const EmuFiber& f : emu_fibers) {
            done = done && f.state == EMU_DONE;
        }
        if (done) {
            return 0;
        }
        if (!ran && !emu_release(block)) {
            return 1;
        }
    }
}

// Run kernel over grid x block threads: 0 on success, 1 on a barrier that never releases,
// 2 on a block size the emulator does not support.
inline int emu_run(unsigned int grid, unsigned int block, unsigned int shared,
                   std::function<void()> kernel) {
    if (block == 0u || block % 32u != 0u) {
        return 2;
    }
    gridDim = emu_dim3{grid, 1u, 1u};
    blockDim = emu_dim3{block, 1u, 1u};
    emu_kernel = std::move(kernel);
    // A pattern, not zeros: a kernel that forgets to initialise shared memory shows.
    emu_dynamic_smem.assign(shared / sizeof(double) + 1u, -12345.678);
    emu_lane_slots.assign(2u * block, 0u);
    emu_fibers.resize(block);
    for (EmuFiber& f : emu_fibers) {
        f.stack.resize(1u << 16);
        f.state = EMU_RUN;
        f.started = false;
        f.parity = 0u;
    }
    return emu_schedule(block);
}

// Kernel arguments arrive as 64-bit slots (see _emu.py): pointers, int32, float32 bits, double.
struct EmuPtr {
    uint64_t bits;
    template <typename T>
    operator T*() const { return reinterpret_cast<T*>(bits); }
};

inline int emu_int(uint64_t bits) { return (int)(int64_t)bits; }

inline float emu_float(uint64_t bits) {
    const uint32_t low = (uint32_t)bits;
    float out;
    std::memcpy(&out, &low, sizeof(float));
    return out;
}

inline double emu_double(uint64_t bits) {
    double out;
    std::memcpy(&out, &bits, sizeof(double));
    return out;
}

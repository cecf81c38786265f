// CPU emulation of the CUDA execution model, for testing the .cu sources of this folder without a GPU.
//
// The .cu file is compiled as C++20 with this header included first (g++ -include emulation.h).  A launch
// runs the grid's blocks one after another; inside a block either
//   - one OS thread walks the block's threads in order (kernels without shared memory: their threads are
//     independent, so any order is a legal CUDA schedule), or
//   - every CUDA thread gets an OS thread, and __syncthreads() is a std::barrier over them (kernels that
//     declare __shared__ memory, which is where __syncthreads matters).
// threadIdx/blockIdx are thread_local; __shared__ becomes `static`, one copy shared by the block's threads,
// which is exact because blocks never run at the same time.  atomicAdd is std::atomic_ref::fetch_add.
// Not emulated (the sources do not use them): warp shuffles/votes, dynamic shared memory, streams.
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <thread>
#include <vector>

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace emu {
inline thread_local dim3 thread_idx, block_idx;
inline dim3 grid_dim, block_dim;
inline std::barrier<>* block_barrier = nullptr;

// Runs body() once per CUDA thread of the grid.
template <class Body>
void launch(bool concurrent_threads, dim3 grid, dim3 block, Body body)
{
    grid_dim = grid;
    block_dim = block;
    const unsigned threads = block.x * block.y * block.z;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                const dim3 b(bx, by, bz);
                if (!concurrent_threads) {
                    block_idx = b;
                    for (unsigned t = 0; t < threads; ++t) {
                        thread_idx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
                        body();
                    }
                    continue;
                }
                std::barrier<> barrier(threads);
                block_barrier = &barrier;
                std::vector<std::thread> pool;
                pool.reserve(threads);
                for (unsigned t = 0; t < threads; ++t)
                    pool.emplace_back([&, t, b] {
                        block_idx = b;
                        thread_idx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
                        body();
                        barrier.arrive_and_drop();   // a finished thread no longer holds the others back
                    });
                for (auto& th : pool) th.join();
                block_barrier = nullptr;
            }
}
}  // namespace emu

#define threadIdx emu::thread_idx
#define blockIdx emu::block_idx
#define blockDim emu::block_dim
#define gridDim emu::grid_dim
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static
#define __syncthreads() emu::block_barrier->arrive_and_wait()

template <class T>
T atomicAdd(T* address, T value)
{
    return std::atomic_ref<T>(*address).fetch_add(value);
}

using std::sqrt;

// CPU emulation of the CUDA execution model, for testing the .cu sources of this folder without a GPU.
//
// The .cu file is compiled as C++20 with this header included first (g++ -include emulation.h).  A launch
// runs the grid's blocks one after another; inside a block either
//   - one OS thread walks the block's threads in order (kernels without shared memory: their threads are
//     independent, so any order is a legal CUDA schedule), or
//   - every CUDA thread of the block gets an OS thread, and __syncthreads() is a std::barrier over them
//     (kernels that declare __shared__ memory, which is where __syncthreads matters); the OS threads are
//     started once per launch and run thread t of each block in turn.
// threadIdx/blockIdx are thread_local; __shared__ becomes `static`, one copy shared by the block's threads,
// which is exact because blocks never run at the same time.  atomicAdd is std::atomic_ref::fetch_add.
// WMMA (nvcuda::wmma) is emulated by its meaning, not its register layout: a fragment's elements are
// unspecified per lane in CUDA, so here every lane holds the whole tile, mma_sync computes it whole in float,
// and store_matrix_sync is done by lane 0 of the warp; __float_to_tf32 rounds as cvt.rna.tf32.f32 does
// (to nearest, ties away from zero, 10 mantissa bits), __float2bfloat16 as CUDA's (to nearest even, 7 bits);
// products of two such operands are exact in float, so mma_sync's float sums are the tensor cores' products.
// Not emulated (the sources do not use them): warp shuffles/votes, dynamic shared memory, streams.
#pragma once
#include <atomic>
#include <barrier>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <type_traits>
#include <vector>

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace emu {
inline thread_local dim3 thread_idx, block_idx;
inline dim3 grid_dim, block_dim;
inline thread_local std::barrier<>* block_barrier = nullptr;

// Runs body() once per CUDA thread of the grid.
template <class Body>
void launch(bool concurrent_threads, dim3 grid, dim3 block, Body body)
{
    grid_dim = grid;
    block_dim = block;
    const unsigned threads = block.x * block.y * block.z;
    auto thread_at = [&](unsigned t) { return dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y)); };
    if (!concurrent_threads) {
        for (unsigned bz = 0; bz < grid.z; ++bz)
            for (unsigned by = 0; by < grid.y; ++by)
                for (unsigned bx = 0; bx < grid.x; ++bx) {
                    block_idx = dim3(bx, by, bz);
                    for (unsigned t = 0; t < threads; ++t) {
                        thread_idx = thread_at(t);
                        body();
                    }
                }
        return;
    }
    // One OS thread per CUDA thread of a block, started once per launch and reused block after block: the
    // main thread opens a block (a fresh __syncthreads barrier, its index) at `start`, and waits at `end`
    // until every thread has run it, so blocks never overlap (their `static` shared memory is one copy).
    std::barrier<> start(threads + 1), end(threads + 1);
    std::barrier<>* sync = nullptr;
    dim3 current;
    bool finished = false;
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (unsigned t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            thread_idx = thread_at(t);
            for (;;) {
                start.arrive_and_wait();
                if (finished) return;
                block_idx = current;
                block_barrier = sync;
                body();
                sync->arrive_and_drop();    // a finished thread no longer holds the others back
                end.arrive_and_wait();
            }
        });
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                std::barrier<> barrier(threads);
                sync = &barrier;
                current = dim3(bx, by, bz);
                start.arrive_and_wait();
                end.arrive_and_wait();
            }
    finished = true;
    start.arrive_and_wait();
    for (auto& th : pool) th.join();
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
#define __align__(n) __attribute__((aligned(n)))
#define __syncthreads() emu::syncthreads()

namespace emu {
inline void syncthreads()
{
    if (block_barrier == nullptr) {      // emulation.py ran the block's threads one by one: a harness bug
        std::fputs("emulation: __syncthreads() in a kernel whose threads run one after another\n", stderr);
        std::abort();
    }
    block_barrier->arrive_and_wait();
}
}  // namespace emu

template <class T>
T atomicAdd(T* address, T value)
{
    return std::atomic_ref<T>(*address).fetch_add(value);
}

using std::sqrt;

namespace emu {
// The lane of the calling thread in its warp (threads numbered x fastest, as CUDA does).
inline unsigned lane()
{
    return (thread_idx.x + block_dim.x * (thread_idx.y + block_dim.y * thread_idx.z)) % 32;
}
}  // namespace emu

// bfloat16: the upper 16 bits of a float; __float2bfloat16 rounds to nearest, ties to even, as CUDA's does.
struct __nv_bfloat16 {
    std::uint16_t bits;
};

inline __nv_bfloat16 __float2bfloat16(float value)
{
    std::uint32_t u = std::bit_cast<std::uint32_t>(value);
    if (std::isnan(value)) return {static_cast<std::uint16_t>((u >> 16) | 0x40)};   // stays a (quiet) NaN
    u += 0x7FFFu + ((u >> 16) & 1u);
    return {static_cast<std::uint16_t>(u >> 16)};
}

inline float __bfloat162float(__nv_bfloat16 value)
{
    return std::bit_cast<float>(static_cast<std::uint32_t>(value.bits) << 16);
}

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {};
}
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
    static constexpr int num_rows = std::is_same_v<Use, matrix_b> ? K : M;
    static constexpr int num_cols = std::is_same_v<Use, matrix_a> ? K : N;
    static constexpr int num_elements = num_rows * num_cols;   // the whole tile, in every lane
    float x[num_elements];
};

template <class Frag>
void fill_fragment(Frag& f, float value)
{
    for (float& e : f.x) e = value;
}

inline float to_float(float v) { return v; }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

// Loads float (TF32 operands) or bfloat16 memory; the fragment holds the values as floats.
template <class Use, int M, int N, int K, class T, class Layout, class E>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const E* p, unsigned ldm)
{
    using F = fragment<Use, M, N, K, T, Layout>;
    for (int r = 0; r < F::num_rows; ++r)
        for (int c = 0; c < F::num_cols; ++c)
            f.x[r * F::num_cols + c] = to_float(std::is_same_v<Layout, col_major> ? p[c * ldm + r] : p[r * ldm + c]);
}

template <int M, int N, int K, class TA, class LA, class TB, class LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
              const fragment<matrix_b, M, N, K, TB, LB>& b, const fragment<accumulator, M, N, K, float>& c)
{
    float out[M * N];
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
            float sum = c.x[i * N + j];
            for (int k = 0; k < K; ++k) sum += a.x[i * K + k] * b.x[k * N + j];
            out[i * N + j] = sum;
        }
    for (int e = 0; e < M * N; ++e) d.x[e] = out[e];
}

template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm, layout_t layout)
{
    if (emu::lane() != 0) return;      // the warp's one store (every lane holds the same tile)
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) (layout == mem_row_major ? p[i * ldm + j] : p[j * ldm + i]) = f.x[i * N + j];
}

inline float __float_to_tf32(float value)
{
    if (!std::isfinite(value)) return value;
    std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
    bits = (bits + 0x1000u) & 0xFFFFE000u;     // add half a TF32 ulp to the magnitude, drop 13 bits
    return std::bit_cast<float>(bits);
}
}  // namespace wmma
}  // namespace nvcuda

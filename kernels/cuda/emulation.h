// CPU emulation of the CUDA execution model, for testing the .cu sources of this folder without a GPU.
//
// The .cu file is compiled as C++20 with this header included first (g++ -include emulation.h).  A launch
// runs the grid's blocks one after another, on the calling OS thread; inside a block either
//   - the block's threads run one after another (kernels without shared memory: their threads are
//     independent, so any order is a legal CUDA schedule), or
//   - every CUDA thread of the block is a fiber (ucontext, its own stack), and __syncthreads() is a barrier
//     at which a thread yields to the next until all have arrived (kernels that use __shared__ memory or
//     __syncthreads, themselves or through a __device__ function they call); threads that wait at barriers
//     none of the others reach abort with a sentence instead of hanging.
// threadIdx/blockIdx are set before each thread resumes; __shared__ becomes `static`, one copy shared by the
// block's threads, which is exact because blocks never run at the same time.  atomicAdd is
// std::atomic_ref::fetch_add.
// The tensor-core instructions the sources write as inline PTX are functions here, by the PTX ISA's tables:
// ptx_cvt_rna_tf32 (cvt.rna.tf32.f32: to nearest, ties away from zero, 10 mantissa bits) and the warp-wide
// ptx_mma_m16n8k8_tf32 / ptx_mma_m16n8k16_bf16 (mma.sync.aligned ... row.col.f32): every lane of the warp
// puts its fragment registers in the warp's exchange, waits for the other 31 at a barrier of the warp, rebuilds
// A, B and C from all 32 lanes' registers by the documented fragment layouts (lane = 4 g + t), and keeps the
// four entries of D its own registers hold.  A lane that passed a register in the wrong place, or a
// kernel that gathered its fragment wrongly, gets a wrong D, as on the GPU.  The operands are decoded as the
// hardware reads them: a TF32 register by its upper 19 bits (the low 13 ignored, so an unrounded operand is
// truncated), bf16 pairs low half first; products are exact in float and summed in float.
// ldmatrix.x4 likewise: each lane posts its row address, and after the warp's barrier takes its four words from
// the rows the PTX ISA assigns it (a row address not 16-byte aligned aborts, as it would fault on the GPU).
// cp.async (16 bytes, global to shared) is queued by the issuing thread and done at its next cp.async.wait_all,
// the latest the GPU may do it; an address not 16-byte aligned aborts.  ldmatrix checks the rows it reads
// against the block's copies: a row still in flight, or landed by another thread's wait_all with no
// __syncthreads since, aborts (a race on the GPU, whatever order the emulation happens to run the threads in).
// Not emulated (the sources do not use them): warp shuffles/votes, dynamic shared memory, streams.
#pragma once
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <unordered_map>
#include <utility>
#include <functional>
#include <ucontext.h>
#include <vector>

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace emu {
// The CUDA thread that runs now, and what it shares with the others of its block and warp.  Everything runs
// on the calling OS thread (see launch), so these are plain variables, set before each thread resumes.
inline dim3 thread_idx, block_idx, grid_dim, block_dim;

// A barrier of cooperative threads: a thread that arrives early yields until the last one arrives.
struct Barrier {
    unsigned expected, arrived = 0, phase = 0;
    explicit Barrier(unsigned n) : expected(n) {}
    void arrive_and_wait();
    void arrive_and_drop();      // a finished thread no longer holds the others back
};
inline Barrier* block_barrier = nullptr;

// Where the lanes of a warp meet for a warp-wide instruction (mma.sync): its registers, and a barrier.
struct WarpExchange {
    std::uint32_t a[32][4], b[32][2];
    float c[32][4];
    const void* rows[32];        // ldmatrix: the row address each lane gives
};
inline WarpExchange* warp_exchange = nullptr;
inline Barrier* warp_barrier = nullptr;

// The threads of a block as fibers (ucontext): each has its own stack, and runs until it waits at a barrier
// or ends; then the next one runs.  Switching costs a fraction of a microsecond, where OS threads meeting at a
// barrier cost tens: a block of 288 threads doing hundreds of warp-wide mmas stays fast on two cores.
struct Fiber {
    ucontext_t context;
    std::unique_ptr<char[]> stack;
    bool done = false;
    std::vector<std::uintptr_t> copies;                    // cp.async issued and not yet waited for
};

// A cp.async's 16 bytes of shared memory, by address: who copies them from where, and when they landed.
struct AsyncCopy {
    const void* src;
    const Fiber* owner;
    bool landed;
    unsigned landed_phase;       // the block barrier's phase at the wait_all: others may read them after the next
};
inline std::unordered_map<std::uintptr_t, AsyncCopy> async_copies;   // of the block that runs now
constexpr std::size_t FIBER_STACK = 256 * 1024;
inline ucontext_t scheduler;
inline Fiber* running = nullptr;
inline std::function<void()>* fiber_body = nullptr;
inline unsigned long long progress = 0;        // barrier releases and finished threads: deadlock detection

inline void yield() { swapcontext(&running->context, &scheduler); }

inline void Barrier::arrive_and_wait()
{
    if (++arrived == expected) {
        arrived = 0;
        ++phase;
        ++progress;
        return;
    }
    const unsigned waiting_for = phase;
    while (phase == waiting_for) yield();
}

inline void Barrier::arrive_and_drop()
{
    --expected;
    if (expected > 0 && arrived == expected) {
        arrived = 0;
        ++phase;
        ++progress;
    }
}

inline void fiber_entry()
{
    (*fiber_body)();
    running->done = true;
    ++progress;
    block_barrier->arrive_and_drop();
    if (warp_barrier) warp_barrier->arrive_and_drop();
}   // returns to uc_link: the scheduler

// Runs body() once per CUDA thread of the grid.
template <class Body>
void launch(bool concurrent_threads, dim3 grid, dim3 block, Body body)
{
    grid_dim = grid;
    block_dim = block;
    const unsigned threads = block.x * block.y * block.z;
    auto thread_at = [&](unsigned t) { return dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y)); };
    if (!concurrent_threads) {                 // independent threads: any order is a legal schedule
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
    // Blocks one after another (their `static` shared memory is one copy); inside a block, the threads as
    // fibers, resumed in turn until all have ended.
    std::function<void()> call = body;
    fiber_body = &call;
    const unsigned warps = (threads + 31) / 32;
    std::vector<Fiber> fibers(threads);
    for (auto& f : fibers) f.stack = std::make_unique<char[]>(FIBER_STACK);
    std::vector<WarpExchange> exchanges(warps);
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                Barrier sync(threads);
                std::vector<Barrier> warp_barriers;
                for (unsigned wp = 0; wp < warps; ++wp) warp_barriers.emplace_back(std::min(32u, threads - 32 * wp));
                for (auto& f : fibers) {
                    getcontext(&f.context);
                    f.context.uc_stack.ss_sp = f.stack.get();
                    f.context.uc_stack.ss_size = FIBER_STACK;
                    f.context.uc_link = &scheduler;
                    f.done = false;
                    f.copies.clear();
                    makecontext(&f.context, fiber_entry, 0);
                }
                block_idx = dim3(bx, by, bz);
                block_barrier = &sync;
                async_copies.clear();
                for (unsigned live = threads; live > 0;) {
                    const unsigned long long before = progress;
                    live = 0;
                    for (unsigned t = 0; t < threads; ++t) {
                        if (fibers[t].done) continue;
                        running = &fibers[t];
                        thread_idx = thread_at(t);
                        warp_exchange = &exchanges[t / 32];
                        warp_barrier = &warp_barriers[t / 32];
                        swapcontext(&scheduler, &fibers[t].context);
                        live += !fibers[t].done;
                    }
                    if (live > 0 && progress == before) {
                        std::fputs("emulation: the block's threads wait at barriers none of the others reach "
                                   "(a __syncthreads or mma.sync not reached by every thread)\n", stderr);
                        std::abort();
                    }
                }
            }
    block_barrier = nullptr;
    warp_exchange = nullptr;
    warp_barrier = nullptr;
    running = nullptr;
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

inline unsigned __float_as_uint(float value) { return std::bit_cast<unsigned>(value); }
inline float __uint_as_float(unsigned value) { return std::bit_cast<float>(value); }

// cvt.rna.tf32.f32: to nearest, ties away from zero, keeping 10 mantissa bits (the result: float bits with
// the low 13 bits zero).
inline unsigned ptx_cvt_rna_tf32(float value)
{
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
    if (!std::isfinite(value)) return bits;
    return (bits + 0x1000u) & 0xFFFFE000u;   // add half a TF32 ulp to the magnitude, drop 13 bits
}

namespace emu {
inline float tf32_operand(std::uint32_t r) { return std::bit_cast<float>(r & 0xFFFFE000u); }   // upper 19 bits
inline float bf16_operand(std::uint32_t r, int half) { return std::bit_cast<float>(((r >> (16 * half)) & 0xFFFFu) << 16); }

// One warp's mma.sync m16n8kK (row.col, f32 accumulators): D = A B + C, each lane holding its registers by
// the PTX ISA's fragment layouts (lane = 4 g + t); see the top of this file.
template <int K>
void mma_m16n8(float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2])
{
    if (warp_barrier == nullptr) {
        std::fputs("emulation: mma.sync in a kernel whose threads run one after another\n", stderr);
        std::abort();
    }
    const unsigned me = lane();
    WarpExchange& x = *warp_exchange;
    for (int r = 0; r < 4; ++r) x.a[me][r] = a[r], x.c[me][r] = d[r];
    for (int r = 0; r < 2; ++r) x.b[me][r] = b[r];
    warp_barrier->arrive_and_wait();                 // every lane's registers are in
    float A[16][K], B[K][8], C[16][8];
    for (int l = 0; l < 32; ++l) {
        const int g = l / 4, t = l % 4;
        if constexpr (K == 8) {                      // TF32 m16n8k8
            A[g][t] = tf32_operand(x.a[l][0]);
            A[g + 8][t] = tf32_operand(x.a[l][1]);
            A[g][t + 4] = tf32_operand(x.a[l][2]);
            A[g + 8][t + 4] = tf32_operand(x.a[l][3]);
            B[t][g] = tf32_operand(x.b[l][0]);
            B[t + 4][g] = tf32_operand(x.b[l][1]);
        } else {                                     // bf16 m16n8k16: two values a register, low half first
            for (int h = 0; h < 2; ++h) {
                A[g][2 * t + h] = bf16_operand(x.a[l][0], h);
                A[g + 8][2 * t + h] = bf16_operand(x.a[l][1], h);
                A[g][2 * t + 8 + h] = bf16_operand(x.a[l][2], h);
                A[g + 8][2 * t + 8 + h] = bf16_operand(x.a[l][3], h);
                B[2 * t + h][g] = bf16_operand(x.b[l][0], h);
                B[2 * t + 8 + h][g] = bf16_operand(x.b[l][1], h);
            }
        }
        C[g][2 * t] = x.c[l][0];
        C[g][2 * t + 1] = x.c[l][1];
        C[g + 8][2 * t] = x.c[l][2];
        C[g + 8][2 * t + 1] = x.c[l][3];
    }
    warp_barrier->arrive_and_wait();                 // every lane has read the exchange: it may be refilled
    const int g = me / 4, t = me % 4;
    for (int q = 0; q < 4; ++q) {
        const int m = g + 8 * (q >> 1), n = 2 * t + (q & 1);
        float sum = C[m][n];
        for (int k = 0; k < K; ++k) sum += A[m][k] * B[k][n];
        d[q] = sum;
    }
}
}  // namespace emu

namespace emu {
inline void cp_async_16(void* dst, const void* src)
{
    if (running == nullptr) {
        std::fputs("emulation: cp.async in a kernel whose threads run one after another\n", stderr);
        std::abort();
    }
    const auto at = reinterpret_cast<std::uintptr_t>(dst);
    if (at % 16 != 0 || reinterpret_cast<std::uintptr_t>(src) % 16 != 0) {
        std::fputs("emulation: cp.async given an address that is not 16-byte aligned\n", stderr);
        std::abort();
    }
    const auto old = async_copies.find(at);
    if (old != async_copies.end() && !old->second.landed) {
        std::fputs("emulation: two cp.async in flight to the same shared memory\n", stderr);
        std::abort();
    }
    async_copies[at] = AsyncCopy{src, running, false, 0};
    running->copies.push_back(at);
}

inline void cp_async_wait_all()
{
    for (const std::uintptr_t at : running->copies) {
        AsyncCopy& copy = async_copies.at(at);
        std::memcpy(reinterpret_cast<void*>(at), copy.src, 16);
        copy.landed = true;
        copy.landed_phase = block_barrier->phase;
    }
    running->copies.clear();
}

// Before ldmatrix reads a row: it must not be a cp.async in flight, nor one another thread's wait_all landed
// since the last __syncthreads.
inline void check_async_copies(const void* row)
{
    const auto copy = async_copies.find(reinterpret_cast<std::uintptr_t>(row));
    if (copy == async_copies.end()) return;
    if (!copy->second.landed) {
        std::fputs("emulation: ldmatrix reads shared memory that a cp.async is still copying (no wait_all)\n", stderr);
        std::abort();
    }
    if (copy->second.owner != running && copy->second.landed_phase == block_barrier->phase) {
        std::fputs("emulation: ldmatrix reads another thread's cp.async with no __syncthreads after its "
                   "wait_all\n", stderr);
        std::abort();
    }
}
}  // namespace emu

namespace emu {
// ldmatrix.sync.aligned.m8n8.x4.shared.b16: lane 8 i + r gives the address of row r of matrix i (16 contiguous
// bytes, 16-byte aligned); register i of lane l receives word l % 4 of row l / 4 of matrix i.
inline void ldmatrix_x4(std::uint32_t (&r)[4], const void* row)
{
    if (warp_barrier == nullptr) {
        std::fputs("emulation: ldmatrix in a kernel whose threads run one after another\n", stderr);
        std::abort();
    }
    if (reinterpret_cast<std::uintptr_t>(row) % 16 != 0) {
        std::fputs("emulation: ldmatrix given a row address that is not 16-byte aligned\n", stderr);
        std::abort();
    }
    check_async_copies(row);
    const unsigned me = lane();
    WarpExchange& x = *warp_exchange;
    x.rows[me] = row;
    warp_barrier->arrive_and_wait();                 // every lane's row address is in
    for (int i = 0; i < 4; ++i)
        std::memcpy(&r[i], static_cast<const unsigned char*>(x.rows[8 * i + me / 4]) + 4 * (me % 4), 4);
    warp_barrier->arrive_and_wait();                 // every lane has read the addresses
}
}  // namespace emu

inline void ptx_ldmatrix_x4(unsigned (&r)[4], const void* row)
{
    emu::ldmatrix_x4(r, row);
}

inline void ptx_mma_m16n8k8_tf32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2])
{
    emu::mma_m16n8<8>(d, a, b);
}

inline void ptx_mma_m16n8k16_bf16(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2])
{
    emu::mma_m16n8<16>(d, a, b);
}

inline void ptx_cp_async_16(void* shared_dst, const void* global_src)
{
    emu::cp_async_16(shared_dst, global_src);
}

inline void ptx_cp_async_wait_all()
{
    emu::cp_async_wait_all();
}

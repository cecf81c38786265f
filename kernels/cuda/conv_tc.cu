// 3x3 stride-1 convolutions as implicit GEMMs on tensor cores (mma.sync: TF32 m16n8k8 or bf16 m16n8k16,
// float accumulators), no im2col matrix in memory.  The `tf32` and `bf16` precisions of the cuda backend:
// operands are rounded once, as they are staged in shared memory (TF32: cvt.rna, 10 mantissa bits, as
// PyTorch's default cuDNN convolutions; bf16: to nearest even, 7 bits); products and sums are float.
// No header is included: the tensor-core instructions are inline PTX, so NVRTC compiles this file without a
// CUDA toolkit beside it (tests/test_cuda_kernels.py compiles it so), and emulation.h models them per lane.
//
// Layouts.  Activations are NCHW (nhwc = 0, the model's layout) or NHWC (nhwc = 1); the index helpers below
// are the only place that knows.  Weights are read in one of three layouts (wlayout), so that no caller has
// to copy or transpose them (conv3x3_pack_* reads them so, and the convolutions read its packed copy):
//   0  taps (9, C, K):     w[tap, c, o]
//   1  conv (K, C, 3, 3):  w[o, c, u, v]                    (PyTorch's conv weight; tap = 3u + v)
//   2  (C, K, 3, 3) read flipped: w[c, o, 2 - u, 2 - v]    the input gradient of the conv whose weight this
//                                                           is, and the transposed conv's forward
//
// conv3x3_<operands>[_n32|_n64], the forward pass and the input gradient:
//   y[n, i, j, o] = b[o] + sum_{u, v, c} W(u*3 + v, c, o) * x_pad[n, i + u, j + v, c]      (x_pad: pad zeros)
// As a GEMM: M = output pixels, N = output channels, K = 9 taps x C input channels.  One block computes a
// tile of TILE_H x TILE_W output pixels (one image) x 16 NF output channels (NF = 1, 2, 4: the three widths);
// warp r owns output row r of the tile, 16 pixels, as 2 NF m16n8 accumulators.  For each chunk of K input
// channels (the mma's K: 8 or 16) the block stages the input tile with its one-pixel halo, (TILE_H + 2) x
// (TILE_W + 2) x K, and the chunk's weights of all 9 taps in shared memory once (the weights by cp.async from
// the packed copy that conv3x3_pack_<operands> rounded and laid out beforehand, in flight while the input
// tile is gathered and rounded); every tap then reads its A
// fragment from the same tile, shifted by the tap, so x is read from global memory once per chunk (the A and
// B fragments by ldmatrix.x4: one shared-memory instruction for a whole A fragment, or two B fragments).  The
// epilogue takes each lane's accumulators, inside the output's bounds, through the steps the bits of
// `epilogue` ask for (EPI_* below), so that what follows a convolution in RED costs no pass of its own:
//   v = acc + b[o]                     the layer's bias
//   v = max(v, 0)           EPI_RELU   the layer's ReLU (the encoder's conv + bias + ReLU in one pass)
//   y_layer = v        EPI_LAYER_OUT   the layer's output, where it is kept beside the sum (training)
//   v = v + addend          EPI_ADD    a map like y: the skip sum of Eq. 3, the residual of §3.3, or in the
//                                      input gradient the skip path's gradient (Eq. 12)
//   v = max(v, 0)       EPI_RELU_SUM   the skip sum's ReLU (Eq. 3)
//   v = 0 unless mask > 0   EPI_MASK   the backward of the ReLU whose output mask (a map like y) is: the
//                                      layer's input, in the input gradient's pass
//   y = v
// pad = 1 is RED's "same" convolution, pad = 0 its "valid" one, and pad = 2 with wlayout 2 the transposed
// convolution's full padding, i.e. the input gradient of a valid conv: one kernel serves all three.
// Shapes: x (N, C, H, W) or (N, H, W, C), b (K), y, y_layer, addend and mask (N, K, H_o, W_o) or (N, H_o, W_o, K),
// H_o = H + 2 pad - 2; a pointer whose bit is not set is not read or written; w_packed: conv3x3_pack_<operands>
// of the weight (the same operands).
// Launch: block (128), grid (ceil(W_o / 16), ceil(H_o / 4), N ceil(K / (16 NF))).
//
// conv3x3_wgrad_<operands> + conv3x3_wgrad_reduce, the weight and bias gradients:
//   dW(u*3 + v, c, o) = sum_{n, i, j} x_pad[n, i + u, j + v, c] dy[n, i, j, o],   db[o] = sum_{n, i, j} dy[n, i, j, o]
// As a GEMM per tap: M = 16 input channels, N = 16 output channels, K = pixels.  The output pixels are cut into
// tiles of TILE_H x TILE_W (one image each), numbered t = (n * tiles_y + ty) * tiles_x + tx; block (cx, ox, s)
// sums the tiles t = s, s + S, s + 2S, ... in that order into partial_w[s] (and, for cx = 0, partial_b[s]);
// warp `tap` of its 9 warps owns tap's two m16n8 accumulators.  Per tile the block stages x's tile with its
// halo (16 channels) and dy's tile (16 channels) in shared memory; A (16 channels x K pixels) is x's tile
// shifted by the tap, B (K pixels x 8 channels) dy's.  The bias gradient is summed from float dy.
// conv3x3_wgrad_reduce then sums the S partials in the order s = 0, 1, ..: the result does not depend on
// the schedule (deterministic, unlike atomics), and is written in the weight's layout (0 or 1), added to
// what is there when accumulate != 0.
// Launch: block (288), grid (ceil(C / 16), ceil(K / 16), S); partial_w (S, 9, C, K), partial_b (S, K).
//
// Fragments (PTX ISA, "Matrix Fragments for mma.m16n8k8 / m16n8k16"), lane = 4 g + t (g = lane / 4,
// t = lane % 4), each register a 32-bit word:
//   TF32 m16n8k8:  A (16 x 8)  a0 A[g][t], a1 A[g+8][t], a2 A[g][t+4], a3 A[g+8][t+4]
//                  B (8 x 8)   b0 B[t][g], b1 B[t+4][g]
//   bf16 m16n8k16: A (16 x 16) a0 A[g][2t..2t+1], a1 A[g+8][2t..2t+1], a2 A[g][2t+8..2t+9], a3 A[g+8][2t+8..2t+9]
//                  B (16 x 8)  b0 B[2t..2t+1][g], b1 B[2t+8..2t+9][g]        (the lower index in the low half)
//   C, D (16 x 8, float):      c0 C[g][2t], c1 C[g][2t+1], c2 C[g+8][2t], c3 C[g+8][2t+1]

#define TILE_H 4      // output rows per block tile: one warp each in the forward
#define TILE_W 16     // output pixels per row: the mma's M
#define TILE_N 16     // output channels per weight-gradient block: two m16n8 tiles
#define WG_C 16       // input channels per weight-gradient block: the mma's M there

#define EPI_RELU 1        // the forward kernel's epilogue steps (see above), in this order
#define EPI_LAYER_OUT 2
#define EPI_ADD 4
#define EPI_RELU_SUM 8
#define EPI_MASK 16

#ifdef __CUDACC__
// The tensor-core instructions (emulation.h defines the same three for the CPU, by the fragment tables above).
__device__ __forceinline__ unsigned ptx_cvt_rna_tf32(float x)
{
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

__device__ __forceinline__ void ptx_mma_m16n8k8_tf32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2])
{
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void ptx_mma_m16n8k16_bf16(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2])
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// ldmatrix.sync.aligned.m8n8.x4.shared.b16: four 8 x 8 matrices of 16-bit elements, each row 16 contiguous,
// 16-byte-aligned bytes of shared memory.  Lane 8 i + r gives the address of row r of matrix i; register i of
// lane l receives the 4-byte word l % 4 of row l / 4 of matrix i.  (A row is 4 TF32 values or 8 bf16 ones.)
__device__ __forceinline__ void ptx_ldmatrix_x4(unsigned (&r)[4], const void* row)
{
    const unsigned address = (unsigned)__cvta_generic_to_shared(row);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(address));
}
// cp.async.cg.shared.global, 16 bytes: a copy from global to shared memory that does not pass through registers,
// issued now and complete at this thread's next cp.async.wait_all (both addresses 16-byte aligned).
__device__ __forceinline__ void ptx_cp_async_16(void* shared_dst, const void* global_src)
{
    const unsigned address = (unsigned)__cvta_generic_to_shared(shared_dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" : : "r"(address), "l"(global_src) : "memory");
}

__device__ __forceinline__ void ptx_cp_async_wait_all()
{
    asm volatile("cp.async.wait_all;" : : : "memory");
}
#endif

// An A fragment (16 rows x Op::K, each row's K values contiguous, rows `stride` elements apart) by one
// ldmatrix.x4: matrix i is rows 8 (i & 1) .. + 7 and the (i >> 1)-th 16 bytes of K, so register i is a_i of the
// fragment tables below (TF32: A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4]; bf16 likewise in pairs).
template <class T>
__device__ __forceinline__ void ldmatrix_a(unsigned (&a)[4], const T* base, int stride, int lane)
{
    const int i = lane / 8, r = lane % 8;
    ptx_ldmatrix_x4(a, base + (r + 8 * (i & 1)) * stride + (i >> 1) * (16 / (int)sizeof(T)));
}

// Two B fragments (Op::K x 8 each) of the output channels 0..7 and 8..15 of base, stored by channel (row n
// holds its K values contiguously, rows `stride` apart): matrix i is channels 8 (i >> 1) .. + 7 and the
// (i & 1)-th 16 bytes of K, so b[0], b[1] are the first fragment's b0, b1 and b[2], b[3] the second's.
template <class T>
__device__ __forceinline__ void ldmatrix_b2(unsigned (&b)[4], const T* base, int stride, int lane)
{
    const int i = lane / 8, r = lane % 8;
    ptx_ldmatrix_x4(b, base + (r + 8 * (i >> 1)) * stride + (i & 1) * (16 / (int)sizeof(T)));
}

// bfloat16 bits of x, rounded to nearest even (the upper half of the float; NaN stays NaN).
__device__ __forceinline__ unsigned short bf16_bits(float x)
{
    const unsigned u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
    return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Offset of element (n, c, i, j) of a map with `channels` channels of hh x ww pixels, in either layout.
__device__ __forceinline__ long long map_offset(int nhwc, int n, int c, int i, int j, int channels, int hh, int ww)
{
    return nhwc ? (((long long)n * hh + i) * ww + j) * channels + c
                : (((long long)n * channels + c) * hh + i) * ww + j;
}

// W(tap, c, o) of a weight in layout wlayout (see the top of this file); c_in, c_out: the kernel's channels.
__device__ __forceinline__ long long weight_offset(int wlayout, int tap, int c, int o, int c_in, int c_out)
{
    if (wlayout == 0) return ((long long)tap * c_in + c) * c_out + o;
    if (wlayout == 1) return ((long long)o * c_in + c) * 9 + tap;
    return ((long long)c * c_out + o) * 9 + (8 - tap);
}

// Output channels of a packed weight (conv3x3_pack_*): c_out rounded up to 64, the widest block, so that every
// block reads its N rows of each tap without a bounds check.
__device__ __forceinline__ int packed_channels(int c_out)
{
    return (c_out + 63) / 64 * 64;
}

// The two operand types: how a value is stored in shared memory (rounded), the mma's K, how a lane gathers its
// fragments from a matrix stored at base[row * row_stride + col * col_stride], and the mma itself.
struct Tf32 {
    using stored = unsigned;                             // TF32 bits (a float with the low 13 bits zero)
    static constexpr int K = 8;
    __device__ static unsigned round(float v) { return ptx_cvt_rna_tf32(v); }
    __device__ static void load_a(unsigned (&a)[4], const unsigned* base, int ms, int ks, int g, int t)
    {
        a[0] = base[g * ms + t * ks];
        a[1] = base[(g + 8) * ms + t * ks];
        a[2] = base[g * ms + (t + 4) * ks];
        a[3] = base[(g + 8) * ms + (t + 4) * ks];
    }
    __device__ static void load_b(unsigned (&b)[2], const unsigned* base, int ks, int ns, int g, int t)
    {
        b[0] = base[t * ks + g * ns];
        b[1] = base[(t + 4) * ks + g * ns];
    }
    __device__ static void mma(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2])
    {
        ptx_mma_m16n8k8_tf32(d, a, b);
    }
};

struct Bf16 {
    using stored = unsigned short;                       // bfloat16 bits
    static constexpr int K = 16;
    __device__ static unsigned short round(float v) { return bf16_bits(v); }
    __device__ static unsigned pair(unsigned short lo, unsigned short hi) { return lo | ((unsigned)hi << 16); }
    __device__ static void load_a(unsigned (&a)[4], const unsigned short* base, int ms, int ks, int g, int t)
    {
        for (int r = 0; r < 4; ++r) {
            const int m = g + 8 * (r & 1), k = 2 * t + 8 * (r >> 1);
            a[r] = pair(base[m * ms + k * ks], base[m * ms + (k + 1) * ks]);
        }
    }
    __device__ static void load_b(unsigned (&b)[2], const unsigned short* base, int ks, int ns, int g, int t)
    {
        for (int r = 0; r < 2; ++r) {
            const int k = 2 * t + 8 * r;
            b[r] = pair(base[k * ks + g * ns], base[(k + 1) * ks + g * ns]);
        }
    }
    __device__ static void mma(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2])
    {
        ptx_mma_m16n8k16_bf16(d, a, b);
    }
};

// conv3x3_pack_<operands>: W (layout wlayout) rounded to the operand type once per call, laid out as the forward
// kernel stages it: packed row (chunk, tap, o), o < packed_channels(c_out), holds the K operands of input
// channels chunk K .. chunk K + K - 1 of output channel o (0 beyond c_in or c_out), 32 bytes, so that a block
// copies its chunk's rows by 16-byte cp.async (one TF32 operand per 32-bit word, or two bf16, the lower
// channel in the low half).  Launch: any grid of 1-D blocks (grid-stride).
template <class Op>
__device__ void conv3x3_pack(unsigned* __restrict__ packed, const float* __restrict__ w, int c_in, int c_out,
                             int wlayout)
{
    using T = typename Op::stored;
    constexpr int K = Op::K;
    T* rows = reinterpret_cast<T*>(packed);
    const int o_pad = packed_channels(c_out);
    const long long total = (long long)((c_in + K - 1) / K) * 9 * o_pad * K;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        const int k = e % K, o = (e / K) % o_pad, tap = (e / ((long long)K * o_pad)) % 9;
        const int c = (int)(e / (9LL * K * o_pad)) * K + k;
        rows[e] = Op::round(c < c_in && o < c_out ? w[weight_offset(wlayout, tap, c, o, c_in, c_out)] : 0.0f);
    }
}

extern "C" __global__ void conv3x3_pack_tf32(unsigned* __restrict__ packed, const float* __restrict__ w, int c_in,
                                             int c_out, int wlayout)
{
    conv3x3_pack<Tf32>(packed, w, c_in, c_out, wlayout);
}

extern "C" __global__ void conv3x3_pack_bf16(unsigned* __restrict__ packed, const float* __restrict__ w, int c_in,
                                             int c_out, int wlayout)
{
    conv3x3_pack<Bf16>(packed, w, c_in, c_out, wlayout);
}

// The forward kernel's block tile: TILE_H x TILE_W output pixels x 16 NF output channels.  Shared memory: the
// input tile with its halo, [pixel][KS], and the chunk's weights, [tap][output channel][KS], as rounded
// operands; a row holds the K values of a pixel (or an output channel) and is KS = K + 16 bytes long (48
// bytes): the 16-byte-aligned rows ldmatrix reads, and the 8 rows of one of its matrices (consecutive pixels
// or channels, 12 words apart) fall in 8 different groups of 4 banks, so each matrix is one conflict-free read.
template <int NF, class Op>
struct ConvTile {
    using T = typename Op::stored;
    static constexpr int N = 16 * NF;                                  // output channels per block
    static constexpr int KS = Op::K + 16 / (int)sizeof(T);             // row stride, elements
    static constexpr int XS = (TILE_H + 2) * (TILE_W + 2) * KS;        // input tile and halo, one chunk of K
    static constexpr int WS = 9 * N * KS;                              // the chunk's weights, every tap
};

template <int NF, class Op>
__device__ void conv3x3_tile(typename Op::stored* xs, typename Op::stored* ws, float* __restrict__ y,
                             float* __restrict__ y_layer, const float* __restrict__ x,
                             const unsigned* __restrict__ w_packed, const float* __restrict__ b,
                             const float* __restrict__ addend, const float* __restrict__ mask, int n_img, int h,
                             int w_in, int c_in, int c_out, int pad, int epilogue, int nhwc)
{
    using T = typename Op::stored;
    constexpr int N = ConvTile<NF, Op>::N, K = Op::K, KS = ConvTile<NF, Op>::KS, HALO = (TILE_H + 2) * (TILE_W + 2);
    constexpr int PIECE = 16 / (int)sizeof(T);         // operands per 16-byte cp.async: half a packed row
    static_assert(K == 2 * PIECE, "a packed row is K operands, 32 bytes");
    const int h_o = h + 2 * pad - 2, w_o = w_in + 2 * pad - 2, o_pad = packed_channels(c_out);
    const int n_tiles = (c_out + N - 1) / N;
    const int img = blockIdx.z / n_tiles, o0 = (blockIdx.z % n_tiles) * N;
    const int i0 = blockIdx.y * TILE_H, j0 = blockIdx.x * TILE_W;
    const int tid = threadIdx.x, row = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;

    float acc[2 * NF][4];
    for (int f = 0; f < 2 * NF; ++f)
        for (int q = 0; q < 4; ++q) acc[f][q] = 0.0f;
    for (int c0 = 0; c0 < c_in; c0 += K) {
        // the chunk's weights, rows (tap, o0 .. o0 + N - 1) of the packed copy, by cp.async: in flight while
        // the input tile is staged below
        const T* w_chunk = reinterpret_cast<const T*>(w_packed) + (long long)(c0 / K) * 9 * o_pad * K;
        for (int e = tid; e < 9 * N * 2; e += blockDim.x) {
            const int row = e / 2, tap = row / N, o = row % N, piece = (e % 2) * PIECE;
            ptx_cp_async_16(ws + row * KS + piece, w_chunk + ((long long)tap * o_pad + o0 + o) * K + piece);
        }
        for (int e = tid; e < HALO * K; e += blockDim.x) {
            // consecutive threads read consecutive addresses: channels in NHWC, pixels of a row in NCHW
            const int k = nhwc ? e % K : e / HALO, p = nhwc ? e / K : e % HALO;
            const int r = p / (TILE_W + 2), col = p % (TILE_W + 2);
            const int si = i0 + r - pad, sj = j0 + col - pad, c = c0 + k;
            xs[p * KS + k] = Op::round((si >= 0 && si < h && sj >= 0 && sj < w_in && c < c_in)
                                      ? x[map_offset(nhwc, img, c, si, sj, c_in, h, w_in)] : 0.0f);
        }
        ptx_cp_async_wait_all();         // this thread's copies have landed,
        __syncthreads();                 // and everyone's
        for (int tap = 0; tap < 9; ++tap) {
            unsigned a[4];
            // A[m][k]: pixel m of row `row + u`, shifted by v, channel k
            ldmatrix_a(a, xs + ((row + tap / 3) * (TILE_W + 2) + tap % 3) * KS, KS, lane);
            for (int f = 0; f < 2 * NF; f += 2) {
                unsigned bq[4];
                ldmatrix_b2(bq, ws + (tap * N + 8 * f) * KS, KS, lane);    // B[k][n] = W(tap, k, 8 f + n)
                const unsigned b0[2] = {bq[0], bq[1]}, b1[2] = {bq[2], bq[3]};
                Op::mma(acc[f], a, b0);
                Op::mma(acc[f + 1], a, b1);
            }
        }
        __syncthreads();                 // the next chunk overwrites xs and ws
    }
    const int i = i0 + row;
#pragma unroll       // constant indices keep acc in registers (else ptxas gives it a stack frame)
    for (int f = 0; f < 2 * NF; ++f)
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            const int j = j0 + g + 8 * (q >> 1), oc = o0 + 8 * f + 2 * t + (q & 1);
            if (i < h_o && j < w_o && oc < c_out) {
                const long long at = map_offset(nhwc, img, oc, i, j, c_out, h_o, w_o);
                float v = acc[f][q] + b[oc];
                if ((epilogue & EPI_RELU) && v < 0.0f) v = 0.0f;
                if (epilogue & EPI_LAYER_OUT) y_layer[at] = v;
                if (epilogue & EPI_ADD) {
                    v += addend[at];
                    if ((epilogue & EPI_RELU_SUM) && v < 0.0f) v = 0.0f;
                }
                if ((epilogue & EPI_MASK) && !(mask[at] > 0.0f)) v = 0.0f;
                y[at] = v;
            }
        }
}

// Each operand type in three widths: 16, 32 or 64 output channels per block (more reuse of each staged input
// tile and A fragment, fewer blocks); the launcher picks one per layer.  The six entry points are spelled out,
// not generated by a macro: CuPy (get_function) and the emulation (emulation.py) find kernels by these names.
extern "C" __global__ void conv3x3_tf32(float* __restrict__ y, float* __restrict__ y_layer,
    const float* __restrict__ x, const unsigned* __restrict__ w_packed, const float* __restrict__ b,
    const float* __restrict__ addend, const float* __restrict__ mask, int n_img, int h, int w_in, int c_in,
    int c_out, int pad, int epilogue, int nhwc)
{
    __shared__ __align__(16) ConvTile<1, Tf32>::T xs[ConvTile<1, Tf32>::XS], ws[ConvTile<1, Tf32>::WS];
    conv3x3_tile<1, Tf32>(xs, ws, y, y_layer, x, w_packed, b, addend, mask, n_img, h, w_in, c_in, c_out, pad, epilogue,
                          nhwc);
}

extern "C" __global__ void conv3x3_tf32_n32(float* __restrict__ y, float* __restrict__ y_layer,
    const float* __restrict__ x, const unsigned* __restrict__ w_packed, const float* __restrict__ b,
    const float* __restrict__ addend, const float* __restrict__ mask, int n_img, int h, int w_in, int c_in,
    int c_out, int pad, int epilogue, int nhwc)
{
    __shared__ __align__(16) ConvTile<2, Tf32>::T xs[ConvTile<2, Tf32>::XS], ws[ConvTile<2, Tf32>::WS];
    conv3x3_tile<2, Tf32>(xs, ws, y, y_layer, x, w_packed, b, addend, mask, n_img, h, w_in, c_in, c_out, pad, epilogue,
                          nhwc);
}

extern "C" __global__ void conv3x3_tf32_n64(float* __restrict__ y, float* __restrict__ y_layer,
    const float* __restrict__ x, const unsigned* __restrict__ w_packed, const float* __restrict__ b,
    const float* __restrict__ addend, const float* __restrict__ mask, int n_img, int h, int w_in, int c_in,
    int c_out, int pad, int epilogue, int nhwc)
{
    __shared__ __align__(16) ConvTile<4, Tf32>::T xs[ConvTile<4, Tf32>::XS], ws[ConvTile<4, Tf32>::WS];
    conv3x3_tile<4, Tf32>(xs, ws, y, y_layer, x, w_packed, b, addend, mask, n_img, h, w_in, c_in, c_out, pad, epilogue,
                          nhwc);
}

extern "C" __global__ void conv3x3_bf16(float* __restrict__ y, float* __restrict__ y_layer,
    const float* __restrict__ x, const unsigned* __restrict__ w_packed, const float* __restrict__ b,
    const float* __restrict__ addend, const float* __restrict__ mask, int n_img, int h, int w_in, int c_in,
    int c_out, int pad, int epilogue, int nhwc)
{
    __shared__ __align__(16) ConvTile<1, Bf16>::T xs[ConvTile<1, Bf16>::XS], ws[ConvTile<1, Bf16>::WS];
    conv3x3_tile<1, Bf16>(xs, ws, y, y_layer, x, w_packed, b, addend, mask, n_img, h, w_in, c_in, c_out, pad, epilogue,
                          nhwc);
}

extern "C" __global__ void conv3x3_bf16_n32(float* __restrict__ y, float* __restrict__ y_layer,
    const float* __restrict__ x, const unsigned* __restrict__ w_packed, const float* __restrict__ b,
    const float* __restrict__ addend, const float* __restrict__ mask, int n_img, int h, int w_in, int c_in,
    int c_out, int pad, int epilogue, int nhwc)
{
    __shared__ __align__(16) ConvTile<2, Bf16>::T xs[ConvTile<2, Bf16>::XS], ws[ConvTile<2, Bf16>::WS];
    conv3x3_tile<2, Bf16>(xs, ws, y, y_layer, x, w_packed, b, addend, mask, n_img, h, w_in, c_in, c_out, pad, epilogue,
                          nhwc);
}

extern "C" __global__ void conv3x3_bf16_n64(float* __restrict__ y, float* __restrict__ y_layer,
    const float* __restrict__ x, const unsigned* __restrict__ w_packed, const float* __restrict__ b,
    const float* __restrict__ addend, const float* __restrict__ mask, int n_img, int h, int w_in, int c_in,
    int c_out, int pad, int epilogue, int nhwc)
{
    __shared__ __align__(16) ConvTile<4, Bf16>::T xs[ConvTile<4, Bf16>::XS], ws[ConvTile<4, Bf16>::WS];
    conv3x3_tile<4, Bf16>(xs, ws, y, y_layer, x, w_packed, b, addend, mask, n_img, h, w_in, c_in, c_out, pad, epilogue,
                          nhwc);
}

template <class Op>
__device__ void conv3x3_wgrad_tile(float* __restrict__ partial_w, float* __restrict__ partial_b,
                                   const float* __restrict__ x, const float* __restrict__ dy,
                                   int n_img, int h, int w_in, int c_in, int c_out, int pad, int nhwc)
{
    using T = typename Op::stored;
    // rows of 16 channels padded to CS = 24 elements: the lanes' rows (t = 0..3) then fall in different banks
    constexpr int K = Op::K, HALO = (TILE_H + 2) * (TILE_W + 2), PIXELS = TILE_H * TILE_W, CS = WG_C + 8;
    __shared__ __align__(16) T xs[HALO * CS];            // x's tile and halo, [pixel][16 channels], rounded
    __shared__ __align__(16) T dys[PIXELS * CS];         // dy's tile, [pixel][16 channels], rounded
    const int h_o = h + 2 * pad - 2, w_o = w_in + 2 * pad - 2;
    const int tiles_x = (w_o + TILE_W - 1) / TILE_W, tiles_y = (h_o + TILE_H - 1) / TILE_H;
    const int n_tiles = n_img * tiles_y * tiles_x;
    const int c0 = blockIdx.x * WG_C, o0 = blockIdx.y * TILE_N, split = blockIdx.z, splits = gridDim.z;
    const int tid = threadIdx.x, tap = tid / 32, u = tap / 3, v = tap % 3, lane = tid % 32, g = lane / 4, t = lane % 4;
    const bool bias_thread = blockIdx.x == 0 && tid < TILE_N && o0 + tid < c_out;

    float acc[2][4];
    for (int f = 0; f < 2; ++f)
        for (int q = 0; q < 4; ++q) acc[f][q] = 0.0f;
    float db = 0.0f;                     // the bias gradient of channel o0 + tid, summed from float dy
    for (int tile = split; tile < n_tiles; tile += splits) {
        const int img = tile / (tiles_y * tiles_x), i0 = (tile / tiles_x) % tiles_y * TILE_H;
        const int j0 = tile % tiles_x * TILE_W;
        for (int e = tid; e < HALO * WG_C; e += blockDim.x) {
            const int k = nhwc ? e % WG_C : e / HALO, p = nhwc ? e / WG_C : e % HALO;
            const int r = p / (TILE_W + 2), col = p % (TILE_W + 2);
            const int si = i0 + r - pad, sj = j0 + col - pad, c = c0 + k;
            xs[p * CS + k] = Op::round((si >= 0 && si < h && sj >= 0 && sj < w_in && c < c_in)
                                         ? x[map_offset(nhwc, img, c, si, sj, c_in, h, w_in)] : 0.0f);
        }
        for (int e = tid; e < PIXELS * TILE_N; e += blockDim.x) {
            const int o = nhwc ? e % TILE_N : e / PIXELS, p = nhwc ? e / TILE_N : e % PIXELS;
            const int i = i0 + p / TILE_W, j = j0 + p % TILE_W;
            dys[p * CS + o] = Op::round((i < h_o && j < w_o && o0 + o < c_out)     // 0 outside: adds nothing
                                            ? dy[map_offset(nhwc, img, o0 + o, i, j, c_out, h_o, w_o)] : 0.0f);
        }
        if (bias_thread)
            for (int p = 0; p < PIXELS; ++p) {
                const int i = i0 + p / TILE_W, j = j0 + p % TILE_W;
                if (i < h_o && j < w_o) db += dy[map_offset(nhwc, img, o0 + tid, i, j, c_out, h_o, w_o)];
            }
        __syncthreads();
        for (int r = 0; r < TILE_H; ++r)
            for (int k0 = 0; k0 < TILE_W; k0 += K) {
                unsigned a[4];
                // A[m][k] = x_pad at pixel (r + u, k0 + k + v), channel m
                Op::load_a(a, xs + ((r + u) * (TILE_W + 2) + k0 + v) * CS, 1, CS, g, t);
                for (int f = 0; f < 2; ++f) {
                    unsigned bf[2];
                    Op::load_b(bf, dys + (r * TILE_W + k0) * CS + 8 * f, CS, 1, g, t);   // B[k][n] = dy
                    Op::mma(acc[f], a, bf);
                }
            }
        __syncthreads();                 // the next tile overwrites xs and dys
    }
    for (int f = 0; f < 2; ++f)
        for (int q = 0; q < 4; ++q) {
            const int c = c0 + g + 8 * (q >> 1), o = o0 + 8 * f + 2 * t + (q & 1);
            if (c < c_in && o < c_out) partial_w[(((long long)split * 9 + tap) * c_in + c) * c_out + o] = acc[f][q];
        }
    if (bias_thread) partial_b[(long long)split * c_out + o0 + tid] = db;
}

extern "C" __global__ void conv3x3_wgrad_tf32(float* __restrict__ partial_w, float* __restrict__ partial_b,
                                              const float* __restrict__ x, const float* __restrict__ dy,
                                              int n_img, int h, int w_in, int c_in, int c_out, int pad, int nhwc)
{
    conv3x3_wgrad_tile<Tf32>(partial_w, partial_b, x, dy, n_img, h, w_in, c_in, c_out, pad, nhwc);
}

extern "C" __global__ void conv3x3_wgrad_bf16(float* __restrict__ partial_w, float* __restrict__ partial_b,
                                              const float* __restrict__ x, const float* __restrict__ dy,
                                              int n_img, int h, int w_in, int c_in, int c_out, int pad, int nhwc)
{
    conv3x3_wgrad_tile<Bf16>(partial_w, partial_b, x, dy, n_img, h, w_in, c_in, c_out, pad, nhwc);
}

// dw (layout wlayout: 0 taps (9, C, K), 1 conv (K, C, 3, 3)) = or += sum_s partial_w[s]; db likewise from
// partial_b.  One thread per element, the splits summed in order s = 0, 1, ..: deterministic.
extern "C" __global__ void conv3x3_wgrad_reduce(float* __restrict__ dw, float* __restrict__ db,
                                                const float* __restrict__ partial_w,
                                                const float* __restrict__ partial_b,
                                                int c_in, int c_out, int splits, int wlayout, int accumulate)
{
    const long long n_w = 9LL * c_in * c_out;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < n_w + c_out;
         idx += (long long)gridDim.x * blockDim.x) {
        const bool is_bias = idx >= n_w;
        float sum = 0.0f;
        for (int s = 0; s < splits; ++s)
            sum += is_bias ? partial_b[(long long)s * c_out + (idx - n_w)] : partial_w[s * n_w + idx];
        if (is_bias) {
            db[idx - n_w] = accumulate ? db[idx - n_w] + sum : sum;
            continue;
        }
        const int o = idx % c_out, c = (idx / c_out) % c_in, tap = idx / ((long long)c_out * c_in);
        const long long at = weight_offset(wlayout, tap, c, o, c_in, c_out);
        dw[at] = accumulate ? dw[at] + sum : sum;
    }
}

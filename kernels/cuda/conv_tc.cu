// 3x3 stride-1 convolutions as implicit GEMMs on tensor cores (WMMA, TF32 m16n16k8, float accumulators),
// no im2col matrix in memory.  The `tf32` precision of the cuda backend: operands are rounded to TF32
// (cvt.rna, 10 mantissa bits) as they enter the tensor cores, as PyTorch's default cuDNN convolutions do;
// products and sums are float.
//
// Layouts.  Activations are NCHW (nhwc = 0, the model's layout) or NHWC (nhwc = 1); the index helpers below
// are the only place that knows.  Weights are read in one of three layouts (wlayout), so that no caller has
// to copy or transpose them:
//   0  taps (9, C, K):     w[tap, c, o]
//   1  conv (K, C, 3, 3):  w[o, c, u, v]                    (PyTorch's conv weight; tap = 3u + v)
//   2  (C, K, 3, 3) read flipped: w[c, o, 2 - u, 2 - v]    the input gradient of the conv whose weight this
//                                                           is, and the transposed conv's forward
//
// conv3x3_tf32, the forward pass and the input gradient:
//   y[n, i, j, o] = b[o] + sum_{u, v, c} W(u*3 + v, c, o) * x_pad[n, i + u, j + v, c]      (x_pad: pad zeros)
// As a GEMM: M = output pixels, N = output channels, K = 9 taps x C input channels.  One block computes a
// tile of TILE_H x TILE_W output pixels (one image) x TILE_N output channels; warp r owns output row r of
// the tile, 16 pixels, as one 16 x 16 accumulator.  For each chunk of TILE_K input channels the block loads
// the input tile with its one-pixel halo, (TILE_H + 2) x (TILE_W + 2) x TILE_K, into shared memory once, and
// the chunk's weights of all 9 taps; every tap then reads its A operand from the same tile, shifted by the
// tap (a 16 x 8 row-major matrix with ldm = TILE_K), so x is read from global memory once per chunk.
// The epilogue restages the accumulators through shared memory and writes y with the bias and an optional
// ReLU (the encoder's conv + bias + ReLU in one pass), inside the output's bounds.
// pad = 1 is RED's "same" convolution, pad = 0 its "valid" one, and pad = 2 with wlayout 2 the transposed
// convolution's full padding, i.e. the input gradient of a valid conv: one kernel serves all three.
// Shapes: x (N, C, H, W) or (N, H, W, C), b (K), y (N, K, H_o, W_o) or (N, H_o, W_o, K), H_o = H + 2 pad - 2.
// Launch: block (128), grid (ceil(W_o / 16), ceil(H_o / 4), N ceil(K / 16)).
//
// conv3x3_wgrad_tf32 + conv3x3_wgrad_reduce, the weight and bias gradients:
//   dW(u*3 + v, c, o) = sum_{n, i, j} x_pad[n, i + u, j + v, c] dy[n, i, j, o],   db[o] = sum_{n, i, j} dy[n, i, j, o]
// As a GEMM per tap: M = 16 input channels, N = 16 output channels, K = pixels.  The output pixels are cut into
// tiles of TILE_H x TILE_W (one image each), numbered t = (n * tiles_y + ty) * tiles_x + tx; block (cx, ox, s)
// sums the tiles t = s, s + S, s + 2S, ... in that order into partial_w[s] (and, for cx = 0, partial_b[s]);
// warp `tap` of its 9 warps owns tap's 16 x 16 accumulator.  Per tile the block stages x's tile with its halo
// (16 channels) and dy's tile (16 channels) in shared memory; A (16 channels x 8 pixels) is a column-major
// view of the x tile shifted by the tap, B (8 pixels x 16 channels) a row-major view of the dy tile.
// conv3x3_wgrad_reduce then sums the S partials in the order s = 0, 1, ..: the result does not depend on
// the schedule (deterministic, unlike atomics), and is written in the weight's layout (0 or 1), added to
// what is there when accumulate != 0.
// Launch: block (288), grid (ceil(C / 16), ceil(K / 16), S); partial_w (S, 9, C, K), partial_b (S, K).
#ifdef __CUDACC__
#include <cuda_bf16.h>
#include <mma.h>
#endif

#define TILE_H 4      // output rows per block tile: one warp each in the forward
#define TILE_W 16     // output pixels per row: the mma's M
#define TILE_N 16     // output channels per weight-gradient block: the mma's N
#define WG_C 16       // input channels per weight-gradient block: the mma's M there

// The two operand types of the tensor cores.  Operands are rounded once, as they are staged in shared memory,
// and the mmas sum their exact products in float.
//   Tf32: float storage rounded to TF32 (cvt.rna: to nearest, ties away; 10 mantissa bits), mma K = 8.
//   Bf16: __nv_bfloat16 storage (to nearest even; 7 mantissa bits), mma K = 16: twice TF32's rate.
struct Tf32 {
    using stored = float;
    using precision = nvcuda::wmma::precision::tf32;
    static constexpr int K = 8;
    __device__ static float round(float v) { return nvcuda::wmma::__float_to_tf32(v); }
};
struct Bf16 {
    using stored = __nv_bfloat16;
    using precision = __nv_bfloat16;
    static constexpr int K = 16;
    __device__ static __nv_bfloat16 round(float v) { return __float2bfloat16(v); }
};

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

// The forward kernel's block tile: TILE_H x TILE_W output pixels x 16 NF output channels, one warp per row
// holding NF 16 x 16 accumulators, so that each A fragment (16 pixels x K channels) feeds NF mmas.  Shared
// memory: the input tile with its halo and the chunk's weights, as rounded operands; the float accumulators
// are restaged over them at the end.
template <int NF, class Op>
struct ConvTile {
    using T = typename Op::stored;
    static constexpr int N = 16 * NF;                                  // output channels per block
    static constexpr int XS = (TILE_H + 2) * (TILE_W + 2) * Op::K;     // input tile and halo, one chunk of K
    static constexpr int WS = 9 * Op::K * N;                           // the chunk's weights, every tap
    static constexpr int ACC = TILE_H * TILE_W * N;                    // float accumulators, restaged
    static constexpr int BYTES = (XS + WS) * (int)sizeof(T) > ACC * 4 ? (XS + WS) * (int)sizeof(T) : ACC * 4;
};

template <int NF, class Op>
__device__ void conv3x3_tile(unsigned char* smem, float* __restrict__ y, const float* __restrict__ x,
                             const float* __restrict__ w, const float* __restrict__ b,
                             int n_img, int h, int w_in, int c_in, int c_out, int pad, int relu, int nhwc, int wlayout)
{
    using namespace nvcuda;
    using Tile = ConvTile<NF, Op>;
    using T = typename Op::stored;
    constexpr int N = Tile::N, K = Op::K, HALO = (TILE_H + 2) * (TILE_W + 2);
    T* xs = reinterpret_cast<T*>(smem);                  // [TILE_H + 2][TILE_W + 2][K]
    T* ws = xs + Tile::XS;                               // [9][K][N]
    float* acc_tile = reinterpret_cast<float*>(smem);    // [TILE_H][TILE_W][N], after the last chunk
    const int h_o = h + 2 * pad - 2, w_o = w_in + 2 * pad - 2;
    const int n_tiles = (c_out + N - 1) / N;
    const int img = blockIdx.z / n_tiles, o0 = (blockIdx.z % n_tiles) * N;
    const int i0 = blockIdx.y * TILE_H, j0 = blockIdx.x * TILE_W;
    const int tid = threadIdx.x, row = tid / 32;

    wmma::fragment<wmma::accumulator, 16, 16, K, float> acc[NF];
    for (int f = 0; f < NF; ++f) wmma::fill_fragment(acc[f], 0.0f);
    for (int c0 = 0; c0 < c_in; c0 += K) {
        for (int e = tid; e < HALO * K; e += blockDim.x) {
            // consecutive threads read consecutive addresses: channels in NHWC, pixels of a row in NCHW
            const int k = nhwc ? e % K : e / HALO, p = nhwc ? e / K : e % HALO;
            const int r = p / (TILE_W + 2), col = p % (TILE_W + 2);
            const int si = i0 + r - pad, sj = j0 + col - pad, c = c0 + k;
            xs[p * K + k] = Op::round((si >= 0 && si < h && sj >= 0 && sj < w_in && c < c_in)
                                      ? x[map_offset(nhwc, img, c, si, sj, c_in, h, w_in)] : 0.0f);
        }
        for (int e = tid; e < 9 * K * N; e += blockDim.x) {
            const int o = e % N, k = (e / N) % K, tap = e / (N * K);
            ws[e] = Op::round((c0 + k < c_in && o0 + o < c_out)
                              ? w[weight_offset(wlayout, tap, c0 + k, o0 + o, c_in, c_out)] : 0.0f);
        }
        __syncthreads();
        for (int tap = 0; tap < 9; ++tap) {
            wmma::fragment<wmma::matrix_a, 16, 16, K, typename Op::precision, wmma::row_major> a;
            // 16 pixels of row `row + u`, shifted by v: a 16 x K row-major matrix with ldm = K
            wmma::load_matrix_sync(a, xs + ((row + tap / 3) * (TILE_W + 2) + tap % 3) * K, K);
            for (int f = 0; f < NF; ++f) {
                wmma::fragment<wmma::matrix_b, 16, 16, K, typename Op::precision, wmma::row_major> bf;
                wmma::load_matrix_sync(bf, ws + tap * K * N + 16 * f, N);
                wmma::mma_sync(acc[f], a, bf, acc[f]);
            }
        }
        __syncthreads();                 // the next chunk overwrites xs and ws (and the epilogue reuses them)
    }
    for (int f = 0; f < NF; ++f)
        wmma::store_matrix_sync(acc_tile + row * TILE_W * N + 16 * f, acc[f], N, wmma::mem_row_major);
    __syncthreads();
    for (int e = tid; e < TILE_H * TILE_W * N; e += blockDim.x) {
        const int o = nhwc ? e % N : e / (TILE_H * TILE_W), p = nhwc ? e / N : e % (TILE_H * TILE_W);
        const int r = p / TILE_W, col = p % TILE_W;
        const int i = i0 + r, j = j0 + col, oc = o0 + o;
        if (i < h_o && j < w_o && oc < c_out) {
            const float value = acc_tile[p * N + o] + b[oc];
            y[map_offset(nhwc, img, oc, i, j, c_out, h_o, w_o)] = (relu && value < 0.0f) ? 0.0f : value;
        }
    }
}

// Each operand type in three widths: 16, 32 or 64 output channels per block (more reuse of each staged input
// tile and A fragment, fewer blocks); the launcher picks one per layer.
extern "C" __global__ void conv3x3_tf32(float* __restrict__ y, const float* __restrict__ x,
                                           const float* __restrict__ w, const float* __restrict__ b,
                                           int n_img, int h, int w_in, int c_in, int c_out, int pad, int relu, int nhwc, int wlayout)
{
    __shared__ __align__(32) unsigned char smem[ConvTile<1, Tf32>::BYTES];
    conv3x3_tile<1, Tf32>(smem, y, x, w, b, n_img, h, w_in, c_in, c_out, pad, relu, nhwc, wlayout);
}

extern "C" __global__ void conv3x3_tf32_n32(float* __restrict__ y, const float* __restrict__ x,
                                               const float* __restrict__ w, const float* __restrict__ b,
                                               int n_img, int h, int w_in, int c_in, int c_out, int pad, int relu, int nhwc, int wlayout)
{
    __shared__ __align__(32) unsigned char smem[ConvTile<2, Tf32>::BYTES];
    conv3x3_tile<2, Tf32>(smem, y, x, w, b, n_img, h, w_in, c_in, c_out, pad, relu, nhwc, wlayout);
}

extern "C" __global__ void conv3x3_tf32_n64(float* __restrict__ y, const float* __restrict__ x,
                                               const float* __restrict__ w, const float* __restrict__ b,
                                               int n_img, int h, int w_in, int c_in, int c_out, int pad, int relu, int nhwc, int wlayout)
{
    __shared__ __align__(32) unsigned char smem[ConvTile<4, Tf32>::BYTES];
    conv3x3_tile<4, Tf32>(smem, y, x, w, b, n_img, h, w_in, c_in, c_out, pad, relu, nhwc, wlayout);
}

extern "C" __global__ void conv3x3_bf16(float* __restrict__ y, const float* __restrict__ x,
                                           const float* __restrict__ w, const float* __restrict__ b,
                                           int n_img, int h, int w_in, int c_in, int c_out, int pad, int relu, int nhwc, int wlayout)
{
    __shared__ __align__(32) unsigned char smem[ConvTile<1, Bf16>::BYTES];
    conv3x3_tile<1, Bf16>(smem, y, x, w, b, n_img, h, w_in, c_in, c_out, pad, relu, nhwc, wlayout);
}

extern "C" __global__ void conv3x3_bf16_n32(float* __restrict__ y, const float* __restrict__ x,
                                               const float* __restrict__ w, const float* __restrict__ b,
                                               int n_img, int h, int w_in, int c_in, int c_out, int pad, int relu, int nhwc, int wlayout)
{
    __shared__ __align__(32) unsigned char smem[ConvTile<2, Bf16>::BYTES];
    conv3x3_tile<2, Bf16>(smem, y, x, w, b, n_img, h, w_in, c_in, c_out, pad, relu, nhwc, wlayout);
}

extern "C" __global__ void conv3x3_bf16_n64(float* __restrict__ y, const float* __restrict__ x,
                                               const float* __restrict__ w, const float* __restrict__ b,
                                               int n_img, int h, int w_in, int c_in, int c_out, int pad, int relu, int nhwc, int wlayout)
{
    __shared__ __align__(32) unsigned char smem[ConvTile<4, Bf16>::BYTES];
    conv3x3_tile<4, Bf16>(smem, y, x, w, b, n_img, h, w_in, c_in, c_out, pad, relu, nhwc, wlayout);
}

template <class Op>
__device__ void conv3x3_wgrad_tile(float* __restrict__ partial_w, float* __restrict__ partial_b,
                                   const float* __restrict__ x, const float* __restrict__ dy,
                                   int n_img, int h, int w_in, int c_in, int c_out, int pad, int nhwc)
{
    using namespace nvcuda;
    using T = typename Op::stored;
    constexpr int K = Op::K, HALO = (TILE_H + 2) * (TILE_W + 2), PIXELS = TILE_H * TILE_W;
    __shared__ __align__(32) T xs[HALO * WG_C];                   // x's tile and halo, 16 channels, rounded
    __shared__ __align__(32) T dys[PIXELS * TILE_N];              // dy's tile, 16 channels, rounded
    __shared__ __align__(32) float acc_tile[9 * WG_C * TILE_N];   // the 9 accumulators, restaged
    const int h_o = h + 2 * pad - 2, w_o = w_in + 2 * pad - 2;
    const int tiles_x = (w_o + TILE_W - 1) / TILE_W, tiles_y = (h_o + TILE_H - 1) / TILE_H;
    const int n_tiles = n_img * tiles_y * tiles_x;
    const int c0 = blockIdx.x * WG_C, o0 = blockIdx.y * TILE_N, split = blockIdx.z, splits = gridDim.z;
    const int tid = threadIdx.x, tap = tid / 32, u = tap / 3, v = tap % 3;
    const bool bias_thread = blockIdx.x == 0 && tid < TILE_N && o0 + tid < c_out;

    wmma::fragment<wmma::accumulator, 16, 16, K, float> acc;
    wmma::fill_fragment(acc, 0.0f);
    float db = 0.0f;                     // the bias gradient of channel o0 + tid, summed from float dy
    for (int t = split; t < n_tiles; t += splits) {
        const int img = t / (tiles_y * tiles_x), i0 = (t / tiles_x) % tiles_y * TILE_H, j0 = t % tiles_x * TILE_W;
        for (int e = tid; e < HALO * WG_C; e += blockDim.x) {
            const int k = nhwc ? e % WG_C : e / HALO, p = nhwc ? e / WG_C : e % HALO;
            const int r = p / (TILE_W + 2), col = p % (TILE_W + 2);
            const int si = i0 + r - pad, sj = j0 + col - pad, c = c0 + k;
            xs[p * WG_C + k] = Op::round((si >= 0 && si < h && sj >= 0 && sj < w_in && c < c_in)
                                         ? x[map_offset(nhwc, img, c, si, sj, c_in, h, w_in)] : 0.0f);
        }
        for (int e = tid; e < PIXELS * TILE_N; e += blockDim.x) {
            const int o = nhwc ? e % TILE_N : e / PIXELS, p = nhwc ? e / TILE_N : e % PIXELS;
            const int i = i0 + p / TILE_W, j = j0 + p % TILE_W;
            dys[p * TILE_N + o] = Op::round((i < h_o && j < w_o && o0 + o < c_out)     // 0 outside: adds nothing
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
                wmma::fragment<wmma::matrix_a, 16, 16, K, typename Op::precision, wmma::col_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, K, typename Op::precision, wmma::row_major> bf;
                // A(c, p) = x_pad at pixel (r + u, k0 + p + v), channel c: column-major, ldm = WG_C
                wmma::load_matrix_sync(a, xs + ((r + u) * (TILE_W + 2) + k0 + v) * WG_C, WG_C);
                wmma::load_matrix_sync(bf, dys + (r * TILE_W + k0) * TILE_N, TILE_N);
                wmma::mma_sync(acc, a, bf, acc);
            }
        __syncthreads();                 // the next tile overwrites xs and dys
    }
    wmma::store_matrix_sync(acc_tile + tap * WG_C * TILE_N, acc, TILE_N, wmma::mem_row_major);
    __syncthreads();
    for (int e = tid; e < 9 * WG_C * TILE_N; e += blockDim.x) {
        const int o = e % TILE_N, c = (e / TILE_N) % WG_C, k = e / (TILE_N * WG_C);
        if (c0 + c < c_in && o0 + o < c_out)
            partial_w[(((long long)split * 9 + k) * c_in + c0 + c) * c_out + o0 + o] = acc_tile[e];
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

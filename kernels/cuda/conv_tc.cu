// 3x3 stride-1 convolution as an implicit GEMM on tensor cores (WMMA, TF32 m16n16k8, float accumulators),
// NHWC activations, no im2col matrix in memory.  A first version, for the tensor-core path of the cuda
// backend (issue: CUDA backend faster than PyTorch + cuDNN); measured on a GPU before it is made faster.
//
//   y[n, i, j, o] = b[o] + sum_{u, v, c} w[u*3 + v, c, o] * x_pad[n, i + u, j + v, c]      (x_pad: pad zeros)
//
// As a GEMM: M = output pixels, N = output channels, K = 9 taps x C input channels.  One block computes a
// tile of TILE_H x TILE_W output pixels (one image) x TILE_N output channels; warp r owns output row r of
// the tile, 16 pixels, as one 16 x 16 accumulator.  For each chunk of TILE_K input channels the block loads
// the input tile with its one-pixel halo, (TILE_H + 2) x (TILE_W + 2) x TILE_K, into shared memory once, and
// the chunk's weights of all 9 taps; every tap then reads its A operand from the same tile, shifted by the
// tap (a 16 x 8 row-major matrix with ldm = TILE_K), so x is read from global memory once per chunk.
// Operands are rounded to TF32 (cvt.rna, 10 mantissa bits) as they enter the tensor cores; sums are float.
// The epilogue restages the accumulators through shared memory and writes y with the bias and an optional
// ReLU, inside the output's bounds (the tile may overhang the image and the channels).
//
// pad = 1 is RED's "same" convolution, pad = 0 its "valid" one, and pad = 2 with the weights flipped and
// transposed (w'[8 - tap, o, c] = w[tap, c, o]) the transposed convolution's full padding, i.e. the input
// gradient: one kernel serves all three.  Shapes: x (N, H, W, C), w (9, C, K), b (K), y (N, H_o, W_o, K)
// with H_o = H + 2 pad - 2.  Launch: block (128), grid (ceil(W_o / 16), ceil(H_o / 4), N ceil(K / 16)).
#ifdef __CUDACC__
#include <mma.h>
#endif

#define TILE_H 4      // output rows per block: one warp each
#define TILE_W 16     // output pixels per row: the mma's M
#define TILE_N 16     // output channels per block: the mma's N
#define TILE_K 8      // input channels per chunk: the mma's K

extern "C" __global__ void conv3x3_tf32(float* __restrict__ y, const float* __restrict__ x,
                                        const float* __restrict__ w, const float* __restrict__ b,
                                        int n_img, int h, int w_in, int c_in, int c_out, int pad, int relu)
{
    using namespace nvcuda;
    __shared__ __align__(32) float xs[TILE_H + 2][TILE_W + 2][TILE_K];   // input tile and halo, one chunk
    __shared__ __align__(32) float ws[9][TILE_K][TILE_N];               // the chunk's weights, every tap
    __shared__ __align__(32) float acc_tile[TILE_H][TILE_W][TILE_N];     // accumulators, restaged
    const int h_o = h + 2 * pad - 2, w_o = w_in + 2 * pad - 2;
    const int n_tiles = (c_out + TILE_N - 1) / TILE_N;
    const int img = blockIdx.z / n_tiles, o0 = (blockIdx.z % n_tiles) * TILE_N;
    const int i0 = blockIdx.y * TILE_H, j0 = blockIdx.x * TILE_W;
    const int tid = threadIdx.x, row = tid / 32;

    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
    wmma::fill_fragment(acc, 0.0f);
    for (int c0 = 0; c0 < c_in; c0 += TILE_K) {
        for (int e = tid; e < (TILE_H + 2) * (TILE_W + 2) * TILE_K; e += blockDim.x) {
            const int k = e % TILE_K, col = (e / TILE_K) % (TILE_W + 2), r = e / (TILE_K * (TILE_W + 2));
            const int si = i0 + r - pad, sj = j0 + col - pad, c = c0 + k;
            xs[r][col][k] = (si >= 0 && si < h && sj >= 0 && sj < w_in && c < c_in)
                ? x[(((long long)img * h + si) * w_in + sj) * c_in + c] : 0.0f;
        }
        for (int e = tid; e < 9 * TILE_K * TILE_N; e += blockDim.x) {
            const int o = e % TILE_N, k = (e / TILE_N) % TILE_K, tap = e / (TILE_N * TILE_K);
            ws[tap][k][o] = (c0 + k < c_in && o0 + o < c_out)
                ? w[((long long)tap * c_in + c0 + k) * c_out + o0 + o] : 0.0f;
        }
        __syncthreads();
        for (int tap = 0; tap < 9; ++tap) {
            wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a;
            wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> bf;
            wmma::load_matrix_sync(a, &xs[row + tap / 3][tap % 3][0], TILE_K);   // 16 pixels, shifted by the tap
            wmma::load_matrix_sync(bf, &ws[tap][0][0], TILE_N);
            for (int t = 0; t < a.num_elements; ++t) a.x[t] = wmma::__float_to_tf32(a.x[t]);
            for (int t = 0; t < bf.num_elements; ++t) bf.x[t] = wmma::__float_to_tf32(bf.x[t]);
            wmma::mma_sync(acc, a, bf, acc);
        }
        __syncthreads();                 // the next chunk overwrites xs and ws
    }
    wmma::store_matrix_sync(&acc_tile[row][0][0], acc, TILE_N, wmma::mem_row_major);
    __syncthreads();
    for (int e = tid; e < TILE_H * TILE_W * TILE_N; e += blockDim.x) {
        const int o = e % TILE_N, col = (e / TILE_N) % TILE_W, r = e / (TILE_N * TILE_W);
        const int i = i0 + r, j = j0 + col, oc = o0 + o;
        if (i < h_o && j < w_o && oc < c_out) {
            const float value = acc_tile[r][col][o] + b[oc];
            y[(((long long)img * h_o + i) * w_o + j) * c_out + oc] = (relu && value < 0.0f) ? 0.0f : value;
        }
    }
}

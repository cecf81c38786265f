// im2col / col2im on the GPU: the data movement that turns a convolution into one GEMM per image group
// (the GEMM itself is cuBLAS through CuPy).  Same layout and formulas as kernels/cpu/conv.py:
//
//     cols[n, (c, u, v), (i, j)] = x[n, c, s (i0 + i) + u - p, s j + v - p]     (0 outside the image)
//
// for the band of output rows i0 .. i0 + R - 1 (R = n_rows; a whole image when i0 = 0 and R = H_o).
// `real` is float or double, set by the compiler option -Dreal=... (one module per dtype).
// Thread mapping: one thread per output element, grid-stride loops over the flat index, so any grid size
// covers any problem and sizes need not divide the block size.

// cols: (N, C*k*k, R*W_o) <- x: (N, C, H, W).  One thread per column entry; the flat index decomposes as
// ((((n*C + c)*k + u)*k + v)*R + i)*W_o + j, which is exactly the entry's offset in cols.
extern "C" __global__ void im2col(real* __restrict__ cols, const real* __restrict__ x,
                                  int n_img, int c_in, int h, int w, int k, int stride, int padding,
                                  int w_out, int i_start, int n_rows)
{
    const long long total = (long long)n_img * c_in * k * k * n_rows * w_out;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        long long t = idx;
        const int j = t % w_out;  t /= w_out;
        const int i = t % n_rows; t /= n_rows;
        const int v = t % k;      t /= k;
        const int u = t % k;      t /= k;
        const int c = t % c_in;
        const long long n = t / c_in;
        const int hh = stride * (i_start + i) + u - padding;
        const int ww = stride * j + v - padding;
        cols[idx] = (hh >= 0 && hh < h && ww >= 0 && ww < w)
                        ? x[((n * c_in + c) * h + hh) * w + ww] : (real)0;
    }
}

// x: (N, C, H, W) += col2im(cols), cols: (N, C*k*k, R*W_o) for output rows i_start .. i_start + R - 1.
// A gather: one thread per pixel of x sums every column entry that came from it (the taps (u, v) with
// s i + u - p = hh and s j + v - p = ww for an output (i, j) inside the band), so no two threads write
// one element and no atomics are needed.  Bands accumulate: the caller zeroes x once.
extern "C" __global__ void col2im(real* __restrict__ x, const real* __restrict__ cols,
                                  int n_img, int c_in, int h, int w, int k, int stride, int padding,
                                  int h_out, int w_out, int i_start, int n_rows)
{
    const long long total = (long long)n_img * c_in * h * w;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        long long t = idx;
        const int ww = t % w; t /= w;
        const int hh = t % h; t /= h;
        const long long nc = t;                       // n * C + c
        real sum = 0;
        for (int u = 0; u < k; ++u) {
            const int di = hh + padding - u;          // = stride * i
            if (di < 0 || di % stride != 0) continue;
            const int i = di / stride;
            if (i < i_start || i >= i_start + n_rows || i >= h_out) continue;
            for (int v = 0; v < k; ++v) {
                const int dj = ww + padding - v;      // = stride * j
                if (dj < 0 || dj % stride != 0) continue;
                const int j = dj / stride;
                if (j >= w_out) continue;
                sum += cols[((nc * k + u) * k + v) * n_rows * w_out + (long long)(i - i_start) * w_out + j];
            }
        }
        x[idx] += sum;
    }
}

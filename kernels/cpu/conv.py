r"""im2col / col2im: the data movement that turns a convolution into one matrix product per image.

With x_pad the input zero-padded by p, and K = C k^2, P = H_o W_o:

    cols[n, (c, u, v), (i, j)] = x_pad[n, c, s i + u, s j + v]                 im2col:  (N, C, H, W) -> (N, K, P)
    y[n]  = W.reshape(C_out, K) @ cols[n]                                   conv2d forward (BLAS GEMM)
    dW    = sum_n dy[n] @ cols[n]^T                                          conv2d_backward_weight
    dcols[n] = W.reshape(C_out, K)^T @ dy[n];  dx = col2im(dcols)            conv2d_backward_input

col2im is im2col's adjoint: it scatters every column entry back to the pixel it came from and sums.
The padding is never materialised: for each tap (u, v) the output columns j whose input column
s j + v - p falls inside the image form one range [j_lo, j_hi), so the inner loops carry no bounds test
and vectorise.
"""
import numba as nb


@nb.njit(inline="always")
def valid_range(tap, stride, padding, size, out_size):
    """[lo, hi): the output indices i with 0 <= stride*i + tap - padding < size."""
    lo = max(0, (padding - tap + stride - 1) // stride)
    hi = min(out_size, (size - 1 + padding - tap) // stride + 1)
    return lo, max(lo, hi)


@nb.njit(inline="always")
def band_valid_range(tap, stride, padding, size, out_size, i_start, n_rows):
    """valid_range for the band of output rows [i_start, i_start + n_rows), relative to i_start."""
    lo, hi = valid_range(tap, stride, padding, size, out_size)
    lo = min(max(lo, i_start) - i_start, n_rows)
    hi = max(min(hi, i_start + n_rows) - i_start, lo)
    return lo, hi


@nb.njit(parallel=True, cache=True)
def im2col(cols, x, k, stride, padding, h_out, w_out, i_start):
    """cols: (N, C*k*k, R*W_o) <- patches of x: (N, C, H, W) for the R output rows i_start .. i_start+R-1
    (R = cols.shape[2] // W_o: large images are processed in bands of rows).  prange over (n, c): disjoint
    rows of cols."""
    n_img, c_in, h, w = x.shape
    n_rows = cols.shape[2] // w_out
    for nc in nb.prange(n_img * c_in):
        n, c = nc // c_in, nc % c_in
        for u in range(k):
            i_lo, i_hi = band_valid_range(u, stride, padding, h, h_out, i_start, n_rows)
            for v in range(k):
                j_lo, j_hi = valid_range(v, stride, padding, w, w_out)
                row = cols[n, (c * k + u) * k + v]
                row[:i_lo * w_out] = 0
                row[i_hi * w_out:] = 0
                for i in range(i_lo, i_hi):
                    base, hh = i * w_out, stride * (i + i_start) + u - padding
                    for j in range(j_lo):
                        row[base + j] = 0
                    for j in range(j_hi, w_out):
                        row[base + j] = 0
                    off = v - padding
                    if stride == 1:           # contiguous copy: vectorises
                        row[base + j_lo:base + j_hi] = x[n, c, hh, j_lo + off:j_hi + off]
                    else:
                        for j in range(j_lo, j_hi):
                            row[base + j] = x[n, c, hh, stride * j + off]


@nb.njit(parallel=True, cache=True)
def col2im(x, cols, k, stride, padding, h_out, w_out, i_start):
    """x: (N, C, H, W) += the column entries of cols: (N, C*k*k, R*W_o), output rows i_start .. i_start+R-1,
    each added to the pixel it came from (the caller zeroes x once; bands of rows accumulate).
    prange over (n, c): each iteration owns one output plane x[n, c]."""
    n_img, c_in, h, w = x.shape
    n_rows = cols.shape[2] // w_out
    for nc in nb.prange(n_img * c_in):
        n, c = nc // c_in, nc % c_in
        plane = x[n, c]
        for u in range(k):
            i_lo, i_hi = band_valid_range(u, stride, padding, h, h_out, i_start, n_rows)
            for v in range(k):
                j_lo, j_hi = valid_range(v, stride, padding, w, w_out)
                row = cols[n, (c * k + u) * k + v]
                off = v - padding
                for i in range(i_lo, i_hi):
                    base, hh = i * w_out, stride * (i + i_start) + u - padding
                    if stride == 1:
                        plane[hh, j_lo + off:j_hi + off] += row[base + j_lo:base + j_hi]
                    else:
                        for j in range(j_lo, j_hi):
                            plane[hh, stride * j + off] += row[base + j]

r"""Winograd minimal filtering F(4x4, 3x3) for stride-1 3x3 convolutions (Lavin & Gray 2016, §4.2).

The same scheme as winograd.py's F(2x2, 3x3) with 4x4 output tiles from 6x6 input tiles (interpolation points
0, 1, -1, 2, -2, infinity):

    Y = A^T [ (G g G^T) .* (B^T d B) ] A

         [4  0 -5  0  1  0]          [ 1/4     0     0 ]
         [0 -4 -4  1  1  0]          [-1/6  -1/6  -1/6 ]          [1  1  1  1  1  0]
   B^T = [0  4 -4 -1  1  0]      G = [-1/6   1/6  -1/6 ]    A^T = [0  1 -1  2 -2  0]
         [0 -2 -1  2  1  0]          [1/24  1/12   1/6 ]          [0  1  1  4  4  0]
         [0  2 -1 -2  1  0]          [1/24 -1/12   1/6 ]          [0  1 -1  8 -8  1]
         [0  4  0 -5  0  1]          [  0     0     1  ]

36 multiplications per 4x4 outputs instead of 144: the GEMMs over the 36 positions of the Winograd domain
carry 4x fewer multiplications than im2col's (F(2x2, 3x3): 2.25x), and the transformed input is 36/16 = 2.25
values per pixel instead of 4, so the transforms also move less memory.  The price is precision: the larger
coefficients lose about one more decimal digit in float32 (tests/test_winograd.py states the tolerances).

Weight gradient, as in winograd.py by duality, F(3x3, 4x4): dW[o, c] = G^T [ sum_p (A g_p A^T) .* (B^T d_p B) ] G,
g_p the 4x4 block of dy at tile p.

Layout: channels last in the Winograd domain.  The transformed input is V: (36, tiles, C), the GEMM per position
is M[pos] (tiles, C_out) = V[pos] (tiles, C_in) @ U[pos] (C_in, C_out), and the transforms' inner loops run
over the channels: 64 or 128 contiguous values that the compiler vectorises, where a row of 4x4 tiles (5 to 13
tiles on RED-Net's maps) is too short to.  Activations in (N, C, H, W) are turned channels-last a few rows at
a time in a small scratch array (a scalar transposition, about half of the transform's time); with
`channels_last` the activations themselves are (N, H, W, C) in memory (the cpu backend hands them on as
(N, C, H, W)-shaped views) and the kernels read and write whole channel vectors.  On one core, a 64-channel
48x48 image's input transform took 317 us in the first layout ((36, C, tiles), vectorised along rows of tiles).

Every kernel keeps the array's dtype: the coefficients are read from a small array of that dtype (a float32
kernel never widens to float64).
"""
import numba as nb
import numpy as np

CHANNELS_LAST = True                  # V: (36, tiles, C); the GEMM's U: (36, C_in, C_out)
TILE, ALPHA = 4, 6                    # output tile m x m from input tile (m + 2) x (m + 2)
POSITIONS = ALPHA * ALPHA
G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
              [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
               [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=float)
AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=float)


GG = np.kron(G, G)                    # (36, 9): (G w G^T)[a, b] = sum_{i,j} G[a, i] G[b, j] w[i, j]


def _kron_gg(dtype):
    """kron(G, G) in the filters' dtype: the transforms below are small GEMMs in that precision."""
    return GG.astype(dtype)


def filter_transform(w):
    """U: (36, C_out, C_in) = G w G^T per filter, flattened over the 6x6 Winograd domain: one GEMM of
    kron(G, G) with every filter's 9 taps.  The forward's GEMM takes it transposed, U[pos]^T: (C_in, C_out)."""
    c_out, c_in = w.shape[:2]
    return (_kron_gg(w.dtype) @ w.reshape(c_out * c_in, 9).T).reshape(POSITIONS, c_out, c_in)


def input_gradient_filter_transform(w):
    """The U of the stride-1 input gradient dx = conv(dy, w'), w'[c, o] = w[o, c] flipped in both axes, as the
    GEMM takes it: (36, C_out, C_in) of w, which is (36, C_in, C_out) of w'.  Flipping the 3x3 taps reverses
    their row-major order, so this is kron(G, G) with its columns reversed: no flipped copy of w is made."""
    c_out, c_in = w.shape[:2]
    return (_kron_gg(w.dtype)[:, ::-1] @ w.reshape(c_out * c_in, 9).T).reshape(POSITIONS, c_out, c_in)


def weight_gradient_from_winograd(wh):
    """dW: (C_out, C_in, 3, 3) = G^T Wh[o, c] G from the Winograd-domain sums Wh: (36, C_out, C_in), as one
    GEMM with kron(G, G)."""
    c_out, c_in = wh.shape[1:]
    return (wh.reshape(POSITIONS, c_out * c_in).T @ _kron_gg(wh.dtype)).reshape(c_out, c_in, 3, 3)


@nb.njit(inline="always")
def _constants(like):
    """2, 4, 5, 8 in like's dtype."""
    k = np.empty(4, like.dtype)
    k[0], k[1], k[2], k[3] = 2, 4, 5, 8
    return k[0], k[1], k[2], k[3]


@nb.njit(inline="always")
def _bt(c4, c5, c2, d0, d1, d2, d3, d4, d5):
    """B^T applied to a 6-vector (a column, then a row, of the input tile)."""
    return (c4 * d0 - c5 * d2 + d4,
            d3 + d4 - c4 * (d1 + d2),
            d4 - d3 + c4 * (d1 - d2),
            d4 - d2 + c2 * (d3 - d1),
            d4 - d2 + c2 * (d1 - d3),
            c4 * d1 - c5 * d3 + d5)


BAND = 4                              # rows of tiles per job of input_transform


@nb.njit(parallel=True, cache=True)
def input_transform(v, x, padding, t_h, t_w, channels_last):
    """v: (36, N*t_h*t_w, C) <- B^T d B of every 6x6 tile d of x: (N, C, H, W), or (N, H, W, C) when
    channels_last (then the copy below is contiguous, not a transposition), zero-padded by `padding`, tile
    (ti, tj) starting at padded row 4 ti, column 4 tj.  prange over bands of BAND rows of tiles: disjoint rows
    of v.  Each band first copies its 4 BAND + 2 padded input rows channels-last, d[r, q, c] (neighbouring
    rows of tiles share 2 rows), so that both passes run their inner loop over the channels, contiguous in
    memory and as long as C (a row of tiles is too short to vectorise along): B^T over the rows of every tile
    column, then B over the columns into v."""
    if channels_last:
        n_img, h, w, c_in = x.shape
    else:
        n_img, c_in, h, w = x.shape
    tiles, wp, span = t_h * t_w, 4 * t_w + 2, t_w * c_in
    bands = -(-t_h // BAND)
    c2, c4, c5, _ = _constants(v)
    vf = v.reshape(POSITIONS, v.shape[1] * c_in)
    for job in nb.prange(n_img * bands):
        n, t0 = job // bands, (job % bands) * BAND
        t1 = min(t_h, t0 + BAND)
        d = np.zeros((4 * (t1 - t0) + 2, wp, c_in), x.dtype)   # padded rows 4 t0 .. 4 t1 + 1, channels-last
        for a in range(4 * (t1 - t0) + 2):
            r = 4 * t0 + a - padding
            if 0 <= r < h:
                for q in range(padding, min(wp, w + padding)):
                    da = d[a, q]
                    if channels_last:
                        xq = x[n, r, q - padding]
                        for c in range(c_in):
                            da[c] = xq[c]
                    else:
                        for c in range(c_in):
                            da[c] = x[n, c, r, q - padding]
        s = np.empty((POSITIONS, span), x.dtype)               # s[6 a + j, tj C + c] = (B^T d)[a, j] of tile tj
        for ti in range(t0, t1):
            r = 4 * (ti - t0)
            for j in range(6):
                for tj in range(t_w):
                    q, o = 4 * tj + j, tj * c_in
                    d0, d1, d2, d3, d4, d5 = d[r, q], d[r + 1, q], d[r + 2, q], d[r + 3, q], d[r + 4, q], d[r + 5, q]
                    s0, s1, s2 = s[j, o:o + c_in], s[6 + j, o:o + c_in], s[12 + j, o:o + c_in]
                    s3, s4, s5 = s[18 + j, o:o + c_in], s[24 + j, o:o + c_in], s[30 + j, o:o + c_in]
                    for c in range(c_in):       # slices indexed by the loop counter: the loops vectorise
                        s0[c], s1[c], s2[c], s3[c], s4[c], s5[c] = _bt(c4, c5, c2, d0[c], d1[c], d2[c], d3[c], d4[c],
                                                                       d5[c])
            start = (n * tiles + ti * t_w) * c_in              # this row of tiles in v: span contiguous values
            end = start + span
            for a in range(6):
                v0, v1, v2 = vf[6 * a, start:end], vf[6 * a + 1, start:end], vf[6 * a + 2, start:end]
                v3, v4, v5 = vf[6 * a + 3, start:end], vf[6 * a + 4, start:end], vf[6 * a + 5, start:end]
                for k in range(span):
                    v0[k], v1[k], v2[k], v3[k], v4[k], v5[k] = _bt(
                        c4, c5, c2, s[6 * a, k], s[6 * a + 1, k], s[6 * a + 2, k], s[6 * a + 3, k], s[6 * a + 4, k],
                        s[6 * a + 5, k])


@nb.njit(inline="always")
def _at(c2, c4, c8, m0, m1, m2, m3, m4, m5):
    """A^T applied to a 6-vector: 4 values."""
    s13, d13 = m1 + m2, m1 - m2
    s34, d34 = m3 + m4, m3 - m4
    return m0 + s13 + s34, d13 + c2 * d34, s13 + c4 * s34, d13 + c8 * d34 + m5


@nb.njit(parallel=True, cache=True)
def output_transform(y, m, t_h, t_w, channels_last):
    """y: (N, C_out, H_o, W_o), or (N, H_o, W_o, C_out) when channels_last (no transposition at the end), <-
    A^T m A of every tile, m: (36, N*t_h*t_w, C_out); rows/columns of the last tiles beyond H_o, W_o are
    dropped.  prange over the rows of tiles (n, ti): each owns 4 rows of y.  A^T over
    the 6 rows of every tile, then A over the columns into 4 output rows held channels-last (inner loops over
    the channels, as input_transform), copied into y's planes."""
    if channels_last:
        n_img, h_out, w_out, c_out = y.shape
    else:
        n_img, c_out, h_out, w_out = y.shape
    tiles, span = t_h * t_w, t_w * c_out
    c2, c4, _, c8 = _constants(m)
    mf = m.reshape(POSITIONS, m.shape[1] * c_out)
    for job in nb.prange(n_img * t_h):
        n, ti = job // t_h, job % t_h
        start = (n * tiles + ti * t_w) * c_out
        end = start + span
        s = np.empty((24, span), m.dtype)                      # s[6 k + b, tj C + o] = (A^T m)[k, b] of tile tj
        for b in range(6):
            m0, m1, m2 = mf[b, start:end], mf[6 + b, start:end], mf[12 + b, start:end]
            m3, m4, m5 = mf[18 + b, start:end], mf[24 + b, start:end], mf[30 + b, start:end]
            for k in range(span):
                s[b, k], s[6 + b, k], s[12 + b, k], s[18 + b, k] = _at(c2, c4, c8, m0[k], m1[k], m2[k], m3[k], m4[k],
                                                                       m5[k])
        rows = np.empty((4, 4 * t_w, c_out), m.dtype)          # output rows 4 ti .. 4 ti + 3, channels-last
        for a in range(4):
            for tj in range(t_w):
                o = tj * c_out
                r0, r1, r2, r3 = rows[a, 4 * tj], rows[a, 4 * tj + 1], rows[a, 4 * tj + 2], rows[a, 4 * tj + 3]
                s0, s1, s2 = s[6 * a, o:o + c_out], s[6 * a + 1, o:o + c_out], s[6 * a + 2, o:o + c_out]
                s3, s4, s5 = s[6 * a + 3, o:o + c_out], s[6 * a + 4, o:o + c_out], s[6 * a + 5, o:o + c_out]
                for c in range(c_out):
                    r0[c], r1[c], r2[c], r3[c] = _at(c2, c4, c8, s0[c], s1[c], s2[c], s3[c], s4[c], s5[c])
        for a in range(min(4, h_out - 4 * ti)):
            i = 4 * ti + a
            if channels_last:
                for j in range(w_out):
                    yj, rj = y[n, i, j], rows[a, j]
                    for c in range(c_out):
                        yj[c] = rj[c]
            else:
                for c in range(c_out):                         # y's rows are written contiguously
                    yc = y[n, c, i]
                    for j in range(w_out):
                        yc[j] = rows[a, j, c]


@nb.njit(inline="always")
def _a(c2, c4, c8, g0, g1, g2, g3):
    """A (6x4) applied to a 4-vector: 6 values."""
    s02, s13 = g0 + g2, g1 + g3
    return g0, s02 + s13, s02 - s13, g0 + c2 * g1 + c4 * g2 + c8 * g3, g0 - c2 * g1 + c4 * g2 - c8 * g3, g3


@nb.njit(parallel=True, cache=True)
def gradient_transform(gh, dy, t_h, t_w, channels_last):
    """gh: (36, N*t_h*t_w, C_out) <- A g A^T of every 4x4 block g of dy: (N, C_out, H_o, W_o), or
    (N, H_o, W_o, C_out) when channels_last, at (4 ti, 4 tj)
    (0 beyond the last row/column).  prange over the rows of blocks (n, ti); the 4 rows copied channels-last,
    then A over the rows of every block column and A over the columns into gh (as input_transform)."""
    if channels_last:
        n_img, h_out, w_out, c_out = dy.shape
    else:
        n_img, c_out, h_out, w_out = dy.shape
    tiles, span = t_h * t_w, t_w * c_out
    c2, c4, _, c8 = _constants(gh)
    gf = gh.reshape(POSITIONS, gh.shape[1] * c_out)
    for job in nb.prange(n_img * t_h):
        n, ti = job // t_h, job % t_h
        g = np.zeros((4, 4 * t_w, c_out), dy.dtype)            # rows 4 ti .. 4 ti + 3 of dy, channels-last
        for a in range(min(4, h_out - 4 * ti)):
            if channels_last:
                for j in range(w_out):
                    ga, dj = g[a, j], dy[n, 4 * ti + a, j]
                    for c in range(c_out):
                        ga[c] = dj[c]
            else:
                for c in range(c_out):
                    dr = dy[n, c, 4 * ti + a]
                    for j in range(w_out):
                        g[a, j, c] = dr[j]
        s = np.empty((POSITIONS, span), dy.dtype)              # s[6 a + j, tj C + c] = (A g)[a, j] of block tj
        for j in range(4):
            for tj in range(t_w):
                q, o = 4 * tj + j, tj * c_out
                g0, g1, g2, g3 = g[0, q], g[1, q], g[2, q], g[3, q]
                s0, s1, s2 = s[j, o:o + c_out], s[6 + j, o:o + c_out], s[12 + j, o:o + c_out]
                s3, s4, s5 = s[18 + j, o:o + c_out], s[24 + j, o:o + c_out], s[30 + j, o:o + c_out]
                for c in range(c_out):
                    s0[c], s1[c], s2[c], s3[c], s4[c], s5[c] = _a(c2, c4, c8, g0[c], g1[c], g2[c], g3[c])
        start = (n * tiles + ti * t_w) * c_out
        end = start + span
        for a in range(6):
            e0, e1, e2 = gf[6 * a, start:end], gf[6 * a + 1, start:end], gf[6 * a + 2, start:end]
            e3, e4, e5 = gf[6 * a + 3, start:end], gf[6 * a + 4, start:end], gf[6 * a + 5, start:end]
            for k in range(span):
                e0[k], e1[k], e2[k], e3[k], e4[k], e5[k] = _a(c2, c4, c8, s[6 * a, k], s[6 * a + 1, k], s[6 * a + 2, k],
                                                              s[6 * a + 3, k])

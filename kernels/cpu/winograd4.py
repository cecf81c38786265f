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

Every kernel keeps the array's dtype: the coefficients are read from a small array of that dtype (a float32
kernel never widens to float64).
"""
import numba as nb
import numpy as np

TILE, ALPHA = 4, 6                    # output tile m x m from input tile (m + 2) x (m + 2)
POSITIONS = ALPHA * ALPHA
G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
              [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
               [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=float)
AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], dtype=float)


GG = np.kron(G, G)                    # (36, 9): (G w G^T)[a, b] = sum_{i,j} G[a, i] G[b, j] w[i, j]


def filter_transform(w):
    """U: (36, C_out, C_in) = G w G^T per filter, flattened over the 6x6 Winograd domain: one GEMM of
    kron(G, G) with every filter's 9 taps (in float64, rounded once to w's dtype)."""
    c_out, c_in = w.shape[:2]
    u = GG @ w.reshape(c_out * c_in, 9).T.astype(np.float64)
    return u.reshape(POSITIONS, c_out, c_in).astype(w.dtype)


def weight_gradient_from_winograd(wh):
    """dW: (C_out, C_in, 3, 3) = G^T Wh[o, c] G from the Winograd-domain sums Wh: (36, C_out, C_in), as one
    GEMM with kron(G, G)^T."""
    c_out, c_in = wh.shape[1:]
    dw = wh.reshape(POSITIONS, c_out * c_in).T.astype(np.float64) @ GG
    return dw.reshape(c_out, c_in, 3, 3).astype(wh.dtype)


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


@nb.njit(parallel=True, cache=True)
def input_transform(v, x, padding, t_h, t_w):
    """v: (36, C, N*t_h*t_w) <- B^T d B of every 6x6 tile d of x: (N, C, H, W) zero-padded by `padding`,
    tile (ti, tj) starting at padded row 4 ti, column 4 tj.  prange over (n, c): disjoint columns of v.
    Each plane is first copied into a zero-padded scratch plane, so the tile loops read without bounds tests.
    Per row of tiles: B^T over the 6 rows for every column at once (contiguous, vectorised), then B over each
    tile's 6 columns, the inner loop along the row of tiles (contiguous stores into v)."""
    n_img, c_in, h, w = x.shape
    tiles = t_h * t_w
    hp, wp = 4 * t_h + 2, 4 * t_w + 2
    c2, c4, c5, _ = _constants(v)
    for nc in nb.prange(n_img * c_in):
        n, c = nc // c_in, nc % c_in
        plane = np.zeros((hp, wp), x.dtype)
        rows, cols = min(h, hp - padding), min(w, wp - padding)
        for r in range(rows):
            for q in range(cols):
                plane[r + padding, q + padding] = x[n, c, r, q]
        t = np.empty((6, wp), x.dtype)                           # B^T d for the row of tiles
        for ti in range(t_h):
            r = 4 * ti
            for q in range(wp):
                t[0, q], t[1, q], t[2, q], t[3, q], t[4, q], t[5, q] = _bt(
                    c4, c5, c2, plane[r, q], plane[r + 1, q], plane[r + 2, q], plane[r + 3, q], plane[r + 4, q],
                    plane[r + 5, q])
            base = n * tiles + ti * t_w
            for a in range(6):                                   # row a of (B^T d) B, tile by tile
                for tj in range(t_w):
                    q = 4 * tj
                    e0, e1, e2, e3, e4, e5 = _bt(c4, c5, c2, t[a, q], t[a, q + 1], t[a, q + 2], t[a, q + 3],
                                                 t[a, q + 4], t[a, q + 5])
                    p = base + tj
                    v[6 * a, c, p], v[6 * a + 1, c, p], v[6 * a + 2, c, p] = e0, e1, e2
                    v[6 * a + 3, c, p], v[6 * a + 4, c, p], v[6 * a + 5, c, p] = e3, e4, e5


@nb.njit(inline="always")
def _at(c2, c4, c8, m0, m1, m2, m3, m4, m5):
    """A^T applied to a 6-vector: 4 values."""
    s13, d13 = m1 + m2, m1 - m2
    s34, d34 = m3 + m4, m3 - m4
    return m0 + s13 + s34, d13 + c2 * d34, s13 + c4 * s34, d13 + c8 * d34 + m5


@nb.njit(parallel=True, cache=True)
def output_transform(y, m, t_h, t_w):
    """y: (N, C_out, H_o, W_o) <- A^T m A of every tile, m: (36, C_out, N*t_h*t_w); rows/columns of the last
    tiles beyond H_o, W_o are dropped.  prange over (n, o): each iteration owns the plane y[n, o].  Per row of
    tiles: A^T over the 6 rows of every tile at once (contiguous along the row of tiles), then A over each
    tile's 6 columns into a full-width output row, copied into y up to W_o."""
    n_img, c_out, h_out, w_out = y.shape
    tiles = t_h * t_w
    c2, c4, _, c8 = _constants(m)
    for no in nb.prange(n_img * c_out):
        n, o = no // c_out, no % c_out
        s = np.empty((4, 6, t_w), m.dtype)                       # A^T m for the row of tiles
        row = np.empty(4 * t_w, m.dtype)
        for ti in range(t_h):
            base = n * tiles + ti * t_w
            for b in range(6):
                for tj in range(t_w):
                    p = base + tj
                    s[0, b, tj], s[1, b, tj], s[2, b, tj], s[3, b, tj] = _at(
                        c2, c4, c8, m[b, o, p], m[6 + b, o, p], m[12 + b, o, p], m[18 + b, o, p], m[24 + b, o, p],
                        m[30 + b, o, p])
            for a in range(min(4, h_out - 4 * ti)):
                for tj in range(t_w):
                    row[4 * tj], row[4 * tj + 1], row[4 * tj + 2], row[4 * tj + 3] = _at(
                        c2, c4, c8, s[a, 0, tj], s[a, 1, tj], s[a, 2, tj], s[a, 3, tj], s[a, 4, tj], s[a, 5, tj])
                i = 4 * ti + a
                for j in range(w_out):
                    y[n, o, i, j] = row[j]


@nb.njit(inline="always")
def _a(c2, c4, c8, g0, g1, g2, g3):
    """A (6x4) applied to a 4-vector: 6 values."""
    s02, s13 = g0 + g2, g1 + g3
    return g0, s02 + s13, s02 - s13, g0 + c2 * g1 + c4 * g2 + c8 * g3, g0 - c2 * g1 + c4 * g2 - c8 * g3, g3


@nb.njit(parallel=True, cache=True)
def gradient_transform(gh, dy, t_h, t_w):
    """gh: (36, C_out, N*t_h*t_w) <- A g A^T of every 4x4 block g of dy: (N, C_out, H_o, W_o) at (4 ti, 4 tj)
    (0 beyond the last row/column).  prange over (n, o); per row of blocks, A over the 4 rows for every column
    at once, then A over each block's 4 columns along the row of blocks (as input_transform)."""
    n_img, c_out, h_out, w_out = dy.shape
    tiles = t_h * t_w
    c2, c4, _, c8 = _constants(gh)
    for no in nb.prange(n_img * c_out):
        n, o = no // c_out, no % c_out
        g = np.zeros((4 * t_h, 4 * t_w), dy.dtype)              # dy's plane, zero beyond its edges
        for i in range(h_out):
            for j in range(w_out):
                g[i, j] = dy[n, o, i, j]
        t = np.empty((6, 4 * t_w), dy.dtype)                     # A g for the row of blocks
        for ti in range(t_h):
            i = 4 * ti
            for j in range(4 * t_w):
                t[0, j], t[1, j], t[2, j], t[3, j], t[4, j], t[5, j] = _a(c2, c4, c8, g[i, j], g[i + 1, j],
                                                                          g[i + 2, j], g[i + 3, j])
            base = n * tiles + ti * t_w
            for a in range(6):                                   # row a of (A g) A^T, block by block
                for tj in range(t_w):
                    j = 4 * tj
                    e0, e1, e2, e3, e4, e5 = _a(c2, c4, c8, t[a, j], t[a, j + 1], t[a, j + 2], t[a, j + 3])
                    p = base + tj
                    gh[6 * a, o, p], gh[6 * a + 1, o, p], gh[6 * a + 2, o, p] = e0, e1, e2
                    gh[6 * a + 3, o, p], gh[6 * a + 4, o, p], gh[6 * a + 5, o, p] = e3, e4, e5

r"""Winograd minimal filtering F(2x2, 3x3) for stride-1 3x3 convolutions (Lavin & Gray 2016).

A 2x2 block of outputs of the correlation y[i, j] = sum_{u,v} g[u, v] d[i + u, j + v] from a 4x4 input tile d:

    Y = A^T [ (G g G^T) .* (B^T d B) ] A        (.* element-wise over the 4x4 "Winograd domain")

         [1  0 -1  0]          [ 1    0    0 ]          [1  1  1  0]
   B^T = [0  1  1  0]      G = [1/2  1/2  1/2]    A^T = [0  1 -1 -1]
         [0 -1  1  0]          [1/2 -1/2  1/2]
         [0  1  0 -1]          [ 0    0    1 ]

16 multiplications per 2x2 outputs instead of 36.  Over channels the element-wise product becomes, for each of
the 16 positions xi of the Winograd domain, one matrix product M[xi] = U[xi] (C_out x C_in) @ V[xi] (C_in x tiles):
the BLAS GEMM carries 2.25x fewer multiplications than im2col's.

    U[xi, o, c]     = (G w[o, c] G^T)[xi]                       filter transform (NumPy, once per call)
    V[xi, c, p]     = (B^T d_p B)[xi], d_p the p-th 4x4 tile     input transform (here)
    y[n, o, tile p] = A^T M[:, o, p] A                           output transform (here)

Tiles step by 2 over the zero-padded input; the padding is never materialised (reads outside the image are 0).

The weight gradient dW[o, c, u, v] = sum_{n,i,j} dy[n, o, i, j] x[n, c, i + u, j + v] is the same computation
with the roles swapped: a 3x3 result from a 4x4 input tile and a 2x2 block of dy, F(3x3, 2x2), whose matrices
are F(2x2, 3x3)'s transposed (Winograd's duality):

    dW[o, c] = G^T [ sum_p (A dy_p A^T) .* (B^T d_p B) ] G,    dy_p the 2x2 block of dy at tile p

so over channels: Wh[xi] = Gh[xi] (C_out x tiles) @ V[xi]^T (tiles x C_in), one batched GEMM, then G^T Wh G.
"""
import numba as nb
import numpy as np

CHANNELS_LAST = False                 # V: (16, C, tiles); U: (16, C_out, C_in) (winograd4.py: channels last)
TILE, ALPHA = 2, 4                    # output tile m x m from input tile (m + 2) x (m + 2)
POSITIONS = ALPHA * ALPHA
G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def weight_gradient_from_winograd(wh):
    """dW: (C_out, C_in, 3, 3) = G^T Wh[o, c] G from the Winograd-domain sums Wh: (16, C_out, C_in)."""
    c_out, c_in = wh.shape[1:]
    return np.einsum("ai,aboc,bj->ocij", G, wh.reshape(4, 4, c_out, c_in), G, optimize=True).astype(wh.dtype)


def filter_transform(w):
    """U: (16, C_out, C_in) = G w G^T per filter, flattened over the 4x4 Winograd domain."""
    c_out, c_in = w.shape[:2]
    u = np.einsum("ai,ocij,bj->aboc", G, w, G, optimize=True)
    return np.ascontiguousarray(u.reshape(16, c_out, c_in).astype(w.dtype))


@nb.njit(parallel=True, cache=True)
def input_transform(v, x, padding, t_h, t_w):
    """v: (16, C, N*t_h*t_w) <- B^T d B of every 4x4 tile d of x: (N, C, H, W) zero-padded by `padding`,
    tile (ti, tj) starting at padded row 2 ti, column 2 tj.  prange over (n, c): disjoint columns of v.
    Each plane is first copied into a zero-padded scratch plane, so the tile loop reads without bounds tests."""
    n_img, c_in, h, w = x.shape
    tiles = t_h * t_w
    hp, wp = 2 * t_h + 2, 2 * t_w + 2                     # every tile's 4x4 window lies inside
    for nc in nb.prange(n_img * c_in):
        n, c = nc // c_in, nc % c_in
        plane = np.zeros((hp, wp), x.dtype)
        rows, cols = min(h, hp - padding), min(w, wp - padding)
        for r in range(rows):
            for q in range(cols):
                plane[r + padding, q + padding] = x[n, c, r, q]
        # Row a of B^T d is (d0 - d2, d1 + d2, d2 - d1, d1 - d3)[a] over the tile's rows; its product with B
        # combines columns the same way.  The inner loop runs along a row of tiles: contiguous stores into v.
        for ti in range(t_h):
            base = n * tiles + ti * t_w
            r = 2 * ti
            for a in range(4):
                # row a of B^T d = row i1 + row i2 (a = 1) or row i1 - row i2 (a = 0, 2, 3)
                i1, i2 = (r, r + 2) if a == 0 else (r + 1, r + 2) if a == 1 else (r + 2, r + 1) if a == 2 else (r + 1, r + 3)
                if a == 1:
                    for tj in range(t_w):
                        q = 2 * tj
                        t0, t1 = plane[i1, q] + plane[i2, q], plane[i1, q + 1] + plane[i2, q + 1]
                        t2, t3 = plane[i1, q + 2] + plane[i2, q + 2], plane[i1, q + 3] + plane[i2, q + 3]
                        _store_row(v, a, c, base + tj, t0, t1, t2, t3)
                else:
                    for tj in range(t_w):
                        q = 2 * tj
                        t0, t1 = plane[i1, q] - plane[i2, q], plane[i1, q + 1] - plane[i2, q + 1]
                        t2, t3 = plane[i1, q + 2] - plane[i2, q + 2], plane[i1, q + 3] - plane[i2, q + 3]
                        _store_row(v, a, c, base + tj, t0, t1, t2, t3)


@nb.njit(inline="always")
def _store_row(v, a, c, p, t0, t1, t2, t3):
    """Row a of (B^T d) B from row a of B^T d: (t0 - t2, t1 + t2, t2 - t1, t1 - t3)."""
    v[4 * a + 0, c, p] = t0 - t2
    v[4 * a + 1, c, p] = t1 + t2
    v[4 * a + 2, c, p] = t2 - t1
    v[4 * a + 3, c, p] = t1 - t3


@nb.njit(parallel=True, cache=True)
def output_transform(y, m, t_h, t_w):
    """y: (N, C_out, H_o, W_o) <- A^T m A of every tile, m: (16, C_out, N*t_h*t_w); the last row/column of a
    tile is dropped where H_o or W_o is odd.  prange over (n, o): each iteration owns the plane y[n, o]."""
    n_img, c_out, h_out, w_out = y.shape
    tiles = t_h * t_w
    for no in nb.prange(n_img * c_out):
        n, o = no // c_out, no % c_out
        s = np.empty((2, 4), m.dtype)
        for ti in range(t_h):
            for tj in range(t_w):
                p = n * tiles + ti * t_w + tj
                # A^T m: rows 0 and 1 of the 2x4 intermediate.
                for b in range(4):
                    m0, m1, m2, m3 = m[b, o, p], m[4 + b, o, p], m[8 + b, o, p], m[12 + b, o, p]
                    s[0, b] = m0 + m1 + m2
                    s[1, b] = m1 - m2 - m3
                for a in range(2):
                    i = 2 * ti + a
                    if i >= h_out:
                        break
                    y[n, o, i, 2 * tj] = s[a, 0] + s[a, 1] + s[a, 2]
                    if 2 * tj + 1 < w_out:
                        y[n, o, i, 2 * tj + 1] = s[a, 1] - s[a, 2] - s[a, 3]


@nb.njit(parallel=True, cache=True)
def gradient_transform(gh, dy, t_h, t_w):
    """gh: (16, C_out, N*t_h*t_w) <- A g A^T of every 2x2 block g of dy: (N, C_out, H_o, W_o) at (2 ti, 2 tj)
    (0 beyond the last row/column), with A = [[1, 0], [1, 1], [1, -1], [0, -1]].  prange over (n, o)."""
    n_img, c_out, h_out, w_out = dy.shape
    tiles = t_h * t_w
    for no in nb.prange(n_img * c_out):
        n, o = no // c_out, no % c_out
        for ti in range(t_h):
            i = 2 * ti
            base = n * tiles + ti * t_w
            for tj in range(t_w):
                j = 2 * tj
                g00 = dy[n, o, i, j]
                zero = g00 - g00                                  # 0 in dy's dtype
                g01 = dy[n, o, i, j + 1] if j + 1 < w_out else zero
                g10 = dy[n, o, i + 1, j] if i + 1 < h_out else zero
                g11 = dy[n, o, i + 1, j + 1] if i + 1 < h_out and j + 1 < w_out else zero
                # rows of A g: (g0, g0 + g1, g0 - g1, -g1) over g's two rows, then the same over columns
                p = base + tj
                _store_gradient_row(gh, 0, o, p, g00, g01)
                _store_gradient_row(gh, 1, o, p, g00 + g10, g01 + g11)
                _store_gradient_row(gh, 2, o, p, g00 - g10, g01 - g11)
                _store_gradient_row(gh, 3, o, p, -g10, -g11)


@nb.njit(inline="always")
def _store_gradient_row(gh, a, o, p, c0, c1):
    """Row a of (A g) A^T from row a of A g: (c0, c0 + c1, c0 - c1, -c1)."""
    gh[4 * a + 0, o, p] = c0
    gh[4 * a + 1, o, p] = c0 + c1
    gh[4 * a + 2, o, p] = c0 - c1
    gh[4 * a + 3, o, p] = -c1

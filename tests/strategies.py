"""Hypothesis strategies shared by the tests: convolution cases of small, often odd, sizes."""
from hypothesis import assume, strategies as st


@st.composite
def conv_case(draw, max_batch=2, max_channels=3, max_kernel=4, max_size=9):
    """(n, c_in, c_out, k, stride, padding, h, w, seed) with a valid convolution (h + 2p >= k, w + 2p >= k)."""
    n, c_in, c_out = draw(st.integers(1, max_batch)), draw(st.integers(1, max_channels)), draw(st.integers(1, max_channels))
    k, s = draw(st.integers(1, max_kernel)), draw(st.integers(1, 3))
    p = draw(st.integers(0, k - 1))
    h, w = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    assume(h + 2 * p >= k and w + 2 * p >= k)
    return n, c_in, c_out, k, s, p, h, w, draw(st.integers(0, 2**31 - 1))

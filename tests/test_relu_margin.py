"""The test data's guard against ReLU's kink (tests/relu_margin.py) finds a unit put exactly on it."""
import numpy as np
import pytest

import redcore
from redcore.ops.conv import conv2d_reference
from relu_margin import CLEAR_OF_KINK, draw_clear_of_kinks, relu_margin


def test_a_unit_on_the_kink_is_found_and_its_data_refused():
    net = redcore.REDNet(depth=4, filters=3, backend="numpy", dtype="float64", seed=0)
    x = np.random.default_rng(0).random((1, 1, 9, 9))
    assert relu_margin(net, x) > 0
    # conv1's bias puts the unit (channel 0, row 4, column 4) at exactly 0 before its ReLU
    z = conv2d_reference(x, net.params["conv1.weight"], 1, 1)[0, 0, 4, 4]
    net.params["conv1.bias"][0] = -z
    assert relu_margin(net, x) < 1e-15
    with pytest.raises(AssertionError, match="within float32 rounding of the kink"):
        draw_clear_of_kinks(net, lambda: x, tries=3)
    net.params["conv1.bias"][0] = -z + 0.1        # and moved clear of it, the same data is taken
    assert relu_margin(net, x) > CLEAR_OF_KINK
    assert draw_clear_of_kinks(net, lambda: x) is x

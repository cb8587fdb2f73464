"""encode / predict: the two calls a user's own script needs around a netx file."""
import numpy as np
import pytest
import torch

import rssnn_deploy  # noqa: F401
from rssnn_deploy.inference import encode, predict
from rssnn_deploy.netx.writer import write_netx
from rssnn_deploy.sim.simulator import Simulator
from rssnn_deploy.spec import InputError


def _with_scale(spec, scale):
    return spec.with_meta(input_scale=scale, steps=4, readout="membrane")


def test_encode_rounds_half_up_not_to_even(make_dense):
    spec = _with_scale(make_dense((4, 6, 3), seed=1), 5.0)
    x = np.array([[0.1, 0.3, 0.5, 0.7]])            # x·5 = 0.5, 1.5, 2.5, 3.5
    assert encode(x, spec).tolist() == [[1, 2, 3, 4]]
    assert np.round(x * 5).tolist() == [[0.0, 2.0, 2.0, 4.0]]   # what the docs warn about
    assert spec.input_scale == 5.0


def test_predict_matches_the_simulator_for_pixels_bias_and_files(make_dense, tmp_path):
    spec = _with_scale(make_dense((4, 6, 3), seed=2), 700.0)
    path = write_netx(spec, tmp_path / "m.net")
    x = np.random.default_rng(0).random((9, 4))
    bias = encode(x, path)
    expected = Simulator(spec).run(torch.as_tensor(bias)).predictions("membrane").numpy()
    assert np.array_equal(predict(path, x), expected)
    assert np.array_equal(predict(spec, bias), expected)
    assert predict(path, x).dtype == np.int64


@pytest.mark.lava
@pytest.mark.slow
def test_predict_on_lava_equals_sim(make_dense, tmp_path):
    spec = _with_scale(make_dense((4, 6, 3), seed=3), 700.0)
    path = write_netx(spec, tmp_path / "m.net")
    x = np.random.default_rng(1).random((3, 4))
    assert np.array_equal(predict(path, x, backend="lava"), predict(path, x))


def test_bad_inputs_are_one_line(make_dense):
    spec = _with_scale(make_dense((4, 6, 3), seed=1), 5.0)
    with pytest.raises(InputError, match="must lie in \\[0, 1\\]"):
        encode(np.full((1, 4), 2.0), spec)
    with pytest.raises(InputError, match="dtype"):
        predict(spec, np.array([["a"] * 4]))

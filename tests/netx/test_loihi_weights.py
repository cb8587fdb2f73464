"""loihi_weights equals Lava's weight handling value for value.

The ``lava``-marked tests compare with lava-dl's ``netx.utils.optimize_weight_bits`` and
lava-nc's ``weightutils`` (results, dtypes and netx's printed warnings): exhaustively
over the 8-bit range (every single weight and every extreme of a pair), over every
sign mode and bit width for clipping and truncation, and on random matrices for the
whole chain the simulator uses. The unmarked tests pin the known edge cases by value,
so they also run where Lava is not installed.
"""
from __future__ import annotations

import contextlib
import io
from typing import Callable, Tuple

import numpy as np
import pytest

from rssnn_deploy.netx import loihi_weights as lw
from rssnn_deploy.sim.simulator import effective_dense_weights

#: weights at the edges of Loihi's 8-bit synapse and of the clip rules
EDGES = (-600, -257, -256, -255, -129, -128, -127, -1, 0, 1, 127, 128, 254, 255, 256, 600)


def _chain(weight: np.ndarray, optimize, sign_of, clip, truncate) -> Tuple[np.ndarray, int]:
    """netx's optimisation then Lava's Dense model's clip and truncation."""
    w_opt, bits, exp, _ = optimize(weight)
    mode = sign_of(w_opt)
    w = truncate(clip(w_opt, mode, num_bits=8), mode, bits)
    return np.asarray(w, dtype=np.int64), int(exp)


def _quiet(fn: Callable, *args):
    """``fn(*args)`` and what it printed; exceptions are returned, not raised."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), np.errstate(divide="ignore", invalid="ignore"):
        try:
            result = fn(*args)
        except (ValueError, OverflowError) as err:
            result = type(err)
    return result, out.getvalue()


# ----------------------------------------------------------------------------------
# Known values (no Lava needed)
# ----------------------------------------------------------------------------------

def test_known_edge_cases():
    chain = (lw.optimize_weight_bits, lw.determine_sign_mode, lw.clip_weights,
             lw.truncate_weights)
    with contextlib.redirect_stdout(io.StringIO()):
        assert _chain(np.array([[-256, -2, -4, -100]]), *chain)[0].tolist() == \
            [[-254, -2, -4, -100]]                                  # all-inhibitory −256
        w, e = _chain(np.array([[0, 100, 300]]), *chain)
        assert w.tolist() == [[0, 0, 0]] and e == 1                 # all-excitatory > 255
        w, e = _chain(np.array([[-6, 3, -4, 12]]), *chain)
        assert (w * 2.0 ** e).tolist() == [[-6, 3, -4, 12]] and e == -4


def test_optimize_reports_like_netx_and_refuses_zero_matrix():
    lines = []
    opt = lw.optimize_weight_bits(np.array([-5, 300]), report=lines.append)
    assert opt.weight.tolist() == [-5, 254] and opt.sign_mode == lw.SignMode.MIXED
    assert lines == ["[WARNING] weight matrix cannot be optimized to fit in synapse.",
                     "         (max weight too large: 300, clipped to 254)"]
    with pytest.raises(ValueError, match="all weights are zero"):
        lw.optimize_weight_bits(np.zeros((2, 2), dtype=int))


def test_clip_and_truncate_by_hand():
    w = np.array([-300, -256, -255, -3, 0, 3, 255, 256])
    assert lw.clip_weights(w, lw.SignMode.MIXED, 8).tolist() == \
        [-256, -256, -255, -3, 0, 3, 255, 255]
    assert lw.clip_weights(-np.abs(w), lw.SignMode.INHIBITORY, 8).tolist() == \
        [-255, -255, -255, -3, 0, -3, -255, -255]
    assert lw.truncate_weights(np.array([-7, 7, 255]), lw.SignMode.EXCITATORY, 6).tolist() \
        == [-8, 4, 252]
    assert lw.truncate_weights(np.array([-7, -255]), lw.SignMode.INHIBITORY, 6).tolist() \
        == [-4, -252]


def test_simulator_uses_the_restated_chain():
    rng = np.random.default_rng(3)
    w = rng.integers(-200, 201, size=(7, 9))
    assert all(np.array_equal(a, b) for a, b in zip(
        effective_dense_weights(w),
        _chain(w, lw.optimize_weight_bits, lw.determine_sign_mode, lw.clip_weights,
               lw.truncate_weights)))


# ----------------------------------------------------------------------------------
# Equality with Lava's own functions
# ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lava_fns():
    """lava-dl's netx optimiser and lava-nc's weightutils."""
    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.utils import weightutils
    return optimize_weight_bits, weightutils


def _same_optimisation(weight: np.ndarray, lava_optimize) -> None:
    ours, ours_out = _quiet(lambda w: tuple(lw.optimize_weight_bits(w)), weight)
    theirs, theirs_out = _quiet(lava_optimize, weight)
    assert ours_out == theirs_out, weight
    if isinstance(theirs, type):
        assert ours is ValueError and theirs is OverflowError, weight   # all-zero matrix
        return
    (w1, b1, e1, m1), (w2, b2, e2, m2) = ours, theirs
    assert w1.dtype == w2.dtype and np.array_equal(w1, w2), weight
    assert (b1, e1, int(m1)) == (b2, e2, int(m2)), weight
    assert type(b1) is type(b2) is int and type(e1) is type(e2) is int


@pytest.mark.lava
def test_optimize_equals_netx_on_every_single_weight(lava_fns):
    for value in range(-1024, 1025):
        _same_optimisation(np.array([[value]]), lava_fns[0])


@pytest.mark.lava
def test_optimize_equals_netx_on_every_edge_pair(lava_fns):
    """Every value in [−300, 300] paired with every edge value: all (max, min) regimes."""
    for edge in EDGES:
        for value in range(-300, 301):
            _same_optimisation(np.array([edge, value]), lava_fns[0])


@pytest.mark.lava
@pytest.mark.slow
def test_optimize_equals_netx_on_every_8bit_pair(lava_fns):
    """Every pair of weights in [−256, 255] (262,144 matrices)."""
    for a in range(-256, 256):
        for b in range(-256, 256):
            _same_optimisation(np.array([a, b]), lava_fns[0])


@pytest.mark.lava
def test_sign_mode_clip_truncate_equal_lava_exhaustively(lava_fns):
    wu = lava_fns[1]
    values = np.arange(-1100, 1101)
    for sub in (values, values[values >= 0], values[values <= 0], np.zeros(3, int)):
        assert lw.determine_sign_mode(sub).value == wu.determine_sign_mode(sub).value
    for mode in lw.SignMode:
        theirs_mode = wu.SignMode(mode.value)
        for bits in range(0, 13):
            for learning in (False, True):
                ours = lw.clip_weights(values, mode, bits, learning)
                theirs = wu.clip_weights(values, theirs_mode, bits, learning)
                assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), \
                    (mode, bits, learning)
        for max_bits in (8, 9):
            for bits in range(-3, 45):          # shift counts outside [0, 32) included
                ours = lw.truncate_weights(values, mode, bits, max_bits)
                theirs = wu.truncate_weights(values, theirs_mode, bits, max_bits)
                assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), \
                    (mode, bits, max_bits)


def _random_matrices(count: int, seed: int):
    """Matrices of every regime: mixed, one-signed, small, beyond 8 bits, shared 2^k."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        shape = tuple(int(s) for s in rng.integers(1, 12, size=int(rng.integers(1, 3))))
        lo, hi = sorted(int(v) for v in rng.integers(-700, 700, size=2))
        w = rng.integers(lo, hi + 1, size=shape) << int(rng.integers(0, 4))
        if rng.random() < 0.2:
            w = np.where(rng.random(shape) < 0.5, 0, w)
        yield w


@pytest.mark.lava
def test_whole_chain_equals_lava_on_random_matrices(lava_fns):
    optimize, wu = lava_fns
    for w in _random_matrices(600, seed=0):
        theirs, theirs_out = _quiet(_chain, w, optimize, wu.determine_sign_mode,
                                    wu.clip_weights, wu.truncate_weights)
        ours, ours_out = _quiet(_chain, w, lw.optimize_weight_bits, lw.determine_sign_mode,
                                lw.clip_weights, lw.truncate_weights)
        assert ours_out == theirs_out, w
        if isinstance(theirs, type):
            assert not w.any()
            continue
        assert np.array_equal(ours[0], theirs[0]) and ours[1] == theirs[1], w

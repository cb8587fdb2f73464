"""Run a deployed network on your own inputs: ``encode`` pixels, ``predict`` classes.

These are the two calls a user's own script needs around a netx file, whatever runs it
(our simulator, Lava, a chip):

* :func:`encode` turns pixels ``x`` in [0, 1] into the input layer's bias mantissas
  exactly as every backend receives them: ``floor(x·input_scale + 0.5)``, round half
  *up*. ``numpy.round`` rounds half to *even* and gives different integers whenever
  ``x·input_scale`` ends in .5, so a script that wants the chip's numbers calls this.
* :func:`predict` runs the file on a backend and returns the class of each sample, the
  argmax of the file's readout (``meta["readout"]``: the output layer's membrane v
  after ``spec.run_steps`` steps, or its spike counts); ties go to the lowest index.

``net`` is a path to a netx file or a ``NetworkSpec`` already read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from rssnn_deploy.spec import InputError, NetworkSpec, encode_input

__all__ = ["encode", "predict"]

NetLike = Union[str, Path, NetworkSpec]


def _spec(net: NetLike) -> NetworkSpec:
    if isinstance(net, NetworkSpec):
        return net
    from rssnn_deploy.netx.reader import read_netx
    return read_netx(net)


def encode(x: np.ndarray, net: NetLike) -> np.ndarray:
    """Bias mantissas (N, *input_shape) int64 for pixels ``x`` (N, ...) in [0, 1]:
    ``floor(x · net.input_scale + 0.5)``.

    Examples
    --------
    >>> import numpy as np
    >>> from rssnn_deploy.spec import example_network
    >>> spec = example_network()
    >>> encode(np.array([[0.5, 0.0], [0.0, 1.0]]), spec).tolist()
    [[11, 0], [0, 22]]
    """
    return encode_input(_spec(net), np.asarray(x))


def predict(net: NetLike, x: np.ndarray, backend: str = "sim",
            readout: Optional[str] = None, steps: Optional[int] = None) -> np.ndarray:
    """Predicted classes (N,) int64 of the deployed network on ``x``.

    ``x`` is pixels in [0, 1] (float, encoded with :func:`encode`), integer bias
    mantissas shaped like the input layer, or spike trains (N, T, ...) for a network
    without an input neuron that takes no pixels (event data). Floats are pixels, flat or
    not, for a network with an input neuron or an input scale: an analog-input file has
    no input neuron yet takes pixels (as graded spikes), so the neuron alone cannot tell.
    ``backend`` is ``"sim"`` (our bit-exact simulator), ``"lava"`` (stock netx on Lava's
    fixed-point CPU simulation) or ``"loihi"``.

    Examples
    --------
    >>> import numpy as np
    >>> from rssnn_deploy.spec import example_network
    >>> spec = example_network(readout=True)
    >>> predict(spec, np.array([[1.0, 0.0], [0.0, 1.0]])).tolist()   # argmax of the readout v
    [0, 1]
    """
    from rssnn_deploy.backends import get_backend
    from rssnn_deploy.backends.base import split_inputs
    spec = _spec(net)
    x = np.asarray(x)
    if x.dtype.kind == "f":
        if (x.ndim == len(spec.input_layer.shape) + 1 or spec.input_layer.neuron is not None
                or spec.input_scale is not None):
            x = encode_input(spec, x)
        else:
            x = (x != 0).astype(np.int64)       # spike trains given as floats
    elif x.dtype.kind == "b":
        x = x.astype(np.int64)
    elif x.dtype.kind not in "iu":
        raise InputError(f"inputs must be float pixels, integer mantissas or spikes, got "
                         f"dtype {x.dtype}")
    bias, spikes = split_inputs(spec, x)
    kind = readout or spec.meta.get("readout", "membrane")
    runner = get_backend(backend)
    source = net if not isinstance(net, NetworkSpec) else spec
    result = runner.run(source, bias, steps=steps, spikes=spikes)
    return result.predictions(kind).cpu().numpy().astype(np.int64)

"""Run an exported network in snnTorch or Norse and predict what the chip predicts.

A NIR graph says what a network computes, not how to drive it. The module a consumer's
importer builds takes one input per call and keeps its state between calls; to predict
as the chip does it must get the chip's input, the encoded pixels
(:func:`rssnn_deploy.encode`: the input layer's bias mantissas, the same numbers every
step), for ``spec.steps`` steps (the consumers have no one-step delay per layer, so not
``spec.run_steps``), and the class is the argmax of the readout layer the file names
(``meta["readout"]``): its membrane v after the last step, or its spike count.
:func:`run_imported` does exactly that. The ``.nir`` files ``export-nir`` writes carry
the spec's meta (steps, input scale, readout) in ``metadata["rssnn_meta"]``, so the
file alone is enough.

:func:`import_into` calls the library's own importer (snnTorch 1.0:
``snntorch.import_nir.import_from_nir(graph)``; Norse 1.1:
``norse.torch.from_nir(graph, dt=graph.metadata["dt"], ignore_warnings=True)``, the
warning being the ``IF`` r note in ``targets``; Norse's own 1e-3 for a graph without dt). snnTorch's importer prints "replace rnn
subgraph with nirgraph" on every call, which is not about anything wrong with the file;
the print is swallowed here.

Both libraries are optional (``requirements-nodeps.txt``): a missing one is a one-line
:class:`~rssnn_deploy.dependencies.MissingDependency` naming the install command.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union, get_args

import numpy as np

from rssnn_deploy.dependencies import MissingDependency
from rssnn_deploy.errors import UserError
from rssnn_deploy.fileio import PathLike
from rssnn_deploy.interop.targets import NORSE_DT
from rssnn_deploy.spec import NetworkSpec

if TYPE_CHECKING:
    import torch

__all__ = ["Library", "LIBRARIES", "import_into", "run_imported"]

#: the consumers whose importers this module drives (the ``export-nir --for`` forms).
Library = Literal["snntorch", "norse"]
LIBRARIES = get_args(Library)
#: what ``make env`` installs for each (without dependencies: see requirements-nodeps.txt)
_INSTALL = {"snntorch": "pip install --no-deps snntorch==1.0.0 nirtorch==2.6",
            "norse": "pip install --no-deps norse==1.1.0 nirtorch==2.6"}


def _require(library: str, module: str) -> Any:
    """``module`` of ``library``, or a one-line error naming its install command."""
    if library not in LIBRARIES:
        raise UserError(f"library must be one of {', '.join(LIBRARIES)}, not {library!r}")
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] not in (library, "nirtorch"):
            raise
        raise MissingDependency(f"running a NIR file in {library} needs {err.name}, which "
                                f"is not installed; add it with: {_INSTALL[library]}") from None


def import_into(library: Library, nir_file: Union[PathLike, Any]) -> "torch.nn.Module":
    """The ``torch.nn.Module`` ``library``'s own importer builds from ``nir_file`` (best
    written by ``export-nir --for LIBRARY``; a ``nir.NIRGraph`` in memory works too),
    without the importer's stray prints.

    Examples
    --------
    >>> import tempfile
    >>> from rssnn_deploy.interop.nir_export import write_nir
    >>> from rssnn_deploy.spec import example_network
    >>> path = write_nir(example_network(readout=True), tempfile.mkdtemp() + "/ex.nir",
    ...                  target="snntorch")
    >>> type(import_into("snntorch", path)).__mro__[1].__name__      # prints nothing
    'GraphModule'
    """
    from rssnn_deploy.interop.nir_import import read_graph
    graph = read_graph(nir_file) if isinstance(nir_file, (str, os.PathLike)) else nir_file
    if library == "norse":
        norse = _require("norse", "norse.torch")
        dt = float((graph.metadata or {}).get("dt", NORSE_DT))
        return norse.from_nir(graph, dt=dt, ignore_warnings=True)
    importer = _require(library, "snntorch.import_nir")
    with contextlib.redirect_stdout(io.StringIO()):
        return importer.import_from_nir(graph)


def _library_of(net: "torch.nn.Module") -> str:
    """Which consumer built ``net`` (the package its neuron modules come from)."""
    for module in net.modules():
        top = type(module).__module__.split(".")[0]
        if top in LIBRARIES:
            return top
    raise UserError(f"{type(net).__name__}: not a network snnTorch or Norse imported "
                    f"(no neuron module of either)")


def _source_spec(source: Union[PathLike, NetworkSpec]) -> NetworkSpec:
    if isinstance(source, NetworkSpec):
        return source
    if Path(source).suffix == ".nir":
        from rssnn_deploy.interop.nir_import import read_nir
        return read_nir(source)
    from rssnn_deploy.netx.reader import read_netx
    return read_netx(source)


def _membrane(library: str, net: "torch.nn.Module", state: Any, name: str) -> "torch.Tensor":
    """The readout layer's membrane v after the last step: snnTorch keeps it in the
    neuron module (``mem``), Norse in the state the network returns (the last of the
    layer's states, the ``v`` of its LIF or IF part)."""
    if library == "snntorch":
        return getattr(net, name).mem
    layer = state.state[name]
    while isinstance(layer, tuple) and not hasattr(layer, "_fields"):
        layer = layer[-1]
    return layer.v


def run_imported(net: "torch.nn.Module", x: np.ndarray,
                 source: Union[PathLike, NetworkSpec]) -> np.ndarray:
    """Predicted classes (N,) of a network :func:`import_into` built, on pixels ``x``
    (N, ...) in [0, 1], fed as the chip is fed (module notes); ties go to the lowest
    index, as on the chip. ``source`` says how to feed it: the ``.nir`` file (its
    metadata carries steps, input scale and readout), the ``.net`` file it was exported
    from, or a ``NetworkSpec``.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from rssnn_deploy.inference import predict
    >>> from rssnn_deploy.interop.nir_export import write_nir
    >>> from rssnn_deploy.spec import example_network
    >>> spec = example_network(readout=True)
    >>> path = write_nir(spec, tempfile.mkdtemp() + "/ex.nir", target="norse")
    >>> x = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> run_imported(import_into("norse", path), x, spec).tolist(), predict(spec, x).tolist()
    ([0, 1], [0, 1])
    """
    import torch

    from rssnn_deploy.inference import encode
    from rssnn_deploy.sim.result import argmax_first
    library = _library_of(net)
    spec = _source_spec(source)
    inputs = torch.as_tensor(encode(x, spec), dtype=torch.float32)
    if library == "snntorch":                 # its neurons keep their state themselves
        _require("snntorch", "snntorch.utils").reset(net)
    state, counts = None, torch.zeros(())
    with torch.no_grad():
        for _ in range(spec.steps):
            out, state = net(inputs, state)
            counts = counts + out
    readout = spec.meta.get("readout", "membrane")
    name = f"layer{len(spec.layers) - 1}"
    scores = counts if readout == "spike_count" else _membrane(library, net, state, name)
    return argmax_first(scores.reshape(len(inputs), -1)).numpy().astype(np.int64)

"""``NetworkSpec`` → netx HDF5 that stock ``lava.lib.dl.netx.hdf5.Network`` loads, written
atomically (see ``rssnn_deploy/netx/README.md``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Union

import h5py
import numpy as np

from rssnn_deploy.fileio import atomic_path, jsonable
from rssnn_deploy.netx.layout import PathLike, check_structure
from rssnn_deploy.spec import (
    DLIF_NEURON_TYPE,
    CubaNeuron,
    ForeignNeuron,
    LayerSpec,
    NetworkSpec,
    conv_bias_to_netx,
)

__all__ = ["write_netx"]


def write_netx(spec: NetworkSpec, path: PathLike) -> Path:
    """Write ``spec`` as a netx file atomically and return the final path.

    Examples
    --------
    >>> import tempfile, pathlib, h5py
    >>> import numpy as np
    >>> from rssnn_deploy.spec import example_network
    >>> spec = example_network()
    >>> path = write_netx(spec, pathlib.Path(tempfile.mkdtemp()) / "net.net")
    >>> with h5py.File(path) as f:            # what stock lava-dl netx reads
    ...     sorted(f["layer"].keys()), f["layer/1/type"][0]
    (['0', '1'], b'dense')
    """
    path = Path(path)
    check_structure(spec, path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        layer_group = handle.create_group("layer")
        for index, layer in enumerate(spec.layers):
            _write_layer(layer_group.create_group(str(index)), layer)
        _write_meta(handle, spec.meta)
    return path


def _write_layer(group: h5py.Group, layer: LayerSpec) -> None:
    group.create_dataset("type", data=np.array([layer.kind.encode("ascii")], dtype="S10"))
    group.create_dataset("shape", data=np.asarray(layer.shape, dtype=np.int64))
    if layer.weight is not None:
        group.create_dataset("weight", data=_file_dtype(layer.weight))
    if layer.weight_rec is not None:
        group.create_dataset("weight_rec", data=_file_dtype(layer.weight_rec))
    if layer.bias is not None:
        bias = conv_bias_to_netx(layer.bias, layer.shape) if layer.kind == "conv" else layer.bias
        group.create_dataset("bias", data=_file_dtype(bias))
    if layer.delay is not None:
        group.create_dataset("delay", data=np.asarray(layer.delay))
    if layer.kind in ("dense", "dense_rec") and layer.weight is not None:
        group.create_dataset("outFeatures", data=int(layer.weight.shape[0]))
        group.create_dataset("inFeatures", data=int(layer.weight.shape[1]))
    if layer.kind == "conv":
        group.create_dataset("outChannels", data=int(layer.weight.shape[0]))
        group.create_dataset("inChannels", data=int(layer.weight.shape[1] * layer.groups))
        group.create_dataset("kernelSize", data=np.asarray(layer.weight.shape[2:]))
        for name in ("stride", "padding", "dilation"):
            group.create_dataset(name, data=np.asarray(getattr(layer, name), dtype=np.int64))
        group.create_dataset("groups", data=int(layer.groups))
    for name, value in layer.passthrough.items():
        _write_raw(group, name, value)
    if layer.neuron is not None:
        _write_neuron(group, layer.neuron)


def _write_neuron(layer_group: h5py.Group, neuron: Union[CubaNeuron, ForeignNeuron]) -> None:
    group = layer_group.create_group("neuron")
    if isinstance(neuron, ForeignNeuron):
        _write_string(group, "type", neuron.type)
        for name, value in neuron.fields.items():
            _write_raw(group, name, value)
        return
    _write_string(group, "type",
                  DLIF_NEURON_TYPE if neuron.gain_mant is not None else neuron.netx_type)
    group.create_dataset("iDecay", data=int(neuron.i_decay))
    group.create_dataset("vDecay", data=int(neuron.v_decay))
    group.create_dataset("vThMant", data=int(neuron.vth_mant))
    group.create_dataset("refDelay", data=int(neuron.ref_delay))
    group.create_dataset("gradedSpike", data=bool(neuron.graded_spike))
    for name, value in neuron.passthrough:
        _write_raw(group, name, value)
    if neuron.gain_mant is not None:
        group.create_dataset("gainMant", data=np.asarray(neuron.gain_mant, dtype=np.int64))
        group.create_dataset("gainExp", data=int(neuron.gain_exp))


def _write_meta(handle: h5py.File, meta: Dict[str, Any]) -> None:
    meta = dict(meta)
    simulation = meta.pop("simulation", None)
    if simulation:
        group = handle.create_group("simulation")
        for name, value in simulation.items():
            _write_raw(group, name, value)
    if meta:
        handle.create_group("rssnn").attrs["meta"] = json.dumps(meta, sort_keys=True,
                                                                default=jsonable)


def _write_string(group: h5py.Group, name: str, value: str) -> None:
    group.create_dataset(name, data=value.encode("ascii"), dtype=h5py.string_dtype("ascii"))


def _write_raw(group: h5py.Group, name: str, value: Any) -> None:
    if isinstance(value, dict):
        sub = group.create_group(name)
        for key, item in value.items():
            _write_raw(sub, key, item)
    elif isinstance(value, (bytes, str)):
        _write_string(group, name, value.decode("ascii") if isinstance(value, bytes) else value)
    else:
        group.create_dataset(name, data=value)


def _file_dtype(values: np.ndarray) -> np.ndarray:
    """Integers as float32 when exactly representable (as slayer writes them)."""
    values = np.asarray(values)
    if np.issubdtype(values.dtype, np.integer) and np.abs(values).max(initial=0) < (1 << 24):
        return values.astype(np.float32)
    return values

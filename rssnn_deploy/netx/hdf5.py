"""NetworkSpec ⇄ lava-dl netx HDF5 files.

The file format is handled here and nowhere else. Writing produces exactly what stock
``lava.lib.dl.netx.hdf5.Network`` reads (DESIGN §4): groups ``layer/0 … layer/n−1``,
``type`` as a one-element bytes array, ``shape`` in (C, H, W) order, CUBA neuron fields
``iDecay``/``vDecay``/``vThMant``/``refDelay``/``gradedSpike``, a per-neuron conv bias in
the block's (W, H, C) order. Network metadata lives in a ``/rssnn`` group, which netx
never opens.

A layer with exact DLIF per-step gains is written with the neuron type
``RSSNN_DLIF`` (``spec.DLIF_NEURON_TYPE``: the CUBA fields plus ``gainMant`` and
``gainExp``). Stock netx refuses that type when it builds the network, so such a file
cannot run there with its gains silently dropped; the project's reader, simulator and
Lava DLIF process run it. Files written before this type existed keep the gains in a
``layer/i/rssnn`` group beside a CUBA neuron; they are still read (with a warning, since
stock netx runs them without their gains).

Reading accepts any netx file, ours or lava-dl's own: layer groups are ordered
numerically (h5py lists ``10`` before ``2``), weights and biases are taken as netx takes
them (``astype(int)``, i.e. truncation toward zero), neuron types netx knows but the
project does not simulate are kept as ``ForeignNeuron``, and every field netx ignores is
kept in ``passthrough`` so a file re-exports to an equivalent one. A damaged or foreign
file raises ``NetxFormatError`` naming the file, the layer and the field.

Every field is checked before use for presence, type, shape and finiteness, and against
sizes no network can have (``MAX_*`` below: values that would overflow the simulator's
arithmetic or allocate without bound), so the simulator, the mapper and Lava can trust
a spec read from disk. The tighter limits of a particular chip are the profile's.

The reader's limits are Lava's (checked by running Lava, see tests/test_bitexact_lava.py):
decays outside [0, 4096] and negative or huge thresholds run in Lava and are read (within
``spec.DECAY_LIMIT`` / ``spec.VTH_LIMIT``, where the simulator stays exact); conv biases
follow netx's broadcasting rule and anything netx refuses is refused here. A CUBA neuron
with ``messageBits`` (netx hands the HDF5 dataset itself to Lava, which then fails to
build) or ``gradedSpike = True`` (netx ignores it; Lava's LIF sends binary spikes only)
is refused rather than run as something the file did not ask for.

Writes are atomic (``fileio.atomic_path``): a failed export never leaves half a file.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import h5py
import numpy as np

from rssnn_deploy.fileio import atomic_path, jsonable
from rssnn_deploy.spec import (DECAY_LIMIT, DLIF_NEURON_TYPE, FOREIGN_LAYER_KINDS,
                               LAYER_KINDS, NETX_DEFAULT_NEURON, VTH_LIMIT, BiasLayoutError,
                               CubaNeuron, ForeignNeuron, LayerSpec, NetworkSpec,
                               conv_bias_from_netx,
                               conv_bias_per_neuron, conv_bias_to_netx)
from rssnn_deploy.errors import UserError

PathLike = Union[str, os.PathLike]

_CUBA_TYPES = ("CUBA", "LOIHI")
_CUBA_FIELDS = ("type", "iDecay", "vDecay", "vThMant", "refDelay", "gradedSpike")
_GAIN_FIELDS = ("gainMant", "gainExp")
_CONV_DERIVED = ("inChannels", "outChannels", "kernelSize")
_DENSE_DERIVED = ("inFeatures", "outFeatures")
_HANDLED = {"type", "shape", "neuron", "weight", "weight_rec", "bias", "delay", "stride",
            "padding",
            "dilation", "groups", "rssnn", *_CONV_DERIVED, *_DENSE_DERIVED}


#: sizes beyond any deployable network: a value past these is a damaged file.
MAX_STEPS = 1 << 16          #: rssnn/meta steps (T) per sample
MAX_NEURONS = 1 << 26        #: neurons in one layer
MAX_INT_FIELD = (1 << 31) - 1  #: |weight|, |bias|, neuron fields: Lava keeps them in int32
MAX_GAIN_MANT = (1 << 16) - 1  #: |gainMant| (a profile allows 8 bits)
MAX_GAIN_EXP = 31            #: gainExp in [0, 31]: gain = gainMant / 2**gainExp
READOUTS = ("membrane", "spike_count")


class NetxFormatError(UserError, ValueError):
    """A netx file (or a spec about to be written) that breaks the format."""


# --------------------------------------------------------------------------- reading

def read_netx(path: PathLike) -> NetworkSpec:
    """Load any netx HDF5 file into a ``NetworkSpec``; raise ``NetxFormatError`` if bad."""
    path = Path(path)
    if not path.is_file():
        raise NetxFormatError(f"{path}: no such file")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise NetxFormatError(f"{path}: not a readable HDF5 file ({err})") from None
    with handle:
        try:
            if "layer" not in handle or not isinstance(handle["layer"], h5py.Group):
                raise NetxFormatError(f"{path}: no 'layer' group; not a netx network file")
            layers = [_read_layer(path, index, group)
                      for index, group in _ordered_layers(path, handle["layer"])]
            meta = _read_meta(path, handle)
        except NetxFormatError:
            raise
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as err:
            # h5py on a damaged file fails wherever the damage is hit
            raise NetxFormatError(f"{path}: damaged HDF5 file ({type(err).__name__}: "
                                  f"{' '.join(str(err).split())[:120]})") from None
    spec = NetworkSpec(layers=layers, meta=meta)
    _check_structure(spec, path)
    _check_gain_lengths(spec, path)
    return spec


def _ordered_layers(path: Path, group: h5py.Group) -> List[Tuple[int, h5py.Group]]:
    keys = list(group.keys())
    if not keys:
        raise NetxFormatError(f"{path}: 'layer' group is empty")
    if not all(k.isdigit() for k in keys):
        bad = [k for k in keys if not k.isdigit()]
        raise NetxFormatError(f"{path}: layer names must be 0..n-1, found {bad}")
    indices = sorted(int(k) for k in keys)
    if indices != list(range(len(indices))):
        raise NetxFormatError(f"{path}: layers must be numbered 0..{len(indices) - 1} "
                              f"without gaps, found {indices}")
    return [(i, group[str(i)]) for i in indices]


def _read_layer(path: Path, index: int, group: h5py.Group) -> LayerSpec:
    where = f"{path}: layer/{index}"
    kind = _read_str(group, "type", where)
    if kind not in LAYER_KINDS + FOREIGN_LAYER_KINDS:
        raise NetxFormatError(f"{where}/type: unknown layer type {kind!r}")
    shape = _read_shape(group, where)
    fields: Dict[str, Any] = dict(kind=kind, shape=shape)
    if "neuron" in group:
        fields["neuron"] = _read_neuron(group["neuron"], f"{where}/neuron")
    elif kind == "dense":
        fields["neuron"] = NETX_DEFAULT_NEURON
    elif kind == "dense_rec":
        raise NetxFormatError(f"{where}/neuron: missing (netx builds dense_rec layers "
                              "from the neuron group)")
    readers: Dict[str, Callable[[h5py.Group, str, Dict[str, Any]], None]] = {
        "dense": _read_dense, "conv": _read_conv, "dense_rec": _read_dense}
    if kind in readers:
        readers[kind](group, where, fields)
    passthrough = {k: _read_raw(group[k]) for k in group.keys() if k not in _HANDLED}
    if kind == "input":  # netx's scalar input transform: kept, not interpreted
        passthrough.update({k: _read_raw(group[k]) for k in ("weight", "bias") if k in group})
    fields["passthrough"] = passthrough
    _read_gains(group, where, fields)
    return LayerSpec(**fields)


def _read_dense(group: h5py.Group, where: str, fields: Dict[str, Any]) -> None:
    weight = _read_int_array(group, "weight", where)
    out_features = int(np.prod(fields["shape"]))
    if weight.ndim == 1:  # netx reshapes a flat weight to (out, -1)
        if weight.size % out_features:
            raise NetxFormatError(f"{where}/weight: {weight.size} values do not split "
                                  f"into {out_features} output rows")
        weight = weight.reshape(out_features, -1)
    if weight.ndim != 2 or weight.shape[0] != out_features:
        raise NetxFormatError(f"{where}/weight: shape {weight.shape} does not match "
                              f"{out_features} output neurons (expected (out, in))")
    fields["weight"] = weight
    if fields["kind"] == "dense_rec":
        _read_recurrent(group, where, fields, out_features)
    _read_optional_vector(group, "bias", where, fields, out_features)
    if "bias" in fields and np.ndim(group["bias"][()]) > 1:
        raise NetxFormatError(f"{where}/bias: shape {np.shape(group['bias'][()])}; netx "
                              f"hands a dense bias to Lava as is, so it must be 1-D "
                              f"(1 or {out_features} values)")
    if "delay" in group:
        fields["delay"] = _read_delay(group, where, weight.shape)


def _read_recurrent(group: h5py.Group, where: str, fields: Dict[str, Any],
                    out_features: int) -> None:
    """netx's ``dense_rec``: ``weight_rec`` (F, F), no delays (see ``create_dense``)."""
    rec = _read_int_array(group, "weight_rec", where)
    if rec.ndim == 1 and rec.size == out_features * out_features:
        rec = rec.reshape(out_features, -1)
    if rec.shape != (out_features, out_features):
        raise NetxFormatError(f"{where}/weight_rec: shape {rec.shape}; a recurrent layer of "
                              f"{out_features} neurons needs ({out_features}, {out_features})")
    if "delay" in group:
        raise NetxFormatError(f"{where}/delay: netx's RecurrentDense with delays drops the "
                              "weight exponent and reuses the input delays for the recurrent "
                              "synapses; dense_rec layers with delays are not supported")
    fields["weight_rec"] = rec


def _read_conv(group: h5py.Group, where: str, fields: Dict[str, Any]) -> None:
    weight = _read_int_array(group, "weight", where)
    if weight.ndim == 5 and weight.shape[-1] == 1:  # slayer stores (out, in, kH, kW, 1)
        weight = weight[..., 0]
    if weight.ndim != 4:
        raise NetxFormatError(f"{where}/weight: expected (out, in, kH, kW), "
                              f"found shape {weight.shape}")
    if len(fields["shape"]) != 3 or fields["shape"][0] != weight.shape[0]:
        raise NetxFormatError(f"{where}/shape: {fields['shape']} does not match "
                              f"{weight.shape[0]} output channels (expected (C, H, W))")
    fields["weight"] = weight
    for name in ("stride", "padding", "dilation"):
        fields[name] = _read_pair(group, name, where, default=1 if name != "padding" else 0)
        if min(fields[name]) < (0 if name == "padding" else 1):
            raise NetxFormatError(f"{where}/{name}: {list(fields[name])} must be "
                                  f"{'>= 0' if name == 'padding' else '>= 1'}")
    fields["groups"] = _read_scalar_int(group, "groups", where, low=1) if "groups" in group else 1
    if "bias" in group:
        try:
            fields["bias"] = conv_bias_from_netx(_read_int_array(group, "bias", where),
                                                 fields["shape"])
        except BiasLayoutError as err:
            raise NetxFormatError(f"{where}/bias: {err}") from None
    if "delay" in group:
        fields["delay"] = _read_delay(group, where, weight.shape)


def _read_neuron(group: h5py.Group, where: str) -> Union[CubaNeuron, ForeignNeuron]:
    neuron_type = _read_str(group, "type", where)
    is_dlif = neuron_type == DLIF_NEURON_TYPE
    if neuron_type not in _CUBA_TYPES and not is_dlif:
        return ForeignNeuron(type=neuron_type,
                             fields={k: _read_raw(group[k]) for k in group.keys()
                                     if k != "type"})
    values = {}
    for name in ("iDecay", "vDecay", "vThMant"):
        if name not in group:
            raise NetxFormatError(f"{where}/{name}: missing from {neuron_type} neuron")
        values[name] = _read_scalar_int(group, name, where)
    _check_cuba_limits(group, values, where)
    neuron = CubaNeuron(
        i_decay=values["iDecay"], v_decay=values["vDecay"], vth_mant=values["vThMant"],
        ref_delay=_read_scalar_int(group, "refDelay", where) if "refDelay" in group else 1,
        graded_spike=bool(group["gradedSpike"][()]) if "gradedSpike" in group else False,
        netx_type="CUBA" if is_dlif else neuron_type,
        passthrough=tuple((k, _read_raw(group[k])) for k in sorted(group.keys())
                          if k not in _CUBA_FIELDS + _GAIN_FIELDS))
    if is_dlif:
        return _with_gains(neuron, group, where)
    if any(k in group for k in _GAIN_FIELDS):
        raise NetxFormatError(f"{where}: gainMant/gainExp in a {neuron_type} neuron, which "
                              f"stock netx would run without them; gains belong to a "
                              f"{DLIF_NEURON_TYPE!r} neuron")
    return neuron


def _check_cuba_limits(group: h5py.Group, values: Dict[str, int], where: str) -> None:
    """The values Lava runs and the simulator reproduces exactly (module docstring)."""
    for name in ("iDecay", "vDecay"):
        if not -DECAY_LIMIT <= values[name] <= DECAY_LIMIT:
            raise NetxFormatError(f"{where}/{name}: {values[name]} outside "
                                  f"[-{DECAY_LIMIT}, {DECAY_LIMIT}], the range the "
                                  "simulator reproduces Lava's decay products exactly")
    if not -VTH_LIMIT - 1 <= values["vThMant"] <= VTH_LIMIT:
        raise NetxFormatError(f"{where}/vThMant: {values['vThMant']} outside int32, "
                              "which Lava's LIF holds vth in")
    if "messageBits" in group:
        raise NetxFormatError(f"{where}/messageBits: graded spikes from a CUBA neuron do not "
                              "run on stock netx (lava-dl 0.6 passes the HDF5 dataset "
                              "itself to Lava, which fails to build the network); remove "
                              "the field for binary spikes")
    if "gradedSpike" in group and bool(np.asarray(group["gradedSpike"][()]).reshape(-1)[0]):
        raise NetxFormatError(f"{where}/gradedSpike: True, but netx ignores the field and "
                              "Lava's LIF sends binary spikes only, so the file would run "
                              "as something it did not ask for; set it to False")


def _with_gains(neuron: CubaNeuron, group: h5py.Group, where: str) -> CubaNeuron:
    """The DLIF gains of a ``RSSNN_DLIF`` neuron (or of an old file's ``rssnn`` group)."""
    if "gainMant" not in group or "gainExp" not in group:
        raise NetxFormatError(f"{where}: a DLIF neuron needs both gainMant and gainExp")
    mant = np.asarray(group["gainMant"][()])
    if mant.ndim != 1 or mant.size == 0 or not np.issubdtype(mant.dtype, np.integer):
        raise NetxFormatError(f"{where}/gainMant: expected a non-empty 1-D integer array, "
                              f"found {mant.dtype} of shape {mant.shape}")
    if np.abs(mant).max() > MAX_GAIN_MANT:
        raise NetxFormatError(f"{where}/gainMant: {int(np.abs(mant).max())} exceeds "
                              f"the limit {MAX_GAIN_MANT}")
    return replace(neuron, gain_mant=tuple(int(g) for g in mant),
                   gain_exp=_read_scalar_int(group, "gainExp", where, low=0,
                                             high=MAX_GAIN_EXP))


def _read_gains(group: h5py.Group, where: str, fields: Dict[str, Any]) -> None:
    """Gains of files written before ``RSSNN_DLIF`` existed: a ``layer/i/rssnn`` group."""
    if "rssnn" not in group:
        return
    neuron = fields.get("neuron")
    if not isinstance(neuron, CubaNeuron) or neuron.gain_mant is not None:
        raise NetxFormatError(f"{where}/rssnn: DLIF gains need a CUBA neuron without "
                              "gains of its own")
    warnings.warn(f"{where}: DLIF gains in a layer/rssnn group (an older rssnn-deploy "
                  "file): stock netx runs this file without its gains; re-export it to get "
                  f"the {DLIF_NEURON_TYPE} neuron type netx refuses", stacklevel=4)
    fields["neuron"] = _with_gains(neuron, group["rssnn"], f"{where}/rssnn")


def _read_meta(path: Path, handle: h5py.File) -> Dict[str, Any]:
    meta: Dict[str, Any] = {}
    if "rssnn" in handle and "meta" in handle["rssnn"].attrs:
        try:
            stored = json.loads(handle["rssnn"].attrs["meta"])
        except (TypeError, ValueError) as err:
            raise NetxFormatError(f"{path}: rssnn/meta is not valid JSON ({err})") from None
        if not isinstance(stored, dict):
            raise NetxFormatError(f"{path}: rssnn/meta must be a JSON object, found "
                                  f"{type(stored).__name__}")
        _check_meta(path, stored)
        meta.update(stored)
    if "simulation" in handle:
        meta["simulation"] = {k: _read_raw(handle["simulation"][k])
                              for k in handle["simulation"].keys()}
    return meta


def _check_meta(path: Path, meta: Dict[str, Any]) -> None:
    """The metadata fields the project reads: steps, input_scale, readout."""
    where = f"{path}: rssnn/meta"
    if "steps" in meta:
        steps = meta["steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
            raise NetxFormatError(f"{where}/steps: {steps!r} is not an integer in "
                                  f"[1, {MAX_STEPS}]")
    if "input_scale" in meta:
        scale = meta["input_scale"]
        if (isinstance(scale, bool) or not isinstance(scale, (int, float))
                or not np.isfinite(scale) or not 0 < scale <= MAX_INT_FIELD):
            raise NetxFormatError(f"{where}/input_scale: {scale!r} is not a finite number "
                                  f"in (0, {MAX_INT_FIELD}]")
    if "readout" in meta and meta["readout"] not in READOUTS:
        raise NetxFormatError(f"{where}/readout: {meta['readout']!r} is not one of "
                              f"{', '.join(READOUTS)}")


def _check_gain_lengths(spec: NetworkSpec, path: Path) -> None:
    """DLIF gains cover every one of the T steps (a shorter list would repeat its last)."""
    for index, layer in enumerate(spec.layers):
        neuron = layer.neuron
        if isinstance(neuron, CubaNeuron) and neuron.gain_mant is not None:
            if len(neuron.gain_mant) < spec.steps:
                raise NetxFormatError(f"{path}: layer/{index}/rssnn/gainMant: "
                                      f"{len(neuron.gain_mant)} gains for T = {spec.steps} "
                                      f"steps (rssnn/meta steps)")


def _read_shape(group: h5py.Group, where: str) -> Tuple[int, ...]:
    if "shape" not in group:
        raise NetxFormatError(f"{where}/shape: missing")
    raw = np.atleast_1d(np.asarray(group["shape"][()]))
    if not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.floating)):
        raise NetxFormatError(f"{where}/shape: expected integers, found {raw.dtype} {raw!r}")
    if raw.ndim != 1 or not 1 <= raw.size <= 3:
        raise NetxFormatError(f"{where}/shape: expected 1 to 3 sizes, found shape {raw.shape}")
    if (np.issubdtype(raw.dtype, np.floating)
            and not (np.all(np.isfinite(raw)) and np.array_equal(raw, np.round(raw)))):
        raise NetxFormatError(f"{where}/shape: {raw.tolist()} are not whole numbers")
    if np.any(raw < 1) or np.prod(raw.astype(np.float64)) > MAX_NEURONS:
        raise NetxFormatError(f"{where}/shape: {raw.tolist()} needs sizes >= 1 and at most "
                              f"{MAX_NEURONS} neurons")
    return tuple(int(s) for s in raw)


def _read_delay(group: h5py.Group, where: str, weight_shape: Tuple[int, ...]) -> np.ndarray:
    """Synaptic delays: whole steps >= 0, one per output neuron, input or synapse."""
    delay = _read_int_array(group, "delay", where, exact=True)
    out_features = weight_shape[0]
    in_features = int(np.prod(weight_shape[1:]))
    if delay.size not in (1, out_features, in_features, out_features * in_features):
        raise NetxFormatError(f"{where}/delay: {delay.size} values fit neither "
                              f"{out_features} outputs nor {in_features} inputs")
    if delay.size and delay.min() < 0:
        raise NetxFormatError(f"{where}/delay: {int(delay.min())} is negative")
    return delay


def _read_str(group: h5py.Group, name: str, where: str) -> str:
    if name not in group:
        raise NetxFormatError(f"{where}/{name}: missing")
    value = group[name][()]
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise NetxFormatError(f"{where}/{name}: expected one string, found {value.shape}")
        value = value.reshape(-1)[0]
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace")
    if isinstance(value, str):
        return value
    raise NetxFormatError(f"{where}/{name}: expected a string, found {type(value).__name__}")


def _read_int_array(group: h5py.Group, name: str, where: str, exact: bool = False
                    ) -> np.ndarray:
    """Real numbers within ±MAX_INT_FIELD, as netx takes them (truncated toward zero);
    ``exact``: whole numbers only (counts such as delays)."""
    if name not in group:
        raise NetxFormatError(f"{where}/{name}: missing")
    value = np.asarray(group[name][()])
    if not (np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)
            or value.dtype == bool):
        raise NetxFormatError(f"{where}/{name}: expected real numbers, found {value.dtype}")
    if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
        raise NetxFormatError(f"{where}/{name}: contains NaN or infinity")
    if value.size and np.abs(value.astype(np.float64)).max() > MAX_INT_FIELD:
        raise NetxFormatError(f"{where}/{name}: {np.abs(value.astype(np.float64)).max():.6g} "
                              f"exceeds the limit {MAX_INT_FIELD} (int32)")
    if exact and np.issubdtype(value.dtype, np.floating) and not np.array_equal(
            value, np.trunc(value)):
        raise NetxFormatError(f"{where}/{name}: expected whole numbers")
    return value.astype(np.int64)  # what netx does: astype(int), truncation toward zero


def _read_scalar_int(group: h5py.Group, name: str, where: str, low: int = -MAX_INT_FIELD,
                     high: int = MAX_INT_FIELD) -> int:
    """One finite number in [low, high], truncated toward zero as netx does."""
    value = np.asarray(group[name][()])
    if value.size != 1 or not (np.issubdtype(value.dtype, np.integer)
                               or np.issubdtype(value.dtype, np.floating)
                               or value.dtype == bool):
        raise NetxFormatError(f"{where}/{name}: expected one number, found {value!r}")
    number = value.reshape(-1)[0]
    if not np.isfinite(number):
        raise NetxFormatError(f"{where}/{name}: {number} is not a finite number")
    if not low <= number <= high:
        raise NetxFormatError(f"{where}/{name}: {number} is outside [{low}, {high}]")
    return int(number)


def _read_pair(group: h5py.Group, name: str, where: str, default: int) -> Tuple[int, int]:
    if name not in group:
        return (default, default)
    value = np.atleast_1d(_read_int_array(group, name, where, exact=True))
    if value.size == 1:
        return (int(value[0]), int(value[0]))
    if value.size != 2:
        raise NetxFormatError(f"{where}/{name}: expected 1 or 2 values (H, W), "
                              f"found {value.tolist()}")
    return (int(value[0]), int(value[1]))


def _read_optional_vector(group: h5py.Group, name: str, where: str, fields: Dict[str, Any],
                          size: int, allow: Tuple[int, ...] = ()) -> None:
    if name not in group:
        return
    value = _read_int_array(group, name, where).reshape(-1)
    if value.size not in (1, size, *allow):
        raise NetxFormatError(f"{where}/{name}: {value.size} values for {size} neurons")
    fields[name] = value


def _read_raw(item: Union[h5py.Dataset, h5py.Group]) -> Any:
    if isinstance(item, h5py.Group):
        return {k: _read_raw(item[k]) for k in item.keys()}
    return item[()]


# --------------------------------------------------------------------------- writing

def write_netx(spec: NetworkSpec, path: PathLike) -> Path:
    """Write ``spec`` as a netx file atomically and return the final path."""
    path = Path(path)
    _check_structure(spec, path)
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


# ------------------------------------------------------------------------- validation

def _check_structure(spec: NetworkSpec, path: Path) -> None:
    """Shapes chain from layer to layer the way netx connects them."""
    if not spec.layers:
        raise NetxFormatError(f"{path}: network has no layers")
    if spec.layers[0].kind != "input":
        raise NetxFormatError(f"{path}: layer/0 must be an input layer, "
                              f"found {spec.layers[0].kind!r}")
    previous = spec.layers[0].shape
    for index, layer in enumerate(spec.layers[1:], start=1):
        where = f"{path}: layer/{index}"
        if layer.kind in ("dense", "dense_rec") and layer.weight is not None:
            fan_in = int(np.prod(previous))
            if layer.weight.shape[1] != fan_in:
                raise NetxFormatError(f"{where}/weight: {layer.weight.shape[1]} inputs, but "
                                      f"the layer before has {fan_in} neurons {previous}")
        if layer.kind == "conv" and layer.weight is not None:
            in_channels = layer.weight.shape[1] * layer.groups
            if len(previous) != 3 or previous[0] != in_channels:
                raise NetxFormatError(f"{where}/weight: expects {in_channels} input channels, "
                                      f"the layer before has shape {previous} (C, H, W)")
            expected = _conv_output_shape(layer, previous)
            if expected != layer.shape:
                raise NetxFormatError(f"{where}/shape: {layer.shape}, but the convolution "
                                      f"of {previous} gives {expected}")
            if layer.bias is not None:
                try:
                    conv_bias_per_neuron(layer.bias, layer.shape)
                except BiasLayoutError as err:
                    raise NetxFormatError(f"{where}/bias: {err}") from None
        if layer.kind == "dense_rec":
            n = int(np.prod(layer.shape))
            if layer.weight_rec is None or np.shape(layer.weight_rec) != (n, n):
                raise NetxFormatError(f"{where}/weight_rec: a recurrent layer of {n} neurons "
                                      f"needs ({n}, {n}) recurrent weights, found "
                                      f"{None if layer.weight_rec is None else np.shape(layer.weight_rec)}")
        if layer.kind != "flatten" and not layer.is_foreign:
            previous = layer.shape
        elif layer.kind == "flatten":
            previous = (int(np.prod(previous)),)
        else:
            previous = layer.shape


def _conv_output_shape(layer: LayerSpec, in_shape: Tuple[int, ...]) -> Tuple[int, int, int]:
    sizes = []
    for axis in range(2):
        size, kernel = in_shape[1 + axis], layer.weight.shape[2 + axis]
        span = layer.dilation[axis] * (kernel - 1) + 1
        sizes.append((size + 2 * layer.padding[axis] - span) // layer.stride[axis] + 1)
    return (int(layer.weight.shape[0]), *sizes)


def specs_equal(a: NetworkSpec, b: NetworkSpec) -> Optional[str]:
    """None when two specs describe the same network, else the first difference."""
    if len(a.layers) != len(b.layers):
        return f"{len(a.layers)} vs {len(b.layers)} layers"
    for index, (la, lb) in enumerate(zip(a.layers, b.layers)):
        for name in ("kind", "shape", "neuron", "stride", "padding", "dilation", "groups"):
            if _normalise(getattr(la, name)) != _normalise(getattr(lb, name)):
                return f"layer {index} {name}: {getattr(la, name)!r} vs {getattr(lb, name)!r}"
        for name in ("weight", "weight_rec", "bias", "delay"):
            va, vb = getattr(la, name), getattr(lb, name)
            if (va is None) != (vb is None) or (va is not None and not np.array_equal(va, vb)):
                return f"layer {index} {name} differs"
        if _normalise(la.passthrough) != _normalise(lb.passthrough):
            return f"layer {index} passthrough fields differ"
    return None


def _normalise(value: Any) -> Any:
    """A comparable form of nested file values (arrays, bytes, dataclasses)."""
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in sorted(value.items())}
    if isinstance(value, (tuple, list)):
        return tuple(_normalise(v) for v in value)
    if isinstance(value, np.ndarray):
        return ("array", value.shape, tuple(value.reshape(-1).tolist()))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace")
    if isinstance(value, CubaNeuron):
        return ("CUBA", value.i_decay, value.v_decay, value.vth_mant, value.ref_delay,
                value.graded_spike, value.gain_mant, value.gain_exp, value.netx_type,
                _normalise(value.passthrough))
    if isinstance(value, ForeignNeuron):
        return (value.type, _normalise(value.fields))
    return value

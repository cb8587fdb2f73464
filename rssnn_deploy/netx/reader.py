"""netx HDF5 → ``NetworkSpec``: any netx file, ours or lava-dl's own, checked field by
field (see ``rssnn_deploy/netx/README.md``)."""
from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple, Union

import h5py
import numpy as np

from rssnn_deploy.filekinds import check_kind
from rssnn_deploy.netx.layout import (
    CUBA_FIELDS,
    CUBA_TYPES,
    GAIN_FIELDS,
    HANDLED_FIELDS,
    MAX_GAIN_EXP,
    MAX_GAIN_MANT,
    MAX_INT_FIELD,
    MAX_NEURONS,
    MAX_STEPS,
    READOUTS,
    NetxFormatError,
    PathLike,
    check_structure,
)
from rssnn_deploy.spec import (
    DECAY_LIMIT,
    DLIF_NEURON_TYPE,
    FOREIGN_LAYER_KINDS,
    LAYER_KINDS,
    NETX_DEFAULT_NEURON,
    VTH_LIMIT,
    BiasLayoutError,
    CubaNeuron,
    ForeignNeuron,
    LayerSpec,
    NetworkSpec,
    conv_bias_from_netx,
)

__all__ = ["read_netx"]


def read_netx(path: PathLike) -> NetworkSpec:
    """Load any netx HDF5 file into a ``NetworkSpec``; raise ``NetxFormatError`` if bad.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from rssnn_deploy.netx.writer import write_netx
    >>> import numpy as np
    >>> from rssnn_deploy.spec import example_network
    >>> spec = example_network()
    >>> path = write_netx(spec, pathlib.Path(tempfile.mkdtemp()) / "net.net")
    >>> back = read_netx(path)
    >>> [layer.kind for layer in back.layers], back.layers[1].weight.tolist()
    (['input', 'dense'], [[20, 0], [0, 20]])
    """
    path = Path(path)
    if not path.is_file():
        check_kind(path, "netx", NetxFormatError)      # a folder: say which
        raise NetxFormatError(f"{path}: no such file")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        check_kind(path, "netx", NetxFormatError)      # a checkpoint, a data set, …
        raise NetxFormatError(f"{path}: not a readable HDF5 file ({err})") from None
    with handle:
        try:
            if "layer" not in handle or not isinstance(handle["layer"], h5py.Group):
                check_kind(path, "netx", NetxFormatError)  # a NIR graph
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
    check_structure(spec, path)
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
    passthrough = {k: _read_raw(group[k]) for k in group.keys() if k not in HANDLED_FIELDS}
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
    if neuron_type not in CUBA_TYPES and not is_dlif:
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
                          if k not in CUBA_FIELDS + GAIN_FIELDS))
    if is_dlif:
        return _with_gains(neuron, group, where)
    if any(k in group for k in GAIN_FIELDS):
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

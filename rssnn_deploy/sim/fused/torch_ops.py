"""The fused engine on any torch device (CUDA): integer state, exact float GEMMs, the CUBA
update as a few int64 torch ops per step, the same integers as the C engine and the
reference loop.

Why not the reference loop on CUDA: it holds the state in float64 and runs its wrap and
clip checks as separate ops; this path keeps the per-step work to the update itself
(about a dozen element-wise int64 ops per layer and step) and forms every layer's
synaptic sums for all steps in one GEMM. Why not the C engine: it is CPU code.

Synaptic sums, per layer (``dispatch`` names them): ``fp32`` where every output's
Σ|w|·(largest input) ≤ 2²⁴, so that every partial sum, in whatever order cuBLAS or a CPU
BLAS adds them, is an integer float32 holds exactly; dense layers as a float32 GEMM of
the integer weights, conv layers as im2col of channels-last spikes times the (kH·kW·C,
OC) weights, never a cuDNN convolution (which may pick Winograd or FFT algorithms). TF32
and reduced-precision reductions are off while they run
(``dispatch.exact_products``). Layers
beyond the bound take the reference's synapse in float64 (``fp64``), synaptic delays
its delay slots. The sums then take the C kernel's steps: the weight exponent (floor
shift), the int32 wrap, DLIF gains, ×64, the int32 wrap.

The same code runs on CPU tensors, which is how the tests check it against the
reference loop on machines without a GPU (``benchmarks/gpu_check.sh`` runs it on CUDA).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Set, Tuple

import numpy as np
import torch

from rssnn_deploy.sim.fused.dispatch import exact_products
from rssnn_deploy.sim.fused.kernels import reset_mask
from rssnn_deploy.sim.fused.layers import FusedLayer, im2col_weights
from rssnn_deploy.sim.ops import F32_EXACT, U_LIMIT, V_LIMIT

__all__ = ["DEVICE_BUDGET", "TWO31", "wrap32", "wrap32_float", "DeviceLayer", "layers_on",
           "Chunk", "run"]

#: bytes of a chunk's largest per-layer intermediates the device path aims for (the
#: batch is cut into chunks of about this much)
DEVICE_BUDGET = 16 << 30
TWO31 = 1 << 31


def wrap32(x: torch.Tensor) -> torch.Tensor:
    """int64 → its value modulo 2³² in [−2³¹, 2³¹) (Lava's int32 wrap), as int64."""
    return torch.bitwise_and(x + TWO31, (1 << 32) - 1) - TWO31


def wrap32_float(x: torch.Tensor) -> torch.Tensor:
    """Integers held in floats → int64 modulo 2³² in [−2³¹, 2³¹), wrapped in float64
    first (exact below 2⁵³) so that no value leaves int64 on the way."""
    x = x.to(torch.float64).round()
    return (x - 4294967296.0 * torch.floor((x + 2147483648.0) / 4294967296.0)).to(torch.int64)


def _shift(x: torch.Tensor, exp: int) -> torch.Tensor:
    """x · 2^exp for exp ≥ 0, floor(x / 2^−exp) otherwise (Lava's weight exponent)."""
    return x << exp if exp >= 0 else x >> (-exp)


class DeviceLayer:
    """One layer's constants on the device, in the natural (C, H, W) order of its state,
    and how its synaptic sums are formed there (``product``: fp32, fp64, delays)."""

    def __init__(self, sim, st, layer: FusedLayer, device: torch.device):
        def natural(arr: Optional[np.ndarray], dtype=torch.int64) -> Optional[torch.Tensor]:
            if arr is None:
                return None
            if layer.order is not None:        # FusedLayer holds channels-last order
                out = np.empty_like(arr)
                out[layer.order] = arr
                arr = out
            return torch.as_tensor(np.asarray(arr, dtype=np.int64), device=device).to(dtype)

        self.cu, self.cv, self.theta = natural(layer.cu), natural(layer.cv), natural(layer.theta)
        self.bias6 = None if layer.bias is None else natural(layer.bias) * 64
        self.gains = None if layer.gains is None else \
            torch.as_tensor(layer.gains.astype(np.int64), device=device)
        self.gain_exp, self.hops = layer.gain_exp, layer.hops
        self.product: Optional[str] = None
        self.weight: Optional[torch.Tensor] = None     # fp32: (K, N) dense or im2col
        self.exp = 0
        self.wrap24 = False
        syn = st.synapse
        if syn is None:
            return
        if layer.mode == "delays":
            self.product = "delays"
            return
        w = np.asarray(syn.w_eff, dtype=np.int64)
        if st.kind == "dense":
            bound = float(np.abs(w).sum(axis=1).max(initial=0))
            mat, self.exp = w.T, int(syn.exp)
        else:
            bound = float(np.abs(w).reshape(w.shape[0], -1).sum(axis=1).max(initial=0))
            mat = im2col_weights(w, syn.groups)
            self.wrap24 = bound >= (1 << 23)      # conv output wraps signed 24-bit
        if bound * layer.input_max <= F32_EXACT:
            self.product = "fp32"
            self.weight = torch.as_tensor(mat, dtype=torch.float32, device=device).contiguous()
        else:
            self.product = "fp64"


def layers_on(sim, device: torch.device) -> Dict[int, DeviceLayer]:
    """``sim``'s layers on ``device`` (made once per simulator and device)."""
    cache = sim.fused_state.device_layers
    if device not in cache:
        cache[device] = {st.spec_index: DeviceLayer(sim, st, sim.fused_state.layers[st.spec_index],
                                                    device) for st in sim.stages}
    return cache[device]


def _sums(sim, st, dl: DeviceLayer, layer: FusedLayer, prev: torch.Tensor, steps: int,
          static: int = 0) -> Tuple[Optional[torch.Tensor], int]:
    """(a_in of each row as int64 (rows, n, f) in the state's order, the chip step of
    row 0), or (None, 0) when no input reaches the layer; later steps receive 0.
    ``static``: ``static_rows`` of ``prev``, whose product is computed on its first row
    and repeated (a view)."""
    syn = st.synapse
    if dl.product == "delays":
        a = sim.synaptic_input(st, prev.to(syn.dtype), steps, False, static=static)
        return wrap32_float(a), 1                                       # chip steps 1..
    if steps < 2:
        return None, 0
    same = min(static, steps - 1)
    a = _product(st, dl, layer, prev[:1] if same > 1 else prev[:steps - 1])
    return (a.expand((same,) + tuple(a.shape[1:])) if same > 1 else a), 2


def _product(st, dl: DeviceLayer, layer: FusedLayer, x: torch.Tensor) -> torch.Tensor:
    """The synapse on spike rows ``x`` (rows, n, ...): int64 sums (rows, n, *shape)."""
    syn = st.synapse
    rows, n = x.shape[:2]
    if dl.product == "fp64":            # the reference's float64 synapse, exponent applied
        x = x.to(syn.dtype)
        if st.flatten_input or st.kind == "dense":
            x = x.reshape(rows * n, -1)
        else:
            x = x.reshape((rows * n,) + tuple(x.shape[2:]))
        return wrap32_float(syn(x, False).reshape((rows, n) + tuple(st.shape)))
    x = x.to(torch.float32)
    if st.kind == "dense":
        a = x.reshape(rows * n, -1) @ dl.weight
        a = _shift(a.to(torch.int64), dl.exp)
        return wrap32(a.reshape((rows, n) + tuple(st.shape)))
    kh, kw, sy, sx, py, px, dy, dx = layer.conv
    img = x.reshape((rows * n,) + tuple(x.shape[2:])).permute(0, 2, 3, 1)   # (M, H, W, C)
    if py or px:
        img = torch.nn.functional.pad(img, (0, 0, px, px, py, py))
    m, h, w, c = img.shape
    oh, ow = (h - dy * (kh - 1) - 1) // sy + 1, (w - dx * (kw - 1) - 1) // sx + 1
    s = img.stride()
    patches = img.as_strided((m, oh, ow, kh, kw, c),
                             (s[0], s[1] * sy, s[2] * sx, s[1] * dy, s[2] * dx, s[3]))
    a = patches.reshape(m * oh * ow, kh * kw * c) @ dl.weight               # (M·OH·OW, OC)
    a = a.reshape(m, oh, ow, -1).permute(0, 3, 1, 2).to(torch.int64)
    if dl.wrap24:
        a = torch.bitwise_and(a + (1 << 23), (1 << 24) - 1) - (1 << 23)
    return wrap32(a.reshape((rows, n) + tuple(st.shape)))


def _scaled(dl: DeviceLayer, a: torch.Tensor, first: int) -> torch.Tensor:
    """a_in → a_in · 64 as the neurons add it, DLIF gains first (step t of row r = first
    + r uses gain[clamp(t − hops − 1, 0, len − 1)], ``sgn(a·g)(|a·g| >> gain_exp)``)."""
    if dl.gains is not None:
        t = torch.arange(first, first + a.shape[0], device=a.device)
        g = dl.gains[(t - dl.hops - 1).clamp(0, dl.gains.numel() - 1)]
        p = a * g.view((-1,) + (1,) * (a.dim() - 1))
        a = torch.sign(p) * (p.abs() >> dl.gain_exp)
    return wrap32(a * 64)


def _neurons(dl: DeviceLayer, a6: Optional[torch.Tensor], first: int, bias6, n: int,
             shape: Tuple[int, ...], steps: int, mask: np.ndarray, names: Set[str],
             s_dtype: torch.dtype, device: torch.device):
    """Every chip step of one layer: (spikes (steps, n, *shape), records, final v)."""
    u = torch.zeros((n,) + shape, dtype=torch.int64, device=device)
    v = torch.zeros_like(u)
    cu, cv, theta = (c.view(shape) for c in (dl.cu, dl.cv, dl.theta))
    if bias6 is not None:
        bias6 = bias6.view((-1,) + shape) if bias6.dim() == 2 else bias6.view(shape)
    s_all = torch.empty((steps, n) + shape, dtype=s_dtype, device=device)
    rec = {k: torch.empty((steps, n) + shape, dtype=torch.int32, device=device)
           for k in ("u", "v") if k in names}
    for t in range(1, steps + 1):
        if mask[t]:
            u.zero_()
            v.zero_()
        u = wrap32(torch.div(u * cu, 4096, rounding_mode="trunc"))
        r = t - first
        if a6 is not None and 0 <= r < a6.shape[0]:
            u = wrap32(u + a6[r])
        u = u - (u > U_LIMIT).to(torch.int64) * (2 * U_LIMIT) \
            + (u <= -U_LIMIT).to(torch.int64) * (2 * U_LIMIT)
        vv = torch.div(v * cv, 4096, rounding_mode="trunc") + u
        if bias6 is not None:
            vv = vv + bias6
        vv = wrap32(vv).clamp_(-V_LIMIT, V_LIMIT)
        spike = vv > theta
        v = vv.masked_fill_(spike, 0)
        s_all[t - 1] = spike
        for k, arr in rec.items():
            arr[t - 1] = u if k == "u" else v
    if "s" in names:
        rec["s"] = s_all.to(torch.bool)
    return s_all, rec, v


Chunk = Tuple[torch.Tensor, torch.Tensor, Dict[int, Dict[str, torch.Tensor]]]


def run(sim, bias_input: Optional[torch.Tensor], spikes: Optional[torch.Tensor], steps: int,
        record_map: Dict[int, Set[str]], reset: str, reset_interval: Optional[int],
        batch_size: Optional[int]) -> List[Chunk]:
    """``Simulator.run``'s work on this path (inputs already checked by ``sim``), the
    batch cut into chunks of about ``DEVICE_BUDGET`` bytes of intermediates: per chunk
    (output spikes, final v, records), which ``engine.run`` makes results of."""
    device = sim.device
    n = (bias_input if bias_input is not None else spikes).shape[0]
    chunk = batch_size or _chunk_size(sim, steps, record_map)
    layers = layers_on(sim, device)
    parts: List = []
    with torch.inference_mode(), exact_products():
        for lo in range(0, max(n, 1), chunk):
            hi = min(n, lo + chunk)
            parts.append(_run_chunk(sim, layers, None if bias_input is None else
                                    bias_input[lo:hi], None if spikes is None else
                                    spikes[lo:hi], steps, record_map, reset, reset_interval))
    sim.fused_state.last_threads = 1
    sim.fused_state.last_path = f"{device.type} layers (" + ", ".join(
        dl.product for dl in layers.values() if dl.product) + ")"
    return parts


def _chunk_size(sim, steps: int, record_map) -> int:
    """Samples per chunk: the widest layer's sums (int64), spikes, im2col patches and
    records near ``DEVICE_BUDGET`` (a quarter of free memory on CUDA, if less)."""
    budget = DEVICE_BUDGET
    if sim.device.type == "cuda":
        budget = min(budget, torch.cuda.mem_get_info(sim.device)[0] // 4)
    per_sample = 0
    shape = tuple(sim.input_shape)
    for st in sim.stages:
        f, width = int(np.prod(st.shape)), int(np.prod(shape))
        conv = sim.fused_state.layers[st.spec_index].conv
        patches = 0 if conv is None else f // st.shape[0] * conv[0] * conv[1] * shape[0]
        records = 8 * f * len(record_map.get(st.spec_index, ()))
        per_sample = max(per_sample, steps * (4 * width + 4 * patches + 32 * f + records))
        shape = tuple(st.shape)
    return max(1, int(budget // max(per_sample, 1)))


def _run_chunk(sim, layers: Dict[int, DeviceLayer], bias_input, spikes, steps, record_map,
               reset, reset_interval) -> Chunk:
    device = sim.device
    states: Dict[int, Dict[str, torch.Tensor]] = {}
    prev, static = None, 0
    if not sim.has_input_neuron or spikes is not None:
        prev, static = sim.first_train(spikes, steps)
    v_final = None
    stages = sim.stages
    for pos, st in enumerate(stages):
        names = record_map.get(st.spec_index, set())
        dl, layer = layers[st.spec_index], sim.fused_state.layers[st.spec_index]
        a6, first, bias6 = None, 0, dl.bias6
        if st.kind == "input":
            if spikes is not None:
                if names:
                    states[st.spec_index] = sim.input_records(prev, names)
                continue
            b = torch.as_tensor(bias_input, device=device)
            b = b.to(torch.float64) if b.is_floating_point() else b
            b = torch.remainder(b.to(torch.int64) + 32768, 65536) - 32768     # int16 wrap
            bias6 = b.reshape(b.shape[0], -1) * 64
            n = b.shape[0]
        else:
            n = prev.shape[1]
            if sim.spike_transform is not None:
                prev = sim.transform_spikes(st, prev)
            a, first = _sums(sim, st, dl, layer, prev, steps, static)
            static = 0
            a6 = None if a is None else _scaled(dl, a, first)
        last = pos + 1 == len(stages)
        s_dtype = torch.bool if last or sim.spike_transform is not None else torch.float32
        mask = reset_mask(st, steps, reset, reset_interval)
        prev, rec, v_final = _neurons(dl, a6, first, bias6, n, tuple(st.shape), steps, mask,
                                      names, s_dtype, device)
        if rec:
            states[st.spec_index] = rec
    return prev.to(torch.bool), v_final, states

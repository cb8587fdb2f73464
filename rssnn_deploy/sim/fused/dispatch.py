"""Which exact synaptic product the fused engine (``rssnn_deploy.sim.fused.engine``) uses, for the
CPU it runs on and for each layer: the one place that decides, and names the choice for
``rssnn-deploy info`` and the benchmark.

Why a choice at all: ``torch._int_mm`` on CPU calls oneDNN only where the CPU has
AVX-512 VNNI and is a scalar triple loop elsewhere (PyTorch's ``_int_mm_out_cpu``);
measured on an AMD EPYC Zen 3 (AVX2) it ran the 2560×784 @ 784×128 product at 3.2 GOP/s
against 118 GFLOP/s for a float32 ``mm`` of the same integers, which made the fused
engine slower than the reference loop there. Every path below computes the same
integers; they differ only in speed.

The machine's product (``machine_product``), tried in this order by ``auto``:

1. ``vnni``: AVX-512 VNNI. Whole pieces in C with its ``vpdpbusd`` kernel
   (``piece.c``); layers driven from Python through ``torch._int_mm`` (oneDNN).
2. ``avx_vnni``: AVX-VNNI without AVX-512 (Intel client CPUs since Alder Lake, where
   ``torch._int_mm`` is the scalar loop): the C kernel with 256-bit ``vpdpbusd``, for
   whole pieces and layer by layer.
3. ``avx2``: any x86-64 CPU of the last decade. The C kernel with ``vpmaddubsw`` (u8 × s8
   pairs into int16), for whole pieces and layer by layer. Exact for 0/1 spikes only (a
   pair sums to at most 2·128 in magnitude, see ``piece.c``); graded input never
   reaches it (below).
4. ``fp32``: torch's float32 GEMM (dense) or channels-last conv, exact while every
   output's Σ|w|·(largest input) ≤ 2²⁴, checked per layer when the network is compiled;
   a layer beyond the bound takes float64 (``fp64``). Any CPU and CUDA; no whole pieces.

Only when forced: ``int_mm`` (``torch._int_mm`` layer by layer, what every CPU took
before; fast with VNNI only) and ``scalar`` (the portable C kernel, no intrinsics; the
compiler vectorises it as it can), both never chosen by ``auto`` because ``fp32``
always exists and is faster where the others are missing.

Per layer (``layer_product``): a layer whose input is 0/1 spikes and whose weights have
an exact int8 form (``layers.Int8Weights``) takes the machine's product; graded
(multi-bit) input, weights without an int8 form and conv rows too short for the im2col
GEMM take ``fp32`` where exact, else ``fp64``; synaptic delays ``delays`` (the
reference's delay slots).

Forcing (tests, benchmarks): ``RSSNN_SIM_KERNEL=<name>`` in the environment, read when a
simulator's layers are compiled, or ``engine.use_kernel(sim, name)``. A forced product
the machine cannot run gives way to the next one it can: ``vnni`` → ``avx_vnni`` →
``avx2`` → ``fp32``; ``int_mm`` and ``scalar`` → ``fp32``.
"""
from __future__ import annotations

import contextlib
import os
import platform
from typing import Dict, Iterator, Optional, Tuple

import torch

from rssnn_deploy.sim.fused import kernels
from rssnn_deploy.sim.layers import SimulationError

__all__ = ["ENV", "PRODUCTS", "AUTO_ORDER", "INT8_PRODUCTS", "exact_products",
           "INT_MM", "can_run", "requested", "check", "machine_product", "piece_kernel",
           "layer_product", "X86_FLAGS", "ARM_FLAGS", "cpu", "describe", "machine_line"]

#: the environment variable that forces a product
ENV = "RSSNN_SIM_KERNEL"

#: every product a machine may be given, ``auto``'s order first
PRODUCTS = ("vnni", "avx_vnni", "avx2", "fp32", "int_mm", "scalar")

#: the products ``auto`` tries, in order (``fp32`` runs everywhere)
AUTO_ORDER = ("vnni", "avx_vnni", "avx2", "fp32")

#: where a forced product the machine cannot run gives way
_NEXT = {"vnni": "avx_vnni", "avx_vnni": "avx2", "avx2": "fp32", "int_mm": "fp32",
         "scalar": "fp32"}

#: products that form the sums with an int8 GEMM on 0/1 spikes (and their C kernels)
INT8_PRODUCTS = ("vnni", "avx_vnni", "avx2", "int_mm", "scalar")



def _read(get):
    """A torch precision setting, or ``None`` where torch refuses to read it (after a mix
    of its legacy and new precision APIs, torch ≥ 2.9 raises on the legacy getters)."""
    try:
        return get()
    except RuntimeError:
        return None


#: torch ≥ 2.9's per-backend float32 precision settings (the "new API")
_LEAVES = [leaf for leaf in (getattr(torch.backends.cuda, "matmul", None),
                             getattr(getattr(torch.backends, "cudnn", None), "conv", None),
                             getattr(getattr(torch.backends, "mkldnn", None), "matmul", None),
                             getattr(getattr(torch.backends, "mkldnn", None), "conv", None))
           if leaf is not None and hasattr(leaf, "fp32_precision")]


@contextlib.contextmanager
def exact_products() -> Iterator[None]:
    """Float products of integers must not round: float32 matmuls and convolutions at
    full precision while the block runs (``torch.set_float32_matmul_precision("medium")``
    lets oneDNN on CPU use bf16 and CUDA TF32; cuDNN convolutions take TF32 by default),
    half-precision reductions off, and every setting as it was afterwards, in whichever
    of torch's two precision APIs it was made."""
    cuda = torch.backends.cuda.matmul
    flags = [(obj, name) for obj, name in
             ((cuda, "allow_fp16_reduced_precision_reduction"),
              (cuda, "allow_bf16_reduced_precision_reduction"),
              (torch.backends.cudnn, "allow_tf32")) if hasattr(obj, name)]
    old_flags = [_read(lambda: getattr(obj, name)) for obj, name in flags]
    old_leaves = [leaf.fp32_precision for leaf in _LEAVES]
    precision = _read(torch.get_float32_matmul_precision)
    torch.set_float32_matmul_precision("highest")
    for obj, name in flags:
        setattr(obj, name, False)
    try:
        yield
    finally:
        for (obj, name), value in zip(flags, old_flags):
            if value is not None:
                setattr(obj, name, value)
        if precision is not None:
            torch.set_float32_matmul_precision(precision)
        else:
            for leaf, value in zip(_LEAVES, old_leaves):
                leaf.fp32_precision = value


def _has_int_mm() -> bool:
    """torch's int8 × int8 → int32 GEMM exists (fast on CPUs with VNNI only)."""
    try:
        x = torch.ones((17, 8), dtype=torch.int8)
        return bool(torch._int_mm(x, x.t().contiguous()).eq(8).all())
    except (AttributeError, RuntimeError):
        return False


INT_MM = _has_int_mm()


def can_run(product: str) -> bool:
    """True when this machine runs ``product`` (C kernels: the extension and the CPU)."""
    if product in kernels.GEMM_IDS:
        return product in kernels.CPU_GEMMS
    if product == "int_mm":
        return INT_MM
    return product == "fp32"


def requested() -> str:
    """The product asked for in the environment (``RSSNN_SIM_KERNEL``), else ``auto``."""
    name = os.environ.get(ENV, "").strip().lower() or "auto"
    check(name, ENV)
    return name


def check(name: str, where: str) -> None:
    if name != "auto" and name not in PRODUCTS:
        raise SimulationError(f"{where}={name!r}: not a synaptic product; one of auto, "
                              f"{', '.join(PRODUCTS)}")


def machine_product(name: str = "auto") -> str:
    """The product this machine uses for ``name``: ``auto``'s first runnable one, or the
    forced one, or where the machine cannot run it the next in the fallback order."""
    if name == "auto":
        return next(p for p in AUTO_ORDER if can_run(p))
    while not can_run(name):
        name = _NEXT[name]
    return name


def piece_kernel(machine: str) -> Optional[str]:
    """The C GEMM kernel of whole pieces for the machine's product, or ``None`` where
    that product has none (``fp32``, ``int_mm``: layers driven from Python)."""
    return machine if machine in kernels.GEMM_IDS and kernels.PIECE is not None else None


def layer_product(machine: str, *, int8: bool, fp32_exact: bool, short_rows: bool = False
                  ) -> str:
    """One layer's product: the machine's int8 one where its input is 0/1 spikes and its
    weights have an exact int8 form (``int8``) and, for conv layers driven from Python,
    the im2col rows are long enough to win (``not short_rows``); else ``fp32`` where
    exact (``fp32_exact``: every output's Σ|w|·input max ≤ 2²⁴), else ``fp64``."""
    if int8 and not short_rows and machine in INT8_PRODUCTS:
        return machine
    return "fp32" if fp32_exact else "fp64"


# ------------------------------------------------------------------ describing the CPU

#: CPU flags that decide the products, as /proc/cpuinfo names them: x86 ``flags``;
#: ARM ``Features``, where ``asimddp`` is the sdot instruction and ``i8mm`` smmla
X86_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
ARM_FLAGS = ("asimd", "asimddp", "i8mm")


def _cpuinfo() -> Tuple[str, Tuple[str, ...]]:
    model, flags = "", ()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware") and not model:
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = tuple(value.split())
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


def cpu() -> Dict[str, object]:
    """``{"model": ..., "machine": ..., "flags": {flag: bool}}`` for the flags that matter
    on this architecture (from /proc/cpuinfo; none where it cannot be read)."""
    model, flags = _cpuinfo()
    arm = platform.machine().lower() in ("aarch64", "arm64")
    return {"model": model, "machine": platform.machine(),
            "flags": {f: f in flags for f in (ARM_FLAGS if arm else X86_FLAGS)} if flags
            else {}}


def describe() -> str:
    """One line: the machine's product and why (``rssnn-deploy info``)."""
    try:
        name = requested()
    except SimulationError as err:
        return f"unknown ({err})"
    machine = machine_product(name)
    how = "auto" if name == "auto" else f"{ENV}={name}"
    if name not in ("auto", machine):
        how += ", which this machine cannot run"
    flags = cpu()["flags"]
    have = ", ".join(f for f, on in flags.items() if on) or \
        ("none of " + ", ".join(flags) if flags else "unknown")
    return f"{machine} ({how}; CPU flags: {have})"


def machine_line() -> str:
    """The CPU model, the flags that decide the synaptic product, and ``auto``'s choice:
    what every benchmark prints beside its figures."""
    info = cpu()
    flags = ", ".join(f"{f} {'yes' if on else 'no'}" for f, on in info["flags"].items())
    return (f"CPU: {info['model']} ({info['machine']}; {flags or 'flags unknown'}); "
            f"synaptic product: {describe()}")

"""A model config's keys, defaults and closed choices, free of torch.

A model is built from a plain dict (``zoo.build_model``); this module says which keys it
takes and what they default to. ``train --help`` shows these choices and defaults, and
must not wait for torch (about a second to import), so they live here rather than
beside the layers; ``zoo`` and ``neurons`` import them from here.
"""
from __future__ import annotations

from typing import Any, Dict, List, Union

__all__ = ["COMMON_DEFAULTS", "INPUT_ENCODINGS", "ARCHITECTURES", "VGG_VARIANTS", "NEURONS",
           "SURROGATE_NAMES"]

#: keys every architecture shares, with their defaults (the paper's neuron settings;
#: the input shape and class count default to the bundled 8×8 digits).
COMMON_DEFAULTS: Dict[str, Any] = {
    "in_shape": [1, 8, 8],
    "num_classes": 10,
    "steps": 8,
    "decay": 0.99,
    "threshold": 1.0,
    "neuron": "dlif",
    "surrogate": "triangle",
    "surrogate_scale": None,
    "bptr": False,
    "input_gain": 1.0,
    "input_encoding": "spiking",
}

#: how the image reaches the first synapse: through a layer of LIF neurons ("spiking")
#: or as the analog value itself every step ("analog", the paper's direct encoding).
INPUT_ENCODINGS = ("spiking", "analog", "events")

#: architecture name → its own keys and their defaults.
ARCHITECTURES: Dict[str, Dict[str, Any]] = {
    "mlp": {"hidden": [128]},
    "convnet": {"channels": [16, 32], "strides": [1, 2], "kernel_size": 3, "hidden": [128]},
    "vgg": {"variant": "vgg11", "width": 1.0, "hidden": []},
}

#: VGG feature stacks; "M" marks where the original network max-pools. Here the conv
#: just before an "M" gets stride 2 instead (netx cannot run pooling layers).
VGG_VARIANTS: Dict[str, List[Union[int, str]]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
}

#: the spiking neuron of the hidden layers: with a learned per-step gain (DLIF) or without.
NEURONS = ("dlif", "lif")

#: the surrogate gradients of the spike (``neurons.SURROGATES`` holds their functions,
#: in this order).
SURROGATE_NAMES = ("triangle", "sigmoid", "atan", "rect")

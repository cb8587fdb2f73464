"""Every shipped netx file records the hash of the checkpoint beside it.

``evaluate`` and ``certify`` refuse a checkpoint and a netx file that record different
checkpoints, but a file without the record cannot be checked: a natural-model checkpoint
evaluated against the robust model's ``model_exact.net`` ran with exit 0 and no warning.
The digits models, first exported before ``export`` wrote provenance, were exported
again from their own checkpoints (the integer arrays are unchanged, so their
evaluation reports still describe these files).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from rssnn_deploy.netx.reader import read_netx
from rssnn_deploy.training.checkpoints import checkpoint_digest

MODELS = Path(__file__).resolve().parents[2] / "models"
def _shipped():
    for net in sorted(MODELS.glob("*/*.net")):
        yield pytest.param(net, id=f"{net.parent.name}/{net.name}")


@pytest.mark.parametrize("net", list(_shipped()))
def test_shipped_net_records_its_checkpoint(net):
    recorded = read_netx(net).meta.get("checkpoint_sha256")
    assert recorded is not None, f"{net} records no checkpoint_sha256"
    assert recorded == checkpoint_digest(net.parent / "checkpoint.pt"), \
        f"{net} records another checkpoint than the one beside it"


def test_every_model_folder_is_covered():
    folders = {net.parent.name for net in MODELS.glob("*/*.net")}
    assert {"digits_dlif_robust", "digits_lif_natural"} <= folders and len(folders) >= 4

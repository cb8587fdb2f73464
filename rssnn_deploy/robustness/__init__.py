"""Robustness of the float model and of the deployed integer model.

Modules, one job each:

* ``noise``: Gaussian, salt-and-pepper and uniform input noise, seeded.
* ``attacks``: torchattacks FGSM / PGD / APGD, with SNN gradient sources (BPTT, BPTR,
  surrogate ensembles).
* ``chip_model``: the deployed integer network as a differentiable ``nn.Module``
  (the simulator's straight-through mode), for white-box attacks on the chip itself.
* ``faults``: hardware non-idealities on a copy of a ``NetworkSpec``: weight bit flips,
  threshold and decay mismatch, dropped spikes.
* ``sanity``: checks that catch a broken or obfuscated attack.
* ``sweep``: cells of work, a resumable JSON cache, sharding over torch.distributed.
* ``plots`` / ``tables``: the report's PNGs and Markdown.
* ``checks``: the demo's short check (clean, noise, PGD transfer).

``rssnn_deploy.evaluate`` puts them together for ``rssnn-deploy evaluate``.
"""
from rssnn_deploy.robustness.checks import (CheckConfig, Predictor, accuracy, float_predictor,
                                            pgd_examples, run_checks)
from rssnn_deploy.robustness.noise import gaussian_noise, salt_and_pepper, uniform_noise

__all__ = ["CheckConfig", "Predictor", "accuracy", "float_predictor", "run_checks",
           "gaussian_noise", "salt_and_pepper", "uniform_noise", "pgd_examples"]

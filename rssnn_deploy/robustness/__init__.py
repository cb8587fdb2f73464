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
* ``config``: threat models, ``EvaluateConfig`` and the evaluated ``Subject`` (budgets ε
  in pixel units, read and printed by ``rssnn_deploy.epsilon``).
* ``choices``: attack names, gradient sources, default noise and fault levels: what the
  parser offers, free of torch (so is ``config``).
* ``cells``: the cells of one evaluation and how each is computed.
* ``record``: computed cells assembled into rows, worst cases and sanity checks.
* ``plots`` / ``tables``: the report's PNGs and Markdown.
* ``evaluation``: the orchestrator behind ``rssnn-deploy evaluate``; ``cli_args`` its options.
* ``checks``: the demo's short check (clean, noise, PGD transfer).

Imports point one way: ``evaluation`` → ``record`` → ``cells`` → the measuring modules;
nothing here imports ``evaluation`` back.
"""
from rssnn_deploy.lazy import lazy_attributes

#: name → the module that defines it, imported on first use: the command line's parser
#: reads ``choices`` and ``config`` from this package without waiting for torch.
_LAZY = {
    **dict.fromkeys(("CheckConfig", "Predictor", "accuracy", "float_predictor",
                     "pgd_examples", "run_checks"), "rssnn_deploy.robustness.checks"),
    **dict.fromkeys(("gaussian_noise", "salt_and_pepper", "uniform_noise"),
                    "rssnn_deploy.robustness.noise"),
}

__all__ = ["CheckConfig", "Predictor", "accuracy", "float_predictor", "run_checks",
           "gaussian_noise", "salt_and_pepper", "uniform_noise", "pgd_examples"]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

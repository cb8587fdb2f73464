r"""Robust training of spiking networks: the RSSNN recipe, one module per part of it.

The objective (RSSNN paper, arXiv 2405.20694) for a clean batch ``x`` and a perturbed
copy ``x̃``:

.. math::
    L = \kappa\,\mathrm{CE}(f(x), y) + (1-\kappa)\,\mathrm{CE}(f(\tilde x), y)
        + \rho\,\mathrm{MPPD} \;[+\ \lambda_{sr} R]

- :mod:`.objectives`: the cross-entropy terms, MPPD and the sparse-gradient regulariser;
- :mod:`.perturbations`: how ``x̃`` is made (Gaussian noise, R+FGSM, PGD; the last two
  in :mod:`.adversarial`, loaded on use since torchattacks is optional);
- :mod:`.orthogonality`: the Parseval retraction after each update;
- :mod:`.config` and :mod:`.presets`: every coefficient, and the named settings;
- :mod:`.loop`: float epochs, then optional Loihi-exact fine-tuning;
- :mod:`.distributed`: data parallelism under torchrun;
- :mod:`.checkpoints`: what a run writes and how it is read back;
- the command-line options live in :mod:`rssnn_deploy.cli.train_args`.

Run as ``python -m rssnn_deploy.training ...`` or, data-parallel,
``torchrun --nproc_per_node N -m rssnn_deploy.training ...``; only rank 0 writes files.
"""
from rssnn_deploy.training.checkpoints import (CHECKPOINT_NAME, METRICS_NAME, CheckpointError,
                                               load_checkpoint, read_checkpoint,
                                               save_checkpoint)
from rssnn_deploy.training.config import PERTURBATIONS, TrainConfig
from rssnn_deploy.training.loop import (evaluate_accuracy, run_training, train,
                                        train_digits_model)
from rssnn_deploy.training.objectives import (LossTerms, mppd, robust_loss, runner_up_class,
                                              sparse_gradient_probe, two_class_probability)
from rssnn_deploy.training.orthogonality import orthogonality_step
from rssnn_deploy.training.perturbations import make_perturbation
from rssnn_deploy.training.presets import PRESETS

__all__ = [
    "CHECKPOINT_NAME",
    "METRICS_NAME",
    "CheckpointError",
    "PERTURBATIONS",
    "PRESETS",
    "TrainConfig",
    "LossTerms",
    "RandomStepFGSM",
    "mppd",
    "runner_up_class",
    "two_class_probability",
    "sparse_gradient_probe",
    "robust_loss",
    "make_perturbation",
    "orthogonality_step",
    "evaluate_accuracy",
    "train",
    "save_checkpoint",
    "read_checkpoint",
    "load_checkpoint",
    "run_training",
    "train_digits_model",
]


def __getattr__(name: str):
    """``RandomStepFGSM`` needs torchattacks, which is optional: loaded on first use."""
    if name == "RandomStepFGSM":
        from rssnn_deploy.training.adversarial import RandomStepFGSM
        return RandomStepFGSM
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""A check on a data set that only training needs: every test label occurs in the
training split. A test label the training split never shows would make the model one
class wider than anything it learns and score 0 % on those samples without a word.
(Checks every source needs, such as an empty image axis, run in the loaders:
``data.base.check_sample_shape`` and ``check_dataset``.)
"""
from __future__ import annotations

import numpy as np

from rssnn_deploy.data.base import Dataset, DatasetError

__all__ = ["check_test_labels"]


def check_test_labels(data: Dataset, source: object) -> None:
    """Every test label occurs in the training split (the classes a model can learn)."""
    taught = np.unique(data.y_train.numpy())
    unseen = np.setdiff1d(np.unique(data.y_test.numpy()), taught)
    if unseen.size:
        shown = ", ".join(str(int(v)) for v in unseen[:10]) + (" …" if unseen.size > 10 else "")
        raise DatasetError(f"{source}: test label{'s' * (unseen.size > 1)} {shown} never "
                           f"occur{'s' * (unseen.size == 1)} in the training split "
                           f"(labels {_ranges(taught)}); a model cannot learn "
                           f"{'them' if unseen.size > 1 else 'it'}: relabel the data or "
                           f"move such samples into training")


def _ranges(values: np.ndarray) -> str:
    """'0–9' for a run of consecutive integers, else up to ten listed."""
    values = [int(v) for v in values]
    if values == list(range(values[0], values[-1] + 1)) and len(values) > 2:
        return f"{values[0]}–{values[-1]}"
    return ", ".join(map(str, values[:10])) + (" …" if len(values) > 10 else "")

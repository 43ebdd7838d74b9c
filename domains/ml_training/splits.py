"""The training and validation splits of a dataset, as two files: runs get the first, the evaluator the second.

    splits = prepare_splits(dataset)      # cached by the dataset's checksum; torch-free
    splits.train, splits.val              # raw byte files

The validation split is the corpus's fixed tail (VAL_FRACTION of its bytes), always the same bytes. A training
run's sandbox holds only `train`: no path to the validation bytes is in its view.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ledgerlab.domains.ml_training.data import Dataset, cache_dir, read_bytes

VAL_FRACTION = 0.1


@dataclass(frozen=True)
class Splits:
    """The two files of a dataset's split."""

    train: Path
    val: Path


def split_bytes(data: bytes) -> tuple[bytes, bytes]:
    """(train, validation): the validation split is the last VAL_FRACTION of the bytes (at least 2)."""
    n_val = max(2, int(len(data) * VAL_FRACTION))
    return data[:-n_val], data[-n_val:]


def prepare_splits(dataset: Dataset, root: Path | None = None) -> Splits:
    """The dataset's split files under the cache (written once, atomically, readable by the sandbox's uid)."""
    folder = (root or cache_dir() / "splits") / dataset.sha256[:32]
    splits = Splits(train=folder / "train.bin", val=folder / "val.bin")
    if splits.train.exists() and splits.val.exists():
        return splits
    folder.mkdir(parents=True, exist_ok=True)
    train, val = split_bytes(read_bytes(dataset.path))
    for path, data in ((splits.train, train), (splits.val, val)):
        tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
        tmp.write_bytes(data)
        tmp.chmod(0o444)
        tmp.replace(path)
    return splits

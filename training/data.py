"""MNIST (and Fashion-MNIST for OOD) as in-memory tensors, with fixed, seeded splits.

The 60,000 training images are split into a training set and two disjoint validation
halves: `val` (temperature, thresholds, model selection) and `cal` (conformal
calibration), so that the conformal guarantee is not spent on data the temperature saw.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision import datasets

from models.usage import UsageError


@dataclass(frozen=True)
class Split:
    """Pixels in [0, 1], ``[N, 1, 28, 28]`` float32, and labels ``[N]`` int64."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def head(self, n: int | None) -> Split:
        return self if n is None else Split(self.x[:n], self.y[:n])


@dataclass(frozen=True)
class Splits:
    train: Split
    val: Split
    cal: Split
    fingerprint: str


def _to_split(ds: datasets.MNIST) -> Split:
    return Split(ds.data.unsqueeze(1).float().div_(255.0), ds.targets.long())


def _dataset(kind: type[datasets.MNIST], root: Path, train: bool, download: bool) -> Split:
    try:
        return _to_split(kind(root=str(root), train=train, download=download))
    except RuntimeError as e:  # torchvision's "Dataset not found or corrupted"
        if download:  # torchvision's "Error downloading ...": no internet, or the mirror is away
            raise UsageError(f"could not download {kind.__name__} into {root} ({str(e).strip().splitlines()[0]}): without internet, point --data-dir or VIGIL_DATA_DIR at a copy") from e
        if "not found" not in str(e):
            raise
        raise FileNotFoundError(
            f"no {kind.__name__} under {root} (torchvision's layout: {root}/{kind.__name__}/raw): "
            "pass --data-dir or set VIGIL_DATA_DIR (vigil train and vigil evaluate also take --download)"
        ) from e


def load_mnist(root: Path, train: bool, download: bool = False) -> Split:
    return _dataset(datasets.MNIST, root, train, download)


def load_fashion_mnist(root: Path, train: bool = False, download: bool = False) -> Split:
    return _dataset(datasets.FashionMNIST, root, train, download)


#: The smallest validation size whose every part (validation, calibration, scorer fit and
#: choice) holds images.
MIN_VAL_SIZE = 10


def make_splits(
    root: Path,
    val_size: int = 10_000,
    seed: int = 0,
    train_size: int | None = None,
    download: bool = False,
) -> Splits:
    """Seeded split of MNIST train into train / val / cal (val and cal halves of `val_size`).

    `train_size` caps the training part (tests use a few hundred images).
    """
    if val_size < MIN_VAL_SIZE:
        # Halves for validation and calibration, and the validation half parted again to fit
        # and choose the OOD scorers: below this a part is empty and a fit fails after training.
        raise UsageError(f"the validation size must be at least {MIN_VAL_SIZE} (halves for validation and calibration), got {val_size}")
    full = load_mnist(root, train=True, download=download)
    if val_size >= len(full):
        raise UsageError(f"the validation size {val_size} leaves no training images (MNIST train has {len(full)})")
    perm = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed))
    half = val_size // 2
    val_idx, cal_idx, train_idx = perm[:half], perm[half:val_size], perm[val_size:]
    if train_size is not None:
        train_idx = train_idx[:train_size]
        missing = (torch.bincount(full.y[train_idx], minlength=int(full.y.max()) + 1) == 0).nonzero().flatten().tolist()
        if missing:  # class statistics (Mahalanobis, Laplace) need every class: refused before training
            raise UsageError(f"the {len(train_idx)} training images hold no digit {', '.join(map(str, missing))}: raise --train-size")
    digest = hashlib.sha256()
    digest.update(full.x.numpy().tobytes())
    digest.update(perm.numpy().tobytes())
    digest.update(f"{val_size}:{train_size}".encode())
    return Splits(
        train=Split(full.x[train_idx], full.y[train_idx]),
        val=Split(full.x[val_idx], full.y[val_idx]),
        cal=Split(full.x[cal_idx], full.y[cal_idx]),
        fingerprint=digest.hexdigest(),
    )

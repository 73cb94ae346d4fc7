"""Out-of-distribution test sets for `vigil evaluate-ood`: Fashion-MNIST, generated ones, a folder.

Generated sets need no download and are seeded (Hendrycks & Gimpel 2017 and Liang et al.
2018 use the same two noises):
- uniform noise: i.i.d. pixels ~ U[0, 1];
- Gaussian noise: i.i.d. pixels ~ N(0.5, 1), clipped to [0, 1];
- MNIST blurred: MNIST test digits under a heavy Gaussian blur (sigma = 3 px), strokes
  melt into blobs that no longer read as a digit;
- MNIST inverted: 1 - pixel (dark digits on white). The service's `auto_invert` would
  turn such an upload back into an ordinary digit; here the tensor goes to the model as
  is, so this set measures the detector, not the upload path.
`--ood-dir`: every image file under a folder, any name, size, mode or colour, converted by
`models.preprocess` (`load_working_copy`, `to_model_input`) with the bundle's input spec,
exactly as uploads are.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision.transforms.functional as TF
from PIL import Image

from models.manifest import InputSpec
from models.preprocess import UPLOAD_FORMATS, load_working_copy, to_model_input
from models.usage import UsageError
from training.data import load_fashion_mnist

BLUR_SIGMA = 3.0
#: Formats a folder's files may be in: the service's uploads plus the netpbm family
#: (PGM/PPM/PBM) of many image archives. An allow-list all the same: a file that merely
#: looks like, say, EPS must not start Ghostscript on a user's folder.
FOLDER_FORMATS = (*UPLOAD_FORMATS, "PPM")


def generated_sets(id_test: torch.Tensor, n: int, seed: int) -> dict[str, torch.Tensor]:
    """Pixel sets ``[n, C, H, W]`` in [0, 1], shaped like `id_test` ``[N, C, H, W]``; seeded."""
    gen = torch.Generator().manual_seed(seed)
    shape = (n, *id_test.shape[1:])
    digits = id_test[torch.randperm(len(id_test), generator=gen)[:n]]
    kernel = 2 * int(3 * BLUR_SIGMA) + 1  # +-3 sigma covers 99.7% of the kernel's mass
    return {
        "uniform_noise": torch.rand(shape, generator=gen),
        "gaussian_noise": (0.5 + torch.randn(shape, generator=gen)).clamp(0.0, 1.0),
        "mnist_blurred": TF.gaussian_blur(digits, kernel_size=kernel, sigma=BLUR_SIGMA),
        "mnist_inverted": 1.0 - digits,
    }


def fashion_mnist(data_dir: Path, n: int | None = None) -> torch.Tensor:
    """Fashion-MNIST test pixels ``[N, 1, 28, 28]`` (the first `n`)."""
    return load_fashion_mnist(data_dir, train=False).x[:n]


def load_folder(folder: Path, spec: InputSpec) -> tuple[torch.Tensor, list[str]]:
    """Every readable image under `folder` (recursively) as ``[N, C, H, W]``, and the unreadable files.

    Every file is tried, whatever its name (a file ``scan0001`` with no suffix is an
    image if its content is in one of `FOLDER_FORMATS`), in sorted path order. Each goes
    through the service's own steps: `load_working_copy` (a side over 1024 px is reduced
    first), then `to_model_input`. Unlike the service, which refuses animated or multi-page uploads
    and takes six formats, a folder's multi-frame file contributes its first frame and
    netpbm files are read too: the evaluation measures the data.
    """
    if not folder.is_dir():  # rglob finds nothing in a missing folder or under a file
        raise UsageError(f"{folder} is not a folder of images" + (" (it does not exist)" if not folder.exists() else ""))
    pixels, skipped = [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            with Image.open(path, formats=FOLDER_FORMATS) as img:
                load_working_copy(img)
                pixels.append(to_model_input(img, spec))
        except (Image.DecompressionBombError, OSError, ValueError, SyntaxError, EOFError):  # OSError: unidentified too
            skipped.append(str(path))  # a damaged, foreign or oversized file does not stop the evaluation
    if not pixels:
        raise UsageError(f"no readable images under {folder} ({len(skipped)} unreadable)")
    return torch.stack(pixels), skipped

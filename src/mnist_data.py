"""Reader for the MNIST IDX files (gzip-compressed or raw), no torchvision needed.

Looks for the four standard files in a directory, accepting ``name.gz`` or ``name``,
either directly in the directory or in ``<dir>/MNIST/raw/`` (torchvision's layout).
"""

from __future__ import annotations

import gzip
import os
import struct

import torch

# The constants used by the PyTorch examples' MNIST script.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


class MnistDataError(Exception):
    """The data directory or one of its files is missing or malformed."""


def find_file(data_dir: str, name: str) -> str:
    """Return the path of ``name`` (or ``name.gz``) under ``data_dir``."""
    candidates = []
    for sub in ("", os.path.join("MNIST", "raw")):
        for suffix in (".gz", ""):
            candidates.append(os.path.join(data_dir, sub, name + suffix))
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise MnistDataError(
        f"MNIST file {name}[.gz] not found in {data_dir} (looked for: "
        + ", ".join(candidates)
        + ")"
    )


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        head = f.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as exc:
        raise MnistDataError(f"cannot read {path}: {exc}") from exc


def read_idx_images(path: str) -> torch.Tensor:
    """Read an IDX3 image file into a uint8 tensor of shape N x 28 x 28."""
    data = _read_bytes(path)
    if len(data) < 16:
        raise MnistDataError(f"{path}: too short for an IDX image header ({len(data)} bytes)")
    magic, n, rows, cols = struct.unpack(">IIII", data[:16])
    if magic != _IMAGES_MAGIC:
        raise MnistDataError(
            f"{path}: bad magic number 0x{magic:08x}, expected 0x{_IMAGES_MAGIC:08x} (IDX images)"
        )
    if (rows, cols) != (28, 28):
        raise MnistDataError(f"{path}: images are {rows}x{cols}, expected 28x28")
    expected = 16 + n * rows * cols
    if len(data) != expected:
        raise MnistDataError(
            f"{path}: size {len(data)} bytes does not match header ({n} images -> {expected} bytes)"
        )
    return torch.frombuffer(bytearray(data[16:]), dtype=torch.uint8).view(n, rows, cols)


def read_idx_labels(path: str) -> torch.Tensor:
    """Read an IDX1 label file into an int64 tensor of shape N."""
    data = _read_bytes(path)
    if len(data) < 8:
        raise MnistDataError(f"{path}: too short for an IDX label header ({len(data)} bytes)")
    magic, n = struct.unpack(">II", data[:8])
    if magic != _LABELS_MAGIC:
        raise MnistDataError(
            f"{path}: bad magic number 0x{magic:08x}, expected 0x{_LABELS_MAGIC:08x} (IDX labels)"
        )
    if len(data) != 8 + n:
        raise MnistDataError(
            f"{path}: size {len(data)} bytes does not match header ({n} labels -> {8 + n} bytes)"
        )
    labels = torch.frombuffer(bytearray(data[8:]), dtype=torch.uint8).long()
    if n and int(labels.max()) > 9:
        raise MnistDataError(f"{path}: label {int(labels.max())} out of range 0..9")
    return labels


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x 28 x 28 -> float32 N x 1 x 28 x 28, as ToTensor() + Normalize() would give."""
    x = images.unsqueeze(1).to(torch.float32).div_(255.0)
    return x.sub_(MNIST_MEAN).div_(MNIST_STD)


def load_split(data_dir: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split ("train" or "test") as normalised float images and int64 labels."""
    images_name, labels_name = FILES[split]
    images = read_idx_images(find_file(data_dir, images_name))
    labels = read_idx_labels(find_file(data_dir, labels_name))
    if images.shape[0] != labels.shape[0]:
        raise MnistDataError(
            f"{split}: {images.shape[0]} images but {labels.shape[0]} labels in {data_dir}"
        )
    return normalize(images), labels

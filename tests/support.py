"""Helpers that several test modules import; pytest puts this folder on sys.path through its conftest.py."""

from __future__ import annotations

import importlib.metadata
import io
import zipfile
from pathlib import Path

import numpy as np

# A trial small enough to train in well under a second on the small test datasets.
TINY_PARAMETERS: dict[str, object] = {
    "model/latent_dim": 3,
    "model/depth": 1,
    "model/width_1": 16,
    "train/epochs": 2,
    "train/batch_size": 16,
    "downstream/hidden": 8,
    "downstream/epochs": 20,
}


def distribution_installed(name: str) -> bool:
    """Return whether the Python distribution ``name`` is installed."""
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def write_pickled_npz(path: Path, payload: bytes) -> Path:
    """Write a mosplot-style .npz whose ``lookup_table`` entry is an object array with ``payload`` as its pickle."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|O", "fortran_order": False, "shape": ()})
    buffer.write(payload)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("lookup_table.npy", buffer.getvalue())
    return path

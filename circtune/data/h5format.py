"""The canonical on-disk dataset format: one HDF5 file per dataset.

Layout (documented for users in docs/data-format.md)::

    /                   attrs: format, format_version, quantities, generator,
                        generator_version, settings (JSON), created_utc
    /values/<quantity>  (N, B, G, D) float32, chunked by samples, gzip
    /axes/vbs|vgs|vds   (N, B) | (N, G) | (N, D) float64, volts
    /metadata/<column>  (N,) text, float64 or int64

Each quantity is its own dataset and chunks hold a few samples each, so a
reader that needs only ``ibias`` of a hundred samples reads only those
chunks. Writers write to a temporary file beside the target and rename it,
so an interrupted write never leaves a partial file under the target name.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import h5py
import numpy as np

from circtune import __version__
from circtune.data.dataset import AXES, METADATA_COLUMNS, QUANTITY_UNITS, Dataset, Metadata, check_quantity_names
from circtune.errors import DataError

FORMAT_NAME = "circtune-dataset"
FORMAT_VERSION = 1
_SAMPLES_PER_CHUNK = 16
_STRING_DTYPE = h5py.string_dtype(encoding="utf-8")


def write_dataset(dataset: Dataset, path: str | os.PathLike[str], *, compression_level: int = 4) -> Path:
    """Write a dataset to ``path`` in the canonical format, atomically.

    Args:
        dataset: The dataset to write.
        path: Target file; its folder is created if missing.
        compression_level: gzip level from 0 (fastest) to 9 (smallest).

    Returns:
        The path written.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as temporary, h5py.File(temporary, "w") as handle:
        _write_contents(handle, dataset, compression_level)
    return target


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``, renamed onto it on success.

    On any exception the temporary file is removed and ``target`` is left
    as it was.
    """
    descriptor, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(descriptor)
    temporary = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    temporary.chmod(0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def read_dataset(
    path: str | os.PathLike[str],
    *,
    quantities: Sequence[str] | None = None,
    indices: Sequence[int] | np.ndarray | None = None,
) -> Dataset:
    """Read a canonical dataset file, or the requested part of it.

    Args:
        path: The HDF5 file.
        quantities: Quantities to load; all present ones if None.
        indices: Sample indices to load; all samples if None.

    Raises:
        DataError: If the file is missing, not HDF5, or not a valid dataset.
    """
    with DatasetFile(path) as handle:
        return handle.load(quantities=quantities, indices=indices)


class DatasetFile:
    """An open canonical dataset file that loads values on demand.

    Opening reads only the attributes, axes and metadata; ``load`` reads the
    requested quantities and samples.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._handle = _open_hdf5(self.path)
        try:
            self.quantities, self.n_samples, self.grid_shape = _check_layout(self._handle, self.path)
            self.attrs = _read_attrs(self._handle)
            self.metadata = Metadata.from_columns(
                {name: _read_column(self._handle[f"metadata/{name}"]) for name in METADATA_COLUMNS}
            )
        except (KeyError, ValueError, TypeError, OSError) as error:
            self._handle.close()
            raise DataError(f"{self.path}: invalid dataset file ({error}); rewrite it with circtune.data") from error
        except BaseException:
            self._handle.close()
            raise

    def __enter__(self) -> DatasetFile:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._handle.close()

    def load(
        self,
        *,
        quantities: Sequence[str] | None = None,
        indices: Sequence[int] | np.ndarray | None = None,
    ) -> Dataset:
        """Read the requested quantities of the requested samples.

        Raises:
            DataError: If a quantity is absent or an index is out of range.
        """
        names = tuple(self.quantities if quantities is None else quantities)
        absent = [name for name in names if name not in self.quantities]
        if absent:
            raise DataError(f"{self.path}: quantities {absent} are not in the file; it has {list(self.quantities)}")
        names = tuple(name for name in self.quantities if name in names)
        selection = self._selection(indices)

        # h5py fancy indexing needs increasing indices, so read sorted and reorder.
        order = np.argsort(selection, kind="stable")
        sorted_selection = selection[order]
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        values = np.empty((len(selection), len(names), *self.grid_shape), dtype=np.float32)
        for position, name in enumerate(names):
            values[:, position] = self._read_rows(self._handle[f"values/{name}"], sorted_selection)[inverse]
        axes = {axis: self._read_rows(self._handle[f"axes/{axis}"], sorted_selection)[inverse] for axis in AXES}
        dataset = Dataset(
            values=values,
            quantities=names,
            metadata=self.metadata.take(selection),
            attrs=dict(self.attrs),
            **axes,
        )
        return dataset

    def _selection(self, indices: Sequence[int] | np.ndarray | None) -> np.ndarray:
        if indices is None:
            return np.arange(self.n_samples)
        selection = np.asarray(indices, dtype=np.int64).reshape(-1)
        if selection.size and (selection.min() < 0 or selection.max() >= self.n_samples):
            raise DataError(
                f"{self.path}: sample indices must lie in [0, {self.n_samples}), but got "
                f"{int(selection.min())}..{int(selection.max())}"
            )
        if len(np.unique(selection)) != len(selection):
            raise DataError(f"{self.path}: sample indices repeat; pass each sample once")
        return selection

    @staticmethod
    def _read_rows(node: h5py.Dataset, sorted_selection: np.ndarray) -> np.ndarray:
        if len(sorted_selection) == node.shape[0] and np.array_equal(sorted_selection, np.arange(node.shape[0])):
            return np.asarray(node[...])
        if len(sorted_selection) == 0:
            return np.empty((0, *node.shape[1:]), dtype=node.dtype)
        return np.asarray(node[sorted_selection])


def _write_contents(handle: h5py.File, dataset: Dataset, compression_level: int) -> None:
    n_samples = dataset.n_samples
    chunk_rows = max(1, min(_SAMPLES_PER_CHUNK, n_samples))
    handle.attrs["format"] = FORMAT_NAME
    handle.attrs["format_version"] = FORMAT_VERSION
    handle.attrs["quantities"] = json.dumps(list(dataset.quantities))
    handle.attrs["circtune_version"] = __version__
    handle.attrs["created_utc"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    for key, value in dataset.attrs.items():
        if key in ("format", "format_version", "quantities", "circtune_version", "created_utc"):
            continue
        handle.attrs[key] = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value

    values = handle.create_group("values")
    for position, name in enumerate(dataset.quantities):
        values.create_dataset(
            name,
            data=dataset.values[:, position],
            chunks=(chunk_rows, *dataset.grid_shape),
            compression="gzip",
            compression_opts=compression_level,
            shuffle=True,
        )
        values[name].attrs["unit"] = QUANTITY_UNITS[name]
    axes = handle.create_group("axes")
    for axis in AXES:
        axes.create_dataset(axis, data=getattr(dataset, axis), chunks=True, compression="gzip")
        axes[axis].attrs["unit"] = "V"
    metadata = handle.create_group("metadata")
    for name, column in dataset.metadata.columns().items():
        if METADATA_COLUMNS[name] == "U":
            metadata.create_dataset(name, data=column.astype(object), dtype=_STRING_DTYPE)
        else:
            metadata.create_dataset(name, data=column)


def _open_hdf5(path: Path) -> h5py.File:
    if not path.exists():
        raise DataError(
            f"{path}: file not found; check the path or generate it with 'python -m circtune.data generate'"
        )
    if path.is_dir():
        raise DataError(f"{path}: is a folder, but a dataset file is expected")
    if not h5py.is_hdf5(path):
        raise DataError(f"{path}: not an HDF5 file; convert it with 'python -m circtune.data convert'")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise DataError(
            f"{path}: cannot open HDF5 file ({error}); the file may be truncated, write it again"
        ) from error


def _check_layout(handle: h5py.File, path: Path) -> tuple[tuple[str, ...], int, tuple[int, int, int]]:
    if handle.attrs.get("format") != FORMAT_NAME:
        hint = (
            "it looks like a BAG3 ss_params file"
            if "ibias" in handle and "sweep_params" in handle["ibias"].attrs
            else ""
        )
        raise DataError(
            f"{path}: not a circtune dataset (attribute 'format' is {handle.attrs.get('format')!r}); "
            f"convert it with 'python -m circtune.data convert'{' because ' + hint if hint else ''}"
        )
    for group in ("values", "axes", "metadata"):
        if group not in handle:
            raise DataError(f"{path}: group '/{group}' is missing; rewrite the file with circtune.data")
    quantities = tuple(json.loads(str(handle.attrs["quantities"])))
    check_quantity_names(quantities, str(path), require_ibias=True)
    stored = set(handle["values"].keys())
    if stored != set(quantities):
        raise DataError(
            f"{path}: /values holds {sorted(stored)} but the 'quantities' attribute lists {list(quantities)}; "
            "rewrite the file with circtune.data"
        )
    shapes = {name: handle[f"values/{name}"].shape for name in quantities}
    first = shapes[quantities[0]]
    if len(first) != 4 or any(shape != first for shape in shapes.values()):
        raise DataError(f"{path}: quantity shapes differ or are not (N, B, G, D): {shapes}")
    n_samples, n_vbs, n_vgs, n_vds = first
    for axis, size in zip(AXES, (n_vbs, n_vgs, n_vds), strict=True):
        if f"axes/{axis}" not in handle or handle[f"axes/{axis}"].shape != (n_samples, size):
            found = handle[f"axes/{axis}"].shape if f"axes/{axis}" in handle else "missing"
            raise DataError(f"{path}: axis '{axis}' is {found}, but the values need ({n_samples}, {size})")
    for name in METADATA_COLUMNS:
        if f"metadata/{name}" not in handle or handle[f"metadata/{name}"].shape != (n_samples,):
            raise DataError(f"{path}: metadata column '{name}' is missing or not of length {n_samples}")
    return quantities, n_samples, (n_vbs, n_vgs, n_vds)


def _read_attrs(handle: h5py.File) -> dict[str, object]:
    attrs: dict[str, object] = {}
    for key, value in handle.attrs.items():
        if key in ("format", "format_version", "quantities"):
            continue
        text = value.decode() if isinstance(value, bytes) else value
        if isinstance(text, str):
            try:
                attrs[key] = json.loads(text)
            except json.JSONDecodeError:
                attrs[key] = text
        else:
            attrs[key] = text.item() if isinstance(text, np.generic) else text
    return attrs


def _read_column(node: h5py.Dataset) -> np.ndarray:
    if h5py.check_string_dtype(node.dtype) is not None:
        return np.asarray(node.asstr()[...], dtype=str)
    return np.asarray(node[...])

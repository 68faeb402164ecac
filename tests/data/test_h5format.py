import h5py
import numpy as np
import pytest

from circtune.data.h5format import DatasetFile, read_dataset, write_dataset
from circtune.errors import DataError


def test_h5format_round_trip(small_dataset, tmp_path):
    path = write_dataset(small_dataset, tmp_path / "data.h5")
    loaded = read_dataset(path)
    assert np.array_equal(loaded.values, small_dataset.values)
    for axis in ("vbs", "vgs", "vds"):
        assert np.array_equal(getattr(loaded, axis), getattr(small_dataset, axis))
    for name, column in small_dataset.metadata.columns().items():
        assert np.array_equal(getattr(loaded.metadata, name), column), name
    assert loaded.quantities == small_dataset.quantities
    assert loaded.attrs["generator"] == "tests"


def test_h5format_partial_read(small_dataset, tmp_path):
    path = write_dataset(small_dataset, tmp_path / "data.h5")
    loaded = read_dataset(path, quantities=["gds", "ibias"], indices=[40, 3, 17])
    assert loaded.quantities == ("ibias", "gds")
    assert np.array_equal(loaded.values[:, 0], small_dataset.quantity("ibias")[[40, 3, 17]])
    assert np.array_equal(loaded.values[:, 1], small_dataset.quantity("gds")[[40, 3, 17]])
    assert list(loaded.metadata.device) == list(small_dataset.metadata.device[[40, 3, 17]])


def test_h5format_file_is_compressed_and_chunked(small_dataset, tmp_path):
    path = write_dataset(small_dataset, tmp_path / "data.h5")
    with h5py.File(path) as handle:
        node = handle["values/ibias"]
        assert node.compression == "gzip"
        assert node.chunks[1:] == small_dataset.grid_shape


def test_h5format_lazy_open_reads_metadata_only(small_dataset, tmp_path):
    path = write_dataset(small_dataset, tmp_path / "data.h5")
    with DatasetFile(path) as handle:
        assert handle.n_samples == 72
        assert handle.grid_shape == (2, 4, 5)
        assert len(handle.metadata) == 72


def test_h5format_failed_write_leaves_nothing(small_dataset, tmp_path, monkeypatch):
    import circtune.data.h5format as h5format

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(h5format, "_write_contents", fail)
    with pytest.raises(RuntimeError):
        write_dataset(small_dataset, tmp_path / "data.h5")
    assert list(tmp_path.iterdir()) == []


def _write_raw(path, build):
    with h5py.File(path, "w") as handle:
        build(handle)


def _copy_then(small_dataset, tmp_path, edit):
    path = write_dataset(small_dataset, tmp_path / "data.h5")
    with h5py.File(path, "a") as handle:
        edit(handle)
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda h: h.attrs.__setitem__("format", "other"), "not a circtune dataset"),
        (lambda h: h.__delitem__("values/gm"), r"/values holds"),
        (lambda h: h.__delitem__("axes"), "group '/axes' is missing"),
        (lambda h: h.__delitem__("metadata/corner"), "metadata column 'corner'"),
        (lambda h: h.attrs.__setitem__("quantities", '["gm"]'), "ibias"),
        (lambda h: (h.__delitem__("axes/vgs"), h.create_dataset("axes/vgs", data=np.zeros((72, 3)))), "axis 'vgs'"),
    ],
)
def test_h5format_rejects_bad_layout(small_dataset, tmp_path, edit, message):
    path = _copy_then(small_dataset, tmp_path, edit)
    with pytest.raises(DataError, match=message):
        read_dataset(path)


def test_h5format_rejects_nan_values(small_dataset, tmp_path):
    def poison(handle):
        data = handle["values/gm"][...]
        data[3, 0, 0, 0] = np.nan
        handle["values/gm"][...] = data

    path = _copy_then(small_dataset, tmp_path, poison)
    with pytest.raises(DataError, match="'gm' of sample 3"):
        read_dataset(path)


def test_h5format_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_dataset(tmp_path / "absent.h5")


def test_h5format_not_hdf5(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("hello")
    with pytest.raises(DataError, match="not an HDF5 file"):
        read_dataset(path)


def test_h5format_truncated_file(small_dataset, tmp_path):
    path = write_dataset(small_dataset, tmp_path / "data.h5")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError):
        read_dataset(path)


def test_h5format_index_out_of_range(small_dataset, tmp_path):
    path = write_dataset(small_dataset, tmp_path / "data.h5")
    with pytest.raises(DataError, match=r"\[0, 72\)"):
        read_dataset(path, indices=[72])

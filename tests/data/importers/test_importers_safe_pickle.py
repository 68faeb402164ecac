"""Tests for circtune.data.importers.safe_pickle."""

import io
import pickle

import numpy as np
import pytest

from circtune.data.importers.safe_pickle import load_pickle
from circtune.errors import DataError

# A protocol-0 pickle that calls os.system("exit 0") when fully unpickled.
# The tests only check that the restricted loader rejects it.
_OS_SYSTEM_PICKLE = b"cos\nsystem\n(S'exit 0'\ntR."


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_load_pickle_array_round_trip(protocol: int) -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    stream = io.BytesIO(pickle.dumps(array, protocol=protocol))

    loaded = load_pickle(stream, source="memory")

    assert isinstance(loaded, np.ndarray)
    assert loaded.dtype == np.float32
    assert np.array_equal(loaded, array)


def test_load_pickle_dict_of_arrays_and_scalars() -> None:
    content = {"id": np.ones((2, 3)), "width": np.float64(1e-5), "names": ["id"], "nested": {"w": 1e-5}}
    stream = io.BytesIO(pickle.dumps(np.array(content, dtype=object), protocol=3))

    loaded = load_pickle(stream, source="memory")

    assert isinstance(loaded, np.ndarray)
    table = loaded.item()
    assert np.array_equal(table["id"], np.ones((2, 3)))
    assert table["width"] == 1e-5
    assert table["nested"] == {"w": 1e-5}


def test_load_pickle_rejects_os_system() -> None:
    with pytest.raises(DataError, match=r"forbidden global 'os\.system'.*--allow-unsafe-pickle.*runs code"):
        load_pickle(io.BytesIO(_OS_SYSTEM_PICKLE), source="evil.npz")


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(eval, protocol=2),  # builtins.eval
        pickle.dumps(np.load, protocol=4),
        b"cbuiltins\ngetattr\n.",
    ],
)
def test_load_pickle_rejects_other_globals(payload: bytes) -> None:
    with pytest.raises(DataError, match="forbidden global"):
        load_pickle(io.BytesIO(payload), source="memory")


def test_load_pickle_rejects_non_latin1_codec() -> None:
    payload = b"c_codecs\nencode\n(Vx\nVzlib\ntR."

    with pytest.raises(DataError, match="forbidden encoding 'zlib'"):
        load_pickle(io.BytesIO(payload), source="memory")


def test_load_pickle_truncated_stream() -> None:
    payload = pickle.dumps(np.arange(100.0), protocol=4)

    with pytest.raises(DataError, match="corrupt or truncated"):
        load_pickle(io.BytesIO(payload[: len(payload) // 2]), source="memory")


def test_load_pickle_unsafe_loads_any_global() -> None:
    payload = pickle.dumps(complex(1, 2), protocol=2)  # builtins.complex

    loaded = load_pickle(io.BytesIO(payload), source="memory", allow_unsafe=True)

    assert loaded == complex(1, 2)

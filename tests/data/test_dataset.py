import dataclasses

import numpy as np
import pytest

from circtune.data.dataset import QUANTITIES, Dataset, Metadata
from circtune.errors import DataError


def test_dataset_shape_properties(small_dataset):
    assert small_dataset.n_samples == 72
    assert small_dataset.grid_shape == (2, 4, 5)
    assert small_dataset.quantity("gm").shape == (72, 2, 4, 5)


def test_dataset_take_keeps_rows_aligned(small_dataset):
    part = small_dataset.take([5, 1])
    assert np.array_equal(part.values, small_dataset.values[[5, 1]])
    assert list(part.metadata.device) == list(small_dataset.metadata.device[[5, 1]])
    assert np.array_equal(part.vgs, small_dataset.vgs[[5, 1]])


def test_dataset_concatenate_round_trip(small_dataset):
    joined = Dataset.concatenate([small_dataset.take(range(10)), small_dataset.take(range(10, 72))])
    assert np.array_equal(joined.values, small_dataset.values)
    assert np.array_equal(joined.metadata.flavor, small_dataset.metadata.flavor)


def test_dataset_concatenate_rejects_other_grid(small_dataset, dataset_factory):
    other = dataset_factory(grid=(2, 3, 5))
    with pytest.raises(DataError, match="resample"):
        Dataset.concatenate([small_dataset, other])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: {"values": d.values[:, :, :, :, :, None]}, "shape"),
        (lambda d: {"quantities": ("ibias", "gm", "gds", "gb", "cgd", "cgs", "cds", "cgb", "cdb", "bogus")}, "unknown quantities"),
        (lambda d: {"quantities": QUANTITIES[:9]}, "9 names"),
        (lambda d: {"vgs": d.vgs[:, :3]}, "axis 'vgs'"),
        (lambda d: {"vds": d.vds[:, ::-1] * np.array([1, 1, 0, 1, 1])}, "monotonic"),
        (lambda d: {"metadata": d.metadata.take(range(3))}, "metadata has 3 rows"),
        (lambda d: {"values": np.where(np.arange(d.values.size).reshape(d.values.shape) == 7, np.nan, d.values)}, "NaN"),
        (lambda d: {"vbs": np.full_like(d.vbs, np.inf)}, "NaN or infinite voltages"),
    ],
)
def test_dataset_rejects_invalid(small_dataset, change, message):
    fields = {field.name: getattr(small_dataset, field.name) for field in dataclasses.fields(small_dataset)}
    fields.update(change(small_dataset))
    with pytest.raises(DataError, match=message):
        Dataset(**fields)


def test_metadata_rejects_unknown_flavor(small_dataset):
    columns = small_dataset.metadata.columns()
    columns["flavor"] = np.array(["ulvt"] * len(columns["flavor"]))
    with pytest.raises(DataError, match="ulvt"):
        Metadata.from_columns(columns)


def test_metadata_rejects_missing_column(small_dataset):
    columns = small_dataset.metadata.columns()
    del columns["corner"]
    with pytest.raises(DataError, match="corner"):
        Metadata.from_columns(columns)

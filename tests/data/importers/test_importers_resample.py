"""Tests for circtune.data.importers.resample."""

import numpy as np
import pytest

from circtune.data.dataset import Dataset, Metadata
from circtune.data.importers.resample import (
    AxisGrid,
    GridSpec,
    concatenate_tables,
    parse_axis_range,
    parse_grid,
    resample,
)
from circtune.errors import ConfigError, DataError


def _metadata(n_samples: int) -> Metadata:
    return Metadata.from_columns(
        {
            "technology": ["t"] * n_samples,
            "device": [f"d{index}" for index in range(n_samples)],
            "flavor": ["svt"] * n_samples,
            "polarity": ["n"] * n_samples,
            "corner": ["tt"] * n_samples,
            "temperature_c": [27.0] * n_samples,
            "length_m": [1e-7] * n_samples,
            "width_m": [1e-6] * n_samples,
            "mismatch_draw": [0] * n_samples,
        }
    )


def _linear_dataset(
    vbs: np.ndarray,
    vgs: np.ndarray,
    vds: np.ndarray,
    *,
    n_samples: int = 2,
    quantities: tuple[str, ...] = ("ibias", "gm"),
) -> Dataset:
    # Values linear in every voltage, so multilinear interpolation is exact.
    b, g, d = np.meshgrid(vbs, vgs, vds, indexing="ij")  # (B, G, D)
    values = np.stack(
        [
            np.stack(
                [(sample + 1) * (position + 1) * (1 + 2 * g + 3 * d - 0.5 * b) for position in range(len(quantities))]
            )
            for sample in range(n_samples)
        ]
    )  # (N, P, B, G, D)
    return Dataset(
        values=values,
        quantities=quantities,
        vbs=np.tile(vbs, (n_samples, 1)),
        vgs=np.tile(vgs, (n_samples, 1)),
        vds=np.tile(vds, (n_samples, 1)),
        metadata=_metadata(n_samples),
        attrs={"sources": [{"file": "a.h5"}]},
    )


def _expected(dataset: Dataset, sample: int, vbs: np.ndarray, vgs: np.ndarray, vds: np.ndarray) -> np.ndarray:
    b, g, d = np.meshgrid(vbs, vgs, vds, indexing="ij")
    return np.stack(
        [(sample + 1) * (position + 1) * (1 + 2 * g + 3 * d - 0.5 * b) for position in range(len(dataset.quantities))]
    )


VBS = np.array([0.0, -0.4, -0.8])
VGS = np.linspace(0.0, 1.0, 11)
VDS = np.linspace(0.0, 1.5, 7)


def test_resample_none_axes_keep_source() -> None:
    dataset = _linear_dataset(VBS, VGS, VDS)

    result = resample(dataset, GridSpec())

    assert np.array_equal(result.values, dataset.values)
    assert np.array_equal(result.vgs, dataset.vgs)
    assert result.attrs["grid"] == {"vbs": "source", "vgs": "source", "vds": "source"}


def test_resample_coinciding_points_are_sliced() -> None:
    dataset = _linear_dataset(VBS, VGS, VDS)

    result = resample(dataset, GridSpec(vgs=AxisGrid.even(6), vds=AxisGrid.even(4)))

    assert result.grid_shape == (3, 6, 4)
    assert np.array_equal(result.vgs[0], VGS[::2])
    assert np.array_equal(result.vds[0], VDS[::2])
    assert np.array_equal(result.values, dataset.values[:, :, :, ::2, ::2])


def test_resample_interpolates_between_points() -> None:
    dataset = _linear_dataset(VBS, VGS, VDS)
    grid = GridSpec(vbs=AxisGrid.even(4, -0.1, -0.7), vgs=AxisGrid.even(5, 0.05, 0.95), vds=AxisGrid.even(3))

    result = resample(dataset, grid)

    expected_vbs = np.linspace(-0.1, -0.7, 4)
    expected_vgs = np.linspace(0.05, 0.95, 5)
    assert np.allclose(result.vbs[1], expected_vbs)
    assert np.allclose(result.vgs[1], expected_vgs)
    for sample in range(2):
        expected = _expected(dataset, sample, expected_vbs, expected_vgs, result.vds[sample])
        assert np.allclose(result.values[sample], expected, rtol=1e-5)


def test_resample_descending_source_axis() -> None:
    dataset = _linear_dataset(VBS, VGS, VDS)

    result = resample(dataset, GridSpec(vbs=AxisGrid.even(5, -0.7, -0.1)))

    expected_vbs = np.linspace(-0.7, -0.1, 5)
    expected = _expected(dataset, 0, expected_vbs, VGS, VDS)
    assert np.allclose(result.values[0], expected, rtol=1e-5)


def test_resample_nearest_picks_source_points() -> None:
    vgs = np.linspace(0.0, 1.5, 151)
    dataset = _linear_dataset(VBS, vgs, VDS)

    result = resample(dataset, GridSpec.coarse())

    assert result.grid_shape == (3, 11, 7)
    assert np.array_equal(result.vgs[0], vgs[::15])
    assert np.array_equal(result.values, dataset.values[:, :, :, ::15, :])


def test_resample_nearest_uneven_source_count() -> None:
    vgs = np.linspace(0.0, 1.0, 38)
    dataset = _linear_dataset(VBS, vgs, VDS)

    result = resample(dataset, GridSpec(vgs=AxisGrid.nearest(11)))

    indices = np.rint(np.linspace(0, 37, 11)).astype(int)
    assert np.array_equal(result.vgs[0], vgs[indices])
    assert np.array_equal(result.values[:, :, :, :, :], dataset.values[:, :, :, indices, :])


def test_resample_rejects_range_outside_source() -> None:
    dataset = _linear_dataset(VBS, VGS, VDS)

    with pytest.raises(DataError, match=r"outside the source sweep 0\.\.1 V of sample 0"):
        resample(dataset, GridSpec(vgs=AxisGrid.even(5, 0.0, 1.2)), source="table.npz")


def test_resample_rejects_count_on_single_point_axis() -> None:
    dataset = _linear_dataset(np.array([0.0]), VGS, VDS)

    with pytest.raises(DataError, match="one source point"):
        resample(dataset, GridSpec(vbs=AxisGrid.even(3)))


def test_resample_single_point_axis_keeps_one() -> None:
    dataset = _linear_dataset(np.array([0.0]), VGS, VDS)

    result = resample(dataset, GridSpec.coarse())

    assert result.grid_shape == (1, 11, 7)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("source", GridSpec(AxisGrid.source(), AxisGrid.source(), AxisGrid.source())),
        ("9", GridSpec(AxisGrid.even(9), AxisGrid.even(9), AxisGrid.even(9))),
        ("nearest:5", GridSpec.coarse(5)),
        ("vgs=21", GridSpec(vgs=AxisGrid.even(21))),
        ("vbs=source, vds=nearest:11", GridSpec(vbs=AxisGrid.source(), vds=AxisGrid.nearest(11))),
    ],
)
def test_parse_grid_forms(text: str, expected: GridSpec) -> None:
    assert parse_grid(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vgs", "point count"),
        ("vgx=5", "axis=N"),
        ("vgs=5,vgs=7", "twice"),
        ("vgs=0", "at least 1 point"),
        ("vgs=nearest:x", "point count"),
    ],
)
def test_parse_grid_rejects(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_grid(text)


def test_parse_axis_range_values() -> None:
    axis = parse_axis_range("0:-1.5:11", flag="--vgs")

    assert axis == AxisGrid.even(11, 0.0, -1.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [("0:1.5", "START:STOP:COUNT"), ("a:1:3", "invalid"), ("1:1:5", "empty"), ("0:nan:3", "non-finite")],
)
def test_parse_axis_range_rejects(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_axis_range(text, flag="--vgs")


def test_axis_grid_source_takes_no_count() -> None:
    with pytest.raises(ConfigError, match="no count or range"):
        AxisGrid(mode="source", n_points=5)


def test_axis_grid_range_needs_both_ends() -> None:
    with pytest.raises(ConfigError, match="both a start and a stop"):
        AxisGrid.even(5, 0.0, None)


def test_concatenate_tables_leaves_out_uncommon_quantities() -> None:
    first = _linear_dataset(VBS, VGS, VDS, quantities=("ibias", "gm"))
    second = _linear_dataset(VBS, VGS, VDS, quantities=("ibias", "gds"))

    result = concatenate_tables([first, second], source="test")

    assert result.quantities == ("ibias",)
    assert result.n_samples == 4
    assert result.attrs["missing_quantities"] == ["gm", "gds", "gb", "cgd", "cgs", "cds", "cgb", "cdb", "csb"]
    assert result.attrs["sources"] == [{"file": "a.h5"}, {"file": "a.h5"}]


def test_concatenate_tables_rejects_grid_mismatch() -> None:
    first = _linear_dataset(VBS, VGS, VDS)
    second = _linear_dataset(VBS, VGS[:5], VDS)

    with pytest.raises(DataError, match="--grid"):
        concatenate_tables([first, second], source="folder")

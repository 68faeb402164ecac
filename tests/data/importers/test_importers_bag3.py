"""Tests for circtune.data.importers.bag3 on files written in the BAG3 layout."""

import json
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from circtune.data.dataset import QUANTITIES
from circtune.data.importers.bag3 import MetadataOverrides, find_bag3_files, read_bag3, read_bag3_file
from circtune.data.importers.resample import GridSpec
from circtune.errors import ConfigError, DataError

CORNERS = ("tt", "ff")
VGS = np.linspace(0.0, 1.8, 5)
VBS = np.array([-0.4, -0.2, 0.0])
VDS = np.linspace(0.0, 1.8, 4)
SIDECAR = {
    "technology": "sky130",
    "device": "nfet_01v8",
    "flavor": "svt",
    "polarity": "n",
    "temperature_c": 27,
    "length_m": 1.5e-07,
    "width_m": 1e-06,
}


def canonical_table(quantity: str, n_vbs: int = len(VBS), n_vgs: int = len(VGS), n_vds: int = len(VDS)) -> np.ndarray:
    """Return (C, B, G, D) values that encode their own indices."""
    scale = 10.0 ** -(3 + QUANTITIES.index(quantity))
    c, b, g, d = np.meshgrid(
        np.arange(len(CORNERS)), np.arange(n_vbs), np.arange(n_vgs), np.arange(n_vds), indexing="ij"
    )
    return scale * (1 + 1000 * c + 100 * b + 10 * g + d)


def write_bag3(
    path: Path,
    *,
    order: tuple[str, ...] = ("corner", "vgs", "vbs", "vds"),
    quantities: tuple[str, ...] = QUANTITIES,
    vgs: np.ndarray = VGS,
    sidecar: dict[str, object] | None = SIDECAR,
) -> Path:
    """Write one ss_params.hdf5 file and its sidecar in the BAG3 layout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    canonical = ("corner", "vbs", "vgs", "vds")
    with h5py.File(path, "w") as handle:
        for quantity in quantities:
            table = canonical_table(quantity, n_vgs=len(vgs)).transpose([canonical.index(axis) for axis in order])
            node = handle.create_dataset(quantity, data=table, compression="gzip")
            node.attrs["sweep_params"] = np.array([axis.encode() for axis in order])
        handle.create_dataset("vgs", data=vgs)
        handle.create_dataset("vbs", data=VBS)
        handle.create_dataset("vds", data=VDS)
        handle.create_dataset("corner", data=np.array([corner.encode() for corner in CORNERS]))
    if sidecar is not None:
        path.with_name("ss_params.json").write_text(json.dumps(sidecar))
    return path


def test_read_bag3_file_values_and_axes(tmp_path: Path) -> None:
    file = write_bag3(tmp_path / "ss_params.hdf5")

    dataset = read_bag3_file(file)

    assert dataset.quantities == QUANTITIES
    assert dataset.values.shape == (2, 10, 3, 5, 4)
    assert np.allclose(dataset.quantity("gm"), canonical_table("gm"))
    assert np.array_equal(dataset.vgs[1], VGS)
    assert np.array_equal(dataset.vbs[0], VBS)
    assert np.array_equal(dataset.vds[0], VDS)


def test_read_bag3_file_metadata_from_sidecar(tmp_path: Path) -> None:
    file = write_bag3(tmp_path / "ss_params.hdf5")

    metadata = read_bag3_file(file).metadata

    assert metadata.corner.tolist() == ["tt", "ff"]
    assert metadata.device.tolist() == ["nfet_01v8", "nfet_01v8"]
    assert metadata.length_m.tolist() == [1.5e-07, 1.5e-07]
    assert metadata.temperature_c.tolist() == [27.0, 27.0]
    assert metadata.mismatch_draw.tolist() == [0, 0]


def test_read_bag3_file_records_provenance(tmp_path: Path) -> None:
    file = write_bag3(tmp_path / "ss_params.hdf5")

    attrs = read_bag3_file(file).attrs

    assert attrs["sources"] == [{"file": str(file), "format": "bag3", "samples": 2}]
    assert attrs["missing_quantities"] == []


@pytest.mark.parametrize(
    "order",
    [("vds", "corner", "vbs", "vgs"), ("vbs", "vds", "vgs", "corner"), ("corner", "vbs", "vgs", "vds")],
)
def test_read_bag3_file_honours_sweep_order(tmp_path: Path, order: tuple[str, ...]) -> None:
    file = write_bag3(tmp_path / "ss_params.hdf5", order=order)

    dataset = read_bag3_file(file)

    for quantity in QUANTITIES:
        assert np.allclose(dataset.quantity(quantity), canonical_table(quantity)), quantity


def test_read_bag3_file_overrides_win(tmp_path: Path) -> None:
    file = write_bag3(tmp_path / "ss_params.hdf5")

    metadata = read_bag3_file(file, overrides=MetadataOverrides(device="nfet_01v8_lvt", flavor="lvt")).metadata

    assert metadata.device.tolist() == ["nfet_01v8_lvt"] * 2
    assert metadata.flavor.tolist() == ["lvt"] * 2


def test_read_bag3_file_metadata_from_overrides_only(tmp_path: Path) -> None:
    file = write_bag3(tmp_path / "ss_params.hdf5", sidecar=None)
    overrides = MetadataOverrides(**{key: value for key, value in SIDECAR.items() if key != "polarity"})

    metadata = read_bag3_file(file, overrides=overrides).metadata

    assert metadata.polarity.tolist() == ["n", "n"]
    assert metadata.width_m.tolist() == [1e-06, 1e-06]


def test_read_bag3_file_metadata_json_sidecar(tmp_path: Path) -> None:
    file = write_bag3(tmp_path / "ss_params.hdf5", sidecar=None)
    (tmp_path / "metadata.json").write_text(json.dumps(SIDECAR))

    metadata = read_bag3_file(file).metadata

    assert metadata.technology.tolist() == ["sky130", "sky130"]


def test_read_bag3_file_pmos_polarity_from_vgs(tmp_path: Path) -> None:
    sidecar = {key: value for key, value in SIDECAR.items() if key != "polarity"}
    file = write_bag3(tmp_path / "ss_params.hdf5", vgs=-VGS, sidecar=sidecar)

    metadata = read_bag3_file(file).metadata

    assert metadata.polarity.tolist() == ["p", "p"]


def test_read_bag3_file_allow_missing(tmp_path: Path) -> None:
    file = write_bag3(tmp_path / "ss_params.hdf5", quantities=tuple(q for q in QUANTITIES if q not in ("cdb", "gb")))

    dataset = read_bag3_file(file, allow_missing=True)

    assert dataset.quantities == ("ibias", "gm", "gds", "cgd", "cgs", "cds", "cgb", "csb")
    assert dataset.attrs["missing_quantities"] == ["gb", "cdb"]
    assert np.allclose(dataset.quantity("csb"), canonical_table("csb"))


def test_read_bag3_file_rejects_corner_override(tmp_path: Path) -> None:
    file = write_bag3(tmp_path / "ss_params.hdf5")

    with pytest.raises(ConfigError, match="--corner applies to lookup tables only"):
        read_bag3_file(file, overrides=MetadataOverrides(corner="tt"))


def _delete(name: str) -> Callable[[Path], None]:
    def mutate(file: Path) -> None:
        with h5py.File(file, "a") as handle:
            del handle[name]

    return mutate


def _set_attr(name: str, value: object) -> Callable[[Path], None]:
    def mutate(file: Path) -> None:
        with h5py.File(file, "a") as handle:
            handle[name].attrs["sweep_params"] = value

    return mutate


def _drop_attr(file: Path) -> None:
    with h5py.File(file, "a") as handle:
        del handle["gds"].attrs["sweep_params"]


def _add_extra(file: Path) -> None:
    with h5py.File(file, "a") as handle:
        node = handle.create_dataset("cgg", data=canonical_table("gm").transpose(0, 2, 1, 3))
        node.attrs["sweep_params"] = np.array([b"corner", b"vgs", b"vbs", b"vds"])


def _replace(name: str, data: np.ndarray) -> Callable[[Path], None]:
    def mutate(file: Path) -> None:
        with h5py.File(file, "a") as handle:
            attrs = dict(handle[name].attrs)
            del handle[name]
            node = handle.create_dataset(name, data=data)
            for key, value in attrs.items():
                node.attrs[key] = value

    return mutate


def _with_nan(file: Path) -> None:
    with h5py.File(file, "a") as handle:
        data = handle["cgs"][...]
        data[1, 2, 0, 3] = np.nan
        handle["cgs"][...] = data


def _write_text(name: str, text: str) -> Callable[[Path], None]:
    def mutate(file: Path) -> None:
        file.with_name(name).write_text(text)

    return mutate


def _remove_sidecar(file: Path) -> None:
    file.with_name("ss_params.json").unlink()


def _not_hdf5(file: Path) -> None:
    file.write_text("corner,vgs,vbs,vds\n")


def _truncate(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


BAD_INPUTS = {
    "missing file": (lambda file: file.unlink(), "file not found"),
    "not hdf5": (_not_hdf5, "not an HDF5 file"),
    "truncated": (_truncate, "cannot read HDF5 data"),
    "missing quantity": (_delete("cdb"), r"quantities \['cdb'\] are missing.*--allow-missing"),
    "extra quantity": (_add_extra, r"entries \['cgg'\] are not BAG3 quantities"),
    "sweep repeats axis": (_set_attr("gm", np.array([b"corner", b"vgs", b"vgs", b"vds"])), "exactly once"),
    "sweep unknown axis": (_set_attr("gm", np.array([b"corner", b"vgs", b"vbs", b"temp"])), "exactly once"),
    "sweep too short": (_set_attr("gm", np.array([b"corner", b"vgs", b"vbs"])), "exactly once"),
    "no sweep params": (_drop_attr, "no attribute 'sweep_params'"),
    "shape mismatch": (_replace("gds", np.ones((2, 5, 3, 5))), r"shape \(2, 5, 3, 5\).*need \(2, 5, 3, 4\)"),
    "nan values": (_with_nan, "quantity 'cgs' contains 1 NaN or infinite values"),
    "non-monotonic axis": (_replace("vgs", np.array([0.0, 0.9, 0.45, 1.35, 1.8])), "'vgs' is not strictly monotonic"),
    "infinite axis": (_replace("vds", np.array([0.0, 0.6, np.inf, 1.8])), "'vds' contains NaN"),
    "missing axis": (_delete("vbs"), "axis dataset 'vbs' is missing"),
    "missing corner": (_delete("corner"), "dataset 'corner' is missing"),
    "missing metadata": (
        _remove_sidecar,
        r"metadata \['technology', 'device', 'flavor', 'temperature_c', 'length_m', 'width_m'\] missing.*"
        "ss_params.json or pass --technology",
    ),
    "sidecar unknown key": (_write_text("ss_params.json", json.dumps({**SIDECAR, "lenght_m": 1e-7})), "unknown"),
    "sidecar bad flavor": (_write_text("ss_params.json", json.dumps({**SIDECAR, "flavor": "ulvt"})), "'flavor'"),
    "sidecar micrometres": (_write_text("ss_params.json", json.dumps({**SIDECAR, "length_m": 0.15})), "metres"),
    "sidecar not json": (_write_text("ss_params.json", "{technology: sky130"), "cannot read JSON"),
    "two sidecars": (_write_text("metadata.json", json.dumps(SIDECAR)), "keep only one"),
    "polarity contradiction": (
        _write_text("ss_params.json", json.dumps({**SIDECAR, "polarity": "p"})),
        "polarity 'p' contradicts the Vgs sweep",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_read_bag3_file_rejects(tmp_path: Path, case: str) -> None:
    mutate, message = BAD_INPUTS[case]
    file = write_bag3(tmp_path / "ss_params.hdf5")
    mutate(file)

    with pytest.raises(DataError, match=message):
        read_bag3_file(file)


def test_read_bag3_error_names_file(tmp_path: Path) -> None:
    file = write_bag3(tmp_path / "ss_params.hdf5")
    _delete("gm")(file)

    with pytest.raises(DataError, match=str(file)):
        read_bag3_file(file)


def test_find_bag3_files_sorted_recursive(tmp_path: Path) -> None:
    for name in ("b/deep/x", "a", "c"):
        write_bag3(tmp_path / name / "ss_params.hdf5")
    (tmp_path / "a" / "other.hdf5").write_text("ignored")

    files = find_bag3_files(tmp_path)

    assert files == [tmp_path / "a/ss_params.hdf5", tmp_path / "b/deep/x/ss_params.hdf5", tmp_path / "c/ss_params.hdf5"]


def test_find_bag3_files_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no ss_params\.hdf5"):
        find_bag3_files(tmp_path)


def test_read_bag3_folder(tmp_path: Path) -> None:
    write_bag3(tmp_path / "nmos" / "ss_params.hdf5")
    write_bag3(tmp_path / "pmos" / "ss_params.hdf5", vgs=-VGS, sidecar={**SIDECAR, "polarity": "p", "device": "pfet"})

    dataset = read_bag3(tmp_path)

    assert dataset.n_samples == 4
    assert dataset.metadata.device.tolist() == ["nfet_01v8", "nfet_01v8", "pfet", "pfet"]
    assert dataset.metadata.corner.tolist() == ["tt", "ff", "tt", "ff"]
    assert np.array_equal(dataset.vgs[3], -VGS)
    assert [record["file"] for record in dataset.attrs["sources"]] == [
        str(tmp_path / "nmos" / "ss_params.hdf5"),
        str(tmp_path / "pmos" / "ss_params.hdf5"),
    ]


def test_read_bag3_folder_grid_mismatch(tmp_path: Path) -> None:
    write_bag3(tmp_path / "a" / "ss_params.hdf5")
    write_bag3(tmp_path / "b" / "ss_params.hdf5", vgs=np.linspace(0.0, 1.8, 7))

    with pytest.raises(DataError, match="put them onto one grid with --grid"):
        read_bag3(tmp_path)


def test_read_bag3_folder_with_grid(tmp_path: Path) -> None:
    write_bag3(tmp_path / "a" / "ss_params.hdf5")
    write_bag3(tmp_path / "b" / "ss_params.hdf5", vgs=np.linspace(0.0, 1.8, 7))

    dataset = read_bag3(tmp_path, grid=GridSpec.coarse(4))

    assert dataset.grid_shape == (3, 4, 4)
    assert dataset.n_samples == 4


def test_metadata_overrides_reject_bad_value() -> None:
    with pytest.raises(ConfigError, match=r"--width-m 2\.0 is invalid"):
        MetadataOverrides(width_m=2.0)


def test_read_bag3_file_rejects_text_quantity(tmp_path: Path) -> None:
    file = write_bag3(tmp_path / "ss_params.hdf5")
    with h5py.File(file, "a") as handle:
        del handle["csb"]
        handle["csb"] = np.array([b"a", b"b"])

    with pytest.raises(DataError, match="quantity 'csb' has type"):
        read_bag3_file(file)

"""Tests for circtune.data.importers.lookup on MATLAB and mosplot tables."""

import pickle
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from support import write_pickled_npz

from circtune.data.importers.bag3 import MetadataOverrides
from circtune.data.importers.lookup import lookup_format, read_lookup_table, read_mat_table, read_npz_table
from circtune.data.importers.resample import AxisGrid, GridSpec
from circtune.data.importers.safe_pickle import load_pickle
from circtune.errors import ConfigError, DataError

SHARED_DATA = [
    Path(__file__).resolve().parents[3] / ".." / "shared" / "data",
    Path("/work/shared/data"),
]
SHARED_NPZ = next(
    (folder / "sg13_lv_nmos.npz" for folder in SHARED_DATA if (folder / "sg13_lv_nmos.npz").is_file()), None
)

needs_shared_npz = pytest.mark.skipif(SHARED_NPZ is None, reason="sg13_lv_nmos.npz not found in ../shared/data")

FLAGS = MetadataOverrides(technology="demo130", flavor="svt")
NPZ_FLAGS = MetadataOverrides(technology="sg13g2", flavor="svt", corner="tt", temperature_c=27.0)
SOURCE_GRID = GridSpec()

L_UM = np.array([0.18, 0.5, 1.0])
MAT_VGS = np.linspace(0.0, 1.2, 7)
MAT_VDS = np.linspace(0.0, 1.2, 5)
MAT_VSB = np.array([0.0, 0.3])
MAT_FIELDS = ("ID", "GM", "GMB", "GDS", "CGG", "CGS", "CGD", "CGB", "CDD", "CSS")


def mat_array(field: str, n_vsb: int) -> np.ndarray:
    """Return [L, VGS, VDS, VSB] values that encode their own indices."""
    scale = 10.0 ** -(3 + MAT_FIELDS.index(field))
    lengths, gates, drains, bodies = np.meshgrid(
        np.arange(len(L_UM)), np.arange(len(MAT_VGS)), np.arange(len(MAT_VDS)), np.arange(n_vsb), indexing="ij"
    )
    return scale * (1 + 1000 * lengths + 100 * gates + 10 * drains + bodies)


def mat_struct(*, vsb: np.ndarray = MAT_VSB, voltage_sign: float = 1.0, current_sign: float = 1.0) -> dict[str, object]:
    """Return the fields of a gm/ID starter-kit struct, in micrometres and kelvin."""
    fields: dict[str, object] = {field: mat_array(field, len(vsb)) for field in MAT_FIELDS}
    fields["ID"] = current_sign * mat_array("ID", len(vsb))
    if len(vsb) == 1:
        fields = {key: value[..., 0] for key, value in fields.items()}  # MATLAB drops a trailing singleton
    fields.update(
        VGS=voltage_sign * MAT_VGS,
        VDS=voltage_sign * MAT_VDS,
        VSB=voltage_sign * vsb,
        L=L_UM,
        W=5.0,
        TEMP=300.0,
        CORNER="NOM",
        NFING=1.0,
        INFO="demo 130 nm kit",
    )
    return fields


def write_mat_v73(path: Path, structs: dict[str, dict[str, object]]) -> Path:
    """Write structs the way MATLAB -v7.3 does: HDF5 after a 512-byte header."""
    with h5py.File(path, "w", userblock_size=512) as handle:
        for name, fields in structs.items():
            group = handle.create_group(name)
            group.attrs["MATLAB_class"] = np.bytes_("struct")
            for field, value in fields.items():
                if isinstance(value, str):
                    node = group.create_dataset(field, data=np.array([[ord(char)] for char in value], dtype=np.uint16))
                    node.attrs["MATLAB_class"] = np.bytes_("char")
                    node.attrs["MATLAB_int_decode"] = np.int32(2)
                    continue
                array = np.asarray(value, dtype=np.float64)
                matlab_array = array.reshape(1, -1) if array.ndim < 2 else array  # MATLAB arrays are at least 2-D
                node = group.create_dataset(field, data=matlab_array.T)  # column-major: reversed axes
                node.attrs["MATLAB_class"] = np.bytes_("double")
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM"
    with path.open("r+b") as stream:
        stream.write(header)
    return path


def test_read_mat_v5_values_on_source_grid(tmp_path: Path) -> None:
    path = tmp_path / "180nch.mat"
    scipy.io.savemat(path, {"nch": mat_struct()})

    dataset = read_mat_table(path, overrides=FLAGS, grid=SOURCE_GRID)

    assert dataset.quantities == ("ibias", "gm", "gds", "gb", "cgd", "cgs", "cgb")
    assert dataset.values.shape == (3, 7, 2, 7, 5)
    assert np.allclose(dataset.quantity("gm"), mat_array("GM", 2).transpose(0, 3, 1, 2))
    assert np.allclose(dataset.quantity("gb"), mat_array("GMB", 2).transpose(0, 3, 1, 2))
    assert np.array_equal(dataset.vbs[0], -MAT_VSB)
    assert np.array_equal(dataset.vgs[2], MAT_VGS)


def test_read_mat_v5_metadata(tmp_path: Path) -> None:
    path = tmp_path / "180nch.mat"
    scipy.io.savemat(path, {"nch": mat_struct()})

    metadata = read_mat_table(path, overrides=FLAGS, grid=SOURCE_GRID).metadata

    assert np.allclose(metadata.length_m, L_UM * 1e-6)
    assert np.allclose(metadata.width_m, 5e-6)
    assert np.allclose(metadata.temperature_c, 300.0 - 273.15)
    assert metadata.corner.tolist() == ["nom"] * 3
    assert metadata.device.tolist() == ["nch"] * 3
    assert metadata.polarity.tolist() == ["n"] * 3
    assert metadata.technology.tolist() == ["demo130"] * 3


def test_read_mat_v5_records_missing_and_source(tmp_path: Path) -> None:
    path = tmp_path / "180nch.mat"
    scipy.io.savemat(path, {"nch": mat_struct()})

    attrs = read_mat_table(path, overrides=FLAGS).attrs

    assert attrs["missing_quantities"] == ["cds", "cdb", "csb"]
    assert attrs["sources"][0]["file"] == str(path)
    assert attrs["sources"][0]["format"] == "mat-v5"
    assert attrs["sources"][0]["info"] == "demo 130 nm kit"


def test_read_mat_v5_squeezed_vsb(tmp_path: Path) -> None:
    path = tmp_path / "nch.mat"
    scipy.io.savemat(path, {"nch": mat_struct(vsb=np.array([0.0]))})

    dataset = read_mat_table(path, overrides=FLAGS, grid=SOURCE_GRID)

    assert dataset.values.shape == (3, 7, 1, 7, 5)
    assert np.allclose(dataset.quantity("ibias")[:, 0], mat_array("ID", 1)[..., 0])


def test_read_mat_v5_default_grid_is_coarse(tmp_path: Path) -> None:
    path = tmp_path / "nch.mat"
    scipy.io.savemat(path, {"nch": mat_struct()})

    dataset = read_mat_table(path, overrides=FLAGS, grid=GridSpec.coarse(3))

    assert dataset.grid_shape == (2, 3, 3)
    assert np.array_equal(dataset.vgs[0], MAT_VGS[[0, 3, 6]])


def test_read_mat_pmos_magnitudes(tmp_path: Path) -> None:
    path = tmp_path / "pch.mat"
    scipy.io.savemat(path, {"pch": mat_struct()})

    dataset = read_mat_table(path, overrides=FLAGS, grid=SOURCE_GRID)

    assert dataset.metadata.polarity.tolist() == ["p"] * 3
    assert np.array_equal(dataset.vgs[0], -MAT_VGS)
    assert np.array_equal(dataset.vds[0], -MAT_VDS)
    assert np.array_equal(dataset.vbs[0], MAT_VSB)
    assert np.all(dataset.quantity("ibias") < 0)
    assert np.all(dataset.quantity("gm") > 0)
    assert dataset.attrs["sources"][0]["ibias_negated"] is True


def test_read_mat_pmos_raw_signs(tmp_path: Path) -> None:
    path = tmp_path / "device.mat"
    scipy.io.savemat(path, {"device": mat_struct(voltage_sign=-1.0, current_sign=-1.0)})

    dataset = read_mat_table(path, overrides=FLAGS, grid=SOURCE_GRID)

    assert dataset.metadata.polarity.tolist() == ["p"] * 3
    assert np.array_equal(dataset.vgs[0], -MAT_VGS)
    assert np.array_equal(dataset.vbs[0], MAT_VSB)
    assert dataset.attrs["sources"][0]["ibias_negated"] is False


def test_read_mat_ambiguous_polarity(tmp_path: Path) -> None:
    path = tmp_path / "device.mat"
    scipy.io.savemat(path, {"device": mat_struct()})

    with pytest.raises(DataError, match="pass --polarity"):
        read_mat_table(path, overrides=FLAGS)


def test_read_mat_polarity_flag(tmp_path: Path) -> None:
    path = tmp_path / "device.mat"
    scipy.io.savemat(path, {"device": mat_struct()})
    overrides = MetadataOverrides(technology="demo130", flavor="svt", polarity="n")

    dataset = read_mat_table(path, overrides=overrides)

    assert dataset.metadata.polarity.tolist() == ["n"] * 3


def test_read_mat_name_contradicts_sign(tmp_path: Path) -> None:
    path = tmp_path / "nch.mat"
    scipy.io.savemat(path, {"nch": mat_struct(voltage_sign=-1.0)})

    with pytest.raises(DataError, match="the name suggests NMOS"):
        read_mat_table(path, overrides=FLAGS)


def test_read_mat_missing_metadata(tmp_path: Path) -> None:
    path = tmp_path / "nch.mat"
    fields = mat_struct()
    del fields["TEMP"]
    scipy.io.savemat(path, {"nch": fields})

    with pytest.raises(
        DataError, match=r"does not state \['flavor', 'temperature_c'\]; pass --flavor, --temperature-c"
    ):
        read_mat_table(path, overrides=MetadataOverrides(technology="demo130"))


def test_read_mat_length_flag_with_many_lengths(tmp_path: Path) -> None:
    path = tmp_path / "nch.mat"
    scipy.io.savemat(path, {"nch": mat_struct()})
    overrides = MetadataOverrides(technology="demo130", flavor="svt", length_m=1e-7)

    with pytest.raises(ConfigError, match="--length-m cannot replace the 3 lengths"):
        read_mat_table(path, overrides=overrides)


def test_read_mat_missing_id(tmp_path: Path) -> None:
    path = tmp_path / "nch.mat"
    fields = mat_struct()
    del fields["ID"]
    scipy.io.savemat(path, {"nch": fields})

    with pytest.raises(DataError, match="field 'ID' is missing"):
        read_mat_table(path, overrides=FLAGS)


def test_read_mat_shape_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "nch.mat"
    fields = mat_struct()
    fields["GDS"] = np.ones((3, 5, 7, 2))
    scipy.io.savemat(path, {"nch": fields})

    with pytest.raises(
        DataError, match=r"field 'GDS' has shape \(3, 5, 7, 2\).*\(3, 7, 5, 2\) ordered \[L, VGS, VDS, VSB\]"
    ):
        read_mat_table(path, overrides=FLAGS)


def test_read_mat_no_struct(tmp_path: Path) -> None:
    path = tmp_path / "plain.mat"
    scipy.io.savemat(path, {"x": np.ones(3)})

    with pytest.raises(DataError, match="no MATLAB struct variable"):
        read_mat_table(path, overrides=FLAGS)


def test_read_mat_truncated(tmp_path: Path) -> None:
    path = tmp_path / "nch.mat"
    scipy.io.savemat(path, {"nch": mat_struct()})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(DataError, match="cannot read MATLAB data"):
        read_mat_table(path, overrides=FLAGS)


def test_read_mat_v73_matches_v5(tmp_path: Path) -> None:
    v5_path = tmp_path / "v5.mat"
    scipy.io.savemat(v5_path, {"nch": mat_struct()})
    v73_path = write_mat_v73(tmp_path / "v73.mat", {"nch": mat_struct()})

    v5 = read_mat_table(v5_path, overrides=FLAGS, grid=SOURCE_GRID)
    v73 = read_mat_table(v73_path, overrides=FLAGS, grid=SOURCE_GRID)

    assert lookup_format(v73_path) == "mat-v7.3"
    assert v73.attrs["sources"][0]["format"] == "mat-v7.3"
    assert v73.quantities == v5.quantities
    assert np.array_equal(v73.values, v5.values)
    assert np.array_equal(v73.vbs, v5.vbs)
    assert v73.metadata.corner.tolist() == v5.metadata.corner.tolist()
    assert np.array_equal(v73.metadata.length_m, v5.metadata.length_m)


def test_read_mat_v73_squeezed_vsb(tmp_path: Path) -> None:
    path = write_mat_v73(tmp_path / "nch.mat", {"nch": mat_struct(vsb=np.array([0.2]))})

    dataset = read_mat_table(path, overrides=FLAGS, grid=SOURCE_GRID)

    assert dataset.values.shape == (3, 7, 1, 7, 5)
    assert np.allclose(dataset.quantity("cgd")[:, 0], mat_array("CGD", 1)[..., 0])
    assert np.array_equal(dataset.vbs[0], [-0.2])


def test_lookup_format_by_content(tmp_path: Path) -> None:
    mat_path = tmp_path / "table.bin"
    scipy.io.savemat(mat_path, {"nch": mat_struct()}, appendmat=False)

    assert lookup_format(mat_path) == "mat-v5"


# mosplot tables.

NPZ_VGS = np.linspace(0.0, 1.2, 13)
NPZ_VDS = np.linspace(0.0, 1.2, 7)
NPZ_VBS = np.array([0.0, -0.5, -1.0])
NPZ_LENGTHS = np.array([1.3e-7, 5e-7])
NPZ_KEYS = ("id", "gm", "gmbs", "gds", "vth", "cgg", "cgs", "cgd", "cgb")


def npz_array(key: str, sign: float = 1.0) -> np.ndarray:
    """Return float32 (L, VBS, VGS, VDS) values that encode their own indices."""
    scale = 10.0 ** -(3 + NPZ_KEYS.index(key))
    lengths, bodies, gates, drains = np.meshgrid(
        np.arange(len(NPZ_LENGTHS)),
        np.arange(len(NPZ_VBS)),
        np.arange(len(NPZ_VGS)),
        np.arange(len(NPZ_VDS)),
        indexing="ij",
    )
    return (sign * scale * (1 + 1000 * lengths + 100 * bodies + 10 * gates + drains)).astype(np.float32)


def npz_model(name: str, *, sign: float = 1.0) -> dict[str, object]:
    model: dict[str, object] = {key: npz_array(key) for key in NPZ_KEYS}
    model["id"] = npz_array("id", sign)
    model.update(
        vgs=sign * NPZ_VGS, vds=sign * NPZ_VDS, vbs=sign * NPZ_VBS, length=NPZ_LENGTHS, model_name=name,
        parameter_names=list(NPZ_KEYS),
    )  # fmt: skip
    return model


def write_mosplot(path: Path, models: dict[str, dict[str, object]], *, multiplier: int = 1) -> Path:
    content: dict[str, object] = dict(models)
    content.update(
        description="demo", simulator="NgspiceSimulator", parameter_names=list(NPZ_KEYS),
        device_parameters={"w": 2e-6, "ng": 1, "m": multiplier},
    )  # fmt: skip
    np.savez_compressed(path, lookup_table=np.array(content, dtype=object))
    return path


def test_read_npz_values_on_source_grid(tmp_path: Path) -> None:
    path = write_mosplot(tmp_path / "demo.npz", {"nmos_a": npz_model("nmos_a")})

    dataset = read_npz_table(path, overrides=NPZ_FLAGS, grid=SOURCE_GRID)

    assert dataset.quantities == ("ibias", "gm", "gds", "gb", "cgd", "cgs", "cgb")
    assert dataset.values.shape == (2, 7, 3, 13, 7)
    assert np.array_equal(dataset.quantity("gb"), npz_array("gmbs"))
    assert np.array_equal(dataset.quantity("ibias"), npz_array("id"))
    assert np.array_equal(dataset.vbs[1], NPZ_VBS)
    assert dataset.attrs["missing_quantities"] == ["cds", "cdb", "csb"]


def test_read_npz_metadata(tmp_path: Path) -> None:
    path = write_mosplot(tmp_path / "demo.npz", {"nmos_a": npz_model("nmos_a")})

    metadata = read_npz_table(path, overrides=NPZ_FLAGS).metadata

    assert metadata.device.tolist() == ["nmos_a", "nmos_a"]
    assert np.array_equal(metadata.length_m, NPZ_LENGTHS)
    assert metadata.width_m.tolist() == [2e-6, 2e-6]
    assert metadata.corner.tolist() == ["tt", "tt"]
    assert metadata.polarity.tolist() == ["n", "n"]


def test_read_npz_multiplier_scales_width(tmp_path: Path) -> None:
    path = write_mosplot(tmp_path / "demo.npz", {"nmos_a": npz_model("nmos_a")}, multiplier=4)

    dataset = read_npz_table(path, overrides=NPZ_FLAGS)

    assert np.allclose(dataset.metadata.width_m, 8e-6)
    assert dataset.attrs["sources"][0]["width_multiplier"] == 4.0


def test_read_npz_two_models(tmp_path: Path) -> None:
    models = {"nmos_a": npz_model("nmos_a"), "pmos_b": npz_model("pmos_b", sign=-1.0)}
    path = write_mosplot(tmp_path / "demo.npz", models)

    dataset = read_npz_table(path, overrides=NPZ_FLAGS)

    assert dataset.metadata.device.tolist() == ["nmos_a", "nmos_a", "pmos_b", "pmos_b"]
    assert dataset.metadata.polarity.tolist() == ["n", "n", "p", "p"]
    assert np.all(dataset.quantity("ibias")[2:] <= 0)
    assert np.all(dataset.vgs[2:] <= 0)


def test_read_npz_select_table(tmp_path: Path) -> None:
    models = {"nmos_a": npz_model("nmos_a"), "pmos_b": npz_model("pmos_b", sign=-1.0)}
    path = write_mosplot(tmp_path / "demo.npz", models)

    dataset = read_npz_table(path, overrides=NPZ_FLAGS, tables=["pmos_b"])

    assert dataset.metadata.device.tolist() == ["pmos_b", "pmos_b"]


def test_read_npz_unknown_table(tmp_path: Path) -> None:
    path = write_mosplot(tmp_path / "demo.npz", {"nmos_a": npz_model("nmos_a")})

    with pytest.raises(DataError, match=r"tables \['nmos_x'\] not found; the file contains \['nmos_a'\]"):
        read_npz_table(path, overrides=NPZ_FLAGS, tables=["nmos_x"])


def test_read_npz_polarity_contradiction(tmp_path: Path) -> None:
    path = write_mosplot(tmp_path / "demo.npz", {"nmos_a": npz_model("nmos_a")})
    overrides = MetadataOverrides(technology="sg13g2", flavor="svt", corner="tt", temperature_c=27.0, polarity="p")

    with pytest.raises(DataError, match="polarity 'p' contradicts the Vgs sweep"):
        read_npz_table(path, overrides=overrides)


def test_read_npz_missing_metadata(tmp_path: Path) -> None:
    path = write_mosplot(tmp_path / "demo.npz", {"nmos_a": npz_model("nmos_a")})

    with pytest.raises(DataError, match="pass --technology, --flavor, --corner, --temperature-c"):
        read_npz_table(path)


def test_read_npz_rejects_os_system_pickle(tmp_path: Path) -> None:
    path = write_pickled_npz(tmp_path / "evil.npz", b"cos\nsystem\n(S'exit 0'\ntR.")

    with pytest.raises(DataError, match=r"forbidden global 'os\.system'.*--allow-unsafe-pickle"):
        read_npz_table(path, overrides=NPZ_FLAGS)


def test_read_npz_rejects_os_system_in_table(tmp_path: Path) -> None:
    # The forbidden global sits inside an otherwise valid dict.
    payload = pickle.dumps({"nmos_a": {"id": np.ones(2)}}, protocol=0).replace(
        b"(dp0", b"cos\nsystem\n(S'exit 0'\ntR0(dp0", 1
    )
    path = write_pickled_npz(tmp_path / "evil.npz", payload)

    with pytest.raises(DataError, match=r"forbidden global 'os\.system'"):
        read_npz_table(path, overrides=NPZ_FLAGS)


def test_read_npz_unsafe_flag_loads_trusted_file(tmp_path: Path) -> None:
    path = write_mosplot(tmp_path / "demo.npz", {"nmos_a": npz_model("nmos_a")})

    dataset = read_npz_table(path, overrides=NPZ_FLAGS, allow_unsafe_pickle=True)

    assert dataset.n_samples == 2


def test_read_npz_truncated(tmp_path: Path) -> None:
    path = write_mosplot(tmp_path / "demo.npz", {"nmos_a": npz_model("nmos_a")})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(DataError, match="truncated"):
        read_npz_table(path, overrides=NPZ_FLAGS)


def test_read_npz_truncated_pickle(tmp_path: Path) -> None:
    payload = pickle.dumps(np.array({"nmos_a": npz_model("nmos_a")}, dtype=object), protocol=3)
    path = write_pickled_npz(tmp_path / "cut.npz", payload[: len(payload) // 3])

    with pytest.raises(DataError, match="corrupt or truncated"):
        read_npz_table(path, overrides=NPZ_FLAGS)


def test_read_npz_without_lookup_entry(tmp_path: Path) -> None:
    path = tmp_path / "other.npz"
    np.savez(path, other=np.ones(3))

    with pytest.raises(DataError, match="entry 'lookup_table' is missing"):
        read_npz_table(path, overrides=NPZ_FLAGS)


def test_read_npz_plain_array_entry(tmp_path: Path) -> None:
    path = tmp_path / "plain.npz"
    np.savez(path, lookup_table=np.ones(3))

    with pytest.raises(DataError, match="a mosplot table is a pickled dict"):
        read_npz_table(path, overrides=NPZ_FLAGS)


def test_read_lookup_table_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        read_lookup_table(tmp_path / "absent.npz")


@needs_shared_npz
def test_read_shared_npz_shapes_and_signs() -> None:
    assert SHARED_NPZ is not None
    dataset = read_npz_table(SHARED_NPZ, overrides=NPZ_FLAGS)
    vgs, vds = dataset.vgs[0], dataset.vds[0]

    assert dataset.quantities == ("ibias", "gm", "gds", "cgd", "cgs")
    assert dataset.values.shape == (7, 5, 5, 11, 11)
    assert np.all(dataset.quantity("ibias")[..., vds > 0] > 0)
    assert np.all(dataset.quantity("gm")[..., vds > 0] > 0)
    assert np.all(dataset.quantity("gds") > 0)
    assert np.all(dataset.quantity("cgs") > 0)
    assert np.all(dataset.quantity("cgd")[:, :, vgs >= 0.9] > 0)
    assert dataset.metadata.polarity.tolist() == ["n"] * 7
    assert np.allclose(dataset.metadata.width_m, 1e-5)
    assert np.isclose(dataset.metadata.length_m[0], 1.3e-7)


@needs_shared_npz
def test_read_shared_npz_slices_source_values() -> None:
    assert SHARED_NPZ is not None
    with zipfile.ZipFile(SHARED_NPZ) as archive, archive.open("lookup_table.npy") as stream:
        np.lib.format.read_magic(stream)
        np.lib.format.read_array_header_1_0(stream)
        raw = load_pickle(stream, source="test")
    assert isinstance(raw, np.ndarray)
    model = raw.item()["sg13_lv_nmos"]

    dataset = read_npz_table(SHARED_NPZ, overrides=NPZ_FLAGS)

    assert np.array_equal(dataset.vgs[0], model["vgs"][::15])
    assert np.array_equal(dataset.vds[0], model["vds"][::3])
    assert np.array_equal(dataset.quantity("ibias"), model["id"][:, :, ::15, ::3])
    assert np.array_equal(dataset.quantity("cgd"), model["cgd"][:, :, ::15, ::3])


@needs_shared_npz
def test_read_shared_npz_explicit_range_interpolates() -> None:
    assert SHARED_NPZ is not None
    grid = GridSpec(vbs=AxisGrid.source(), vgs=AxisGrid.even(4, 0.605, 1.205), vds=AxisGrid.nearest(11))

    dataset = read_npz_table(SHARED_NPZ, overrides=NPZ_FLAGS, grid=grid)
    source = read_npz_table(SHARED_NPZ, overrides=NPZ_FLAGS, grid=GridSpec(vds=AxisGrid.nearest(11)))

    # 0.605 V lies halfway between the 0.60 V and 0.61 V source points.
    halfway = 0.5 * (source.quantity("gm")[:, :, 60] + source.quantity("gm")[:, :, 61])
    assert dataset.grid_shape == (5, 4, 11)
    assert np.allclose(dataset.quantity("gm")[:, :, 0], halfway, rtol=1e-5)


@needs_shared_npz
def test_read_shared_npz_truncated(tmp_path: Path) -> None:
    assert SHARED_NPZ is not None
    data = SHARED_NPZ.read_bytes()
    path = tmp_path / "cut.npz"
    path.write_bytes(data[: len(data) - 1000])

    with pytest.raises(DataError, match="truncated"):
        read_npz_table(path, overrides=NPZ_FLAGS)


def test_read_npz_damaged_entry(tmp_path: Path) -> None:
    path = tmp_path / "demo.npz"
    np.savez(path, lookup_table=np.array({"nmos_a": npz_model("nmos_a")}, dtype=object))  # stored uncompressed
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.raises(DataError, match="cannot read the NumPy archive"):
        read_npz_table(path, overrides=NPZ_FLAGS)


def test_read_mat_skips_other_structs(tmp_path: Path) -> None:
    path = tmp_path / "nch.mat"
    scipy.io.savemat(path, {"nch": mat_struct(), "config": {"simulator": "spectre", "version": 2.0}})

    dataset = read_mat_table(path, overrides=FLAGS)

    assert dataset.metadata.device.tolist() == ["nch"] * 3


def test_read_mat_lowercase_fields(tmp_path: Path) -> None:
    path = tmp_path / "nch.mat"
    scipy.io.savemat(path, {"nch": {key.lower(): value for key, value in mat_struct().items()}})

    dataset = read_mat_table(path, overrides=FLAGS, grid=SOURCE_GRID)

    assert np.allclose(dataset.quantity("gds"), mat_array("GDS", 2).transpose(0, 3, 1, 2))


def test_read_mat_override_replaces_bad_field(tmp_path: Path) -> None:
    path = tmp_path / "nch.mat"
    fields = mat_struct()
    fields["TEMP"] = -5.0
    scipy.io.savemat(path, {"nch": fields})
    overrides = MetadataOverrides(technology="demo130", flavor="svt", temperature_c=85.0)

    dataset = read_mat_table(path, overrides=overrides)

    assert dataset.metadata.temperature_c.tolist() == [85.0] * 3


def test_read_mat_bad_temperature_field(tmp_path: Path) -> None:
    path = tmp_path / "nch.mat"
    fields = mat_struct()
    fields["TEMP"] = -5.0
    scipy.io.savemat(path, {"nch": fields})

    with pytest.raises(DataError, match=r"field 'TEMP'.*not a temperature in kelvin; pass --temperature-c"):
        read_mat_table(path, overrides=FLAGS)

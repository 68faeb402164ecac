"""Tests for circtune.data.importers.convert_cli: sources to canonical HDF5."""

import argparse
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from circtune.data.dataset import QUANTITIES
from circtune.data.h5format import read_dataset
from circtune.data.importers.convert_cli import add_convert_arguments, run_convert, source_format
from circtune.errors import ConfigError, DataError

SHARED_DATA = [
    Path(__file__).resolve().parents[3] / ".." / "shared" / "data",
    Path("/work/shared/data"),
]
SHARED_NPZ = next(
    (folder / "sg13_lv_nmos.npz" for folder in SHARED_DATA if (folder / "sg13_lv_nmos.npz").is_file()), None
)

VGS = np.linspace(0.0, 1.8, 7)
VBS = np.array([-0.4, 0.0])
VDS = np.linspace(0.0, 1.8, 4)
SIDECAR = {
    "technology": "sky130",
    "device": "nfet_01v8",
    "flavor": "svt",
    "temperature_c": 27,
    "length_m": 1.5e-07,
    "width_m": 1e-06,
}


def write_bag3(path: Path, *, device: str = "nfet_01v8", vgs: np.ndarray = VGS) -> Path:
    """Write a two-corner ss_params.hdf5 with sidecar; values are vgs * vds + index."""
    path.parent.mkdir(parents=True, exist_ok=True)
    b, g, d = np.meshgrid(VBS, vgs, VDS, indexing="ij")
    with h5py.File(path, "w") as handle:
        for position, quantity in enumerate(QUANTITIES):
            table = np.stack([(corner + 1) * (g * d + b + 2 + position) for corner in range(2)])  # (C, B, G, D)
            node = handle.create_dataset(quantity, data=table.transpose(0, 2, 1, 3), compression="gzip")
            node.attrs["sweep_params"] = [b"corner", b"vgs", b"vbs", b"vds"]
        handle["vgs"], handle["vbs"], handle["vds"] = vgs, VBS, VDS
        handle["corner"] = np.array([b"tt", b"ss"])
    path.with_name("ss_params.json").write_text(json.dumps({**SIDECAR, "device": device}))
    return path


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="circtune.data convert")
    add_convert_arguments(parser)
    return parser.parse_args(argv)


def test_run_convert_bag3_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_bag3(tmp_path / "dev" / "ss_params.hdf5")
    output = tmp_path / "out.h5"

    status = run_convert(parse([str(source), "-o", str(output)]))

    dataset = read_dataset(output)
    assert status == 0
    assert dataset.quantities == QUANTITIES
    assert dataset.values.shape == (2, 10, 2, 7, 4)
    assert dataset.metadata.corner.tolist() == ["tt", "ss"]
    assert np.array_equal(dataset.vgs[0], VGS)
    assert dataset.attrs["sources"] == [{"file": str(source), "format": "bag3", "samples": 2}]
    assert capsys.readouterr().out == (
        f"wrote {output}: 2 samples from 1 file, quantities {list(QUANTITIES)}, grid 2 x 7 x 4 (vbs x vgs x vds)\n"
    )


def test_run_convert_folder_with_grid_and_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_bag3(tmp_path / "src" / "a" / "ss_params.hdf5", device="dev_a")
    write_bag3(tmp_path / "src" / "b" / "ss_params.hdf5", device="dev_b", vgs=np.linspace(0.0, 1.8, 13))
    output = tmp_path / "out.h5"

    run_convert(parse([str(tmp_path / "src"), "-o", str(output), "--grid", "vgs=4"]))

    dataset = read_dataset(output)
    captured = capsys.readouterr()
    assert dataset.grid_shape == (2, 4, 4)
    assert dataset.metadata.device.tolist() == ["dev_a", "dev_a", "dev_b", "dev_b"]
    assert np.allclose(dataset.vgs[3], [0.0, 0.6, 1.2, 1.8])
    assert captured.err.splitlines()[0] == f"[1/2] reading {tmp_path / 'src' / 'a' / 'ss_params.hdf5'}"
    assert len(captured.out.splitlines()) == 1


def test_run_convert_folder_grid_mismatch_names_flag(tmp_path: Path) -> None:
    write_bag3(tmp_path / "src" / "a" / "ss_params.hdf5")
    write_bag3(tmp_path / "src" / "b" / "ss_params.hdf5", vgs=np.linspace(0.0, 1.8, 13))

    with pytest.raises(DataError, match="--grid"):
        run_convert(parse([str(tmp_path / "src"), "-o", str(tmp_path / "out.h5")]))


def test_run_convert_axis_range_flag(tmp_path: Path) -> None:
    source = write_bag3(tmp_path / "ss_params.hdf5")
    output = tmp_path / "out.h5"

    run_convert(parse([str(source), "-o", str(output), "--vgs", "0.15:1.65:3"]))

    dataset = read_dataset(output)
    expected = np.stack([(corner + 1) * (0.9 * VDS + VBS[:, None] + 2) for corner in range(2)])  # (C, B, D)
    assert np.allclose(dataset.vgs[0], [0.15, 0.9, 1.65])
    assert np.allclose(dataset.quantity("ibias")[:, :, 1, :], expected, rtol=1e-6)


def test_run_convert_mat_uses_coarse_default(tmp_path: Path) -> None:
    source = tmp_path / "nch.mat"
    shape = (2, 31, 5, 1)
    fields = {name: np.full(shape, 1e-6) for name in ("ID", "GM", "GDS")}
    fields.update(
        VGS=np.linspace(0.0, 1.5, 31), VDS=np.linspace(0.0, 1.5, 5), VSB=np.array([0.0]), L=np.array([0.2, 1.0]),
        W=2.0, TEMP=300.15, CORNER="tt",
    )  # fmt: skip
    scipy.io.savemat(source, {"nch": fields})
    output = tmp_path / "out.h5"

    run_convert(parse([str(source), "-o", str(output), "--technology", "demo", "--flavor", "lvt"]))

    dataset = read_dataset(output)
    assert dataset.grid_shape == (1, 11, 5)
    assert dataset.quantities == ("ibias", "gm", "gds")
    assert dataset.attrs["missing_quantities"] == ["gb", "cgd", "cgs", "cds", "cgb", "cdb", "csb"]
    assert dataset.attrs["sources"][0]["format"] == "mat-v5"
    assert np.allclose(dataset.metadata.temperature_c, 27.0)


@pytest.mark.skipif(SHARED_NPZ is None, reason="sg13_lv_nmos.npz not found in ../shared/data")
def test_run_convert_shared_npz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "sg13.h5"
    argv = [str(SHARED_NPZ), "-o", str(output), "--technology", "sg13g2", "--flavor", "svt", "--corner", "tt"]

    run_convert(parse([*argv, "--temperature-c", "27"]))

    dataset = read_dataset(output)
    assert dataset.values.shape == (7, 5, 5, 11, 11)
    assert dataset.attrs["sources"][0]["format"] == "mosplot-npz"
    assert "without ['gb', 'cds', 'cgb', 'cdb', 'csb']" in capsys.readouterr().out


def test_run_convert_existing_output_needs_overwrite(tmp_path: Path) -> None:
    source = write_bag3(tmp_path / "ss_params.hdf5")
    output = tmp_path / "out.h5"
    output.write_text("keep me")

    with pytest.raises(ConfigError, match="--overwrite"):
        run_convert(parse([str(source), "-o", str(output)]))
    assert output.read_text() == "keep me"


def test_run_convert_overwrite_replaces(tmp_path: Path) -> None:
    source = write_bag3(tmp_path / "ss_params.hdf5")
    output = tmp_path / "out.h5"
    output.write_text("old")

    run_convert(parse([str(source), "-o", str(output), "--overwrite"]))

    assert read_dataset(output).n_samples == 2


def test_run_convert_failure_leaves_no_output(tmp_path: Path) -> None:
    good = write_bag3(tmp_path / "a" / "ss_params.hdf5")
    bad = write_bag3(tmp_path / "b" / "ss_params.hdf5")
    with h5py.File(bad, "a") as handle:
        del handle["gm"]
    output = tmp_path / "out" / "data.h5"
    output.parent.mkdir()

    with pytest.raises(DataError, match=r"quantities \['gm'\] are missing"):
        run_convert(parse([str(good), str(bad), "-o", str(output)]))
    assert list(output.parent.iterdir()) == []


def test_run_convert_grid_and_axis_flag_conflict(tmp_path: Path) -> None:
    source = write_bag3(tmp_path / "ss_params.hdf5")

    with pytest.raises(ConfigError, match="both --grid and --vgs set axis vgs"):
        run_convert(parse([str(source), "-o", str(tmp_path / "o.h5"), "--grid", "vgs=5", "--vgs", "0:1:3"]))


def test_run_convert_rejects_repeated_source(tmp_path: Path) -> None:
    source = write_bag3(tmp_path / "dev" / "ss_params.hdf5")

    with pytest.raises(DataError, match="given twice"):
        run_convert(parse([str(tmp_path / "dev"), str(source), "-o", str(tmp_path / "o.h5")]))


def test_run_convert_missing_source(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file or folder not found"):
        run_convert(parse([str(tmp_path / "absent.mat"), "-o", str(tmp_path / "o.h5")]))


def test_source_format_rejects_canonical_file(tmp_path: Path) -> None:
    source = write_bag3(tmp_path / "ss_params.hdf5")
    canonical = tmp_path / "canonical.h5"
    run_convert(parse([str(source), "-o", str(canonical)]))

    with pytest.raises(DataError, match="already a circtune dataset"):
        source_format(canonical)


def test_source_format_unknown_file(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text("vgs,id\n")

    with pytest.raises(DataError, match="unknown format"):
        source_format(path)


def test_parser_rejects_unknown_flavor() -> None:
    with pytest.raises(SystemExit):
        parse(["x.mat", "-o", "o.h5", "--flavor", "ulvt"])


def test_source_format_detects_bag3_by_content(tmp_path: Path) -> None:
    source = write_bag3(tmp_path / "dev" / "ss_params.hdf5")
    renamed = source.rename(tmp_path / "device_table.h5")

    assert source_format(renamed) == "bag3"


def test_source_format_rejects_other_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as handle:
        handle["x"] = np.ones(3)

    with pytest.raises(DataError, match="without the BAG3 layout"):
        source_format(path)


def test_parser_accepts_negative_range_with_equals() -> None:
    args = parse(["x.mat", "-o", "o.h5", "--vbs=-0.4:0:3"])

    assert args.vbs == "-0.4:0:3"

import subprocess
import sys

import h5py
import numpy as np
import pytest

from circtune.data.cli import main
from circtune.data.h5format import read_dataset, write_dataset


def _run(*args, cwd=None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "circtune.data", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def test_cli_inspect_prints_counts(small_dataset, tmp_path, capsys):
    path = write_dataset(small_dataset, tmp_path / "data.h5")
    assert main(["inspect", str(path)]) == 0
    output = capsys.readouterr().out
    assert "samples: 72" in output
    assert "hv: 24" in output
    assert "ff: 24" in output
    assert "ibias" in output


def test_cli_inspect_saves_plot(small_dataset, tmp_path):
    path = write_dataset(small_dataset, tmp_path / "data.h5")
    assert main(["inspect", str(path), "--plot", str(tmp_path / "iv.png")]) == 0
    assert (tmp_path / "iv.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_generate_small_dataset(tmp_path):
    out = tmp_path / "gen.h5"
    result = _run("generate", "--out", str(out), "--mismatch-draws", "1", "--grid", "3,5,4")
    assert result.returncode == 0, result.stderr
    dataset = read_dataset(out)
    assert dataset.grid_shape == (3, 5, 4)
    assert set(dataset.metadata.flavor) == {"lvt", "svt", "hvt", "hv"}


def test_cli_generate_refuses_overwrite(small_dataset, tmp_path):
    path = write_dataset(small_dataset, tmp_path / "data.h5")
    result = _run("generate", "--out", str(path))
    assert result.returncode == 2
    assert "--force" in result.stderr
    assert read_dataset(path).n_samples == 72


def _nan_file(small_dataset, tmp_path):
    path = write_dataset(small_dataset, tmp_path / "nan.h5")
    with h5py.File(path, "a") as handle:
        data = handle["values/gds"][...]
        data[0, 0, 0, 0] = np.inf
        handle["values/gds"][...] = data
    return str(path)


def _text_file(small_dataset, tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not hdf5")
    return str(path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (lambda d, t: ["inspect", str(t / "absent.h5")], "file not found"),
        (lambda d, t: ["inspect", _text_file(d, t)], "not an HDF5 file"),
        (lambda d, t: ["inspect", _nan_file(d, t)], "NaN or infinite"),
        (lambda d, t: ["generate", "--out", str(t / "x.h5"), "--grid", "11,11"], "--grid"),
        (lambda d, t: ["generate", "--out", str(t / "x.h5"), "--grid", "0,3,3"], "--grid"),
    ],
)
def test_cli_bad_input_one_line(small_dataset, tmp_path, args, message):
    result = _run(*args(small_dataset, tmp_path))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.h5").exists()

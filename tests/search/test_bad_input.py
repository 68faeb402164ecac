"""Bad input to the search command: one error line, exit status 2, nothing written."""

import subprocess
import sys

import h5py
import numpy as np
import pytest

from circtune._cli import run_main
from circtune.data.h5format import write_dataset
from circtune.search.cli import main

VALID = """
dataset:
  source: data.h5
split:
  held_out_flavors: [hv]
space:
  model/depth: {type: int, low: 1, high: 2}
  model/width_2: {type: int, low: 16, high: 64, step: 16, when: {model/depth: 2}}
  train/lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}
  model/activation: {type: categorical, values: [relu, tanh]}
fixed:
  train/epochs: 2
objective:
  train_sizes: [4]
search:
  n_trials: 2
  sampler: random
"""


def _edit(old, new):
    def apply(text):
        assert old in text, old
        return text.replace(old, new)

    return apply


def _drop_ibias(path):
    with h5py.File(path, "a") as handle:
        del handle["values/ibias"]
        handle.attrs["quantities"] = '["gm", "gds", "gb", "cgd", "cgs", "cds", "cgb", "cdb", "csb"]'


def _poison(path):
    with h5py.File(path, "a") as handle:
        values = handle["values/gm"][...]
        values[1, 0, 0, 0] = np.nan
        handle["values/gm"][...] = values


# (case id, change to the experiment text, extra arguments, change to the dataset file, expected message part)
CASES = [
    ("yaml_syntax", _edit("n_trials: 2", "n_trials: [2"), [], None, "invalid YAML"),
    ("unknown_key", _edit("search:", "serach: {}\nsearch:"), [], None, "did you mean 'search'"),
    ("wrong_type", _edit("n_trials: 2", "n_trials: two"), [], None, "search.n_trials"),
    ("low_above_high", _edit("low: 1, high: 2}", "low: 3, high: 2}"), [], None, "model/depth"),
    ("loguniform_not_positive", _edit("low: 1.0e-4", "low: 0.0"), [], None, "train/lr"),
    ("empty_categorical", _edit("values: [relu, tanh]", "values: []"), [], None, "model/activation"),
    ("condition_on_missing", _edit("when: {model/depth: 2}", "when: {model/layers: 2}"), [], None, "model/layers"),
    ("unknown_parameter", _edit("train/lr:", "train/rate:"), [], None, "train/rate"),
    (
        "gpu_fraction_above_one",
        _edit("search:", "resources: {gpus_per_trial: 1.5}\nsearch:"),
        [],
        None,
        "gpus_per_trial",
    ),
    (
        "two_metrics_with_asha",
        _edit("train_sizes: [4]", "train_sizes: [4]\n  metrics: [reconstruction, validation_loss]"),
        [],
        None,
        "search.scheduler",
    ),
    (
        "validation_fraction_one",
        _edit("held_out_flavors: [hv]", "held_out_flavors: [hv]\n  validation_fraction: 1.0"),
        [],
        None,
        "validation_fraction",
    ),
    ("unknown_sampler", _edit("sampler: random", "sampler: bayes"), [], None, "search.sampler"),
    ("space_bound_invalid_for_trial", _edit("low: 1, high: 2}", "low: 0, high: 2}"), [], None, "space.model/depth"),
    ("cpus_above_machine", _edit("search:", "resources: {cpus_per_trial: 4096}\nsearch:"), [], None, "cpus_per_trial"),
    ("dataset_missing", _edit("source: data.h5", "source: absent.h5"), [], None, "absent.h5"),
    ("dataset_not_hdf5", _edit("source: data.h5", "source: notes.h5"), [], None, "not an HDF5 file"),
    ("dataset_without_ibias", None, [], _drop_ibias, "ibias"),
    ("dataset_with_nan", None, [], _poison, "NaN"),
    (
        "held_out_flavor_absent",
        _edit("held_out_flavors: [hv]", "held_out_flavors: [hvt]"),
        [],
        None,
        "['hvt'] are not in the data",
    ),
    ("train_size_too_large", _edit("train_sizes: [4]", "train_sizes: [4000]"), [], None, "4000"),
    ("trials_zero", None, ["--trials", "0"], None, "--trials"),
    ("max_concurrent_zero", None, ["--max-concurrent", "0"], None, "--max-concurrent"),
    ("resume_unknown", None, ["--resume", "nosuch-20260101-000000"], None, "no search with that id"),
    ("resume_without_searches", None, ["--resume"], None, "no search found"),
    ("tracking_unreachable", None, ["--tracking-uri", "http://127.0.0.1:9"], None, "unreachable"),
    ("tracking_scheme", None, ["--tracking-uri", "ftp://127.0.0.1/x"], None, "unsupported scheme"),
    ("tracking_folder_missing", None, ["--tracking-uri", "sqlite:///missing/dir/mlflow.db"], None, "does not exist"),
    ("ray_unreachable", None, ["--address", "127.0.0.1:9"], None, "unreachable"),
    ("ray_address_malformed", None, ["--address", "nonsense"], None, "invalid"),
    ("results_is_file", None, ["--results", "notes.h5"], None, "is a file"),
    ("space_missing", None, ["--space", "./absent.yaml"], None, "not found"),
]


@pytest.fixture
def folder(tmp_path, monkeypatch, small_dataset):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("CIRCTUNE_CACHE_DIR", str(tmp_path / "cache"))
    write_dataset(small_dataset, tmp_path / "data.h5")
    (tmp_path / "notes.h5").write_text("not a dataset")
    return tmp_path


def test_bad_input_table_size():
    assert len(CASES) >= 25


@pytest.mark.parametrize(
    ("edit", "arguments", "data_edit", "message"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_bad_input_rejected(folder, capsys, edit, arguments, data_edit, message):
    text = edit(VALID) if edit is not None else VALID
    (folder / "experiment.yaml").write_text(text)
    if data_edit is not None:
        data_edit(folder / "data.h5")
    before = sorted(path.name for path in folder.iterdir())

    status = run_main(main, ["--space", "./experiment.yaml", *arguments])

    error = capsys.readouterr().err
    assert status == 2
    assert message in error
    assert len(error.strip().splitlines()) == 1
    assert "Traceback" not in error
    assert sorted(path.name for path in folder.iterdir()) == before


def test_bad_input_from_command_line(folder):
    (folder / "experiment.yaml").write_text(VALID.replace("n_trials: 2", "n_trials: two"))
    result = subprocess.run(
        [sys.executable, "-m", "circtune.search", "--space", "./experiment.yaml"],
        capture_output=True, text=True, cwd=folder, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error:")
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(path.name for path in folder.iterdir()) == ["data.h5", "experiment.yaml", "notes.h5"]

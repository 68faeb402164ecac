import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from support import TINY_PARAMETERS

from circtune._cli import run_main
from circtune.compare import (
    Comparison,
    RunRow,
    compare_trained,
    main,
    run_comparison,
    summarize_runs,
    winner_lines,
)
from circtune.data.dataset import Dataset
from circtune.data.h5format import write_dataset
from circtune.data.split import split_by_flavor
from circtune.errors import ConfigError
from circtune.models.downstream import INPUT_KINDS
from circtune.objective.config import TrialConfig
from circtune.objective.data import OracleFloor, TrialData, prepare_trial_data, to_device
from circtune.objective.train import JointTrainer

_CPU = torch.device("cpu")
_TINY_PARAMETERS = {**TINY_PARAMETERS, "objective/train_sizes": [4, 12]}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def tiny_dataset(dataset_factory: Callable[..., Dataset]) -> Dataset:
    return dataset_factory(temperatures_c=(27.0,))


@pytest.fixture
def tiny_data(tiny_dataset: Dataset) -> TrialData:
    return prepare_trial_data(tiny_dataset, split_by_flavor(tiny_dataset.metadata, ("hv",)))


def _config() -> TrialConfig:
    return TrialConfig.from_flat(_TINY_PARAMETERS)


def _comparison(errors: dict[str, tuple[float, float]]) -> Comparison:
    runs = []
    for kind, (mean, half_spread) in errors.items():
        for seed, offset in enumerate((-half_spread, half_spread)):
            runs.append(RunRow(kind, 8, seed, mean + offset, mean + offset))  # type: ignore[arg-type]
    return Comparison(
        part="validation", sizes=(8,), seeds=(0, 1), runs=tuple(runs), summary=summarize_runs(runs),
        oracle=OracleFloor(loss=0.001, relative_error_pct=1.5, n_devices=4),
    )  # fmt: skip


def test_compare_runs_every_kind_size_and_seed(tiny_data: TrialData) -> None:
    comparison = run_comparison(tiny_data, _config(), sizes=[12, 4], seeds=[0, 1, 2], device=_CPU)
    assert comparison.sizes == (4, 12)
    assert len(comparison.runs) == len(INPUT_KINDS) * 2 * 3
    assert {(row.kind, row.size, row.seed) for row in comparison.runs} == {
        (kind, size, seed) for kind in INPUT_KINDS for size in (4, 12) for seed in (0, 1, 2)
    }
    assert all(np.isfinite(row.relative_error_pct) for row in comparison.runs)
    assert comparison.oracle == tiny_data.oracle_validation


def test_compare_summary_mean_and_spread(tiny_data: TrialData) -> None:
    comparison = run_comparison(tiny_data, _config(), sizes=[4], seeds=[0, 1, 2], device=_CPU)
    for kind in INPUT_KINDS:
        errors = [row.relative_error_pct for row in comparison.runs if row.kind == kind]
        summary = comparison.summary_of(kind, 4)
        assert summary.n_seeds == 3
        assert summary.mean_relative_error_pct == pytest.approx(np.mean(errors))
        assert summary.std_relative_error_pct == pytest.approx(np.std(errors, ddof=1))


def test_compare_seeds_change_embeddings(tiny_data: TrialData) -> None:
    comparison = run_comparison(tiny_data, _config(), sizes=[4], seeds=[0, 1], device=_CPU)
    embedding = [row.loss for row in comparison.runs if row.kind == "embedding"]
    assert embedding[0] != embedding[1]


def test_compare_repeatable(tiny_data: TrialData) -> None:
    first = run_comparison(tiny_data, _config(), sizes=[4], seeds=[0, 1], device=_CPU)
    second = run_comparison(tiny_data, _config(), sizes=[4], seeds=[0, 1], device=_CPU)
    assert first == second


def test_compare_needs_two_seeds(tiny_data: TrialData) -> None:
    with pytest.raises(ConfigError, match="at least 2 seeds"):
        run_comparison(tiny_data, _config(), sizes=[4], seeds=[0], device=_CPU)


def test_compare_trained_uses_given_vae(tiny_data: TrialData) -> None:
    config = _config()
    trainer = JointTrainer(config, to_device(tiny_data, _CPU), device=_CPU)
    trainer.train_epoch()
    comparison = compare_trained(trainer.vae, tiny_data, config, part="test")
    assert comparison.part == "test"
    assert comparison.sizes == (4, 12)
    assert comparison.oracle.n_devices == len(tiny_data.test)


def test_compare_winner_line_names_lowest_error() -> None:
    comparison = _comparison({"embedding": (4.1, 0.1), "raw": (6.3, 0.1), "pca": (5.0, 0.1)})
    assert winner_lines(comparison) == [
        "size 8: embeddings won (embeddings 4.1 % vs raw 6.3 % vs PCA 5 %; oracle floor 1.5 %)"
    ]


def test_compare_winner_line_flags_overlap() -> None:
    comparison = _comparison({"embedding": (6.0, 0.1), "raw": (5.0, 2.0), "pca": (5.5, 2.0)})
    (line,) = winner_lines(comparison)
    assert line.startswith("size 8: raw won, but by less than the seed spread over PCA")


def test_compare_cli_writes_table_csv_and_plot(
    tmp_path: Path, tiny_dataset: Dataset, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset_file = write_dataset(tiny_dataset, tmp_path / "tiny.h5")
    config = tmp_path / "experiment.yaml"
    config.write_text(yaml.safe_dump(_TINY_PARAMETERS))
    out = tmp_path / "comparison"
    arguments = ["--config", str(config), "--dataset", str(dataset_file), "--sizes", "4,8", "--out", str(out)]

    assert run_main(main, arguments) == 0

    output = capsys.readouterr().out
    assert "oracle" in output
    assert output.count(" won") == 2
    with (out / "summary.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == len(INPUT_KINDS) * 2 + 1
    assert rows[-1]["kind"] == "oracle"
    with (out / "runs.csv").open() as stream:
        assert len(list(csv.DictReader(stream))) == len(INPUT_KINDS) * 2 * 3
    assert (out / "comparison.png").read_bytes().startswith(b"\x89PNG")


def test_compare_cli_one_seed_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        run_main(main, ["--seeds", "1"])
    assert raised.value.code == 2
    assert "--seeds must be at least 2" in capsys.readouterr().err

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from support import TINY_PARAMETERS

from circtune._cli import run_main
from circtune.data.dataset import Dataset
from circtune.data.h5format import read_dataset, write_dataset
from circtune.errors import ConfigError, DataError
from circtune.objective.run import CONFIG_FILE, NORMALIZER_FILE, WEIGHTS_FILE, load_model, run_trial
from circtune.train import load_experiment, main, prepare_experiment_data, with_overrides

_TINY_PARAMETERS = {**TINY_PARAMETERS, "objective/train_sizes": [8]}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def dataset_file(tmp_path: Path, dataset_factory: Callable[..., Dataset]) -> Path:
    return write_dataset(dataset_factory(temperatures_c=(27.0,)), tmp_path / "tiny.h5")


def _write_config(folder: Path, document: object) -> Path:
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _experiment(dataset_file: Path, **updates: object) -> dict[str, object]:
    return {
        "dataset": str(dataset_file),
        "split": {"held_out_flavors": ["hv"], "validation_fraction": 0.5, "seed": 0},
        **_TINY_PARAMETERS,
        **updates,
    }


def _error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def test_train_cli_prints_epochs_and_scores(
    tmp_path: Path, dataset_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write_config(tmp_path, _experiment(dataset_file))
    assert run_main(main, ["--config", str(config), "--eval-every", "1"]) == 0
    output = capsys.readouterr().out
    assert "epoch 1/2" in output
    assert "epoch 2/2" in output
    assert output.count("validation: loss") == 2  # after epoch 1, then the final line after epoch 2
    assert output.strip().splitlines()[-1].startswith("validation: loss")
    assert "oracle floor" in output
    assert "test:" not in output


def test_train_cli_test_flag_scores_test(
    tmp_path: Path, dataset_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _write_config(tmp_path, _experiment(dataset_file))
    assert run_main(main, ["--config", str(config), "--test"]) == 0
    assert "test: loss" in capsys.readouterr().out


def test_train_cli_writes_weights_only_model(tmp_path: Path, dataset_file: Path) -> None:
    config = _write_config(tmp_path, _experiment(dataset_file))
    out = tmp_path / "model"
    assert run_main(main, ["--config", str(config), "--out", str(out)]) == 0
    assert sorted(path.name for path in out.iterdir()) == sorted([WEIGHTS_FILE, NORMALIZER_FILE, CONFIG_FILE])

    weights = torch.load(out / WEIGHTS_FILE, weights_only=True)
    assert set(weights) == {"vae", "head"}
    assert all(isinstance(value, torch.Tensor) for value in weights["vae"].values())


def test_train_cli_saved_model_reproduces_embeddings(tmp_path: Path, dataset_file: Path) -> None:
    config = _write_config(tmp_path, _experiment(dataset_file))
    out = tmp_path / "model"
    assert run_main(main, ["--config", str(config), "--out", str(out)]) == 0

    saved = load_model(out)
    experiment = load_experiment(config)
    data = prepare_experiment_data(experiment)
    assert saved.config == experiment.config
    inputs = torch.from_numpy(saved.normalizer.transform(read_dataset(dataset_file)).reshape(len(data.inputs), -1))
    torch.testing.assert_close(inputs, torch.from_numpy(data.inputs))

    # training is deterministic on the CPU, so a second run in this process gives the saved weights
    expected = run_trial(experiment.config, data, device=torch.device("cpu")).vae
    with torch.no_grad():
        torch.testing.assert_close(saved.vae.encode(inputs)[0], expected.encode(inputs)[0])


def test_train_cli_load_model_damaged_raises(tmp_path: Path, dataset_file: Path) -> None:
    config = _write_config(tmp_path, _experiment(dataset_file))
    out = tmp_path / "model"
    assert run_main(main, ["--config", str(config), "--out", str(out)]) == 0
    (out / WEIGHTS_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="is not a readable saved circtune model"):
        load_model(out)


def test_train_cli_module_entry_point(tmp_path: Path, dataset_file: Path) -> None:
    config = _write_config(tmp_path, _experiment(dataset_file, **{"train/epochs": 1}))
    completed = subprocess.run(
        [sys.executable, "-m", "circtune.train", "--config", str(config), "--out", str(tmp_path / "model")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "model" / WEIGHTS_FILE).is_file()


def test_train_cli_oversized_size_one_stderr_line(tmp_path: Path, dataset_file: Path) -> None:
    # the size is checked against the split before the data is prepared and logged
    config = _write_config(tmp_path, _experiment(dataset_file, **{"objective/train_sizes": [10_000]}))
    completed = subprocess.run(
        [sys.executable, "-m", "circtune.train", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert "downstream training size 10000" in lines[0]


@pytest.mark.parametrize(
    ("updates", "match"),
    [
        ({"model/latent_size": 3}, "unknown parameter 'model/latent_size'"),
        ({"train/lr": -1.0}, "train/lr must lie in"),
        ({"split": {"held_out": ["hv"]}}, "unknown keys ['held_out'] under 'split'"),
        ({"split": {"held_out_flavors": ["xvt"]}}, "are not in the data"),
        ({"dataset": "/nonexistent/data.h5"}, "/nonexistent/data.h5"),
        ({"objective/train_sizes": [10_000]}, "downstream training size 10000"),
        ({"dataset": {"source": "x.h5", "generator": {"n_vgs": 5}}}, "applies only to source: default"),
        ({"dataset": {"path": "x.h5"}}, "unknown keys ['path'] under 'dataset'"),
    ],
)
def test_train_cli_bad_config_exits_2(
    tmp_path: Path, dataset_file: Path, capsys: pytest.CaptureFixture[str], updates: dict[str, object], match: str
) -> None:
    config = _write_config(tmp_path, _experiment(dataset_file, **updates))
    assert run_main(main, ["--config", str(config)]) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1
    assert match in lines[0]


def test_train_cli_invalid_yaml_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("dataset: [unclosed\n")
    assert run_main(main, ["--config", str(config)]) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1
    assert "broken.yaml:2:1: invalid YAML" in lines[0]


def test_train_cli_missing_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(main, ["--config", str(tmp_path / "absent.yaml")]) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1
    assert "cannot read config file" in lines[0]


def test_train_cli_top_level_list_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write_config(tmp_path, ["model/latent_dim", 3])
    assert run_main(main, ["--config", str(config)]) == 2
    assert "top level must be a mapping" in _error_lines(capsys)[0]


def test_train_cli_load_experiment_defaults(tmp_path: Path) -> None:
    experiment = load_experiment(_write_config(tmp_path, {"model/latent_dim": 8}))
    assert experiment.dataset == "default"
    assert experiment.split.held_out_flavors == ("hv",)
    assert experiment.config.model.latent_dim == 8


def test_train_cli_dataset_mapping_as_in_search(tmp_path: Path) -> None:
    document = {"dataset": {"source": "default", "generator": {"n_vgs": 5}}, "model/latent_dim": 8}
    experiment = load_experiment(_write_config(tmp_path, document))
    assert experiment.dataset == "default"
    assert experiment.generator == {"n_vgs": 5}


def test_train_cli_set_overrides_parameters(tmp_path: Path) -> None:
    experiment = load_experiment(_write_config(tmp_path, {"loss/gamma": 0.5, "model/latent_dim": 8}))
    changed = with_overrides(experiment, ["loss/gamma=0", "train/epochs=7"])
    assert changed.config.loss.gamma == 0.0
    assert changed.config.train.epochs == 7
    assert changed.config.model.latent_dim == 8
    assert with_overrides(experiment, []) == experiment


@pytest.mark.parametrize(
    ("assignment", "match"),
    [("loss/gamma", "is not KEY=VALUE"), ("=3", "is not KEY=VALUE"), ("model/latent_size=3", "unknown parameter"),
     ("train/lr=[1", "not valid YAML"), ("train/lr=-1", "train/lr must lie in")],
)  # fmt: skip
def test_train_cli_set_rejects_bad_assignment(tmp_path: Path, assignment: str, match: str) -> None:
    experiment = load_experiment(_write_config(tmp_path, {"model/latent_dim": 8}))
    with pytest.raises(ConfigError, match=match):
        with_overrides(experiment, [assignment])


def test_train_cli_set_depth_drops_default_widths(tmp_path: Path) -> None:
    experiment = load_experiment(_write_config(tmp_path, {"model/width_1": 64}))
    shallow = with_overrides(experiment, ["model/depth=1"])
    assert shallow.config.model.widths == (64,)


def test_train_cli_duplicate_key_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "twice.yaml"
    config.write_text("train/epochs: 2\ntrain/epochs: 3\n")
    assert run_main(main, ["--config", str(config)]) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 1
    assert "duplicate key" in lines[0]


def test_train_cli_dataset_beside_config_found(tmp_path: Path, dataset_file: Path) -> None:
    folder = tmp_path / "sub"
    folder.mkdir()
    dataset_file.rename(folder / "near.h5")
    config = _write_config(folder, _experiment(Path("near.h5")))
    assert load_experiment(config).dataset == str(folder / "near.h5")

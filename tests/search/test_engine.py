"""End-to-end searches on a tiny generated dataset, with real Ray, Optuna and MLflow."""

import os
import textwrap
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from circtune.search.cli import main
from circtune.search.state import read_state
from circtune.tracking import store
from circtune.train import load_experiment

pytestmark = pytest.mark.slow

State = optuna.trial.TrialState

EXPERIMENT = textwrap.dedent(
    """
    dataset:
      source: default
      generator: {n_mismatch_draws: 1, n_vbs: 3, n_vgs: 6, n_vds: 6}
    split:
      held_out_flavors: [hv]
    space:
      train/lr: {type: loguniform, low: 1.0e-4, high: 1.0}
      loss/beta: {type: loguniform, low: 1.0e-4, high: 1.0e+6}
      loss/gamma: {type: categorical, values: [0.0, 1.0e+6]}
    fixed:
      train/epochs: 3
      model/depth: 1
      model/width_1: 32
      model/latent_dim: 4
      downstream/epochs: 60
    objective:
      train_sizes: [8]
    search:
      n_trials: 4
      sampler: random
      scheduler: asha
      grace_period: 1
      reduction_factor: 2
      eval_every: 1
      max_concurrent: 1
      max_failures: 0
      points_to_evaluate:
        - {train/lr: 1.0e-3, loss/beta: 1.0e-3, loss/gamma: 0.0}       # completes
        - {train/lr: 1.0e-3, loss/beta: 0.000123, loss/gamma: 0.0}     # diverges: faults.NAN_BETA
        - {train/lr: 1.0e-3, loss/beta: 0.000234, loss/gamma: 0.0}     # scores poorly, ASHA stops it: faults.POOR_BETA
    tracking:
      experiment: tiny
    seed: 3
    """
)


FAULTS = Path(__file__).parent / "faults"


@pytest.fixture
def search_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")])))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CIRCTUNE_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "tiny.yaml").write_text(EXPERIMENT)
    return tmp_path


def _children(client, state):
    return client.search_runs(
        [state.experiment_id], filter_string=f"tags.`{store.TAG_PARENT}` = '{state.parent_run_id}'"
    )


def _artifacts(client, run_id, path=""):
    names = []
    for item in client.list_artifacts(run_id, path):
        names.extend(_artifacts(client, run_id, item.path) if item.is_dir else [item.path])
    return set(names)


def test_search_end_to_end_and_resume(search_folder, capsys):
    assert main(["--space", "./tiny.yaml", "--results", "results"]) == 0
    output = capsys.readouterr().out
    assert "Best trial: #" in output
    assert "mlflow ui --backend-store-uri sqlite:///" in output

    folder = next((search_folder / "results").iterdir())
    state = read_state(folder)
    assert state.status == "finished"
    study = optuna.load_study(study_name=state.study_name, storage=f"sqlite:///{folder / 'optuna.db'}")
    states = [trial.state for trial in study.trials]
    assert states[:3] == [State.COMPLETE, State.FAIL, State.PRUNED]
    assert State.RUNNING not in states
    assert "fail_reason" in study.trials[1].user_attrs
    assert study.best_trial.number in (0, 3)

    client = MlflowClient(state.tracking_uri)
    parent = client.get_run(state.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert "test_error_pct" in parent.data.metrics
    assert {"best_config.yaml", "plots/history.png", "comparison/comparison.png"} <= _artifacts(client, parent.info.run_id)
    best_config_path = client.download_artifacts(parent.info.run_id, "best_config.yaml", str(search_folder))
    with open(best_config_path) as handle:
        best_config = yaml.safe_load(handle)
    assert best_config["train/lr"] == pytest.approx(study.best_trial.params["train/lr"])
    # the train and compare commands read the file back with the search's dataset and split
    experiment = load_experiment(best_config_path)
    assert experiment.generator == {"n_mismatch_draws": 1, "n_vbs": 3, "n_vgs": 6, "n_vds": 6}
    assert experiment.split.held_out_flavors == ("hv",)
    assert experiment.config.train.lr == pytest.approx(study.best_trial.params["train/lr"])

    children = {run.data.tags[store.TAG_TRIAL_ID]: run for run in _children(client, state)}
    assert len(children) == 4
    by_number = {trial.number: children[trial.user_attrs["ray_trial_id"]] for trial in study.trials}
    complete, failed, pruned = by_number[0], by_number[1], by_number[2]
    assert complete.info.status == "FINISHED"
    assert complete.data.params["train/lr"] == "0.001"
    assert "validation_loss" in complete.data.metrics
    assert len(client.get_metric_history(complete.info.run_id, "total")) == 3
    assert {"model/weights.pt", "plots/latent.png", "plots/loss_curves.png"} <= _artifacts(client, complete.info.run_id)
    assert failed.info.status == "FAILED"
    assert "NonFiniteLossError" in failed.data.tags[store.TAG_FAILURE]
    assert pruned.info.status == "FINISHED"
    assert pruned.data.tags["circtune.trial_state"] == "pruned"
    assert "model/weights.pt" in _artifacts(client, pruned.info.run_id)

    assert main(["--resume", folder.name, "--results", "results", "--trials", "6"]) == 0
    study = optuna.load_study(study_name=state.study_name, storage=f"sqlite:///{folder / 'optuna.db'}")
    assert [trial.number for trial in study.trials] == list(range(6))
    assert State.RUNNING not in [trial.state for trial in study.trials]
    children = _children(client, state)
    assert len(children) == 6
    assert len({run.data.tags[store.TAG_TRIAL_ID] for run in children}) == 6
    assert all(run.info.status != "RUNNING" for run in children)


def test_search_bad_experiment_writes_nothing(search_folder, capsys):
    (search_folder / "bad.yaml").write_text(EXPERIMENT.replace("n_trials: 4", "n_trials: four"))
    assert _run_cli(["--space", "./bad.yaml", "--results", "results"]) == 2
    assert "search.n_trials" in capsys.readouterr().err
    assert not (search_folder / "results").exists()
    assert not (search_folder / "mlflow.db").exists()


def _run_cli(argv):
    from circtune._cli import run_main

    return run_main(main, argv)

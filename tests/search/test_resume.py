"""A search whose driver is killed with SIGKILL finishes with --resume, losing only work in flight."""

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient

from circtune.search.state import STATE_FILE, read_state
from circtune.tracking import store

pytestmark = pytest.mark.slow

State = optuna.trial.TrialState

EXPERIMENT = """
dataset:
  source: default
  generator: {n_mismatch_draws: 1, n_vbs: 3, n_vgs: 6, n_vds: 6}
space:
  train/lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}
fixed:
  train/epochs: 6
  model/depth: 1
  model/width_1: 32
  model/latent_dim: 4
  downstream/epochs: 60
objective:
  train_sizes: [8]
search:
  n_trials: 5
  sampler: random
  scheduler: none
  eval_every: 2
  max_concurrent: 1
tracking:
  experiment: killed
"""
_TIMEOUT_S = 240


def _complete_trials(database):
    if not database.exists():
        return 0
    with sqlite3.connect(database) as connection:
        try:
            return connection.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def _search(folder, *args):
    environment = {**os.environ, "CIRCTUNE_CACHE_DIR": str(folder / "cache")}
    command = [sys.executable, "-m", "circtune.search", "--results", "results", *args]
    # A session of its own, so that the Ray processes a killed driver leaves behind can be found and ended.
    return subprocess.Popen(
        command, cwd=folder, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )


def _end_group(process):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def test_resume_after_driver_sigkill(tmp_path):
    (tmp_path / "killed.yaml").write_text(EXPERIMENT)
    driver = _search(tmp_path, "--space", "./killed.yaml")
    deadline = time.monotonic() + _TIMEOUT_S
    database = None
    while time.monotonic() < deadline and driver.poll() is None:
        folders = list((tmp_path / "results").glob("*/optuna.db")) if (tmp_path / "results").exists() else []
        database = folders[0] if folders else None
        if database is not None and _complete_trials(database) >= 2:
            break
        time.sleep(0.5)
    assert driver.poll() is None, driver.stderr.read().decode()[-2000:]
    assert database is not None
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    _end_group(driver)  # Ray agents that outlive their driver

    folder = database.parent
    complete_before = {
        trial.number: trial.params
        for trial in optuna.load_study(study_name=folder.name, storage=f"sqlite:///{database}").trials
        if trial.state == State.COMPLETE
    }
    state_text = (folder / STATE_FILE).read_text()
    (folder / STATE_FILE).write_text(state_text[: len(state_text) // 2])  # a state file cut by the kill

    resumed = _search(tmp_path, "--resume", folder.name)
    try:
        assert resumed.wait(timeout=_TIMEOUT_S) == 0, resumed.stderr.read().decode()[-2000:]
    finally:
        _end_group(resumed)

    state = read_state(folder)
    assert state.status == "finished"
    study = optuna.load_study(study_name=folder.name, storage=f"sqlite:///{database}")
    numbers = [trial.number for trial in study.trials]
    assert numbers == list(range(len(numbers)))
    assert State.RUNNING not in [trial.state for trial in study.trials]
    for number, params in complete_before.items():
        assert study.trials[number].state == State.COMPLETE
        assert study.trials[number].params == params
    counted = [trial for trial in study.trials if not trial.user_attrs.get("interrupted")]
    assert len(counted) == 5

    client = MlflowClient(state.tracking_uri)
    children = client.search_runs(
        [state.experiment_id], filter_string=f"tags.`{store.TAG_PARENT}` = '{state.parent_run_id}'"
    )
    assert all(run.info.status != "RUNNING" for run in children)
    trial_ids = [run.data.tags[store.TAG_TRIAL_ID] for run in children]
    assert len(trial_ids) == len(set(trial_ids))
    assert client.get_run(state.parent_run_id).info.status == "FINISHED"


def _trial_workers(driver):
    """Return the PIDs of trial workers whose raylet belongs to ``driver``'s session, never other Ray jobs."""
    listing = subprocess.run(["ps", "-eo", "pid=,ppid=,pgid=,args="], capture_output=True, text=True, check=True).stdout
    rows = [line.split(None, 3) for line in listing.splitlines()]
    group = {int(row[0]): int(row[2]) for row in rows}
    return [
        int(row[0]) for row in rows if len(row) == 4 and "ray::ImplicitFunc" in row[3] and group.get(int(row[1])) == driver.pid
    ]


def test_search_survives_killed_worker(tmp_path):
    experiment = EXPERIMENT.replace("n_trials: 5", "n_trials: 2").replace("train/epochs: 6", "train/epochs: 12")
    (tmp_path / "worker.yaml").write_text(experiment.replace("max_concurrent: 1", "max_concurrent: 1\n  max_failures: 2"))
    driver = _search(tmp_path, "--space", "./worker.yaml")
    killed = None
    try:
        deadline = time.monotonic() + _TIMEOUT_S
        while time.monotonic() < deadline and driver.poll() is None and killed is None:
            # A checkpoint after the first means Tune has registered the first, so a retry can start from it.
            # The search keeps only the newest checkpoint, so checkpoint_000001 itself may already be gone.
            checkpoints = [
                path for path in (tmp_path / "results").glob("*/tune/attempt-1/*/checkpoint_*")
                if path.name != "checkpoint_000000"
            ]  # fmt: skip
            workers = _trial_workers(driver)
            if checkpoints and workers:
                killed = workers[0]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.2)
        assert killed is not None, "no trial worker was found to kill"
        assert driver.wait(timeout=_TIMEOUT_S) == 0, driver.stderr.read().decode()[-2000:]
    finally:
        _end_group(driver)

    folder = next((tmp_path / "results").iterdir())
    state = read_state(folder)
    study = optuna.load_study(study_name=folder.name, storage=f"sqlite:///{folder / 'optuna.db'}")
    assert [trial.state for trial in study.trials] == [State.COMPLETE, State.COMPLETE]
    client = MlflowClient(state.tracking_uri)
    children = client.search_runs(
        [state.experiment_id], filter_string=f"tags.`{store.TAG_PARENT}` = '{state.parent_run_id}'"
    )
    assert len(children) == 2
    assert all(run.info.status == "FINISHED" for run in children)
    retried = [run for run in children if "circtune.resumed_after_epoch" in run.data.tags]
    assert len(retried) == 1
    resumed_after = int(retried[0].data.tags["circtune.resumed_after_epoch"])
    epochs = [metric.step for metric in client.get_metric_history(retried[0].info.run_id, "total")]
    assert set(epochs) == set(range(1, 13))
    # The retry started after its checkpoint, so the epochs up to it were trained and logged once.
    assert all(epochs.count(epoch) == 1 for epoch in range(1, resumed_after + 1))

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

"""Ctrl-C (SIGINT) to a search driver stops it cleanly, and --resume finishes the search."""

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from test_resume import EXPERIMENT, _complete_trials, _end_group

from circtune.search.engine import INTERRUPTED_ATTR
from circtune.search.searcher import RAY_TRIAL_ID_ATTR
from circtune.search.state import read_state
from circtune.tracking import store

pytestmark = pytest.mark.slow

State = optuna.trial.TrialState

N_TRIALS = 2
INTERRUPT_EXPERIMENT = (
    EXPERIMENT.replace("n_trials: 5", f"n_trials: {N_TRIALS}")
    .replace("train/epochs: 6", "train/epochs: 4")
    .replace("downstream/epochs: 60", "downstream/epochs: 20")
    .replace("experiment: killed", "experiment: interrupted")
)
_TIMEOUT_S = 240
# An upper bound, not a timing check: on a 2-core machine the driver exited about 3 s after SIGINT.
_EXIT_TIMEOUT_S = 60
_SESSION_END_TIMEOUT_S = 15
FINISHED = (State.COMPLETE, State.PRUNED, State.FAIL)


def _search(folder: Path, log_name: str, *args: str) -> subprocess.Popen[bytes]:
    """Start a search in its own session, with ``RAY_TMPDIR=<folder>/ray``, which all its Ray processes inherit."""
    environment = {**os.environ, "CIRCTUNE_CACHE_DIR": str(folder / "cache"), "RAY_TMPDIR": str(folder / "ray")}
    environment.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "circtune.search", "--results", "results", *args]
    with (folder / log_name).open("wb") as log:
        return subprocess.Popen(
            command, cwd=folder, env=environment, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
        )


def _session_processes(ray_tmpdir: Path) -> list[int]:
    """Return the PIDs of live processes started with ``RAY_TMPDIR=ray_tmpdir``, which are one search's driver and Ray."""
    entry = f"RAY_TMPDIR={ray_tmpdir}".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            variables = environ.read_bytes().split(b"\0")  # empty for a zombie
        except OSError:
            continue
        if entry in variables:
            pids.append(int(environ.parent.name))
    return pids


def _wait_for_session_end(ray_tmpdir: Path) -> list[int]:
    """Wait a bounded time for the session's processes to exit, and return those still alive."""
    deadline = time.monotonic() + _SESSION_END_TIMEOUT_S
    while _session_processes(ray_tmpdir) and time.monotonic() < deadline:
        time.sleep(0.5)
    return _session_processes(ray_tmpdir)


def _wait_for_complete_trial(folder: Path, driver: subprocess.Popen[bytes]) -> Path | None:
    deadline = time.monotonic() + _TIMEOUT_S
    while time.monotonic() < deadline and driver.poll() is None:
        databases = list((folder / "results").glob("*/optuna.db"))
        if databases and _complete_trials(databases[0]) >= 1:
            return databases[0]
        time.sleep(0.2)
    return None


def _load_study(database: Path) -> optuna.Study:
    return optuna.load_study(study_name=database.parent.name, storage=f"sqlite:///{database}")


def test_ctrl_c_then_resume(short_tmp):
    assert f"n_trials: {N_TRIALS}" in INTERRUPT_EXPERIMENT
    ray_tmpdir = short_tmp / "ray"
    (short_tmp / "interrupt.yaml").write_text(INTERRUPT_EXPERIMENT)

    driver = _search(short_tmp, "first.log", "--space", "./interrupt.yaml")
    try:
        database = _wait_for_complete_trial(short_tmp, driver)
        assert database is not None, (short_tmp / "first.log").read_text()[-2000:]
        assert driver.poll() is None, "the search finished before it could be interrupted"
        running = _session_processes(ray_tmpdir)
        assert driver.pid in running
        assert len(running) > 1  # the raylet and GCS carry the variable too, so the leftover check finds Ray processes
        os.kill(driver.pid, signal.SIGINT)
        status = driver.wait(timeout=_EXIT_TIMEOUT_S)
        leftovers = _wait_for_session_end(ray_tmpdir)
    finally:
        _end_group(driver)

    folder = database.parent
    stderr = (short_tmp / "first.log").read_text()
    assert status == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    assert read_state(folder).status == "interrupted"
    results = (short_tmp / "results").resolve()
    assert f"python -m circtune.search --resume {folder.name} --results {results}" in stderr
    assert leftovers == []
    finished_before = {
        trial.number: (trial.state, trial.params, trial.values)
        for trial in _load_study(database).trials
        if trial.state in FINISHED
    }
    assert finished_before

    resumed = _search(short_tmp, "resume.log", "--resume", folder.name)
    try:
        status = resumed.wait(timeout=_TIMEOUT_S)
        leftovers = _wait_for_session_end(ray_tmpdir)
    finally:
        _end_group(resumed)

    assert status == 0, (short_tmp / "resume.log").read_text()[-2000:]
    assert leftovers == []
    state = read_state(folder)
    assert state.status == "finished"
    study = _load_study(database)
    assert all(trial.state in FINISHED for trial in study.trials), [trial.state for trial in study.trials]
    for number, before in finished_before.items():
        trial = study.trials[number]
        assert (trial.state, trial.params, trial.values) == before
    counted = [trial for trial in study.trials if not trial.user_attrs.get(INTERRUPTED_ATTR)]
    interrupted = [trial for trial in study.trials if trial.user_attrs.get(INTERRUPTED_ATTR)]
    assert len(counted) == N_TRIALS
    for trial in interrupted:
        requeued = [other for other in study.trials if other.user_attrs.get("requeued_from") == trial.number]
        assert [other.params for other in requeued] == [trial.params]

    client = MlflowClient(state.tracking_uri)
    children = client.search_runs(
        [state.experiment_id], filter_string=f"tags.`{store.TAG_PARENT}` = '{state.parent_run_id}'"
    )
    assert [run.info.run_id for run in children if run.info.status == "RUNNING"] == []
    assert client.get_run(state.parent_run_id).info.status == "FINISHED"
    runs_per_trial = collections.Counter(run.data.tags[store.TAG_TRIAL_ID] for run in children)
    ray_trial_ids = {trial.user_attrs[RAY_TRIAL_ID_ATTR] for trial in study.trials}
    assert set(runs_per_trial) <= ray_trial_ids
    for trial in counted:
        assert runs_per_trial[trial.user_attrs[RAY_TRIAL_ID_ATTR]] == 1
    for trial in interrupted:
        # SIGINT can land before the trial's worker created its run.
        assert runs_per_trial[trial.user_attrs[RAY_TRIAL_ID_ATTR]] <= 1
    # the resume ends an interrupted trial's run KILLED, unless the trial's worker or Tune's shutdown
    # ended it first (its last epoch can finish while the driver stops)
    killed = {run.data.tags[store.TAG_TRIAL_ID] for run in children if run.info.status == "KILLED"}
    assert killed <= {trial.user_attrs[RAY_TRIAL_ID_ATTR] for trial in interrupted} & set(runs_per_trial)

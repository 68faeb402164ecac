import math
import sys

import optuna
import pytest
import ray
from ray import tune

from circtune.search.searcher import COMPLETE_KEY, StateCorrectOptunaSearch, classify_trial_end

State = optuna.trial.TrialState


@pytest.mark.parametrize(
    ("result", "error", "state"),
    [
        ({"loss": 1.0, COMPLETE_KEY: True}, False, State.COMPLETE),
        ({"loss": 1.0}, False, State.PRUNED),
        ({"loss": math.nan, COMPLETE_KEY: True}, False, State.FAIL),
        ({"loss": math.inf}, False, State.FAIL),
        ({"loss": 1.0, COMPLETE_KEY: True}, True, State.FAIL),
        (None, False, State.FAIL),
        ({"other": 1.0, COMPLETE_KEY: True}, False, State.FAIL),
    ],
)
def test_classify_trial_end_states(result, error, state):
    assert classify_trial_end("loss", result, error)[0] == state


def test_classify_trial_end_multi_objective():
    state, values, _ = classify_trial_end(["a", "b"], {"a": 1.0, "b": 2.0, COMPLETE_KEY: True}, False)
    assert state == State.COMPLETE
    assert values == [1.0, 2.0]


def _toy_trial(config):
    x = config["x"]
    for step in range(1, 5):
        if x > 0.9:
            tune.report({"loss": math.nan})
            return
        final = step == 4
        tune.report({"loss": (x - 0.3) ** 2 + 1.0 / step + (2.0 if x > 0.6 else 0.0), COMPLETE_KEY: final})


def _space(trial):
    trial.suggest_float("x", 0.0, 1.0)


@pytest.mark.slow
def test_searcher_records_pruned_and_nan_trials(tmp_path, short_tmp):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/optuna.db")
    points = [{"x": 0.3}, {"x": 0.95}, {"x": 0.8}, {"x": 0.7}, {"x": 0.31}, {"x": 0.29}]
    searcher = StateCorrectOptunaSearch(
        space=_space,
        metric="loss",
        mode="min",
        points_to_evaluate=points,
        study_name="toy",
        storage=storage,
        seed=1,
    )
    scheduler = tune.schedulers.ASHAScheduler(time_attr="training_iteration", max_t=4, grace_period=1, reduction_factor=2)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=1, include_dashboard=False, _temp_dir=str(short_tmp), log_to_driver=False)
    try:
        tuner = tune.Tuner(
            _toy_trial,
            tune_config=tune.TuneConfig(
                search_alg=searcher, scheduler=scheduler, metric="loss", mode="min", num_samples=len(points), reuse_actors=True
            ),
            run_config=tune.RunConfig(storage_path=str(tmp_path / "results"), verbose=0),
        )
        tuner.fit()
    finally:
        ray.shutdown()

    study = optuna.load_study(study_name="toy", storage=storage)
    states = {round(trial.params["x"], 2): trial.state for trial in study.trials}
    assert states[0.95] == State.FAIL
    assert State.PRUNED in states.values()
    assert State.RUNNING not in states.values()
    assert states[0.3] == State.COMPLETE
    assert study.best_trial.params["x"] in (0.3, 0.31, 0.29)

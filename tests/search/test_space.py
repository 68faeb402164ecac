"""Tests for circtune.search.space: parameter types, suggest, samplers, table."""

from __future__ import annotations

import importlib.util
import warnings

import optuna
import pytest
from optuna.exceptions import ExperimentalWarning

from circtune.errors import ConfigError
from circtune.search import space as space_module
from circtune.search.space import (
    SAMPLERS,
    CategoricalParameter,
    Condition,
    IntParameter,
    LogUniformParameter,
    UniformParameter,
    has_conditions,
    make_sampler,
    sampler_for_spec,
    space_to_table,
    suggest,
)
from circtune.search.spec import ExperimentSpec, ObjectiveSettings, SearchSettings

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = (
    CategoricalParameter(key="model/latent_dim", values=(8, 16, 32)),
    IntParameter(key="model/depth", low=1, high=3),
    IntParameter(key="model/width_1", low=64, high=512, step=64),
    IntParameter(key="model/width_2", low=32, high=256, step=32, when=(Condition(key="model/depth", values=(2, 3)),)),
    IntParameter(key="model/width_3", low=16, high=64, step=16, when=(Condition(key="model/depth", values=(3,)),)),
    LogUniformParameter(key="loss/beta", low=1e-4, high=1.0),
    UniformParameter(key="loss/gamma", low=0.0, high=2.0),
    CategoricalParameter(key="model/activation", values=("relu", "gelu", "tanh")),
    IntParameter(key="downstream/hidden", low=16, high=256, log=True),
)
N_ASKS = 120


def _ask_many(sampler: optuna.samplers.BaseSampler, n_asks: int = N_ASKS) -> list[dict[str, object]]:
    study = optuna.create_study(sampler=sampler)
    suggestions = []
    for index in range(n_asks):
        trial = study.ask()
        values = suggest(trial, SPACE)
        study.tell(trial, float(index % 7))
        suggestions.append(values)
    return suggestions


@pytest.fixture(scope="module")
def random_suggestions() -> list[dict[str, object]]:
    return _ask_many(optuna.samplers.RandomSampler(seed=0))


@pytest.fixture(scope="module")
def tpe_suggestions() -> list[dict[str, object]]:
    return _ask_many(make_sampler("tpe", seed=0, n_objectives=1, conditional=True, n_startup_trials=5), n_asks=40)


class _RecordingTrial:
    """A stand-in with only the ``suggest_*`` methods, returning the lowest value."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        self.calls.append(("float", name))
        return low

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int:
        self.calls.append(("int", name))
        return high

    def suggest_categorical(self, name: str, choices: tuple[object, ...]) -> object:
        self.calls.append(("categorical", name))
        return choices[0]


@pytest.mark.parametrize("fixture_name", ["random_suggestions", "tpe_suggestions"])
def test_suggest_values_inside_ranges(fixture_name: str, request: pytest.FixtureRequest) -> None:
    suggestions = request.getfixturevalue(fixture_name)
    for values in suggestions:
        for parameter in SPACE:
            if parameter.key in values:
                assert parameter.contains(values[parameter.key]), (parameter.key, values[parameter.key])


@pytest.mark.parametrize("fixture_name", ["random_suggestions", "tpe_suggestions"])
def test_suggest_respects_step(fixture_name: str, request: pytest.FixtureRequest) -> None:
    suggestions = request.getfixturevalue(fixture_name)
    widths = [values["model/width_1"] for values in suggestions]
    assert all(isinstance(width, int) and width % 64 == 0 for width in widths)


@pytest.mark.parametrize("fixture_name", ["random_suggestions", "tpe_suggestions"])
def test_suggest_conditional_presence_follows_depth(fixture_name: str, request: pytest.FixtureRequest) -> None:
    suggestions = request.getfixturevalue(fixture_name)
    for values in suggestions:
        depth = values["model/depth"]
        assert ("model/width_2" in values) == (depth in (2, 3))
        assert ("model/width_3" in values) == (depth == 3)


def test_suggest_conditional_both_states_seen(random_suggestions: list[dict[str, object]]) -> None:
    present = [("model/width_2" in values) for values in random_suggestions]
    assert any(present)
    assert not all(present)


def test_suggest_floats_cover_the_range(random_suggestions: list[dict[str, object]]) -> None:
    betas = [float(values["loss/beta"]) for values in random_suggestions]  # type: ignore[arg-type]
    assert min(betas) < 1e-3
    assert max(betas) > 1e-1


def test_suggest_returns_keys_in_space_order(random_suggestions: list[dict[str, object]]) -> None:
    order = [parameter.key for parameter in SPACE]
    for values in random_suggestions:
        keys = list(values)
        assert keys == sorted(keys, key=order.index)


def test_suggest_calls_only_suggest_methods() -> None:
    trial = _RecordingTrial()

    values = suggest(trial, SPACE)  # type: ignore[arg-type]

    assert trial.calls[:3] == [("categorical", "model/latent_dim"), ("int", "model/depth"), ("int", "model/width_1")]
    assert values["model/width_3"] == 64
    assert values["loss/beta"] == 1e-4


def test_suggest_skips_parameter_of_inactive_parent() -> None:
    space = (
        CategoricalParameter(key="model/activation", values=("relu", "gelu")),
        IntParameter(key="model/depth", low=1, high=2, when=(Condition(key="model/activation", values=("gelu",)),)),
        IntParameter(key="model/width_2", low=8, high=16, when=(Condition(key="model/depth", values=(2,)),)),
    )

    values = suggest(_RecordingTrial(), space)  # type: ignore[arg-type]

    assert values == {"model/activation": "relu"}


def test_suggest_through_ray_captor() -> None:
    captor_module = pytest.importorskip("ray.tune.search.optuna.optuna_search")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    captor = captor_module._OptunaTrialSuggestCaptor(trial)

    values = suggest(captor, SPACE)

    assert captor.captured_values == values


def test_suggest_multi_objective_nsga2() -> None:
    study = optuna.create_study(
        directions=["minimize", "minimize"], sampler=make_sampler("nsga2", seed=0, n_objectives=2)
    )
    for _ in range(5):
        trial = study.ask()
        values = suggest(trial, SPACE)
        study.tell(trial, [1.0, 2.0])
    assert "model/depth" in values


@pytest.mark.parametrize("name", SAMPLERS)
def test_make_sampler_builds_each(name: str) -> None:
    if name == "cmaes" and importlib.util.find_spec("cmaes") is None:
        pytest.skip("the cmaes package is not installed")

    sampler = make_sampler(name, seed=0, n_objectives=1)

    assert isinstance(sampler, optuna.samplers.BaseSampler)


def test_make_sampler_tpe_group_without_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_sampler("tpe", seed=0, n_objectives=1, conditional=True)
    assert not [warning for warning in caught if issubclass(warning.category, ExperimentalWarning)]


def test_make_sampler_same_seed_same_values() -> None:
    first = _ask_many(make_sampler("tpe", seed=3, n_objectives=1, conditional=True, n_startup_trials=3), n_asks=8)
    second = _ask_many(make_sampler("tpe", seed=3, n_objectives=1, conditional=True, n_startup_trials=3), n_asks=8)
    assert first == second


def test_make_sampler_cmaes_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        space_module.importlib.util, "find_spec", lambda name: None if name == "cmaes" else real_find_spec(name)
    )
    with pytest.raises(ConfigError, match="pip install cmaes"):
        make_sampler("cmaes", seed=0, n_objectives=1)


def test_make_sampler_unknown_name() -> None:
    with pytest.raises(ConfigError, match=r"search\.sampler: unknown sampler 'bayes'"):
        make_sampler("bayes", seed=0, n_objectives=1)


def test_make_sampler_cmaes_rejects_two_objectives() -> None:
    with pytest.raises(ConfigError, match=r"search\.sampler: cmaes optimizes one metric"):
        make_sampler("cmaes", seed=0, n_objectives=2)


def test_sampler_for_spec_uses_search_settings() -> None:
    spec = ExperimentSpec(
        space=SPACE,
        objective=ObjectiveSettings(metrics=("reconstruction", "validation_loss")),
        search=SearchSettings(sampler="nsga2", scheduler="none", population_size=4),
    )

    sampler = sampler_for_spec(spec)

    assert isinstance(sampler, optuna.samplers.NSGAIISampler)


def test_has_conditions() -> None:
    assert has_conditions(SPACE)
    assert not has_conditions(SPACE[:3])


@pytest.mark.parametrize(
    ("parameter", "value", "expected"),
    [
        (IntParameter(key="a/b", low=0, high=10, step=5), 5, True),
        (IntParameter(key="a/b", low=0, high=10, step=5), 3, False),
        (IntParameter(key="a/b", low=0, high=10), True, False),
        (IntParameter(key="a/b", low=0, high=10), 11, False),
        (CategoricalParameter(key="a/b", values=(True, False)), 1, False),
        (CategoricalParameter(key="a/b", values=(True, False)), True, True),
        (CategoricalParameter(key="a/b", values=("relu",)), "relu", True),
        (UniformParameter(key="a/b", low=0.0, high=1.0), 0.5, True),
        (LogUniformParameter(key="a/b", low=0.1, high=1.0), 0.01, False),
    ],
)
def test_parameter_contains(parameter: object, value: object, expected: bool) -> None:
    assert parameter.contains(value) is expected  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: IntParameter(key="a/b", low=3, high=1), r"space\.a/b\.low: low 3 is greater than high 1"),
        (
            lambda: IntParameter(key="a/b", low=0, high=10, step=3),
            r"space\.a/b\.step: step 3 does not divide high - low = 10",
        ),
        (lambda: IntParameter(key="a/b", low=0, high=8, log=True), r"space\.a/b\.log: log: true needs low >= 1"),
        (lambda: IntParameter(key="a/b", low=1, high=9, step=2, log=True), r"space\.a/b\.log: log: true needs step 1"),
        (lambda: UniformParameter(key="a/b", low=1.0, high=1.0), r"space\.a/b\.low: low 1.0 must be less than high"),
        (lambda: UniformParameter(key="a/b", low=0.0, high=float("inf")), r"space\.a/b\.high: inf is not a finite"),
        (lambda: LogUniformParameter(key="a/b", low=0.0, high=1.0), r"space\.a/b\.low: a loguniform low must be"),
        (lambda: CategoricalParameter(key="a/b", values=()), r"space\.a/b\.values: the list of values is empty"),
        (lambda: CategoricalParameter(key="a/b", values=(1, True)), r"space\.a/b\.values: True appears twice"),
        (
            lambda: IntParameter(key="a/b", low=1, high=2, when=(Condition(key="a/b", values=(1,)),)),
            r"space\.a/b\.when\.a/b: a parameter cannot depend on itself",
        ),
        (
            lambda: IntParameter(key="a/b", low=1, high=2, when=(Condition(key="a/c", values=()),)),
            r"space\.a/b\.when\.a/c: the list of allowed values is empty",
        ),
    ],
)
def test_parameter_rejects_invalid(build: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build()  # type: ignore[operator]


def test_space_to_table_rows() -> None:
    spec = ExperimentSpec(space=SPACE, fixed={"train/epochs": 20, "downstream/hidden_sizes": (64, 32)})

    rows = dict(space_to_table(spec))

    assert rows["model/width_2"] == "int in [32, 256] step 32, when model/depth in {2, 3}"
    assert rows["loss/beta"] == "loguniform in [0.0001, 1]"
    assert rows["model/activation"] == "categorical of relu, gelu, tanh"
    assert rows["downstream/hidden"] == "int in [16, 256] log"
    assert rows["train/epochs"] == "fixed 20"
    assert rows["downstream/hidden_sizes"] == "fixed 64, 32"


def test_space_to_table_order() -> None:
    spec = ExperimentSpec(space=SPACE, fixed={"train/epochs": 20})

    keys = [key for key, _ in space_to_table(spec)]

    assert keys == [parameter.key for parameter in SPACE] + ["train/epochs"]

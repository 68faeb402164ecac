"""Searched parameters and their translation into an Optuna define-by-run space.

A search space is a tuple of ``Parameter`` objects in the order of the
experiment file. Each parameter has a flat ``section/name`` key, the same key
that the trial config, the Optuna study and MLflow use. A parameter with
conditions (``when``) exists in a trial only while every condition holds for
the values suggested before it, so ``suggest`` walks the space in order.

Distributions:

    uniform      float in [low, high]
    loguniform   float in [low, high], sampled uniformly in log space
    int          integer in [low, high] on the grid low, low + step, ...
    categorical  one of a list of scalars (str, int, float, bool)
"""

from __future__ import annotations

import abc
import dataclasses
import importlib.util
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, TypeGuard

import optuna
from optuna.exceptions import ExperimentalWarning

from circtune.errors import ConfigError

if TYPE_CHECKING:
    from circtune.search.spec import ExperimentSpec

Scalar = str | int | float | bool

SAMPLERS: tuple[str, ...] = ("tpe", "cmaes", "gp", "random", "nsga2")
MULTI_OBJECTIVE_SAMPLERS: tuple[str, ...] = ("tpe", "gp", "random", "nsga2")
# Samplers that draw their first trials at random before a model takes over,
# and how many by default (the Optuna 5.1 defaults, passed explicitly).
STARTUP_SAMPLERS: dict[str, int] = {"tpe": 10, "gp": 10, "cmaes": 1}
# NSGA-II's first generation is random; Optuna 5.1's default population size.
DEFAULT_POPULATION_SIZE = 50


@dataclasses.dataclass(frozen=True, kw_only=True)
class Condition:
    """A requirement that an earlier parameter took one of some values.

    Attributes:
        key: Flat key of the earlier parameter.
        values: The values for which the condition holds.
    """

    key: str
    values: tuple[Scalar, ...]

    def is_satisfied(self, suggested: Mapping[str, object]) -> bool:
        """Return whether the earlier parameter is present with an allowed value."""
        if self.key not in suggested:
            return False
        return any(same_scalar(suggested[self.key], value) for value in self.values)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Parameter(abc.ABC):
    """One searched parameter; subclasses define the distribution.

    Subclasses set ``kind``, the ``type`` name in the experiment file, and
    ``fields``, the keys that type accepts besides ``type`` and ``when``.

    Attributes:
        key: Flat ``section/name`` key, also the Optuna parameter name.
        when: Conditions that must all hold for the parameter to exist in a
            trial; empty for an unconditional parameter.
    """

    key: str
    when: tuple[Condition, ...] = ()

    kind: ClassVar[str]
    fields: ClassVar[tuple[str, ...]]

    def is_active(self, suggested: Mapping[str, object]) -> bool:
        """Return whether every condition holds for the values suggested so far."""
        return all(condition.is_satisfied(suggested) for condition in self.when)

    @abc.abstractmethod
    def suggest(self, trial: optuna.Trial) -> Scalar:
        """Ask ``trial`` for a value through one of its ``suggest_*`` methods."""

    @abc.abstractmethod
    def contains(self, value: object) -> bool:
        """Return whether ``value`` is a possible value of this parameter."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Return a one-line description of the distribution."""

    @abc.abstractmethod
    def to_dict(self) -> dict[str, object]:
        """Return the experiment-file form: ``type`` and the distribution fields."""

    def _path(self, field: str) -> str:
        return f"space.{self.key}.{field}"

    def _check_conditions(self) -> None:
        for condition in self.when:
            path = self._path(f"when.{condition.key}")
            if condition.key == self.key:
                raise ConfigError(f"{path}: a parameter cannot depend on itself; remove this condition")
            if not condition.values:
                raise ConfigError(f"{path}: the list of allowed values is empty; list at least one value")


@dataclasses.dataclass(frozen=True, kw_only=True)
class UniformParameter(Parameter):
    """A float drawn uniformly from [low, high], with low < high."""

    low: float
    high: float

    kind: ClassVar[str] = "uniform"
    fields: ClassVar[tuple[str, ...]] = ("low", "high")

    def __post_init__(self) -> None:
        _check_finite(self.low, self._path("low"))
        _check_finite(self.high, self._path("high"))
        if not self.low < self.high:
            raise ConfigError(
                f"{self._path('low')}: low {self.low} must be less than high {self.high}; "
                "fix the bounds, or move a constant to fixed"
            )
        self._check_conditions()

    def suggest(self, trial: optuna.Trial) -> float:
        return trial.suggest_float(self.key, self.low, self.high)

    def contains(self, value: object) -> bool:
        return _is_real(value) and self.low <= value <= self.high

    def describe(self) -> str:
        return f"uniform in [{self.low:g}, {self.high:g}]"

    def to_dict(self) -> dict[str, object]:
        return {"type": self.kind, "low": self.low, "high": self.high}


@dataclasses.dataclass(frozen=True, kw_only=True)
class LogUniformParameter(Parameter):
    """A float drawn uniformly in log space from [low, high], with 0 < low < high."""

    low: float
    high: float

    kind: ClassVar[str] = "loguniform"
    fields: ClassVar[tuple[str, ...]] = ("low", "high")

    def __post_init__(self) -> None:
        _check_finite(self.low, self._path("low"))
        _check_finite(self.high, self._path("high"))
        if not self.low > 0.0:
            raise ConfigError(
                f"{self._path('low')}: a loguniform low must be greater than 0, but got {self.low}; "
                "use a small positive bound such as 1.0e-6, or type uniform"
            )
        if not self.low < self.high:
            raise ConfigError(f"{self._path('low')}: low {self.low} must be less than high {self.high}; fix the bounds")
        self._check_conditions()

    def suggest(self, trial: optuna.Trial) -> float:
        return trial.suggest_float(self.key, self.low, self.high, log=True)

    def contains(self, value: object) -> bool:
        return _is_real(value) and self.low <= value <= self.high

    def describe(self) -> str:
        return f"loguniform in [{self.low:g}, {self.high:g}]"

    def to_dict(self) -> dict[str, object]:
        return {"type": self.kind, "low": self.low, "high": self.high}


@dataclasses.dataclass(frozen=True, kw_only=True)
class IntParameter(Parameter):
    """An integer from low, low + step, ..., high.

    Attributes:
        low: Smallest value.
        high: Largest value; ``high - low`` must be a multiple of ``step``.
        step: Grid spacing, at least 1.
        log: Sample uniformly in log space; needs ``step == 1`` and ``low >= 1``.
    """

    low: int
    high: int
    step: int = 1
    log: bool = False

    kind: ClassVar[str] = "int"
    fields: ClassVar[tuple[str, ...]] = ("low", "high", "step", "log")

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ConfigError(
                f"{self._path('low')}: low {self.low} is greater than high {self.high}; swap or fix the bounds"
            )
        if self.step < 1:
            raise ConfigError(f"{self._path('step')}: step must be at least 1, but got {self.step}")
        if (self.high - self.low) % self.step != 0:
            raise ConfigError(
                f"{self._path('step')}: step {self.step} does not divide high - low = {self.high - self.low}; "
                f"change high to {self.low + (self.high - self.low) // self.step * self.step} or pick another step"
            )
        if self.log and self.step != 1:
            raise ConfigError(
                f"{self._path('log')}: log: true needs step 1, but step is {self.step}; remove one of them"
            )
        if self.log and self.low < 1:
            raise ConfigError(
                f"{self._path('log')}: log: true needs low >= 1, but low is {self.low}; raise low or drop log"
            )
        self._check_conditions()

    def suggest(self, trial: optuna.Trial) -> int:
        return trial.suggest_int(self.key, self.low, self.high, step=self.step, log=self.log)

    def contains(self, value: object) -> bool:
        if not isinstance(value, int) or isinstance(value, bool):
            return False
        return self.low <= value <= self.high and (value - self.low) % self.step == 0

    def describe(self) -> str:
        text = f"int in [{self.low}, {self.high}]"
        if self.step != 1:
            text += f" step {self.step}"
        if self.log:
            text += " log"
        return text

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"type": self.kind, "low": self.low, "high": self.high}
        if self.step != 1:
            data["step"] = self.step
        if self.log:
            data["log"] = True
        return data


@dataclasses.dataclass(frozen=True, kw_only=True)
class CategoricalParameter(Parameter):
    """One of a list of distinct scalars.

    Attributes:
        values: The choices, in file order. Values that compare equal in
            Python (``1``, ``1.0`` and ``true``) count as duplicates because
            Optuna cannot tell them apart.
    """

    values: tuple[Scalar, ...]

    kind: ClassVar[str] = "categorical"
    fields: ClassVar[tuple[str, ...]] = ("values",)

    def __post_init__(self) -> None:
        path = self._path("values")
        if not self.values:
            raise ConfigError(f"{path}: the list of values is empty; list at least one value")
        for value in self.values:
            if not isinstance(value, str | int | float):
                raise ConfigError(f"{path}: {value!r} is not a scalar; use strings, numbers or booleans")
            if isinstance(value, float):
                _check_finite(value, path)
        for index, value in enumerate(self.values):
            if value in self.values[:index]:
                equal = "" if isinstance(value, str) else " (1, 1.0 and true count as equal)"
                raise ConfigError(f"{path}: {value!r} appears twice{equal}; remove the duplicate")
        self._check_conditions()

    def suggest(self, trial: optuna.Trial) -> Scalar:
        value = trial.suggest_categorical(self.key, self.values)
        assert value is not None  # the values are scalars, never null
        return value

    def contains(self, value: object) -> bool:
        return any(same_scalar(value, choice) for choice in self.values)

    def describe(self) -> str:
        return "categorical of " + ", ".join(_format_scalar(value) for value in self.values)

    def to_dict(self) -> dict[str, object]:
        return {"type": self.kind, "values": list(self.values)}


PARAMETER_TYPES: dict[str, type[Parameter]] = {
    parameter_type.kind: parameter_type
    for parameter_type in (UniformParameter, LogUniformParameter, IntParameter, CategoricalParameter)
}


def suggest(trial: optuna.Trial, space: Sequence[Parameter]) -> dict[str, Scalar]:
    """Suggest a value for every active parameter, in the order of ``space``.

    Only ``trial.suggest_float``, ``suggest_int`` and ``suggest_categorical``
    are called, so this also works through Ray Tune's wrapper that records
    those calls.

    Args:
        trial: An Optuna trial, or an object with its ``suggest_*`` methods.
        space: The parameters, each after the parameters its conditions name.

    Returns:
        Suggested values by flat key, in space order; a parameter whose
        conditions do not hold is absent.
    """
    suggested: dict[str, Scalar] = {}
    for parameter in space:
        if parameter.is_active(suggested):
            suggested[parameter.key] = parameter.suggest(trial)
    return suggested


def has_conditions(space: Sequence[Parameter]) -> bool:
    """Return whether any parameter of ``space`` is conditional."""
    return any(parameter.when for parameter in space)


def make_sampler(
    name: str,
    *,
    seed: int,
    n_objectives: int,
    conditional: bool = False,
    n_startup_trials: int | None = None,
    population_size: int | None = None,
) -> optuna.samplers.BaseSampler:
    """Build the Optuna sampler that an experiment file names.

    TPE is multivariate, with a constant liar so that concurrent trials do
    not crowd one point, and with ``group=True`` when the space has
    conditional parameters (otherwise those are sampled independently).

    Args:
        name: One of ``SAMPLERS``.
        seed: Seed of the sampler's random number generator.
        n_objectives: Number of metrics; 2 or more needs a sampler from
            ``MULTI_OBJECTIVE_SAMPLERS``.
        conditional: Whether the space has conditional parameters.
        n_startup_trials: Random trials before the model of tpe, gp or cmaes
            takes over; None for ``STARTUP_SAMPLERS[name]``.
        population_size: NSGA-II generation size; None for
            ``DEFAULT_POPULATION_SIZE``.

    Returns:
        A new sampler.

    Raises:
        ConfigError: If the name is unknown, the sampler cannot handle
            ``n_objectives`` metrics, or a package it needs is missing.
    """
    if name not in SAMPLERS:
        raise ConfigError(f"search.sampler: unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    if n_objectives < 1:
        raise ConfigError(f"objective.metrics: needs at least one metric, but got {n_objectives}")
    if n_objectives > 1 and name not in MULTI_OBJECTIVE_SAMPLERS:
        raise ConfigError(
            f"search.sampler: {name} optimizes one metric, but there are {n_objectives}; "
            f"choose one of {', '.join(MULTI_OBJECTIVE_SAMPLERS)}"
        )
    startup = n_startup_trials if n_startup_trials is not None else STARTUP_SAMPLERS.get(name, 0)
    if name == "tpe":
        return _make_tpe(seed, conditional=conditional, n_startup_trials=startup)
    if name == "cmaes":
        _require_modules(("cmaes",), sampler=name)
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup, warn_independent_sampling=False)
    if name == "gp":
        _require_modules(("torch", "scipy"), sampler=name)
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup, warn_independent_sampling=False)
    if name == "nsga2":
        size = population_size if population_size is not None else DEFAULT_POPULATION_SIZE
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=size)
    return optuna.samplers.RandomSampler(seed=seed)


def sampler_for_spec(spec: ExperimentSpec) -> optuna.samplers.BaseSampler:
    """Build the sampler of an experiment with its seed and search settings."""
    return make_sampler(
        spec.search.sampler,
        seed=spec.seed,
        n_objectives=len(spec.objective.metrics),
        conditional=has_conditions(spec.space),
        n_startup_trials=spec.search.n_startup_trials,
        population_size=spec.search.population_size,
    )


def space_to_table(spec: ExperimentSpec) -> list[tuple[str, str]]:
    """Describe the searched and fixed parameters, one row each, for printing.

    Returns:
        ``(key, description)`` rows: the space in file order, then the fixed
        parameters, e.g. ``("model/width_2", "int in [64, 256] step 64, when
        model/depth in {2}")`` and ``("train/epochs", "fixed 20")``.
    """
    rows = []
    for parameter in spec.space:
        text = parameter.describe()
        if parameter.when:
            clauses = [
                f"{condition.key} in {{{', '.join(_format_scalar(value) for value in condition.values)}}}"
                for condition in parameter.when
            ]
            text += ", when " + " and ".join(clauses)
        rows.append((parameter.key, text))
    for key, value in spec.fixed.items():
        shown = ", ".join(_format_scalar(item) for item in value) if isinstance(value, tuple) else _format_scalar(value)
        rows.append((key, f"fixed {shown}"))
    return rows


def same_scalar(first: object, second: object) -> bool:
    """Return whether two scalars are equal, never treating a bool as a number."""
    if isinstance(first, bool) != isinstance(second, bool):
        return False
    return first == second


def _make_tpe(seed: int, *, conditional: bool, n_startup_trials: int) -> optuna.samplers.BaseSampler:
    # ``group`` is an experimental argument in Optuna 5.1 and warns on every construction.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*group.*", category=ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=n_startup_trials,
            multivariate=True,
            group=conditional,
            constant_liar=True,
        )


def _require_modules(modules: Sequence[str], *, sampler: str) -> None:
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        raise ConfigError(
            f"search.sampler: {sampler} needs the Python package(s) {', '.join(missing)}; "
            f"run `pip install {' '.join(missing)}` or choose another sampler"
        )


def _check_finite(value: float, path: str) -> None:
    if not math.isfinite(value):
        raise ConfigError(f"{path}: {value} is not a finite number; give a finite value")


def _is_real(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _format_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)

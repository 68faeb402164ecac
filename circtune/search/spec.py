"""The experiment file: its schema, validation and round trip to YAML.

An experiment file is YAML with the sections ``dataset``, ``split``,
``space``, ``fixed``, ``objective``, ``search``, ``resources``, ``tracking``
and the top-level ``seed``; only ``space`` is required. Parameters use flat
``section/name`` keys, the same keys the trial config, the Optuna study and
MLflow use. ``load_spec`` reads a file, ``parse_spec`` validates an already
parsed document, and ``spec_to_dict`` turns a spec back into a document that
``parse_spec`` accepts unchanged. Every error is a ``ConfigError`` whose
one-line message names the file, the key path (``space.model/width_2.low``)
and the fix. docs/experiment-file.md describes every key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Final

import yaml

from circtune.data.dataset import FLAVORS
from circtune.data.h5format import atomic_path
from circtune.data.split import DEFAULT_HELD_OUT_FLAVORS
from circtune.errors import ConfigError
from circtune.search.space import (
    DEFAULT_POPULATION_SIZE,
    MULTI_OBJECTIVE_SAMPLERS,
    PARAMETER_TYPES,
    SAMPLERS,
    STARTUP_SAMPLERS,
    CategoricalParameter,
    Condition,
    IntParameter,
    LogUniformParameter,
    Parameter,
    Scalar,
    UniformParameter,
)

FixedValue = Scalar | tuple[Scalar, ...]

SPEC_FOLDER = "search_spaces"
SPEC_SUFFIXES: tuple[str, ...] = (".yaml", ".yml")
TOP_LEVEL_KEYS: tuple[str, ...] = (
    "dataset", "split", "space", "fixed", "objective", "search", "resources", "tracking", "seed",
)  # fmt: skip
SCHEDULERS: tuple[str, ...] = ("asha", "none")
DEFAULT_DATASET_SOURCE = "default"
DATASET_SUFFIXES: tuple[str, ...] = (".h5", ".hdf5")
MAX_METRICS = 2
# Parameter keys are ``section/name``, except the few trial-config keys without a section.
KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]*/[a-z][a-z0-9_]*$")
SECTIONLESS_KEYS: frozenset[str] = frozenset({"seed"})
# Optuna and NumPy seed a legacy RandomState, which takes seeds in [0, 2**32).
MAX_SEED = 2**32 - 1

_REQUIRED: Final = object()
_YAML_NUMBER_HINT = (
    " (PyYAML reads a number with an exponent as a float only if it has a dot and a signed exponent, "
    "such as 1.0e-4 or 1.0e+3); write it that way"
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DatasetSettings:
    """Where the data comes from.

    Attributes:
        source: ``"default"`` for the embedded generated dataset, or a path
            to a canonical ``.h5`` file; ``resolve_dataset_path`` resolves a
            relative path.
        generator: Overrides of the generator settings for the default
            dataset; the generator validates the names and values.
    """

    source: str = DEFAULT_DATASET_SOURCE
    generator: Mapping[str, object] = dataclasses.field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "generator", MappingProxyType(dict(self.generator)))
        if not self.source.strip():
            raise ConfigError("dataset.source: empty; write default, or a path to a .h5 dataset file")
        if self.source != DEFAULT_DATASET_SOURCE and not self.source.lower().endswith(DATASET_SUFFIXES):
            raise ConfigError(
                f"dataset.source: {self.source!r} is neither 'default' nor a .h5 file; "
                "convert the data with `python -m circtune.data convert` and give the .h5 path"
            )
        if self.generator and self.source != DEFAULT_DATASET_SOURCE:
            raise ConfigError("dataset.generator: applies only to source: default; remove it or set source: default")

    @property
    def is_default(self) -> bool:
        """Whether the data is the embedded generated dataset."""
        return self.source == DEFAULT_DATASET_SOURCE


@dataclasses.dataclass(frozen=True, kw_only=True)
class SplitSettings:
    """How samples split into training, validation and test parts.

    Attributes:
        held_out_flavors: Flavors (from ``FLAVORS``) that training never uses.
        validation_fraction: Share of held-out device groups that score
            trials. The rest form the test part.
        seed: Seed of the group shuffle.
    """

    held_out_flavors: tuple[str, ...] = DEFAULT_HELD_OUT_FLAVORS
    validation_fraction: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        path = "split.held_out_flavors"
        if not self.held_out_flavors:
            raise ConfigError(f"{path}: empty; hold out at least one of {', '.join(FLAVORS)}, for example [hv]")
        for flavor in self.held_out_flavors:
            if flavor not in FLAVORS:
                raise ConfigError(
                    f"{path}: unknown flavor {flavor!r}{_did_you_mean(flavor, FLAVORS)}; use {', '.join(FLAVORS)}"
                )
        _check_distinct(self.held_out_flavors, path)
        if set(self.held_out_flavors) == set(FLAVORS):
            raise ConfigError(f"{path}: every flavor is held out, which leaves nothing to train on; hold out fewer")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigError(
                f"split.validation_fraction: must lie strictly between 0 and 1, but got {self.validation_fraction}; "
                "for example 0.5"
            )
        _check_seed(self.seed, "split.seed")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ObjectiveSettings:
    """What a trial's score is.

    Attributes:
        train_sizes: Numbers of labelled training devices for the downstream
            model; the score is the mean over them.
        metrics: One metric to minimize, or two for a multi-objective search.
    """

    train_sizes: tuple[int, ...] = (8, 32)
    metrics: tuple[str, ...] = ("validation_loss",)

    def __post_init__(self) -> None:
        if not self.train_sizes:
            raise ConfigError("objective.train_sizes: empty; list at least one size, for example [8, 32]")
        for size in self.train_sizes:
            if size < 1:
                raise ConfigError(
                    f"objective.train_sizes: sizes must be positive, but got {size}; use numbers of devices such as 8"
                )
        _check_distinct(self.train_sizes, "objective.train_sizes")
        if not 1 <= len(self.metrics) <= MAX_METRICS:
            raise ConfigError(
                f"objective.metrics: list one metric, or two for a multi-objective search, but got {len(self.metrics)}; "
                "remove the extra ones"
            )
        for metric in self.metrics:
            if not metric.strip():
                raise ConfigError(
                    "objective.metrics: a metric name is empty; give its name, for example validation_loss"
                )
        _check_distinct(self.metrics, "objective.metrics")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SearchSettings:
    """How the search runs.

    Attributes:
        n_trials: Number of trials.
        sampler: Optuna sampler, one of ``SAMPLERS``.
        scheduler: ``"asha"`` (stop poor trials early) or ``"none"``.
        grace_period: Evaluations a trial runs before ASHA may stop it.
        reduction_factor: ASHA's reduction factor, greater than 1.
        eval_every: Training epochs between two validation scores.
        max_concurrent: Trials run at once; None lets the engine use the
            number of CPUs divided by ``cpus_per_trial``.
        max_failures: Retries of a trial whose worker died.
        n_startup_trials: Random trials before the model of tpe, gp or
            cmaes takes over; None for the sampler's default.
        population_size: NSGA-II generation size; None for the default.
        points_to_evaluate: Configurations to try first, in order, each a
            mapping of searched flat keys to values (for example a known
            good configuration); the sampler takes over after them.
    """

    n_trials: int = 20
    sampler: str = "tpe"
    scheduler: str = "asha"
    grace_period: int = 1
    reduction_factor: float = 3.0
    eval_every: int = 5
    max_concurrent: int | None = None
    max_failures: int = 2
    n_startup_trials: int | None = None
    population_size: int | None = None
    points_to_evaluate: tuple[Mapping[str, FixedValue], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "points_to_evaluate", tuple(MappingProxyType(dict(point)) for point in self.points_to_evaluate)
        )
        _check_minimum(self.n_trials, 1, "search.n_trials")
        if self.sampler not in SAMPLERS:
            raise ConfigError(
                f"search.sampler: unknown sampler {self.sampler!r}{_did_you_mean(self.sampler, SAMPLERS)}; "
                f"use one of {', '.join(SAMPLERS)}"
            )
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(
                f"search.scheduler: unknown scheduler {self.scheduler!r}{_did_you_mean(self.scheduler, SCHEDULERS)}; "
                f"use one of {', '.join(SCHEDULERS)}"
            )
        _check_minimum(self.grace_period, 1, "search.grace_period")
        if not self.reduction_factor > 1.0 or not math.isfinite(self.reduction_factor):
            raise ConfigError(
                f"search.reduction_factor: must be a finite number greater than 1, but got {self.reduction_factor}; "
                "for example 3"
            )
        _check_minimum(self.eval_every, 1, "search.eval_every")
        if self.max_concurrent is not None:
            _check_minimum(self.max_concurrent, 1, "search.max_concurrent")
        _check_minimum(self.max_failures, 0, "search.max_failures")
        self._check_sampler_options()

    def _check_sampler_options(self) -> None:
        if self.n_startup_trials is not None:
            if self.sampler not in STARTUP_SAMPLERS:
                raise ConfigError(
                    f"search.n_startup_trials: applies only to samplers {', '.join(STARTUP_SAMPLERS)}, "
                    f"but search.sampler is {self.sampler}; remove it"
                )
            _check_minimum(self.n_startup_trials, 1, "search.n_startup_trials")
        if self.population_size is not None:
            if self.sampler != "nsga2":
                raise ConfigError(
                    f"search.population_size: applies only to sampler nsga2, but search.sampler is {self.sampler}; "
                    "remove it"
                )
            _check_minimum(self.population_size, 2, "search.population_size")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResourceSettings:
    """What one trial reserves on a Ray node.

    Attributes:
        cpus_per_trial: CPUs, greater than 0; a fraction shares a CPU.
        gpus_per_trial: GPUs; a fraction in [0, 1] packs several trials on
            one GPU, and a whole number above 1 gives a trial several GPUs.
    """

    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0

    def __post_init__(self) -> None:
        if not self.cpus_per_trial > 0.0 or not math.isfinite(self.cpus_per_trial):
            raise ConfigError(
                f"resources.cpus_per_trial: must be a finite number greater than 0, but got {self.cpus_per_trial}; "
                "for example 1"
            )
        gpus = self.gpus_per_trial
        if not gpus >= 0.0 or not math.isfinite(gpus):
            raise ConfigError(f"resources.gpus_per_trial: must be a finite number >= 0, but got {gpus}")
        if gpus > 1.0 and not float(gpus).is_integer():
            raise ConfigError(
                f"resources.gpus_per_trial: {gpus} GPUs cannot be reserved; use a fraction up to 1 "
                f"or a whole number such as {math.ceil(gpus)}"
            )


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrackingSettings:
    """Where MLflow records runs.

    Attributes:
        uri: MLflow tracking URI; None means ``sqlite:///<working folder>/mlflow.db``
            (see ``resolve_tracking_uri``).
        experiment: MLflow experiment name.
    """

    uri: str | None = None
    experiment: str = "circtune"

    def __post_init__(self) -> None:
        if self.uri is not None and not self.uri.strip():
            raise ConfigError("tracking.uri: empty; give a tracking URI, or null for a local SQLite file")
        if not self.experiment.strip():
            raise ConfigError("tracking.experiment: empty; give an MLflow experiment name, for example circtune")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExperimentSpec:
    """A validated experiment file.

    Attributes:
        space: Searched parameters in file order; a conditional parameter
            comes after every parameter that its conditions name.
        fixed: Constant parameters by flat key, in file order, passed to
            every trial.
        dataset: Where the data comes from.
        split: Held-out flavors and the validation share.
        objective: Downstream training sizes and the metrics to minimize.
        search: Trial count, sampler, scheduler and their settings.
        resources: CPUs and GPUs per trial.
        tracking: MLflow tracking URI and experiment name.
        seed: Seed of the Optuna sampler. A trial's own training seed is the
            parameter ``seed``, which ``fixed`` or ``space`` may set.
        source: The file the spec came from; relative dataset paths resolve
            against its folder. Not part of equality.
    """

    space: tuple[Parameter, ...]
    fixed: Mapping[str, FixedValue] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    dataset: DatasetSettings = dataclasses.field(default_factory=DatasetSettings)
    split: SplitSettings = dataclasses.field(default_factory=SplitSettings)
    objective: ObjectiveSettings = dataclasses.field(default_factory=ObjectiveSettings)
    search: SearchSettings = dataclasses.field(default_factory=SearchSettings)
    resources: ResourceSettings = dataclasses.field(default_factory=ResourceSettings)
    tracking: TrackingSettings = dataclasses.field(default_factory=TrackingSettings)
    seed: int = 0
    source: str = dataclasses.field(default="<memory>", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fixed", MappingProxyType(dict(self.fixed)))
        _check_space_keys(self.space, self.fixed)
        _check_fixed_values(self.fixed)
        _check_conditions(self.space, self.fixed)
        _check_metrics_fit_search(self.objective, self.search)
        _check_points(self.space, self.search.points_to_evaluate)
        _check_seed(self.seed, "seed")

    @property
    def parameter_keys(self) -> tuple[str, ...]:
        """Flat keys of the searched parameters, then of the fixed ones."""
        return tuple(parameter.key for parameter in self.space) + tuple(self.fixed)

    @property
    def warnings(self) -> tuple[str, ...]:
        """Valid but questionable choices, one sentence each, for the caller to log."""
        return _sampler_warnings(self)


def load_spec(
    path_or_name: str,
    *,
    known_parameters: Collection[str] | None = None,
    known_metrics: Collection[str] | None = None,
) -> ExperimentSpec:
    """Read and validate an experiment file.

    Args:
        path_or_name: A shipped experiment name (``"vae"`` or ``"vae.yaml"``,
            see ``find_spec_file``) or a path to a YAML file.
        known_parameters: Flat keys that the trial config accepts; when
            given, any other key in ``space`` or ``fixed`` is an error.
        known_metrics: Metric names that a trial reports; when given, any
            other name in ``objective.metrics`` is an error.

    Returns:
        The validated spec, with ``source`` set to the file's path.

    Raises:
        ConfigError: If the file is missing, unreadable, not valid YAML, or
            breaks the schema.
    """
    path = find_spec_file(path_or_name)
    data = read_yaml(path)
    return parse_spec(data, str(path), known_parameters=known_parameters, known_metrics=known_metrics)


def parse_spec(
    data: object,
    source: str,
    *,
    known_parameters: Collection[str] | None = None,
    known_metrics: Collection[str] | None = None,
) -> ExperimentSpec:
    """Validate a parsed experiment document.

    Args:
        data: The document as ``yaml.safe_load`` returns it, normally a dict.
        source: The file it came from, used in messages and to resolve a
            relative dataset path.
        known_parameters: Flat keys that the trial config accepts; None skips
            that check.
        known_metrics: Metric names that a trial reports; None skips that
            check.

    Returns:
        The validated spec.

    Raises:
        ConfigError: Naming ``source``, the key path and the fix.
    """
    try:
        spec = _build_spec(data, source)
        if known_parameters is not None:
            _check_known_parameters(spec, known_parameters)
        if known_metrics is not None:
            _check_known_metrics(spec.objective.metrics, known_metrics)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    return spec


def spec_to_dict(spec: ExperimentSpec) -> dict[str, object]:
    """Return the experiment document of ``spec``, with every default filled in.

    The result contains only YAML-safe types (dict, list, str, int, float, bool,
    None), and ``parse_spec`` turns it back into an equal spec.
    """
    space = {}
    for parameter in spec.space:
        entry = parameter.to_dict()
        if parameter.when:
            entry["when"] = {condition.key: list(condition.values) for condition in parameter.when}
        space[parameter.key] = entry
    return {
        "dataset": _section_to_dict(spec.dataset),
        "split": _section_to_dict(spec.split),
        "space": space,
        "fixed": {key: _to_plain(value) for key, value in spec.fixed.items()},
        "objective": _section_to_dict(spec.objective),
        "search": _section_to_dict(spec.search),
        "resources": _section_to_dict(spec.resources),
        "tracking": _section_to_dict(spec.tracking),
        "seed": spec.seed,
    }


def save_spec(spec: ExperimentSpec, path: str | Path) -> None:
    """Write ``spec_to_dict(spec)`` as YAML, replacing ``path`` atomically."""
    target = Path(path)
    header = f"# Resolved experiment file, from {spec.source}\n"
    text = header + yaml.safe_dump(spec_to_dict(spec), sort_keys=False)
    with atomic_path(target) as temporary:
        temporary.write_text(text, encoding="utf-8")


def spec_folders() -> tuple[Path, ...]:
    """Return the folders searched for experiment names, in lookup order.

    These are ``search_spaces/`` beside the ``circtune`` package folder (a
    source checkout or an editable install), then ``search_spaces/`` in the
    working folder.
    """
    # NOTE: search_spaces/ lies outside the package, so a wheel install does
    # not contain it and only the working-folder lookup finds names there.
    shipped = Path(__file__).resolve().parents[2] / SPEC_FOLDER
    working = Path.cwd() / SPEC_FOLDER
    return (shipped,) if working.resolve() == shipped else (shipped, working)


def spec_names() -> list[str]:
    """Return the experiment names found in ``spec_folders()``, sorted."""
    names = {
        path.stem
        for folder in spec_folders()
        if folder.is_dir()
        for path in folder.iterdir()
        if path.suffix in SPEC_SUFFIXES
    }
    return sorted(names)


def find_spec_file(path_or_name: str) -> Path:
    """Find an experiment file by name or path.

    A bare name without a folder (``"vae"`` or ``"vae.yaml"``) is looked up in
    ``spec_folders()`` first. Any other string, or a name found in none of
    them, is a path; to read a local ``vae.yaml`` over the shipped one, write
    ``./vae.yaml``.

    Raises:
        ConfigError: If no file is found; the message lists the names.
    """
    if _is_bare_name(path_or_name):
        file_name = path_or_name if path_or_name.endswith(SPEC_SUFFIXES) else path_or_name + SPEC_SUFFIXES[0]
        for folder in spec_folders():
            candidate = folder / file_name
            if candidate.is_file():
                return candidate
    path = Path(path_or_name).expanduser()
    if path.is_file():
        return path
    names = ", ".join(spec_names()) or "none"
    raise ConfigError(
        f"{path_or_name}: experiment file not found, neither as a path nor in "
        f"{' or '.join(str(folder) for folder in spec_folders())}; give a path to a YAML file or one of the names: {names}"
    )


def resolve_dataset_path(spec: ExperimentSpec, *, working_folder: str | Path | None = None) -> Path | None:
    """Return the absolute path of the dataset file, or None for the default dataset.

    A relative ``dataset.source`` is looked up first in the folder of the
    experiment file (``spec.source``), then in ``working_folder``.

    Args:
        spec: The experiment.
        working_folder: The second folder to look in; the current working
            folder if None.

    Raises:
        ConfigError: If the file exists in neither place.
    """
    if spec.dataset.is_default:
        return None
    relative = Path(spec.dataset.source).expanduser()
    folders = [Path(spec.source).parent, Path(working_folder) if working_folder is not None else Path.cwd()]
    candidates = [relative] if relative.is_absolute() else [folder / relative for folder in folders]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    tried = ", ".join(str(candidate) for candidate in candidates)
    raise ConfigError(
        f"{spec.source}: dataset.source: file {spec.dataset.source!r} not found (looked at {tried}); "
        "fix the path or create the file with `python -m circtune.data simulate`"
    )


def resolve_tracking_uri(spec: ExperimentSpec, *, working_folder: str | Path | None = None) -> str:
    """Return ``tracking.uri``, or ``sqlite:///<working folder>/mlflow.db`` when it is null."""
    from circtune.tracking.store import resolve_tracking_uri as resolve_uri

    return resolve_uri(spec.tracking.uri, Path(working_folder) if working_folder is not None else Path.cwd())


# --- building a spec from a document ------------------------------------------------------------


class _Fields:
    """A mapping from the document at a key path, read with type checks."""

    def __init__(self, data: object, path: str, allowed: Sequence[str], *, example: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            where = path or "top level"
            raise ConfigError(f"{where}: expected a mapping ({example}), but got {_show(data)}")
        _check_keys(data, path, allowed)
        self._data = data
        self._path = path

    def path(self, key: str) -> str:
        return _join(self._path, key)

    def get(self, key: str, default: object = None) -> object:
        return self._data.get(key, default)

    def integer(self, key: str, default: object = _REQUIRED) -> int:
        return _as_int(self._value(key, default), self.path(key))

    def optional_integer(self, key: str) -> int | None:
        value = self._data.get(key)
        return None if value is None else _as_int(value, self.path(key))

    def real(self, key: str, default: object = _REQUIRED) -> float:
        return _as_real(self._value(key, default), self.path(key))

    def text(self, key: str, default: object = _REQUIRED) -> str:
        return _as_text(self._value(key, default), self.path(key))

    def optional_text(self, key: str) -> str | None:
        value = self._data.get(key)
        return None if value is None else _as_text(value, self.path(key))

    def boolean(self, key: str, default: object = _REQUIRED) -> bool:
        value = self._value(key, default)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.path(key)}: expected true or false, but got {_show(value)}; write true or false")
        return value

    def items(self, key: str, default: object = _REQUIRED) -> list[object]:
        value = self._value(key, default)
        if not isinstance(value, list | tuple):
            raise ConfigError(
                f"{self.path(key)}: expected a list such as [a, b], but got {_show(value)}; write it in brackets"
            )
        return list(value)

    def mapping(self, key: str) -> dict[str, object]:
        value = self._data.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{self.path(key)}: expected a mapping such as {{name: value}}, but got {_show(value)}")
        for name in value:
            if not isinstance(name, str):
                raise ConfigError(f"{self.path(key)}: key {_show(name)} is not a string; quote it")
        return dict(value)

    def _value(self, key: str, default: object) -> object:
        value = self._data.get(key, default)
        if value is _REQUIRED:
            raise ConfigError(f"{self.path(key)}: missing; add a value for {key}")
        if value is None:
            raise ConfigError(f"{self.path(key)}: null is not allowed here; give a value or remove the key")
        return value


def _build_spec(data: object, source: str) -> ExperimentSpec:
    if data is None:
        raise ConfigError("top level: the file is empty; an experiment needs at least a space section")
    top = _Fields(data, "", TOP_LEVEL_KEYS, example="sections such as space and search")
    if top.get("space") is None:
        raise ConfigError("space: missing or empty; add a space section with at least one parameter")
    return ExperimentSpec(
        space=_parse_space(top.get("space")),
        fixed=_parse_fixed(top.get("fixed")),
        dataset=_parse_dataset(top.get("dataset")),
        split=_parse_split(top.get("split")),
        objective=_parse_objective(top.get("objective")),
        search=_parse_search(top.get("search")),
        resources=_parse_resources(top.get("resources")),
        tracking=_parse_tracking(top.get("tracking")),
        seed=top.integer("seed", 0),
        source=source,
    )


def _parse_dataset(data: object) -> DatasetSettings:
    fields = _Fields(data, "dataset", ("source", "generator"), example="source: default")
    return DatasetSettings(source=fields.text("source", DEFAULT_DATASET_SOURCE), generator=fields.mapping("generator"))


def _parse_split(data: object) -> SplitSettings:
    fields = _Fields(
        data, "split", ("held_out_flavors", "validation_fraction", "seed"), example="held_out_flavors: [hv]"
    )
    flavors = fields.items("held_out_flavors", list(DEFAULT_HELD_OUT_FLAVORS))
    return SplitSettings(
        held_out_flavors=tuple(_as_text(flavor, fields.path("held_out_flavors")) for flavor in flavors),
        validation_fraction=fields.real("validation_fraction", 0.5),
        seed=fields.integer("seed", 0),
    )


def _parse_objective(data: object) -> ObjectiveSettings:
    fields = _Fields(data, "objective", ("train_sizes", "metrics"), example="metrics: [validation_loss]")
    defaults = ObjectiveSettings()
    sizes = fields.items("train_sizes", list(defaults.train_sizes))
    metrics = fields.items("metrics", list(defaults.metrics))
    return ObjectiveSettings(
        train_sizes=tuple(_as_int(size, fields.path("train_sizes")) for size in sizes),
        metrics=tuple(_as_text(metric, fields.path("metrics")) for metric in metrics),
    )


def _parse_search(data: object) -> SearchSettings:
    names = tuple(field.name for field in dataclasses.fields(SearchSettings))
    fields = _Fields(data, "search", names, example="n_trials: 20")
    defaults = SearchSettings()
    return SearchSettings(
        n_trials=fields.integer("n_trials", defaults.n_trials),
        sampler=fields.text("sampler", defaults.sampler),
        scheduler=fields.text("scheduler", defaults.scheduler),
        grace_period=fields.integer("grace_period", defaults.grace_period),
        reduction_factor=fields.real("reduction_factor", defaults.reduction_factor),
        eval_every=fields.integer("eval_every", defaults.eval_every),
        max_concurrent=fields.optional_integer("max_concurrent"),
        max_failures=fields.integer("max_failures", defaults.max_failures),
        n_startup_trials=fields.optional_integer("n_startup_trials"),
        population_size=fields.optional_integer("population_size"),
        points_to_evaluate=tuple(
            _parse_point(point, f"{fields.path('points_to_evaluate')}[{index}]")
            for index, point in enumerate(fields.items("points_to_evaluate", []))
        ),
    )


def _parse_point(data: object, path: str) -> dict[str, FixedValue]:
    if not isinstance(data, Mapping) or not all(isinstance(key, str) for key in data):
        raise ConfigError(f"{path}: expected a mapping of parameter keys to values, but got {_show(data)}")
    return {str(key): value for key, value in data.items()}


def _parse_resources(data: object) -> ResourceSettings:
    fields = _Fields(data, "resources", ("cpus_per_trial", "gpus_per_trial"), example="cpus_per_trial: 1")
    return ResourceSettings(
        cpus_per_trial=fields.real("cpus_per_trial", 1.0), gpus_per_trial=fields.real("gpus_per_trial", 0.0)
    )


def _parse_tracking(data: object) -> TrackingSettings:
    fields = _Fields(data, "tracking", ("uri", "experiment"), example="experiment: circtune")
    return TrackingSettings(uri=fields.optional_text("uri"), experiment=fields.text("experiment", "circtune"))


def _parse_space(data: object) -> tuple[Parameter, ...]:
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"space: expected a mapping of parameters such as model/depth: {{...}}, but got {_show(data)}"
        )
    if not data:
        raise ConfigError(
            "space: empty; add at least one parameter, for example model/depth: {type: int, low: 1, high: 3}"
        )
    parameters = []
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"space: key {_show(key)} is not a string; use a section/name key")
        parameters.append(_parse_parameter(key, value))
    return tuple(parameters)


def _parse_parameter(key: str, data: object) -> Parameter:
    path = f"space.{key}"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping such as {{type: int, low: 1, high: 3}}, but got {_show(data)}")
    kind = data.get("type")
    types = ", ".join(PARAMETER_TYPES)
    if kind is None:
        raise ConfigError(f"{path}.type: missing; set type to one of {types}")
    if not isinstance(kind, str) or kind not in PARAMETER_TYPES:
        hint = _did_you_mean(kind, PARAMETER_TYPES) if isinstance(kind, str) else ""
        raise ConfigError(f"{path}.type: unknown distribution type {kind!r}{hint}; use one of {types}")
    parameter_type = PARAMETER_TYPES[kind]
    fields = _Fields(data, path, ("type", *parameter_type.fields, "when"), example="type: int, low: 1, high: 3")
    when = _parse_when(fields.get("when"), f"{path}.when")

    if parameter_type is IntParameter:
        return IntParameter(
            key=key,
            low=fields.integer("low"),
            high=fields.integer("high"),
            step=fields.integer("step", 1),
            log=fields.boolean("log", False),
            when=when,
        )
    if parameter_type is CategoricalParameter:
        values = tuple(_as_choice(value, fields.path("values")) for value in fields.items("values"))
        return CategoricalParameter(key=key, values=values, when=when)
    if parameter_type is LogUniformParameter:
        return LogUniformParameter(key=key, low=fields.real("low"), high=fields.real("high"), when=when)
    return UniformParameter(key=key, low=fields.real("low"), high=fields.real("high"), when=when)


def _parse_when(data: object, path: str) -> tuple[Condition, ...]:
    if data is None:
        return ()
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(f"{path}: expected a mapping such as {{model/depth: [2, 3]}}, but got {_show(data)}")
    conditions = []
    for key, allowed in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"{path}: key {_show(key)} is not a string; name an earlier parameter")
        items = allowed if isinstance(allowed, list | tuple) else [allowed]
        values = tuple(_as_choice(value, _join(path, key)) for value in items)
        conditions.append(Condition(key=key, values=values))
    return tuple(conditions)


def _parse_fixed(data: object) -> dict[str, FixedValue]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"fixed: expected a mapping such as train/epochs: 20, but got {_show(data)}")
    fixed: dict[str, FixedValue] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"fixed: key {_show(key)} is not a string; use a section/name key")
        path = f"fixed.{key}"
        if isinstance(value, list | tuple):
            fixed[key] = tuple(_as_choice(item, path) for item in value)
        else:
            fixed[key] = _as_choice(value, path)
    return fixed


# --- checks across fields -----------------------------------------------------------------------


def _check_space_keys(space: tuple[Parameter, ...], fixed: Mapping[str, FixedValue]) -> None:
    if not space:
        raise ConfigError("space: empty; add at least one parameter")
    seen: set[str] = set()
    for parameter in space:
        _check_key_format(parameter.key, f"space.{parameter.key}")
        if parameter.key in seen:
            raise ConfigError(f"space.{parameter.key}: declared twice; keep one")
        seen.add(parameter.key)
    for key in fixed:
        _check_key_format(key, f"fixed.{key}")
        if key in seen:
            raise ConfigError(
                f"fixed.{key}: {key} is also in space; a parameter is either searched or fixed, so remove one"
            )


def _check_key_format(key: str, path: str) -> None:
    if KEY_PATTERN.match(key) is None and key not in SECTIONLESS_KEYS:
        raise ConfigError(
            f"{path}: invalid key {key!r}; write section/name in lower case with digits and underscores, "
            "for example model/width_1"
        )


def _check_fixed_values(fixed: Mapping[str, FixedValue]) -> None:
    for key, value in fixed.items():
        for item in value if isinstance(value, tuple) else (value,):
            if not isinstance(item, str | int | float):
                raise ConfigError(
                    f"fixed.{key}: {item!r} is not a scalar; use strings, numbers, booleans or a list of them"
                )
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"fixed.{key}: {item} is not a finite number; give a finite value")


def _check_conditions(space: tuple[Parameter, ...], fixed: Mapping[str, FixedValue]) -> None:
    keys = [parameter.key for parameter in space]
    earlier: dict[str, Parameter] = {}
    for parameter in space:
        for condition in parameter.when:
            path = f"space.{parameter.key}.when.{condition.key}"
            parent = earlier.get(condition.key)
            if parent is None:
                _raise_missing_parent(condition.key, parameter.key, path, keys, fixed)
            else:
                _check_condition_values(condition, parent, path)
        earlier[parameter.key] = parameter


def _raise_missing_parent(parent: str, child: str, path: str, keys: list[str], fixed: Mapping[str, FixedValue]) -> None:
    if parent in keys:
        raise ConfigError(f"{path}: {parent} comes after {child} in space; move {parent} above {child}")
    if parent in fixed:
        raise ConfigError(
            f"{path}: {parent} is fixed, not searched; a condition can only name an earlier parameter in space"
        )
    raise ConfigError(
        f"{path}: unknown parameter {parent!r}{_did_you_mean(parent, keys)}; a condition can only name an earlier "
        "parameter in space"
    )


def _check_condition_values(condition: Condition, parent: Parameter, path: str) -> None:
    if isinstance(parent, UniformParameter | LogUniformParameter):
        raise ConfigError(
            f"{path}: {parent.key} is continuous ({parent.kind}) and almost never equals a listed value; "
            "make the condition depend on an int or categorical parameter"
        )
    for value in condition.values:
        if not parent.contains(value):
            raise ConfigError(
                f"{path}: {_show(value)} is not a possible value of {parent.key} ({parent.describe()}); "
                "list only values it can take"
            )


def _check_points(space: tuple[Parameter, ...], points: tuple[Mapping[str, FixedValue], ...]) -> None:
    parameters = {parameter.key: parameter for parameter in space}
    for index, point in enumerate(points):
        path = f"search.points_to_evaluate[{index}]"
        for key, value in point.items():
            if key not in parameters:
                raise ConfigError(
                    f"{path}.{key}: not a searched parameter{_did_you_mean(key, parameters)}; "
                    f"use keys of space: {', '.join(parameters)}"
                )
            if not parameters[key].contains(value):
                raise ConfigError(f"{path}.{key}: value {_show(value)} is outside the parameter's range or choices")
        suggested: dict[str, object] = {}
        for parameter in space:
            if parameter.is_active(suggested) and parameter.key in point:
                suggested[parameter.key] = point[parameter.key]
            elif parameter.is_active(suggested):
                raise ConfigError(f"{path}: missing a value for {parameter.key}; give every active searched parameter")
        extra = sorted(set(point) - set(suggested))
        if extra:
            raise ConfigError(f"{path}: {', '.join(extra)} are inactive under its other values; remove them")


def _check_metrics_fit_search(objective: ObjectiveSettings, search: SearchSettings) -> None:
    n_metrics = len(objective.metrics)
    if n_metrics == 1:
        return
    if search.sampler not in MULTI_OBJECTIVE_SAMPLERS:
        raise ConfigError(
            f"search.sampler: {search.sampler} optimizes one metric, but objective.metrics lists {n_metrics}; "
            f"use one of {', '.join(MULTI_OBJECTIVE_SAMPLERS)}"
        )
    if search.scheduler == "asha":
        raise ConfigError(
            f"search.scheduler: asha needs exactly one metric, but objective.metrics lists {n_metrics}; "
            "set search.scheduler: none"
        )


def _check_known_parameters(spec: ExperimentSpec, known: Collection[str]) -> None:
    sections = [("space", parameter.key) for parameter in spec.space] + [("fixed", key) for key in spec.fixed]
    for section, key in sections:
        if key not in known:
            raise ConfigError(
                f"{section}.{key}: unknown parameter {key!r} in {section}{_did_you_mean(key, known)}; "
                f"known parameters: {', '.join(sorted(known))}"
            )


def _check_known_metrics(metrics: tuple[str, ...], known: Collection[str]) -> None:
    for metric in metrics:
        if metric not in known:
            raise ConfigError(
                f"objective.metrics: unknown metric {metric!r}{_did_you_mean(metric, known)}; "
                f"known metrics: {', '.join(sorted(known))}"
            )


def _sampler_warnings(spec: ExperimentSpec) -> tuple[str, ...]:
    search = spec.search
    messages = []
    if search.sampler == "cmaes":
        categorical = [parameter.key for parameter in spec.space if isinstance(parameter, CategoricalParameter)]
        if categorical:
            messages.append(
                f"search.sampler: CMA-ES samples the categorical parameters {', '.join(categorical)} independently, "
                "at random, outside its model; tpe or gp model them"
            )
    if search.sampler in ("cmaes", "gp"):
        conditional = [parameter.key for parameter in spec.space if parameter.when]
        if conditional:
            messages.append(
                f"search.sampler: {search.sampler} models only parameters present in every trial, so it samples the "
                f"conditional parameters {', '.join(conditional)} at random; tpe models them"
            )
    if search.sampler in STARTUP_SAMPLERS:
        startup = search.n_startup_trials or STARTUP_SAMPLERS[search.sampler]
        if startup >= search.n_trials:
            messages.append(
                f"search.n_startup_trials: {search.sampler} draws its first {startup} trials at random and "
                f"search.n_trials is {search.n_trials}, so the search is a random search; lower "
                "search.n_startup_trials or raise search.n_trials"
            )
    if search.sampler == "nsga2":
        population = search.population_size or DEFAULT_POPULATION_SIZE
        if population >= search.n_trials:
            messages.append(
                f"search.population_size: NSGA-II draws its first generation of {population} trials at random and "
                f"search.n_trials is {search.n_trials}, so the search is a random search; lower "
                "search.population_size or raise search.n_trials"
            )
    return tuple(messages)


# --- reading YAML -------------------------------------------------------------------------------


def read_yaml(path: Path) -> object:
    """Read a YAML file safely, rejecting duplicate keys; errors name the file, line and column.

    Raises:
        ConfigError: If the file cannot be read, is not valid YAML or repeats a key.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"{path}: cannot read the experiment file ({error}); check the path and that it is UTF-8 text"
        ) from None
    try:
        _check_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader), path)
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        raise ConfigError(
            f"{where}: invalid YAML, {error.problem or error.context}; fix the syntax at that line"
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML ({error}); fix the syntax") from None


def _check_duplicate_keys(root: yaml.Node | None, file: Path) -> None:
    # PyYAML keeps the last of two equal keys without a warning, so a repeated parameter would vanish.
    stack: list[tuple[yaml.Node, str]] = [(root, "")] if root is not None else []
    visited: set[int] = set()
    while stack:
        node, path = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    stack.append((value_node, _join(path, "?")))
                    continue
                key = str(key_node.value)
                if key in seen:
                    mark = key_node.start_mark
                    raise ConfigError(
                        f"{file}:{mark.line + 1}:{mark.column + 1}: {_join(path, key)}: duplicate key; keep only one"
                    )
                seen.add(key)
                stack.append((value_node, _join(path, key)))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{index}]") for index, item in enumerate(node.value))


# --- value helpers ------------------------------------------------------------------------------


def _check_keys(data: Mapping[object, object], path: str, allowed: Sequence[str]) -> None:
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(
                f"{path or 'top level'}: key {_show(key)} is not a string; quote it (YAML reads yes, no, on and off as booleans)"
            )
        if key not in allowed:
            raise ConfigError(
                f"{_join(path, key)}: unknown key{_did_you_mean(key, allowed)}; valid keys here: {', '.join(allowed)}"
            )


def _as_int(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(
            f"{path}: expected an integer, but got {_show(value)}{_number_hint(value) or '; write a whole number without quotes'}"
        )
    return value


def _as_real(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            f"{path}: expected a number, but got {_show(value)}{_number_hint(value) or '; write a number without quotes'}"
        )
    if not math.isfinite(value):
        raise ConfigError(f"{path}: {value} is not a finite number; give a finite value")
    return float(value)


def _as_text(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(
            f"{path}: expected a string, but got {_show(value)}; write text, quoted if it looks like a number"
        )
    return value


def _as_choice(value: object, path: str) -> Scalar:
    if isinstance(value, str) and _looks_numeric(value):
        raise ConfigError(f"{path}: {value!r} is a string, not a number{_YAML_NUMBER_HINT}")
    if not isinstance(value, str | int | float):
        raise ConfigError(f"{path}: expected a string, number or boolean, but got {_show(value)}; give one such value")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}: {value} is not a finite number; give a finite value")
    return value


def _number_hint(value: object) -> str:
    return _YAML_NUMBER_HINT if isinstance(value, str) and _looks_numeric(value) else ""


def _looks_numeric(text: str) -> bool:
    if text.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_minimum(value: int, minimum: int, path: str) -> None:
    if value < minimum:
        raise ConfigError(f"{path}: must be an integer >= {minimum}, but got {value}; raise it to at least {minimum}")


def _check_seed(seed: int, path: str) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{path}: must lie in [0, {MAX_SEED}], but got {seed}; pick a seed in that range")


def _check_distinct(values: Sequence[object], path: str) -> None:
    for index, value in enumerate(values):
        if value in values[:index]:
            raise ConfigError(f"{path}: {value!r} is listed twice; remove the duplicate")


def _did_you_mean(word: str, choices: Collection[str]) -> str:
    matches = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def _show(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return f"{value!r} (a string)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return f"{list(value)!r} (a list)"
    return repr(value)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_bare_name(text: str) -> bool:
    path = Path(text)
    return bool(text) and path.name == text and "\\" not in text and path.suffix in ("", *SPEC_SUFFIXES)


def _section_to_dict(section: object) -> dict[str, object]:
    return {field.name: _to_plain(getattr(section, field.name)) for field in dataclasses.fields(section)}  # type: ignore[arg-type]


def _to_plain(value: object) -> object:
    if isinstance(value, Mapping):
        return {key: _to_plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(item) for item in value]
    return value

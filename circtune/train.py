"""Train one configuration, score it, and save its weights.

Usage::

    python -m circtune.train --config experiment.yaml [--out DIR] [--test]

The experiment file is YAML: ``dataset`` (a canonical .h5 path, relative to
the working folder, or ``default`` for the generated default dataset; or,
as in a search's ``best_config.yaml``, a mapping with ``source`` and
``generator`` like an experiment file's ``dataset`` section),
``split`` (``held_out_flavors``, ``validation_fraction``, ``seed``) and any
flat ``section/name`` trial parameter, for example::

    dataset: default
    split:
      held_out_flavors: [hv]
      validation_fraction: 0.5
      seed: 0
    model/latent_dim: 16
    train/epochs: 50

``--set KEY=VALUE`` overrides one trial parameter (repeatable; the value is
read as YAML, e.g. ``--set loss/gamma=0``).

The command prints the metrics of every epoch and the validation score;
``--test`` also scores the test part. ``--out DIR`` saves the weights (a
plain state dict, readable with ``torch.load(path, weights_only=True)``),
the normalizer and the config.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from circtune._cli import ArgumentParser, check_output_folder, configure_logging, run_main
from circtune.data.dataset import Dataset
from circtune.data.split import DEFAULT_HELD_OUT_FLAVORS, labelled_subset, split_by_flavor
from circtune.errors import ConfigError
from circtune.models.device import select_device
from circtune.objective.config import MAX_DEPTH, TrialConfig
from circtune.objective.data import TrialData, prepare_trial_data, to_device
from circtune.objective.run import run_trial, save_model
from circtune.objective.score import TrialScore, evaluate_test
from circtune.objective.train import EpochMetrics, NonFiniteLossError

DEFAULT_DATASET = "default"
_TOP_LEVEL_KEYS = ("dataset", "split")
_SPLIT_KEYS = ("held_out_flavors", "validation_fraction", "seed")


@dataclasses.dataclass(frozen=True)
class SplitSettings:
    """How to split a dataset: which flavors are held out, and the validation share."""

    held_out_flavors: tuple[str, ...] = DEFAULT_HELD_OUT_FLAVORS
    validation_fraction: float = 0.5
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A parsed experiment file.

    Attributes:
        dataset: Path of a canonical .h5 file, or ``"default"``.
        split: Split settings.
        config: Trial hyperparameters.
        generator: Generator settings of the default dataset; empty for
            the defaults or a file.
    """

    dataset: str = DEFAULT_DATASET
    split: SplitSettings = dataclasses.field(default_factory=SplitSettings)
    config: TrialConfig = dataclasses.field(default_factory=TrialConfig)
    generator: Mapping[str, object] = dataclasses.field(default_factory=dict)


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment YAML file.

    A relative dataset path is looked up beside the file first, then in the
    working folder.

    Raises:
        ConfigError: If the file is missing, is not valid YAML, or contains
            an unknown key or invalid value.
    """
    from circtune.search.spec import read_yaml

    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"cannot read config file {source}: no such file; check the path")
    document = read_yaml(source)
    experiment = parse_experiment(document if document is not None else {}, source=str(source))
    dataset = Path(experiment.dataset).expanduser()
    beside = source.parent / dataset
    if experiment.dataset != DEFAULT_DATASET and not dataset.is_absolute() and beside.is_file():
        # as in an experiment file, a relative path is looked up beside the file first
        experiment = dataclasses.replace(experiment, dataset=str(beside))
    return experiment


def parse_experiment(document: object, *, source: str = "config") -> Experiment:
    """Validate a parsed experiment document.

    Raises:
        ConfigError: If it is not a mapping, or a key or value is invalid;
            the message names ``source`` and the key.
    """
    if not isinstance(document, Mapping):
        raise ConfigError(
            f"{source}: the top level must be a mapping of keys to values, but got {type(document).__name__}"
        )
    dataset, generator = _parse_dataset(document.get("dataset", DEFAULT_DATASET), source)
    split = _parse_split(document.get("split") or {}, source)
    parameters = {str(key): value for key, value in document.items() if key not in _TOP_LEVEL_KEYS}
    try:
        config = TrialConfig.from_flat(parameters)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from error
    return Experiment(dataset=dataset, split=split, config=config, generator=generator)


def with_overrides(experiment: Experiment, assignments: Sequence[str]) -> Experiment:
    """Return ``experiment`` with ``KEY=VALUE`` trial parameters replaced; values are read as YAML.

    Raises:
        ConfigError: If an assignment has no ``=``, or a key or value is invalid.
    """
    values: dict[str, object] = {}
    for assignment in assignments:
        key, separator, text = assignment.partition("=")
        if not separator or not key.strip():
            raise ConfigError(f"--set {assignment!r} is not KEY=VALUE; write for example --set loss/gamma=0")
        try:
            values[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"--set {assignment!r}: the value is not valid YAML; quote or fix it") from None
    if not values:
        return experiment
    base = experiment.config.to_flat()
    depth = values.get("model/depth")
    if isinstance(depth, int) and not isinstance(depth, bool):
        # a lower depth drops the widths of the layers it removes
        base = {key: value for key, value in base.items() if key not in _width_keys_above(depth)}
    try:
        config = TrialConfig.from_flat({**base, **values})
    except ConfigError as error:
        raise ConfigError(f"--set: {error}") from error
    return dataclasses.replace(experiment, config=config)


def load_dataset(spec: str, generator: Mapping[str, object] | None = None) -> Dataset:
    """Return the dataset named by ``spec``: a canonical .h5 path or ``"default"``.

    Args:
        spec: The path or ``"default"``.
        generator: Generator settings of the default dataset.

    Raises:
        DataError: If the file is missing or invalid.
        ConfigError: If a generator setting is invalid.
    """
    if spec == DEFAULT_DATASET:
        from circtune._progress import ProgressLine
        from circtune.data.default import load_default_dataset
        from circtune.data.synthetic import GeneratorSettings

        settings = GeneratorSettings.from_dict(dict(generator)) if generator else None
        return load_default_dataset(settings, progress=ProgressLine("generating the default dataset", "samples"))
    from circtune.data.h5format import read_dataset

    return read_dataset(Path(spec).expanduser())


def prepare_experiment_data(experiment: Experiment, sizes: Sequence[int] | None = None) -> TrialData:
    """Load, split and prepare the dataset of an experiment.

    Args:
        experiment: The parsed experiment file.
        sizes: Downstream training sizes to check against the training
            part before the data is prepared; ``objective/train_sizes`` if
            None.

    Raises:
        DataError: If the dataset is missing or cannot be split as asked.
        ConfigError: If the split settings are invalid, or a size exceeds
            the training samples.
    """
    dataset = load_dataset(experiment.dataset, experiment.generator)
    settings = experiment.split
    split = split_by_flavor(
        dataset.metadata,
        settings.held_out_flavors,
        validation_fraction=settings.validation_fraction,
        seed=settings.seed,
    )
    for size in sizes if sizes is not None else experiment.config.objective.train_sizes:
        labelled_subset(split.train, size, seed=0)  # raises ConfigError for a size out of range
    return prepare_trial_data(dataset, split)


def format_epoch(epoch: int, epochs: int, metrics: EpochMetrics) -> str:
    """Return one line with the losses and speed of an epoch."""
    return (
        f"epoch {epoch:>{len(str(epochs))}}/{epochs}  reconstruction {metrics.reconstruction:.4g}  "
        f"kl {metrics.kl:.4g}  downstream {metrics.downstream:.4g}  total {metrics.total:.4g}  "
        f"{metrics.samples_per_s:,.0f} samples/s"
    )


def format_score(score: TrialScore) -> str:
    """Return one line with a score, its sizes and the oracle floor."""
    sizes = ", ".join(f"n={s.size}: {s.relative_error_pct:.3g} %" for s in score.per_size)
    return (
        f"{score.part}: loss {score.loss:.4g}, relative error {score.relative_error_pct:.3g} % ({sizes}); "
        f"oracle floor loss {score.oracle.loss:.4g}, {score.oracle.relative_error_pct:.3g} % "
        f"on {score.oracle.n_devices} devices"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return the exit status."""
    arguments = _parser().parse_args(argv)
    configure_logging(arguments.verbose)
    experiment = with_overrides(load_experiment(arguments.config), arguments.set)
    check_output_folder(arguments.out, "--out")
    if arguments.eval_every < 0:
        raise ConfigError(f"--eval-every must be 0 or positive, but got {arguments.eval_every}")
    device = select_device(arguments.device)
    data = prepare_experiment_data(experiment)
    tensors = to_device(data, device)
    config = experiment.config

    def report(epoch: int, metrics: EpochMetrics, score: TrialScore | None) -> None:
        print(format_epoch(epoch, config.train.epochs, metrics), flush=True)
        if score is not None and epoch < config.train.epochs:  # the last epoch's score is the final line
            print(f"  {format_score(score)}", flush=True)

    try:
        result = run_trial(config, tensors, device=device, on_epoch=report, eval_every=arguments.eval_every)
        test_score = evaluate_test(result.vae, tensors, config) if arguments.test else None
    except NonFiniteLossError as error:
        raise ConfigError(str(error)) from error

    print(format_score(result.final_score))
    if test_score is not None:
        print(format_score(test_score))
    if arguments.out is not None:
        folder = save_model(arguments.out, vae=result.vae, head=result.head, config=config, normalizer=data.normalizer)
        print(f"saved the model to {folder}")
    return 0


def _width_keys_above(depth: int) -> set[str]:
    return {f"model/width_{index}" for index in range(depth + 1, MAX_DEPTH + 1)}


def _parse_dataset(section: object, source: str) -> tuple[str, Mapping[str, object]]:
    """Return the dataset path or ``"default"`` and the generator settings of a ``dataset`` value."""
    if isinstance(section, Mapping):
        unknown = [key for key in section if key not in ("source", "generator")]
        if unknown:
            raise ConfigError(f"{source}: unknown keys {unknown} under 'dataset'; allowed keys are source and generator")
        generator = section.get("generator") or {}
        dataset = section.get("source", DEFAULT_DATASET)
        if not isinstance(generator, Mapping):
            raise ConfigError(f"{source}: dataset.generator must be a mapping of settings, but got {generator!r}")
        if generator and dataset != DEFAULT_DATASET:
            raise ConfigError(f"{source}: dataset.generator applies only to source: default; remove it")
    else:
        dataset, generator = section, {}
    if not isinstance(dataset, str) or not dataset:
        raise ConfigError(f"{source}: 'dataset' must be a file path or 'default', but got {dataset!r}")
    return dataset, {str(key): value for key, value in generator.items()}


def _parse_split(section: object, source: str) -> SplitSettings:
    if not isinstance(section, Mapping):
        raise ConfigError(f"{source}: 'split' must be a mapping with keys {list(_SPLIT_KEYS)}, but got {section!r}")
    unknown = [key for key in section if key not in _SPLIT_KEYS]
    if unknown:
        raise ConfigError(f"{source}: unknown keys {unknown} under 'split'; allowed keys are {list(_SPLIT_KEYS)}")
    flavors = section.get("held_out_flavors", list(DEFAULT_HELD_OUT_FLAVORS))
    if isinstance(flavors, str):
        flavors = [flavors]
    if not isinstance(flavors, list) or not all(isinstance(flavor, str) for flavor in flavors):
        raise ConfigError(f"{source}: split.held_out_flavors must be a list of flavor names, but got {flavors!r}")
    fraction = section.get("validation_fraction", 0.5)
    seed = section.get("seed", 0)
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise ConfigError(f"{source}: split.validation_fraction must be a number in (0, 1), but got {fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{source}: split.seed must be a non-negative integer, but got {seed!r}")
    return SplitSettings(held_out_flavors=tuple(flavors), validation_fraction=float(fraction), seed=seed)


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m circtune.train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="experiment YAML file")
    parser.add_argument("--out", type=Path, help="folder to save weights, normalizer and config into")
    parser.add_argument("--test", action="store_true", help="also score the test part (final report only)")
    parser.add_argument(
        "--eval-every", type=int, default=0, help="score on validation every N epochs (default 0: after the last only)"
    )
    add_set_argument(parser)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:<index> (default auto)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return parser


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """Add the repeatable ``--set KEY=VALUE`` option to ``parser``."""
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override one trial parameter, e.g. --set loss/gamma=0 (repeatable)",
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_main(main))

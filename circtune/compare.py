"""The headline comparison: VAE embeddings against raw ibias and PCA as downstream inputs.

Usage::

    python -m circtune.compare [--config FILE.yaml] [--dataset PATH|default] [--sizes 8,32,128]
                               [--seeds 3] [--out DIR] [--part validation|test] [--set KEY=VALUE]

For each seed the VAE of the configuration is trained with that seed. Then,
for each downstream training size and each input kind, a fresh head is
fitted on that many labelled training devices and scored on the held-out
part. The input kinds are the VAE embeddings, the raw normalized ibias cube,
and a PCA of the normalized full table with as many components as the
latent size. The command
prints a table of mean and standard deviation over seeds with the oracle
floor, one plain line per size naming the winner, and writes ``runs.csv``,
``summary.csv`` and ``comparison.png`` into ``--out``.

``run_comparison`` computes; ``format_table``, ``winner_lines``,
``write_csv`` and ``plot_comparison`` only present its result.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from circtune._cli import ArgumentParser, check_output_folder, configure_logging, run_main
from circtune.data.h5format import atomic_path
from circtune.errors import ConfigError
from circtune.models.device import select_device
from circtune.models.downstream import INPUT_KINDS, InputKind
from circtune.models.vae import VAE
from circtune.objective.config import TrialConfig
from circtune.objective.data import OracleFloor, Part, TensorData, TrialData, to_device
from circtune.objective.score import FeatureFunction, part_oracle, representation, score_features
from circtune.objective.train import JointTrainer, NonFiniteLossError
from circtune.train import (
    DEFAULT_DATASET,
    Experiment,
    add_set_argument,
    load_experiment,
    prepare_experiment_data,
    with_overrides,
)

logger = logging.getLogger(__name__)

DEFAULT_SEEDS = 3
DEFAULT_OUT = Path("comparison")
KIND_LABELS: dict[str, str] = {"embedding": "embeddings", "raw": "raw", "pca": "PCA"}


@dataclasses.dataclass(frozen=True)
class RunRow:
    """Score of one input kind, size and seed."""

    kind: InputKind
    size: int
    seed: int
    loss: float
    relative_error_pct: float


@dataclasses.dataclass(frozen=True)
class SummaryRow:
    """Mean and sample standard deviation over seeds of one input kind and size."""

    kind: InputKind
    size: int
    n_seeds: int
    mean_loss: float
    std_loss: float
    mean_relative_error_pct: float
    std_relative_error_pct: float


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Result of ``run_comparison``.

    Attributes:
        part: The held-out part scored.
        sizes: Downstream training sizes, ascending.
        seeds: Seeds, one VAE each.
        runs: One row per kind, size and seed.
        summary: One row per kind and size.
        oracle: Direct-fit floor on the scored devices.
    """

    part: Part
    sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    runs: tuple[RunRow, ...]
    summary: tuple[SummaryRow, ...]
    oracle: OracleFloor

    def summary_of(self, kind: InputKind, size: int) -> SummaryRow:
        """Return the summary row of one kind and size."""
        return next(row for row in self.summary if row.kind == kind and row.size == size)


def run_comparison(
    data: TrialData | TensorData,
    config: TrialConfig,
    *,
    sizes: Sequence[int],
    seeds: Sequence[int],
    device: torch.device,
    part: Part = "validation",
) -> Comparison:
    """Score embeddings, raw ibias and PCA for every size and seed, training one VAE per seed.

    Args:
        data: Trial data.
        config: The VAE and downstream configuration; its seed is replaced
            by each of ``seeds``.
        sizes: Downstream training sizes.
        seeds: Seeds; each trains its own VAE and draws its own labelled
            subsets and head initialisations.
        device: Where to train.
        part: ``"validation"``, or ``"test"`` for a final report.

    Raises:
        ConfigError: If a size exceeds the training devices, fewer than two
            seeds are given, or the PCA needs more components than there
            are training samples.
        NonFiniteLossError: If a loss is not finite.
    """
    tensors = _tensors(data, device)

    def train_vae(seed: int) -> VAE:
        seeded = config.with_values({"seed": seed})
        trainer = JointTrainer(seeded, tensors, device=device)
        for _ in range(seeded.train.epochs):
            trainer.train_epoch()
        return trainer.vae.eval()

    return _compare(train_vae, tensors, config, sizes=sizes, seeds=seeds, part=part)


def compare_trained(
    vae: VAE,
    data: TrialData | TensorData,
    config: TrialConfig,
    *,
    part: Part = "validation",
    sizes: Sequence[int] | None = None,
    seeds: Sequence[int] | None = None,
) -> Comparison:
    """Compare the inputs with one VAE that is already trained.

    Seeds then vary only the labelled subsets and the head initialisations,
    so the spread leaves out the VAE's own training noise.

    Args:
        vae: The trained VAE, on the device where the comparison runs.
        data: Trial data.
        config: Gives the downstream head and the latent size.
        part: ``"validation"``, or ``"test"`` for a final report.
        sizes: Downstream training sizes; ``objective/train_sizes`` if None.
        seeds: Seeds; ``DEFAULT_SEEDS`` seeds from the config's if None.

    Raises:
        ConfigError: If a size exceeds the training devices or fewer than
            two seeds are given.
        NonFiniteLossError: If a loss is not finite.
    """
    device = next(vae.parameters()).device
    chosen_sizes = sizes if sizes is not None else config.objective.train_sizes
    chosen_seeds = seeds if seeds is not None else [config.seed + offset for offset in range(DEFAULT_SEEDS)]
    return _compare(lambda seed: vae, _tensors(data, device), config, sizes=chosen_sizes, seeds=chosen_seeds, part=part)


def summarize_runs(runs: Sequence[RunRow]) -> tuple[SummaryRow, ...]:
    """Return the mean and sample standard deviation over seeds of each kind and size."""
    summary = []
    for kind in INPUT_KINDS:
        for size in sorted({row.size for row in runs}):
            group = [row for row in runs if row.kind == kind and row.size == size]
            if not group:
                continue
            losses = np.array([row.loss for row in group])
            errors = np.array([row.relative_error_pct for row in group])
            spread = 1 if len(group) > 1 else 0
            summary.append(
                SummaryRow(kind, size, len(group), float(losses.mean()), float(losses.std(ddof=spread)),
                           float(errors.mean()), float(errors.std(ddof=spread)))
            )  # fmt: skip
    return tuple(summary)


def winner_lines(comparison: Comparison) -> list[str]:
    """Return one plain sentence per size naming the input kind with the lowest mean relative error.

    When the winner's lead over the runner-up is smaller than the larger of
    their standard deviations over seeds, the sentence adds that caveat.
    """
    lines = []
    for size in comparison.sizes:
        rows = [comparison.summary_of(kind, size) for kind in INPUT_KINDS]
        ranked = sorted(rows, key=lambda row: row.mean_relative_error_pct)
        best, runner_up = ranked[0], ranked[1]
        values = " vs ".join(f"{KIND_LABELS[row.kind]} {row.mean_relative_error_pct:.3g} %" for row in rows)
        lead = runner_up.mean_relative_error_pct - best.mean_relative_error_pct
        spread = max(best.std_relative_error_pct, runner_up.std_relative_error_pct)
        verdict = f"{KIND_LABELS[best.kind]} won"
        if lead < spread:
            verdict += f", but by less than the seed spread over {KIND_LABELS[runner_up.kind]}"
        lines.append(f"size {size}: {verdict} ({values}; oracle floor {comparison.oracle.relative_error_pct:.3g} %)")
    return lines


def format_table(comparison: Comparison) -> str:
    """Return the summary as a text table: relative error and loss, mean and spread per kind and size."""
    header = f"{'size':>6}  {'input':<10}  {'rel. error % (mean +- std)':>27}  {'loss (mean +- std)':>24}"
    lines = [f"{comparison.part} part, {len(comparison.seeds)} seeds", header, "-" * len(header)]
    for size in comparison.sizes:
        for kind in INPUT_KINDS:
            row = comparison.summary_of(kind, size)
            error = f"{row.mean_relative_error_pct:.4g} +- {row.std_relative_error_pct:.2g}"
            loss = f"{row.mean_loss:.4g} +- {row.std_loss:.2g}"
            lines.append(f"{size:>6}  {KIND_LABELS[kind]:<10}  {error:>27}  {loss:>24}")
    oracle = comparison.oracle
    lines.append(f"{'all':>6}  {'oracle':<10}  {oracle.relative_error_pct:>27.4g}  {oracle.loss:>24.4g}")
    return "\n".join(lines)


def write_csv(comparison: Comparison, directory: Path) -> tuple[Path, Path]:
    """Write ``runs.csv`` and ``summary.csv`` into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    run_fields = [field.name for field in dataclasses.fields(RunRow)]
    runs_path = directory / "runs.csv"
    _write_rows(runs_path, run_fields, [dataclasses.astuple(row) for row in comparison.runs])
    return runs_path, write_comparison_csv(comparison, directory / "summary.csv")


def write_comparison_csv(comparison: Comparison, path: Path) -> Path:
    """Write the summary, one row per kind and size plus an oracle row, to ``path`` atomically.

    The oracle row has kind ``oracle`` and leaves size, seed count and
    spreads empty.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = ["part", *(field.name for field in dataclasses.fields(SummaryRow))]
    rows: list[tuple[object, ...]] = [(comparison.part, *dataclasses.astuple(row)) for row in comparison.summary]
    oracle = comparison.oracle
    rows.append((comparison.part, "oracle", "", "", oracle.loss, "", oracle.relative_error_pct, ""))
    _write_rows(path, fields, rows)
    return path


def plot_comparison(comparison: Comparison, path: Path) -> Path:
    """Plot mean relative error against size with seed spread and the oracle floor; save a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.0, 4.0))
    for kind in INPUT_KINDS:
        rows = [comparison.summary_of(kind, size) for size in comparison.sizes]
        means = np.array([row.mean_relative_error_pct for row in rows])
        spreads = np.array([row.std_relative_error_pct for row in rows])
        # the y axis is logarithmic, so a lower bar is kept above zero
        below = np.minimum(spreads, 0.9 * means)
        axes.errorbar(comparison.sizes, means, yerr=[below, spreads], marker="o", capsize=3, label=KIND_LABELS[kind])
    axes.axhline(comparison.oracle.relative_error_pct, color="grey", linestyle="--", label="oracle floor")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.minorticks_off()
    axes.set_xticks(comparison.sizes, [str(size) for size in comparison.sizes])
    axes.set_xlabel("labelled training devices")
    axes.set_ylabel(f"relative error on {comparison.part} devices (%)")
    axes.set_title(f"Square Law extraction, mean and std over {len(comparison.seeds)} seeds")
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=120)
    plt.close(figure)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return the exit status."""
    arguments = _parser().parse_args(argv)
    configure_logging(arguments.verbose)
    experiment = load_experiment(arguments.config) if arguments.config is not None else Experiment()
    experiment = with_overrides(experiment, arguments.set)
    check_output_folder(arguments.out, "--out")
    if arguments.dataset is not None:
        experiment = dataclasses.replace(experiment, dataset=arguments.dataset)
    sizes = arguments.sizes if arguments.sizes is not None else experiment.config.objective.train_sizes
    seeds = [experiment.config.seed + offset for offset in range(arguments.seeds)]
    device = select_device(arguments.device)

    data = prepare_experiment_data(experiment, sizes)
    try:
        comparison = run_comparison(
            data, experiment.config, sizes=sizes, seeds=seeds, device=device, part=arguments.part
        )
    except NonFiniteLossError as error:
        raise ConfigError(str(error)) from error

    print(format_table(comparison))
    print()
    for line in winner_lines(comparison):
        print(line)
    runs_path, summary_path = write_csv(comparison, arguments.out)
    plot_path = plot_comparison(comparison, arguments.out / "comparison.png")
    print(f"wrote {runs_path}, {summary_path} and {plot_path}")
    return 0


def _compare(
    vae_for_seed: Callable[[int], VAE],
    tensors: TensorData,
    config: TrialConfig,
    *,
    sizes: Sequence[int],
    seeds: Sequence[int],
    part: Part,
) -> Comparison:
    if len(seeds) < 2:
        raise ConfigError(f"the comparison needs at least 2 seeds to measure spread, but got {len(seeds)}")
    fixed_kinds: dict[InputKind, FeatureFunction] = {
        "raw": representation("raw", tensors),
        "pca": representation("pca", tensors, n_components=config.model.latent_dim),
    }
    ordered_sizes = tuple(sorted(set(sizes)))
    runs: list[RunRow] = []
    for seed in seeds:
        features = {"embedding": representation("embedding", tensors, vae=vae_for_seed(seed)), **fixed_kinds}
        for kind in INPUT_KINDS:
            scores = score_features(
                features[kind], tensors, config.downstream, part=part, sizes=ordered_sizes, seed=seed
            )
            runs.extend(RunRow(kind, s.size, seed, s.loss, s.relative_error_pct) for s in scores)
        logger.info("Compared the inputs for seed %d", seed)
    return Comparison(
        part=part,
        sizes=ordered_sizes,
        seeds=tuple(seeds),
        runs=tuple(runs),
        summary=summarize_runs(runs),
        oracle=part_oracle(tensors, part),
    )


def _tensors(data: TrialData | TensorData, device: torch.device) -> TensorData:
    if isinstance(data, TensorData) and data.device == device:
        return data
    return to_device(data.source if isinstance(data, TensorData) else data, device)


def _write_rows(path: Path, fields: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    with atomic_path(path) as temporary, temporary.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(fields)
        writer.writerows(rows)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"sizes must be comma-separated integers such as 8,32,128, not {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive integers such as 8,32,128, not {text!r}")
    if len(set(sizes)) != len(sizes):
        raise argparse.ArgumentTypeError(f"sizes must be distinct, such as 8,32,128, not {text!r}")
    return sizes


def _seed_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds must be an integer of at least 2, not {text!r}") from None
    if count < 2:
        raise argparse.ArgumentTypeError(f"--seeds must be at least 2 to measure spread, not {count}")
    return count


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m circtune.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="experiment YAML file (as for circtune.train); defaults if omitted")
    parser.add_argument("--dataset", help=f"canonical .h5 path or {DEFAULT_DATASET!r}; overrides the config's")
    parser.add_argument(
        "--sizes", type=_sizes, help="downstream training sizes, e.g. 8,32,128 (default: objective/train_sizes)"
    )
    parser.add_argument(
        "--seeds", type=_seed_count, default=DEFAULT_SEEDS, help=f"number of seeds (default {DEFAULT_SEEDS})"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--part", choices=("validation", "test"), default="validation", help="held-out part to score")
    add_set_argument(parser)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:<index> (default auto)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return parser


if __name__ == "__main__":
    sys.exit(run_main(main))

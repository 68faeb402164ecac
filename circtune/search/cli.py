"""``python -m circtune.search``: run a hyperparameter search from an experiment file."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from circtune._cli import ArgumentParser, configure_logging
from circtune.search.spec import spec_names

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser."""
    parser = ArgumentParser(
        prog="python -m circtune.search",
        description="Search VAE configurations for transistor-table embeddings: Ray Tune runs the trials, "
        "Optuna chooses them, MLflow records every run. Each trial is scored by Square Law extraction "
        "on held-out device flavors.",
        epilog="Browse the results with: mlflow ui --backend-store-uri sqlite:///mlflow.db",
    )
    parser.add_argument(
        "--space",
        default="vae.yaml",
        help=f"experiment file: a path, or a name under search_spaces/ ({', '.join(spec_names()) or 'none found'}); "
        "default: vae.yaml",
    )
    parser.add_argument(
        "--address",
        help="Ray cluster address (HOST:PORT, ray://HOST:PORT or auto); default: $RAY_ADDRESS, else a local Ray",
    )
    parser.add_argument(
        "--tracking-uri", help="MLflow tracking URI; overrides tracking.uri (default: sqlite:///mlflow.db here)"
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=Path("circtune_results"),
        help="folder holding one subfolder per search: state, Optuna study, Tune results (default: ./circtune_results)",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        metavar="SEARCH_ID",
        help="continue an interrupted search (default: the latest one in --results); --space is then ignored",
    )
    parser.add_argument("--trials", type=int, help="number of trials in total; overrides search.n_trials")
    parser.add_argument("--max-concurrent", type=int, help="concurrent trials; overrides search.max_concurrent")
    parser.add_argument("--check", action="store_true", help="check the experiment file, data and services, then exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the search named on the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)

    from circtune.search.engine import SearchOptions, prepare_search, run_search
    from circtune.search.report import format_report

    options = SearchOptions(
        space=args.space,
        results=args.results.resolve(),
        address=args.address,
        tracking_uri=args.tracking_uri,
        resume=args.resume,
        n_trials=args.trials,
        max_concurrent=args.max_concurrent,
        workdir=Path.cwd(),
    )
    prepared = prepare_search(options)
    if args.check:
        print(
            f"{prepared.spec.source}: valid; {prepared.dataset.n_samples} samples, split "
            f"{len(prepared.split.train)}/{len(prepared.split.validation)}/{len(prepared.split.test)} "
            f"(train/validation/test); tracking {prepared.tracking_uri}"
        )
        return 0
    report = run_search(prepared)
    print(format_report(report))
    return 0 if report.best_number is not None else 1

"""Measure the default search: trials per hour, compute share, concurrency speed-up.

Runs ``python -m circtune.search`` on ``search_spaces/vae.yaml`` twice in
temporary folders, once with one trial at a time and once with two, on the
same trials: the sampler is switched to ``random`` (same seed, so the same
configurations) and the scheduler to ``none`` (every trial runs all epochs).
Then it runs the shipped file unchanged and reports its wall time.

Usage: python benchmarks/bench_search.py [--trials 4] [--skip-default]

Prints one table. ``compute share`` is the time trials spent in training
and scoring divided by their wall time (``per trial``) and by the search's
wall time times the concurrency (``of slots``, which also counts Ray's
actor start-up and scheduling).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPOSITORY = Path(__file__).resolve().parents[1]


def run_search(folder: Path, experiment: dict[str, object], *, cache: Path) -> float:
    """Run one search in ``folder``; return its wall time in seconds."""
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    environment = {**os.environ, "CIRCTUNE_CACHE_DIR": str(cache)}
    started_s = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "circtune.search", "--space", str(path), "--results", "results"],
        cwd=folder,
        env=environment,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started_s


def trial_times(folder: Path) -> list[tuple[float, float]]:
    """Return ``(compute_s, trial_s)`` of every finished trial run in the folder's MLflow store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    times = []
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id], filter_string="tags.`circtune.role` = 'trial'"):
            metrics = run.data.metrics
            if "time_compute_s" in metrics:
                times.append((metrics["time_compute_s"], metrics["time_trial_s"]))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4, help="trials per fixed-trial run (default 4)")
    parser.add_argument("--skip-default", action="store_true", help="do not run the shipped vae.yaml unchanged")
    args = parser.parse_args()

    shipped = yaml.safe_load((REPOSITORY / "search_spaces" / "vae.yaml").read_text())
    with tempfile.TemporaryDirectory(prefix="circtune-bench-") as root:
        cache = Path(root) / "cache"
        rows = []
        for concurrency in (1, 2):
            experiment = dict(shipped)
            experiment["search"] = {
                **shipped["search"],
                "n_trials": args.trials,
                "sampler": "random",
                "scheduler": "none",
                "max_concurrent": concurrency,
            }
            experiment["search"].pop("n_startup_trials", None)
            folder = Path(root) / f"concurrency-{concurrency}"
            folder.mkdir()
            wall_s = run_search(folder, experiment, cache=cache)
            times = trial_times(folder)
            compute_s = sum(compute for compute, _ in times)
            trial_s = sum(total for _, total in times)
            rows.append((f"{args.trials} fixed trials, {concurrency} at a time", wall_s, len(times), compute_s / trial_s,
                         compute_s / (wall_s * concurrency)))  # fmt: skip
        if not args.skip_default:
            folder = Path(root) / "default"
            folder.mkdir()
            wall_s = run_search(folder, shipped, cache=cache)
            times = trial_times(folder)
            compute_s = sum(compute for compute, _ in times)
            trial_s = sum(total for _, total in times)
            concurrency = shipped["search"]["max_concurrent"]
            rows.append((f"vae.yaml as shipped ({shipped['search']['n_trials']} trials, ASHA)", wall_s, len(times),
                         compute_s / trial_s if trial_s else float("nan"),
                         compute_s / (wall_s * concurrency)))  # fmt: skip

    print(f"{'run':<44} {'wall s':>8} {'trials/h':>9} {'timed':>6} {'share/trial':>12} {'share/slots':>12}")
    for name, wall_s, n_timed, per_trial, of_slots in rows:
        n_total = args.trials if "fixed" in name else shipped["search"]["n_trials"]
        print(
            f"{name:<44} {wall_s:>8.1f} {3600 * n_total / wall_s:>9.1f} {n_timed:>6} {per_trial:>12.1%} {of_slots:>12.1%}"
        )
    print("timed: trials that ran to the end and recorded their compute time (ASHA-stopped trials do not)")
    if len(rows) >= 2:
        print(f"speed-up of 2 concurrent trials over 1: {rows[0][1] / rows[1][1]:.2f}x")


if __name__ == "__main__":
    main()

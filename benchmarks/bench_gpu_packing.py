"""Throughput of circtune trials packed onto one GPU: trials per hour and GPU utilization.

Usage::

    python benchmarks/bench_gpu_packing.py [--packings 1,2,4,8,16] [--budget-s 240]
                                           [--epochs 5] [--json results.json]

For each packing k, one local Ray instance with one GPU runs the real search
trainable (``circtune.search.trainable.run_tune_trial``) with
``resources.gpus_per_trial = 1/k``, so up to k trials share the GPU. Every
trial trains the default VAE on the embedded default dataset, logs to an
MLflow server that this script starts on 127.0.0.1, uploads its artifacts,
and writes Tune checkpoints, as in a search. Each packing gets an equal share
of the time budget (``TuneConfig.time_budget_s``); trials still running when
its share ends do not count.

Reported per packing:

    completed   trials that finished inside the time share
    trials/h    completed / wall time * 3600
    util %      mean of nvidia-smi's utilization.gpu, sampled every 500 ms
    mem MiB     peak of nvidia-smi's memory.used

Without a GPU the script prints one line and exits with status 0.
``--fake-gpu`` declares one GPU to Ray on a machine without one, so that the
script itself can be tried on CPUs. Trials then train on the CPU, and no
utilization is sampled.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import torch

from circtune.search.searcher import COMPLETE_KEY

SAMPLE_INTERVAL_MS = 500
SERVER_START_TIMEOUT_S = 90.0
MIN_SHARE_S = 20.0
# Settings of a small generated dataset for --tiny-data, to try the script on CPUs.
TINY_GENERATOR = {"n_mismatch_draws": 1, "n_vbs": 3, "n_vgs": 6, "n_vds": 6}


def main() -> int:
    arguments = _parser().parse_args()
    if not arguments.fake_gpu and not torch.cuda.is_available():
        print("bench_gpu_packing: no GPU is present (torch.cuda.is_available() is False); nothing to measure")
        return 0
    deadline = time.monotonic() + arguments.budget_s
    packings = [int(value) for value in arguments.packings.split(",")]

    workdir = Path(tempfile.mkdtemp(prefix="bgp", dir="/tmp"))
    os.environ.setdefault("CIRCTUNE_CACHE_DIR", str(workdir / "cache"))
    server, uri = _start_mlflow_server(workdir)
    try:
        rows = _run_packings(arguments, packings, workdir=workdir, uri=uri, deadline=deadline)
    finally:
        _stop(server)
        shutil.rmtree(workdir, ignore_errors=True)

    _print_table(arguments, rows)
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(rows, indent=2))
    return 0


def _run_packings(
    arguments: argparse.Namespace, packings: list[int], *, workdir: Path, uri: str, deadline: float
) -> list[dict[str, Any]]:
    import ray

    data, context = _prepare(arguments, workdir=workdir, uri=uri)
    n_cpus = os.cpu_count() or 1
    ray.init(num_cpus=n_cpus, num_gpus=1, include_dashboard=False, _temp_dir=str(workdir / "ray"), log_to_driver=False)
    try:
        rows = []
        for index, packing in enumerate(packings):
            share_s = (deadline - time.monotonic()) / (len(packings) - index)
            if share_s < MIN_SHARE_S:
                print(f"skipping packings {packings[index:]}: less than {MIN_SHARE_S:.0f} s of the budget is left")
                break
            rows.append(_measure(packing, share_s, data=data, context=context, n_cpus=n_cpus, workdir=workdir,
                                 sample=not arguments.fake_gpu))  # fmt: skip
        return rows
    finally:
        ray.shutdown()


def _prepare(arguments: argparse.Namespace, *, workdir: Path, uri: str) -> tuple[Any, Any]:
    from circtune.data.default import load_default_dataset
    from circtune.data.split import split_by_flavor
    from circtune.data.synthetic import GeneratorSettings
    from circtune.objective.data import prepare_trial_data
    from circtune.search.trainable import TrialContext
    from circtune.tracking import store

    settings = GeneratorSettings.from_dict(TINY_GENERATOR if arguments.tiny_data else {})
    dataset = load_default_dataset(settings)
    split = split_by_flavor(dataset.metadata, ("hv",), validation_fraction=0.5, seed=0)
    data = prepare_trial_data(dataset, split)

    experiment_id = store.ensure_experiment(uri, "gpu-packing", workdir=workdir)
    parent = store.create_parent_run(uri, experiment_id, search_id="gpu-packing", run_name="gpu-packing")
    fixed = {"train/epochs": arguments.epochs, "objective/train_sizes": [8] if arguments.tiny_data else [16, 64]}
    context = TrialContext(fixed=fixed, eval_every=arguments.epochs, tracking_uri=uri, experiment_id=experiment_id,
                           parent_run_id=parent, search_id="gpu-packing")  # fmt: skip
    return data, context


def _measure(
    packing: int, share_s: float, *, data: Any, context: Any, n_cpus: int, workdir: Path, sample: bool
) -> dict[str, Any]:
    from ray import tune

    from circtune.search.trainable import run_tune_trial

    gpus_per_trial = 1.0 / packing
    cpus_per_trial = min(1.0, (n_cpus - 1) / packing) if n_cpus > 1 else 1.0 / packing
    trainable = tune.with_resources(
        tune.with_parameters(run_tune_trial, data=data, context=context), {"cpu": cpus_per_trial, "gpu": gpus_per_trial}
    )
    tuner = tune.Tuner(
        trainable,
        param_space={"seed": tune.randint(0, 2**31 - 1)},
        tune_config=tune.TuneConfig(num_samples=packing * 200, max_concurrent_trials=packing, time_budget_s=share_s,
                                    reuse_actors=True),
        run_config=tune.RunConfig(name=f"packing-{packing}", storage_path=str(workdir / "tune"), verbose=0),
    )  # fmt: skip
    with _GpuSampler(enabled=sample) as sampler:
        start = time.monotonic()
        results = tuner.fit()
        wall_s = time.monotonic() - start
    completed = sum(1 for result in results if result.error is None and (result.metrics or {}).get(COMPLETE_KEY))
    return {
        "packing": packing,
        "gpus_per_trial": gpus_per_trial,
        "cpus_per_trial": cpus_per_trial,
        "completed": completed,
        "errors": len(results.errors),
        "wall_s": wall_s,
        "trials_per_hour": completed / wall_s * 3600.0,
        "gpu_util_pct": sampler.mean_utilization_pct(),
        "gpu_memory_mib": sampler.peak_memory_mib(),
    }


class _GpuSampler:
    """Samples ``nvidia-smi`` every 500 ms in a subprocess while the block runs."""

    def __init__(self, *, enabled: bool) -> None:
        self._enabled = enabled and shutil.which("nvidia-smi") is not None
        self._samples: list[tuple[float, float]] = []
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> _GpuSampler:
        if self._enabled:
            device = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
            command = ["nvidia-smi", f"--id={device}", "--query-gpu=utilization.gpu,memory.used",
                       "--format=csv,noheader,nounits", f"-lms={SAMPLE_INTERVAL_MS}"]  # fmt: skip
            self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=10)

    def mean_utilization_pct(self) -> float | None:
        return sum(util for util, _ in self._samples) / len(self._samples) if self._samples else None

    def peak_memory_mib(self) -> float | None:
        return max(memory for _, memory in self._samples) if self._samples else None

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            fields = [field.strip() for field in line.split(",")]
            try:
                self._samples.append((float(fields[0]), float(fields[1])))
            except (ValueError, IndexError):
                continue


def _start_mlflow_server(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
               "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
               "--artifacts-destination", str(workdir / "artifacts"), "--workers", "1"]  # fmt: skip
    environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = (workdir / "mlflow-server.log").open("wb")
    server = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"mlflow server exited with status {server.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    return server, uri
        except OSError:
            time.sleep(0.5)
    _stop(server)
    raise TimeoutError(f"mlflow server at {uri} did not respond at /health within {SERVER_START_TIMEOUT_S:.0f} s")


def _stop(server: subprocess.Popen[bytes]) -> None:
    # The server runs its web workers as children in its own process group.
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def _print_table(arguments: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    import ray

    gpu = "fake GPU (trials on the CPU)" if arguments.fake_gpu else torch.cuda.get_device_name(0)
    print(f"{gpu}, {os.cpu_count()} CPUs, torch {torch.__version__}, ray {ray.__version__}; "
          f"{arguments.epochs} epochs per trial, {'tiny' if arguments.tiny_data else 'default'} dataset, "
          f"budget {arguments.budget_s:.0f} s")  # fmt: skip
    print(f"{'packing':>7} {'GPU/trial':>9} {'CPU/trial':>9} {'completed':>9} {'errors':>6} {'wall s':>7} "
          f"{'trials/h':>9} {'util %':>7} {'mem MiB':>8}")  # fmt: skip
    for row in rows:
        util = "n/a" if row["gpu_util_pct"] is None else f"{row['gpu_util_pct']:.0f}"
        memory = "n/a" if row["gpu_memory_mib"] is None else f"{row['gpu_memory_mib']:.0f}"
        print(f"{row['packing']:>7} {row['gpus_per_trial']:>9.4g} {row['cpus_per_trial']:>9.3g} {row['completed']:>9} "
              f"{row['errors']:>6} {row['wall_s']:>7.1f} {row['trials_per_hour']:>9.0f} {util:>7} {memory:>8}")  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packings", default="1,2,4,8,16", help="trials per GPU to measure (default: 1,2,4,8,16)")
    parser.add_argument("--budget-s", type=float, default=240.0, help="total wall time in seconds (default: 240)")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs per trial (default: 5)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--fake-gpu", action="store_true", help="declare one GPU to Ray without one, to try the script")
    parser.add_argument("--tiny-data", action="store_true", help="use a small generated dataset, to try the script")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())

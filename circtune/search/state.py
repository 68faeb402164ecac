"""The search state file: what a resumed search needs to continue.

Each search has a folder ``<results>/<search_id>/`` containing ``search.json``
(this state), ``experiment.yaml`` (the resolved experiment file),
``optuna.db`` (the Optuna study) and ``tune/`` (Ray Tune's results). The
state is written atomically twice, to ``search.json.bak`` and then to
``search.json``, so a driver killed while writing, or a file truncated
later, still leaves a readable state behind.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tempfile
from pathlib import Path

from circtune.errors import ConfigError

logger = logging.getLogger(__name__)

STATE_FILE = "search.json"
_BACKUP_SUFFIX = ".bak"
_STATE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class SearchState:
    """Identity and progress of one search.

    Attributes:
        search_id: Folder name of the search, unique per results folder.
        experiment_file: The experiment file the search started from.
        tracking_uri: MLflow tracking URI.
        experiment_id: MLflow experiment id.
        parent_run_id: MLflow parent run of the search.
        study_name: Optuna study name in ``optuna.db``.
        n_trials: Trials the search runs in total.
        status: ``running``, ``interrupted`` or ``finished``.
    """

    search_id: str
    experiment_file: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    study_name: str
    n_trials: int
    status: str = "running"

    def with_status(self, status: str) -> SearchState:
        """Return a copy with another status."""
        return dataclasses.replace(self, status=status)


def write_state(folder: Path, state: SearchState) -> None:
    """Write ``search.json`` and its backup, each atomically.

    The backup is written first, so at any moment at least one of the two
    files is complete, even if the process is killed in between.
    """
    folder.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({"version": _STATE_VERSION, **dataclasses.asdict(state)}, indent=2, sort_keys=True)
    for name in (STATE_FILE + _BACKUP_SUFFIX, STATE_FILE):
        _write_atomic(folder / name, payload)


def read_state(folder: Path) -> SearchState:
    """Read the state of the search in ``folder``, falling back to the backup.

    Raises:
        ConfigError: If the folder contains no readable state.
    """
    target = folder / STATE_FILE
    for candidate in (target, target.with_name(STATE_FILE + _BACKUP_SUFFIX)):
        state = _read(candidate)
        if state is not None:
            if candidate != target:
                logger.warning("%s is unreadable (truncated by a kill?); using the backup %s", target, candidate)
            return state
    raise ConfigError(
        f"no readable search state in {folder}; check the search id (folders under {folder.parent}) "
        "or start a new search without --resume"
    )


def _write_atomic(target: Path, payload: str) -> None:
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)


def _read(path: Path) -> SearchState | None:
    try:
        data = json.loads(path.read_text())
        data.pop("version", None)
        return SearchState(**data)
    except (OSError, json.JSONDecodeError, TypeError):
        return None

"""The search state file: what a resumed search needs to continue.

Each search has a folder ``<results>/<search_id>/`` containing ``search.json``
(this state), ``experiment.yaml`` (the resolved experiment file),
``optuna.db`` (the Optuna study) and ``tune/`` (Ray Tune's results). The
state is written atomically, and the previous good version is kept as
``search.json.bak``, so a driver killed while writing leaves a readable
state behind.
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
        status: ``running``, ``finished`` or ``failed``.
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
    """Write ``search.json`` atomically, keeping the previous one as a backup."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / STATE_FILE
    payload = json.dumps({"version": _STATE_VERSION, **dataclasses.asdict(state)}, indent=2, sort_keys=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{STATE_FILE}.", dir=folder)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        if target.exists() and _read(target) is not None:
            os.replace(target, target.with_name(STATE_FILE + _BACKUP_SUFFIX))
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)


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


def _read(path: Path) -> SearchState | None:
    try:
        data = json.loads(path.read_text())
        data.pop("version", None)
        return SearchState(**data)
    except (OSError, json.JSONDecodeError, TypeError):
        return None

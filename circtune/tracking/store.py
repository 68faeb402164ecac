"""MLflow tracking store: URI resolution, reachability, experiments and runs.

One search is one parent run; each trial is a nested child run tagged with
its Ray trial id, so a retried or resumed trial finds and reuses its run
instead of creating a second one. Everything goes through ``MlflowClient``
with an explicit tracking URI, never through MLflow's global active run,
because trials run in worker processes that share nothing with the driver.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from circtune.errors import ConfigError, ServiceError

logger = logging.getLogger(__name__)

TAG_SEARCH_ID = "circtune.search_id"
TAG_TRIAL_ID = "circtune.trial_id"
TAG_ROLE = "circtune.role"
TAG_FAILURE = "circtune.failure_reason"
TAG_PARENT = "mlflow.parentRunId"
_PING_TIMEOUT_S = 5.0
_SQLITE_SCHEMES = ("sqlite",)
_HTTP_SCHEMES = ("http", "https")
_MAX_PARAM_LENGTH = 6000


def resolve_tracking_uri(uri: str | None, workdir: Path) -> str:
    """Return the tracking URI to use, ``sqlite:///<workdir>/mlflow.db`` by default.

    Relative SQLite paths are made absolute against ``workdir`` so that
    trials, whose working folder is not the driver's, write the same file.

    Raises:
        ConfigError: If the scheme is not sqlite, http or https.
    """
    if uri is None or uri == "":
        return f"sqlite:///{(workdir / 'mlflow.db').resolve()}"
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in _SQLITE_SCHEMES:
        path = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else ""
        if not path:
            raise ConfigError(f"tracking URI {uri!r} has no database path; use sqlite:///mlflow.db or an absolute path")
        return f"sqlite:///{(workdir / path).resolve()}" if not path.startswith("/") else uri
    if parsed.scheme in _HTTP_SCHEMES:
        if not parsed.hostname:
            raise ConfigError(f"tracking URI {uri!r} has no host; use for example http://127.0.0.1:5000")
        return uri.rstrip("/")
    raise ConfigError(
        f"tracking URI {uri!r} has unsupported scheme {parsed.scheme!r}; "
        "use sqlite:///PATH for a local file or http://HOST:PORT for a tracking server"
    )


def check_tracking_uri(uri: str) -> None:
    """Check that the store behind ``uri`` can be used, without writing to it.

    Raises:
        ServiceError: If an http server does not respond or a SQLite folder
            does not exist or is not writable.
    """
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in _SQLITE_SCHEMES:
        folder = Path(uri[len("sqlite:///") :]).parent
        if not folder.is_dir():
            raise ServiceError(
                f"folder {folder} of tracking database {uri} does not exist; create it or change tracking.uri"
            )
        return
    health = f"{uri}/health"
    try:
        with urllib.request.urlopen(health, timeout=_PING_TIMEOUT_S) as response:
            if response.status != 200:
                raise ServiceError(
                    f"MLflow server {uri} returned status {response.status} at /health; check that it is an MLflow server"
                )
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise ServiceError(
            f"MLflow server {uri} is unreachable ({reason}); start it (mlflow server --host 127.0.0.1) "
            "or change tracking.uri / --tracking-uri"
        ) from error


def artifact_root(uri: str, workdir: Path) -> str | None:
    """Return the explicit artifact location for new experiments.

    With SQLite, MLflow would put artifacts in ``./mlruns`` of whichever
    process creates the experiment, which can be a temporary trial folder.
    So artifacts go to ``<workdir>/mlartifacts``. An http server manages its
    own artifact store, so None is returned.
    """
    if urllib.parse.urlparse(uri).scheme in _SQLITE_SCHEMES:
        return (workdir / "mlartifacts").resolve().as_uri()
    return None


def ensure_experiment(uri: str, name: str, *, workdir: Path) -> str:
    """Return the id of experiment ``name``, creating it if needed."""
    client = make_client(uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise ConfigError(
                f"MLflow experiment {name!r} is deleted; restore it in the MLflow UI or choose another tracking.experiment"
            )
        return str(experiment.experiment_id)
    root = artifact_root(uri, workdir)
    if root is not None:
        root = f"{root}/{name}"
    experiment_id = client.create_experiment(name, artifact_location=root)
    logger.info("Created MLflow experiment %r (id %s)", name, experiment_id)
    return str(experiment_id)


def make_client(uri: str):  # type: ignore[no-untyped-def]
    """Return an ``MlflowClient`` for ``uri``."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def create_parent_run(uri: str, experiment_id: str, *, search_id: str, run_name: str) -> str:
    """Create the parent run of a search and return its id."""
    client = make_client(uri)
    run = client.create_run(experiment_id, run_name=run_name, tags={TAG_SEARCH_ID: search_id, TAG_ROLE: "search"})
    return str(run.info.run_id)


def find_or_create_child_run(
    uri: str,
    experiment_id: str,
    *,
    parent_run_id: str,
    search_id: str,
    trial_id: str,
    run_name: str,
) -> tuple[str, bool]:
    """Return the child run of a trial, creating it on the trial's first start.

    Returns:
        ``(run_id, created)``; ``created`` is False when a retry or a resumed
        search found the run of an earlier attempt.
    """
    client = make_client(uri)
    run_id = find_child_run(uri, experiment_id, parent_run_id=parent_run_id, trial_id=trial_id)
    if run_id is not None:
        client.update_run(run_id, status="RUNNING")
        return run_id, False
    run = client.create_run(
        experiment_id,
        run_name=run_name,
        tags={TAG_PARENT: parent_run_id, TAG_SEARCH_ID: search_id, TAG_TRIAL_ID: trial_id, TAG_ROLE: "trial"},
    )
    return str(run.info.run_id), True


def find_child_run(uri: str, experiment_id: str, *, parent_run_id: str, trial_id: str) -> str | None:
    """Return the id of the child run of Ray trial ``trial_id`` in a search, or None."""
    runs = make_client(uri).search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_PARENT}` = '{parent_run_id}' and tags.`{TAG_TRIAL_ID}` = '{trial_id}'",
        max_results=1,
    )
    return str(runs[0].info.run_id) if runs else None


def log_params(uri: str, run_id: str, params: Mapping[str, object]) -> None:
    """Log parameters under their flat ``section/name`` keys."""
    from mlflow.entities import Param

    client = make_client(uri)
    existing = client.get_run(run_id).data.params
    fresh = [Param(key, str(value)[:_MAX_PARAM_LENGTH]) for key, value in sorted(params.items()) if key not in existing]
    if fresh:
        client.log_batch(run_id, params=fresh)


def log_metrics(uri: str, run_id: str, metrics: Mapping[str, float], *, step: int) -> None:
    """Log one step of metrics in a single request."""
    from mlflow.entities import Metric

    timestamp_ms = int(time.time() * 1000)
    batch = [Metric(key, float(value), timestamp_ms, step) for key, value in metrics.items()]
    make_client(uri).log_batch(run_id, metrics=batch)


def finish_run(uri: str, run_id: str, status: str, *, reason: str | None = None) -> None:
    """End a run as FINISHED, FAILED or KILLED, recording the failure reason."""
    client = make_client(uri)
    if reason:
        client.set_tag(run_id, TAG_FAILURE, reason[:5000])
    client.set_terminated(run_id, status=status)


def reopen_run(uri: str, run_id: str) -> None:
    """Mark an ended run RUNNING again, for a search that is resumed."""
    make_client(uri).update_run(run_id, status="RUNNING")


def end_orphaned_children(uri: str, experiment_id: str, *, parent_run_id: str, reason: str) -> list[str]:
    """End child runs of a search that were left RUNNING; return their ids.

    A run is left RUNNING when the process that owned it was killed.
    """
    client = make_client(uri)
    orphans = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_PARENT}` = '{parent_run_id}' and attributes.status = 'RUNNING'",
    )
    ended = []
    for run in orphans:
        finish_run(uri, run.info.run_id, "KILLED", reason=reason)
        ended.append(str(run.info.run_id))
    return ended

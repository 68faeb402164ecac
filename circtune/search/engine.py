"""The search: Ray Tune runs trials, Optuna chooses them, MLflow records them.

``prepare_search`` checks everything a search needs (experiment file,
dataset, split, tracking store, Ray address, resume target) and writes
nothing. ``run_search`` then creates the search folder, the MLflow parent
run and the Optuna study, runs the trials and finishes with the report.

A resumed search reuses its folder, study and parent run. Trials that the
interrupted driver left RUNNING are marked FAIL in Optuna with the reason
``interrupted`` and their parameters are queued again, their MLflow runs are
ended KILLED, and the trials still missing from ``search.n_trials`` run.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
import math
import os
from pathlib import Path
from typing import Any

import optuna

from circtune.cluster.address import check_ray_address
from circtune.data.dataset import Dataset
from circtune.data.split import Split, split_by_flavor
from circtune.errors import ConfigError
from circtune.objective.config import FLAT_KEYS, TrialConfig
from circtune.objective.data import TrialData, prepare_trial_data
from circtune.search.report import SearchReport, write_report
from circtune.search.searcher import StateCorrectOptunaSearch
from circtune.search.space import sampler_for_spec, suggest
from circtune.search.spec import (
    CategoricalParameter,
    ExperimentSpec,
    IntParameter,
    LogUniformParameter,
    UniformParameter,
    load_spec,
    resolve_dataset_path,
    save_spec,
)
from circtune.search.state import SearchState, read_state, write_state
from circtune.search.trainable import TrialContext
from circtune.tracking import store

logger = logging.getLogger(__name__)

STUDY_FILE = "optuna.db"
EXPERIMENT_FILE = "experiment.yaml"
TUNE_FOLDER = "tune"
# Environment variable that names the storage for Tune's trial checkpoints in
# place of the search folder: a URI, or an absolute path that every node can write.
TUNE_STORAGE_ENV = "CIRCTUNE_TUNE_STORAGE"
INTERRUPTED_ATTR = "interrupted"
METRICS: tuple[str, ...] = ("validation_loss", "validation_error_pct", "reconstruction")


@dataclasses.dataclass(frozen=True)
class SearchOptions:
    """Options of one search, as set on the command line.

    Attributes:
        space: Experiment file name or path.
        results: Folder with one subfolder per search.
        address: Ray cluster address; None starts a local Ray.
        tracking_uri: Overrides ``tracking.uri`` of the experiment file.
        resume: Search id to continue, ``"latest"``, or None for a new search.
        n_trials: Overrides ``search.n_trials``.
        max_concurrent: Overrides ``search.max_concurrent``.
        workdir: Folder against which relative paths resolve.
    """

    space: str
    results: Path
    address: str | None = None
    tracking_uri: str | None = None
    resume: str | None = None
    n_trials: int | None = None
    max_concurrent: int | None = None
    workdir: Path = dataclasses.field(default_factory=Path.cwd)


@dataclasses.dataclass(frozen=True)
class PreparedSearch:
    """A checked search, ready to run; nothing was written to make it."""

    options: SearchOptions
    spec: ExperimentSpec
    dataset: Dataset
    split: Split
    tracking_uri: str
    folder: Path
    search_id: str
    state: SearchState | None


def prepare_search(options: SearchOptions) -> PreparedSearch:
    """Check the experiment, data, tracking store, Ray address and resume target.

    Raises:
        ConfigError: If the experiment file, a flag or the resume target is invalid.
        DataError: If the dataset or the split is invalid.
        ServiceError: If the tracking server or the Ray cluster is unreachable.
    """
    if options.results.exists() and not options.results.is_dir():
        raise ConfigError(f"--results {options.results} is a file, but a folder is needed; choose another --results")
    state = None
    if options.resume is not None:
        folder = _resume_folder(options.results, options.resume)
        state = read_state(folder)
        spec = load_spec(str(folder / EXPERIMENT_FILE), known_parameters=FLAT_KEYS, known_metrics=METRICS)
        search_id = state.search_id
        tracking_uri = state.tracking_uri
    else:
        spec = load_spec(options.space, known_parameters=FLAT_KEYS, known_metrics=METRICS)
        search_id = f"{spec.tracking.experiment}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
        folder = options.results / search_id
        tracking_uri = store.resolve_tracking_uri(options.tracking_uri or spec.tracking.uri, options.workdir)
    spec = _apply_overrides(spec, options)
    for warning in spec.warnings:
        logger.warning("%s", warning)
    _check_trial_defaults(spec)
    if not (options.address or os.environ.get("RAY_ADDRESS")):
        _check_local_cpus(spec)

    store.check_tracking_uri(tracking_uri)
    if state is not None:
        _check_parent_run(state)
    _tune_storage_path(folder, search_id)
    address = options.address or os.environ.get("RAY_ADDRESS")
    if address:
        check_ray_address(address)
    dataset = _load_dataset(spec, options.workdir)
    split = split_by_flavor(
        dataset.metadata,
        spec.split.held_out_flavors,
        validation_fraction=spec.split.validation_fraction,
        seed=spec.split.seed,
    )
    too_large = [size for size in spec.objective.train_sizes if size > len(split.train)]
    if too_large:
        raise ConfigError(
            f"objective.train_sizes {too_large} exceed the {len(split.train)} training samples; "
            "choose smaller sizes or hold out fewer flavors"
        )
    return PreparedSearch(options, spec, dataset, split, tracking_uri, folder, search_id, state)


def run_search(prepared: PreparedSearch) -> SearchReport:
    """Run (or continue) a prepared search and write its report.

    Returns:
        The report that the command line prints.
    """
    import ray

    spec = prepared.spec
    data = prepare_trial_data(prepared.dataset, prepared.split)
    state = prepared.state or _start_new_search(prepared)
    storage = optuna.storages.RDBStorage(f"sqlite:///{prepared.folder / STUDY_FILE}")
    n_finished = _recover_interrupted(storage, state, prepared.tracking_uri)
    if state.n_trials != spec.search.n_trials:  # --trials on a resumed search
        if spec.search.n_trials < n_finished:
            raise ConfigError(
                f"--trials {spec.search.n_trials} is below the {n_finished} trials this search has finished; "
                f"give at least {n_finished}"
            )
        state = dataclasses.replace(state, n_trials=spec.search.n_trials)
    if state.status != "running":  # a resumed search runs again, under a parent run that is open again
        state = state.with_status("running")
        store.reopen_run(prepared.tracking_uri, state.parent_run_id)
    write_state(prepared.folder, state)
    remaining = state.n_trials - n_finished
    logger.info(
        "Search %s: %d of %d trials finished, %d to run; results in %s",
        state.search_id, n_finished, state.n_trials, remaining, prepared.folder,
    )  # fmt: skip

    context = TrialContext(
        fixed={**spec.fixed, "objective/train_sizes": list(spec.objective.train_sizes)},
        eval_every=spec.search.eval_every,
        tracking_uri=prepared.tracking_uri,
        experiment_id=state.experiment_id,
        parent_run_id=state.parent_run_id,
        search_id=state.search_id,
    )
    try:
        _init_ray(prepared.options.address)
        _check_cluster_resources(spec, local=not (prepared.options.address or os.environ.get("RAY_ADDRESS")))
        if remaining > 0:
            _run_tuner(prepared, data, context, storage, state, remaining, seed_offset=state.n_trials - remaining)
        study = optuna.load_study(study_name=state.study_name, storage=storage)
        if _count_finished(study) < state.n_trials:
            # Tune returns normally after Ctrl-C, with trials left unfinished.
            raise KeyboardInterrupt
        report = write_report(prepared, data, study, state, context)
    except BaseException:
        write_state(prepared.folder, state.with_status("interrupted"))
        logger.warning(
            "Search %s stopped before it finished; continue it with: python -m circtune.search --resume %s --results %s",
            state.search_id, state.search_id, prepared.options.results,
        )  # fmt: skip
        raise
    finally:
        ray.shutdown()
    write_state(prepared.folder, state.with_status("finished"))
    return report


def _run_tuner(
    prepared: PreparedSearch,
    data: TrialData,
    context: TrialContext,
    storage: optuna.storages.RDBStorage,
    state: SearchState,
    remaining: int,
    *,
    seed_offset: int,
) -> None:
    from ray import tune

    from circtune.search.callbacks import TrialRunCallback
    from circtune.search.trainable import run_tune_trial

    spec = prepared.spec
    metrics = list(spec.objective.metrics)
    single = len(metrics) == 1
    searcher = StateCorrectOptunaSearch(
        space=functools.partial(suggest, space=spec.space),
        metric=metrics[0] if single else metrics,
        mode="min" if single else ["min"] * len(metrics),
        # A resumed search offsets the seed, or a seeded sampler would repeat its first suggestions.
        sampler=sampler_for_spec(dataclasses.replace(spec, seed=(spec.seed + seed_offset) % 2**32)),
        study_name=state.study_name,
        storage=storage,
    )
    scheduler = None
    if spec.search.scheduler == "asha":
        scheduler = tune.schedulers.ASHAScheduler(
            time_attr="training_iteration",
            max_t=_max_evaluations(spec),
            grace_period=spec.search.grace_period,
            reduction_factor=spec.search.reduction_factor,
        )
    resources = {"cpu": spec.resources.cpus_per_trial, "gpu": spec.resources.gpus_per_trial}
    trainable = tune.with_resources(tune.with_parameters(run_tune_trial, data=data, context=context), resources)
    attempt = len(list((prepared.folder / TUNE_FOLDER).glob("attempt-*")))
    # Created here too, so attempts are counted when Tune writes to shared storage.
    (prepared.folder / TUNE_FOLDER / f"attempt-{attempt + 1}").mkdir(parents=True, exist_ok=True)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            metric=metrics[0] if scheduler is not None else None,
            mode="min" if scheduler is not None else None,
            num_samples=remaining,
            max_concurrent_trials=_max_concurrent(spec),
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"attempt-{attempt + 1}",
            storage_path=_tune_storage_path(prepared.folder, prepared.search_id),
            failure_config=tune.FailureConfig(max_failures=spec.search.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[TrialRunCallback(data, context, metric=metrics[-1])],
            verbose=1,
        ),
    )
    tuner.fit()


def _start_new_search(prepared: PreparedSearch) -> SearchState:
    spec = prepared.spec
    prepared.folder.mkdir(parents=True, exist_ok=False)
    save_spec(spec, prepared.folder / EXPERIMENT_FILE)

    experiment_id = store.ensure_experiment(prepared.tracking_uri, spec.tracking.experiment, workdir=prepared.options.workdir)
    parent_run_id = store.create_parent_run(
        prepared.tracking_uri, experiment_id, search_id=prepared.search_id, run_name=prepared.search_id
    )
    store.make_client(prepared.tracking_uri).log_artifact(parent_run_id, str(prepared.folder / EXPERIMENT_FILE))
    store.log_params(prepared.tracking_uri, parent_run_id, _search_params(prepared))

    state = SearchState(
        search_id=prepared.search_id,
        experiment_file=spec.source,
        tracking_uri=prepared.tracking_uri,
        experiment_id=experiment_id,
        parent_run_id=parent_run_id,
        study_name=prepared.search_id,
        n_trials=spec.search.n_trials,
    )

    study = optuna.create_study(
        storage=f"sqlite:///{prepared.folder / STUDY_FILE}",
        study_name=state.study_name,
        directions=["minimize"] * len(spec.objective.metrics),
    )
    for point in spec.search.points_to_evaluate:
        study.enqueue_trial(dict(point))
    write_state(prepared.folder, state)
    return state


def _search_params(prepared: PreparedSearch) -> dict[str, object]:
    spec = prepared.spec
    return {
        "search/sampler": spec.search.sampler,
        "search/scheduler": spec.search.scheduler,
        "search/n_trials": spec.search.n_trials,
        "split/held_out_flavors": ",".join(spec.split.held_out_flavors),
        "dataset/source": spec.dataset.source,
        "dataset/n_samples": prepared.dataset.n_samples,
        "dataset/n_train": len(prepared.split.train),
        "dataset/n_validation": len(prepared.split.validation),
        "dataset/n_test": len(prepared.split.test),
        **{f"fixed/{key}": value for key, value in spec.fixed.items()},
    }


def _recover_interrupted(storage: optuna.storages.RDBStorage, state: SearchState, tracking_uri: str) -> int:
    """Close what an interrupted driver left open; return the number of finished trials."""
    try:
        study = optuna.load_study(study_name=state.study_name, storage=storage)
    except KeyError:
        return 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        storage.set_trial_user_attr(trial._trial_id, INTERRUPTED_ATTR, True)
        storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number})
        logger.warning("Optuna trial %d was interrupted; its parameters are queued again", trial.number)
    ended = store.end_orphaned_children(
        tracking_uri, state.experiment_id, parent_run_id=state.parent_run_id, reason="interrupted: the driver stopped"
    )
    if ended:
        logger.warning("Ended %d MLflow trial runs left RUNNING by the interrupted driver", len(ended))
    return _count_finished(study)


def _count_finished(study: optuna.Study) -> int:
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    return sum(
        1 for trial in study.get_trials(deepcopy=False, states=finished) if not trial.user_attrs.get(INTERRUPTED_ATTR)
    )


def _check_cluster_resources(spec: ExperimentSpec, *, local: bool) -> None:
    """Reject a GPU request that the local machine cannot meet, since its trials would wait forever.

    A cluster may add GPU nodes later through its autoscaler, so there a
    shortfall is only logged.
    """
    import ray

    available = ray.cluster_resources().get("GPU", 0.0)
    if spec.resources.gpus_per_trial <= available:
        return
    message = (
        f"resources.gpus_per_trial is {spec.resources.gpus_per_trial}, but the Ray cluster has {available:g} GPUs"
    )
    if local:
        raise ConfigError(f"{message}; set gpus_per_trial: 0 or run on a cluster with GPUs (--address)")
    logger.warning("%s now; trials wait until the autoscaler adds GPU nodes", message)


def _init_ray(address: str | None) -> None:
    """Connect to the Ray cluster at ``address``, or start a local Ray that listens on 127.0.0.1 only.

    Ray 2.60 gives a new node the machine's outward IP address, and replaces
    a requested 127.0.0.1 with it, while its multi-node mode is on (the
    default on Linux). The GCS, raylet, agents and workers of a node whose IP
    is not loopback listen on all interfaces (``::``), so other machines on
    the network can reach them. With the mode off while the local Ray starts,
    the node IP is 127.0.0.1 and every server listens on loopback only.
    """
    import ray
    from ray._private import ray_constants

    # Tune warns on every checkpoint of short trials that snapshots are frequent; they are cheap here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return
    # NOTE: ENABLE_RAY_CLUSTER is a private Ray constant, read from RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER at import.
    # tests/test_security.py checks the listening addresses, so it fails if a Ray upgrade stops honouring it.
    multi_node = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        # "local" starts a new Ray even when `ray start` left a cluster address on this machine.
        ray.init(address="local", include_dashboard=False, log_to_driver=True)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = multi_node


def _tune_storage_path(folder: Path, search_id: str) -> str:
    """Return ``$CIRCTUNE_TUNE_STORAGE/<search id>`` when the variable is set, else ``<folder>/tune``.

    Ray Tune 2.60 fails a trial that reports a checkpoint from a node that
    cannot reach the storage path, so a multi-node cluster needs a URI such
    as ``s3://bucket/tune`` or a folder that every node mounts.

    Raises:
        ConfigError: If the variable is neither a URI nor an absolute path.
    """
    shared = os.environ.get(TUNE_STORAGE_ENV, "").strip()
    if not shared:
        return str((folder / TUNE_FOLDER).resolve())
    if "://" not in shared and not shared.startswith("/"):
        raise ConfigError(
            f"{TUNE_STORAGE_ENV}={shared!r} is neither a URI nor an absolute path; "
            "use for example s3://BUCKET/tune or /mnt/shared/tune, or unset it to keep results in the search folder"
        )
    return f"{shared.rstrip('/')}/{search_id}"


def _max_concurrent(spec: ExperimentSpec) -> int:
    import ray

    if spec.search.max_concurrent is not None:
        return spec.search.max_concurrent
    resources = ray.cluster_resources()
    slots = int(resources.get("CPU", 1) // spec.resources.cpus_per_trial)
    if spec.resources.gpus_per_trial > 0:
        slots = min(slots, int(resources.get("GPU", 0) // spec.resources.gpus_per_trial))
    return max(1, slots)


def _max_evaluations(spec: ExperimentSpec) -> int:
    epochs: Any = spec.fixed.get("train/epochs", TrialConfig().train.epochs)
    for parameter in spec.space:
        if parameter.key == "train/epochs" and isinstance(parameter, IntParameter):
            epochs = parameter.high
    return max(1, math.ceil(int(epochs) / spec.search.eval_every))


def _check_local_cpus(spec: ExperimentSpec) -> None:
    """Reject a per-trial CPU request above this machine's CPUs, since no trial could start.

    Raises:
        ConfigError: If ``resources.cpus_per_trial`` exceeds the CPUs this
            process may run on.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if spec.resources.cpus_per_trial > cpus:
        raise ConfigError(
            f"resources.cpus_per_trial is {spec.resources.cpus_per_trial:g}, but this machine has {cpus} CPUs, "
            f"so no trial could start; set it to at most {cpus} or run on a cluster (--address)"
        )


def _check_trial_defaults(spec: ExperimentSpec) -> None:
    """Build trial configs of the fixed values and of each searched bound, so a bad value fails before any trial.

    Raises:
        ConfigError: If a fixed value, or the low, high or a categorical
            value of a searched parameter, is not a valid trial parameter.
    """
    fixed = {**spec.fixed, "objective/train_sizes": list(spec.objective.train_sizes)}
    TrialConfig.from_flat(fixed, allow_inactive=True)
    for parameter in spec.space:
        if isinstance(parameter, CategoricalParameter):
            values: tuple[object, ...] = parameter.values
        else:
            assert isinstance(parameter, UniformParameter | LogUniformParameter | IntParameter)
            values = (parameter.low, parameter.high)
        for value in values:
            try:
                TrialConfig.from_flat({**fixed, parameter.key: value}, allow_inactive=True)
            except ConfigError as error:
                raise ConfigError(
                    f"{spec.source}: space.{parameter.key}: a trial cannot take the value {value!r} ({error}); "
                    "narrow the range or the choices"
                ) from None


def _apply_overrides(spec: ExperimentSpec, options: SearchOptions) -> ExperimentSpec:
    search = spec.search
    if options.n_trials is not None:
        if options.n_trials < 1:
            raise ConfigError(f"--trials must be a positive number, but got {options.n_trials}")
        search = dataclasses.replace(search, n_trials=options.n_trials)
    if options.max_concurrent is not None:
        if options.max_concurrent < 1:
            raise ConfigError(f"--max-concurrent must be a positive number, but got {options.max_concurrent}")
        search = dataclasses.replace(search, max_concurrent=options.max_concurrent)
    return dataclasses.replace(spec, search=search)


def _load_dataset(spec: ExperimentSpec, workdir: Path) -> Dataset:
    from circtune.data.default import load_default_dataset
    from circtune.data.h5format import read_dataset

    path = resolve_dataset_path(spec, working_folder=workdir)
    if path is not None:
        return read_dataset(path)
    from circtune._progress import ProgressLine
    from circtune.data.synthetic import GeneratorSettings

    settings = GeneratorSettings.from_dict(dict(spec.dataset.generator))
    return load_default_dataset(settings, progress=ProgressLine("generating the default dataset", "samples"))


def _check_parent_run(state: SearchState) -> None:
    from mlflow.exceptions import MlflowException

    try:
        store.make_client(state.tracking_uri).get_run(state.parent_run_id)
    except MlflowException as error:
        raise ConfigError(
            f"--resume {state.search_id}: its MLflow parent run {state.parent_run_id} is not in {state.tracking_uri}; "
            "resume with the tracking store the search started with"
        ) from error


def _resume_folder(results: Path, resume: str) -> Path:
    if resume == "latest":
        candidates = sorted(results.glob("*/search.json"), key=lambda path: path.stat().st_mtime)
        if not candidates:
            raise ConfigError(f"--resume latest: no search found in {results}; start one without --resume")
        return candidates[-1].parent
    folder = results / resume
    if not (folder / "search.json").exists() and not (folder / "search.json.bak").exists():
        known = sorted(path.parent.name for path in results.glob("*/search.json"))
        raise ConfigError(
            f"--resume {resume}: no search with that id in {results}; known searches: {known or 'none'}"
        )
    return folder


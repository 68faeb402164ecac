"""The end of a search: best trial, test score, plots and the registered model.

Everything here runs in the driver after the last trial. The best trial is
chosen by validation score only. Its model is then scored once on the test
part, which nothing earlier in the search reads.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import torch
import yaml

from circtune.objective.data import TrialData, to_device
from circtune.objective.run import load_model
from circtune.objective.score import evaluate_test
from circtune.search.searcher import FAIL_REASON_ATTR, RAY_TRIAL_ID_ATTR
from circtune.search.spec import resolve_dataset_path
from circtune.search.state import SearchState
from circtune.search.trainable import TrialContext
from circtune.tracking import plots, store
from circtune.tracking.artifacts import MODEL_ARTIFACT_PATH

if TYPE_CHECKING:
    from circtune.search.engine import PreparedSearch

logger = logging.getLogger(__name__)

BEST_CONFIG_FILE = "best_config.yaml"


@dataclasses.dataclass(frozen=True)
class SearchReport:
    """Summary of a finished search, printed by the command line.

    Attributes:
        search_id: The search.
        counts: Number of Optuna trials per final state name.
        best_number: Optuna number of the best trial, None if none completed.
        best_config: Flat parameters of the best trial.
        validation: Validation metrics of the best trial.
        test: Test metrics of the best trial's model.
        tracking_uri: Where the runs are.
        parent_run_id: The search's MLflow run.
        registered_model: Name of the registered model, if any.
    """

    search_id: str
    counts: dict[str, int]
    best_number: int | None
    best_config: dict[str, object]
    validation: dict[str, float]
    test: dict[str, float]
    tracking_uri: str
    parent_run_id: str
    registered_model: str | None


def write_report(
    prepared: PreparedSearch, data: TrialData, study: optuna.Study, state: SearchState, context: TrialContext
) -> SearchReport:
    """Choose the best trial, score it on test and log the search's artifacts."""
    uri = prepared.tracking_uri
    counts = _state_counts(study)
    best = _best_trial(study, prepared.spec.objective.metrics)
    client = store.make_client(uri)
    with tempfile.TemporaryDirectory(prefix="circtune-report-") as folder_name:
        folder = Path(folder_name)
        _log_study_plots(client, state.parent_run_id, study, folder, metric=prepared.spec.objective.metrics[-1])
        if best is None:
            _log_failures(study)
            store.log_metrics(uri, state.parent_run_id, {f"trials_{k.lower()}": v for k, v in counts.items()}, step=0)
            store.finish_run(uri, state.parent_run_id, "FAILED", reason="no trial completed")
            return SearchReport(state.search_id, counts, None, {}, {}, {}, uri, state.parent_run_id, None)

        best_config = {**context.fixed, **best.params}
        (folder / BEST_CONFIG_FILE).write_text(best_config_document(prepared, best_config))
        client.log_artifact(state.parent_run_id, str(folder / BEST_CONFIG_FILE))
        trial_id = str(best.user_attrs.get(RAY_TRIAL_ID_ATTR, ""))
        run_id = (
            store.find_child_run(uri, state.experiment_id, parent_run_id=state.parent_run_id, trial_id=trial_id)
            if trial_id
            else None
        )
        validation = dict(client.get_run(run_id).data.metrics) if run_id else {}
        test: dict[str, float] = {}
        registered = None
        if run_id:
            model_folder = Path(client.download_artifacts(run_id, MODEL_ARTIFACT_PATH, str(folder)))
            saved = load_model(model_folder)
            tensors = to_device(data, torch.device("cpu"))
            score = evaluate_test(saved.vae, tensors, saved.config)
            test = {
                "test_loss": score.loss,
                "test_error_pct": score.relative_error_pct,
                "test_oracle_loss": score.oracle.loss,
                "test_oracle_error_pct": score.oracle.relative_error_pct,
            }
            _log_comparison(client, state.parent_run_id, saved, tensors, folder)
            registered = _register_model(uri, state.parent_run_id, saved, data, name=prepared.spec.tracking.experiment)
        summary = {
            **test,
            "best_validation_loss": float(best.values[-1]),
            "best_trial_number": float(best.number),
            **{f"trials_{name.lower()}": float(count) for name, count in counts.items()},
        }
        store.log_metrics(uri, state.parent_run_id, summary, step=0)
        store.finish_run(uri, state.parent_run_id, "FINISHED")
    return SearchReport(
        state.search_id, counts, best.number, best_config, validation, test, uri, state.parent_run_id, registered
    )


def best_config_document(prepared: PreparedSearch, params: dict[str, object]) -> str:
    """Return the YAML of ``python -m circtune.train --config``: the search's dataset and split, then ``params``."""
    spec = prepared.spec
    path = resolve_dataset_path(spec, working_folder=prepared.options.workdir)
    split = {
        "held_out_flavors": list(spec.split.held_out_flavors),
        "validation_fraction": spec.split.validation_fraction,
        "seed": spec.split.seed,
    }
    dataset: object = str(path) if path is not None else "default"
    if path is None and spec.dataset.generator:
        dataset = {"source": "default", "generator": dict(spec.dataset.generator)}
    document = {"dataset": dataset, "split": split}
    return f"# best trial of {spec.source}\n" + yaml.safe_dump(document, sort_keys=False) + yaml.safe_dump(params, sort_keys=True)


def format_report(report: SearchReport) -> str:
    """Render the end-of-search summary for the console."""
    lines = [f"Search {report.search_id}: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(report.counts.items()))]
    if report.best_number is None:
        lines.append("No trial completed, so there is no best configuration; failure reasons are in the MLflow runs.")
    else:
        lines.append(f"Best trial: #{report.best_number}")
        lines.extend(f"  {key} = {value}" for key, value in sorted(report.best_config.items()))
        if report.validation:
            lines.append(
                f"Validation: loss {report.validation.get('validation_loss', float('nan')):.4g}, "
                f"error {report.validation.get('validation_error_pct', float('nan')):.2f} % "
                f"(oracle floor {report.validation.get('oracle_error_pct', float('nan')):.2f} %)"
            )
        if report.test:
            lines.append(
                f"Test:       loss {report.test['test_loss']:.4g}, error {report.test['test_error_pct']:.2f} % "
                f"(oracle floor {report.test['test_oracle_error_pct']:.2f} %)"
            )
        if report.registered_model:
            lines.append(f"Registered model: {report.registered_model}")
    lines.append(f"Browse it: {_ui_command(report.tracking_uri)}")
    return "\n".join(lines)


def _ui_command(uri: str) -> str:
    if uri.startswith("sqlite:"):
        return f"mlflow ui --backend-store-uri {uri}  (then open http://127.0.0.1:5000)"
    return f"open {uri} in a browser"


def _state_counts(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def _best_trial(study: optuna.Study, metrics: tuple[str, ...]) -> optuna.trial.FrozenTrial | None:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return None
    # With several objectives, the Pareto trial with the lowest validation loss (the last metric) wins.
    candidates = study.best_trials if len(metrics) > 1 else [study.best_trial]
    return min(candidates, key=lambda trial: trial.values[-1])


def _log_failures(study: optuna.Study) -> None:
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
        logger.warning(
            "Trial %d failed: %s", trial.number, trial.user_attrs.get(FAIL_REASON_ATTR, "no reason recorded")
        )


def _log_study_plots(client: Any, run_id: str, study: optuna.Study, folder: Path, *, metric: str) -> None:
    if len(study.directions) == 1 and any(trial.value is not None for trial in study.trials):
        client.log_artifact(
            run_id, str(plots.plot_optuna_history(study, folder / "history.png", target_name=metric)), "plots"
        )
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(study.directions) == 1 and len(complete) >= 2:
        try:
            importances = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError) as error:
            logger.info("Parameter importance not computed: %s", error)
            return
        if importances:
            client.log_artifact(run_id, str(plots.plot_importances(importances, folder / "importance.png")), "plots")


def _log_comparison(client: Any, run_id: str, saved: Any, tensors: Any, folder: Path) -> None:
    from circtune.compare import compare_trained, plot_comparison, write_comparison_csv

    table = compare_trained(saved.vae, tensors, saved.config, part="test")
    client.log_artifact(run_id, str(write_comparison_csv(table, folder / "comparison.csv")), "comparison")
    client.log_artifact(run_id, str(plot_comparison(table, folder / "comparison.png")), "comparison")


def _register_model(uri: str, run_id: str, saved: Any, data: TrialData, *, name: str) -> str | None:
    import mlflow
    from mlflow.models import infer_signature

    from circtune.models.encoder import Encoder

    encoder = Encoder(saved.vae).eval()
    example = data.inputs[:4].copy()
    with torch.no_grad():
        output = encoder(torch.as_tensor(example)).numpy()
    signature = infer_signature(example, output)
    registered_name = f"{name}-encoder"
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):
        mlflow.pytorch.log_model(
            encoder, name="encoder", signature=signature, input_example=example, registered_model_name=registered_name
        )
    return registered_name

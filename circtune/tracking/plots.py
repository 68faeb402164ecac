"""PNG plots logged as MLflow artifacts: latent space, loss curves, search history.

Each function takes plain arrays, draws one figure with matplotlib's Agg
backend, writes it atomically to ``path`` and returns the path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from circtune.data.h5format import atomic_path

logger = logging.getLogger(__name__)


def project_2d(embeddings: np.ndarray) -> tuple[np.ndarray, tuple[str, str]]:
    """Project ``(N, Z)`` embeddings onto their two leading principal axes.

    Returns:
        ``(N, 2)`` coordinates and the two axis labels.
    """
    centred = embeddings - embeddings.mean(axis=0)
    if embeddings.shape[1] <= 2:
        padded = np.zeros((len(embeddings), 2))
        padded[:, : embeddings.shape[1]] = centred
        return padded, ("z1", "z2")
    _, singular, basis = np.linalg.svd(centred, full_matrices=False)
    share = singular**2 / max(float((singular**2).sum()), 1e-30)
    return centred @ basis[:2].T, (f"PC1 ({share[0]:.0%})", f"PC2 ({share[1]:.0%})")


def plot_latent(
    embeddings: np.ndarray, *, labels: Mapping[str, np.ndarray], path: str | os.PathLike[str], title: str
) -> Path:
    """Scatter the embeddings once per labelling (for example flavor and corner).

    Args:
        embeddings: ``(N, Z)`` encoder means.
        labels: Panel title to ``(N,)`` text labels that colour the points.
        path: Target PNG file.
        title: Figure title.
    """
    plt = _pyplot()
    points, (x_label, y_label) = project_2d(np.asarray(embeddings, dtype=np.float64))
    figure, axes = plt.subplots(1, len(labels), figsize=(5 * len(labels), 4.2), squeeze=False)
    for panel, (name, values) in zip(axes[0], labels.items(), strict=True):
        for value in sorted(set(values.tolist())):
            rows = values == value
            panel.scatter(points[rows, 0], points[rows, 1], s=9, alpha=0.7, label=str(value))
        panel.set_title(f"coloured by {name}", fontsize=10)
        panel.set_xlabel(x_label)
        panel.set_ylabel(y_label)
        panel.legend(fontsize=7, markerscale=1.5, loc="best")
        panel.grid(alpha=0.3)
    figure.suptitle(title, fontsize=11)
    return _save(plt, figure, path)


def plot_loss_curves(history: Mapping[str, Sequence[float]], path: str | os.PathLike[str], *, title: str) -> Path:
    """Plot each named loss against its 1-based step on a log scale."""
    plt = _pyplot()
    figure, panel = plt.subplots(figsize=(6, 4))
    for name, values in history.items():
        steps = np.arange(1, len(values) + 1)
        finite = np.isfinite(np.asarray(values, dtype=np.float64))
        panel.plot(steps[finite], np.abs(np.asarray(values)[finite]) + 1e-12, marker=".", label=name)
    panel.set_yscale("log")
    panel.set_xlabel("epoch")
    panel.set_ylabel("loss")
    panel.set_title(title, fontsize=10)
    panel.legend(fontsize=8)
    panel.grid(alpha=0.3)
    return _save(plt, figure, path)


def plot_optuna_history(study: Any, path: str | os.PathLike[str], *, target_name: str) -> Path:
    """Plot the objective of every finished trial against its number, with the running best."""
    import optuna

    plt = _pyplot()
    figure, panel = plt.subplots(figsize=(6.5, 4))
    trials = [trial for trial in study.trials if trial.values]
    for state, marker in ((optuna.trial.TrialState.COMPLETE, "o"), (optuna.trial.TrialState.PRUNED, "x")):
        chosen = [trial for trial in study.get_trials(deepcopy=False, states=(state,)) if trial.value is not None]
        panel.scatter([t.number for t in chosen], [t.value for t in chosen], marker=marker, label=state.name.lower())
    complete = sorted((t for t in trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.number)
    if complete:
        best = np.minimum.accumulate([t.values[0] for t in complete])
        panel.step([t.number for t in complete], best, where="post", color="k", label="best so far")
    panel.set_xlabel("trial number")
    panel.set_ylabel(target_name)
    panel.set_yscale("log")
    panel.legend(fontsize=8)
    panel.grid(alpha=0.3)
    panel.set_title("Search history", fontsize=10)
    return _save(plt, figure, path)


def plot_importances(importances: Mapping[str, float], path: str | os.PathLike[str]) -> Path:
    """Draw a horizontal bar chart of parameter importances."""
    plt = _pyplot()
    names = list(importances)
    figure, panel = plt.subplots(figsize=(6.5, 0.45 * len(names) + 1.5))
    panel.barh(names[::-1], [importances[name] for name in names][::-1])
    panel.set_xlabel("importance (fANOVA share of the objective's variance)")
    panel.set_title("Parameter importance", fontsize=10)
    panel.grid(alpha=0.3, axis="x")
    return _save(plt, figure, path)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, figure: Any, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    with atomic_path(target) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)
    return target

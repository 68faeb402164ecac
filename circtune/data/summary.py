"""Readable summaries and I-V plots of a dataset, for ``circtune.data inspect``.

``summarize`` computes; ``format_summary`` and ``plot_iv_curves`` present.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from circtune.data.dataset import AXES, QUANTITIES, QUANTITY_UNITS, Dataset
from circtune.data.h5format import atomic_path


@dataclasses.dataclass(frozen=True)
class Summary:
    """Counts, value ranges and axis ranges of one dataset.

    Attributes:
        n_samples: Number of samples N.
        grid_shape: ``(B, G, D)``.
        counts: Column name to ``{value: count}`` for flavor, device,
            polarity, corner, temperature and mismatch draw.
        value_ranges: Quantity to ``(min, max)`` in SI units.
        axis_ranges: Flavor to axis name to ``(min, max)`` in volts.
        missing_quantities: BAG3 quantities the dataset lacks.
        attrs: Provenance attributes.
    """

    n_samples: int
    grid_shape: tuple[int, int, int]
    counts: Mapping[str, Mapping[str, int]]
    value_ranges: Mapping[str, tuple[float, float]]
    axis_ranges: Mapping[str, Mapping[str, tuple[float, float]]]
    missing_quantities: tuple[str, ...]
    attrs: Mapping[str, object]


def summarize(dataset: Dataset) -> Summary:
    """Compute the summary of a dataset."""
    metadata = dataset.metadata
    counts = {}
    for column in ("flavor", "device", "polarity", "corner", "temperature_c", "mismatch_draw"):
        values = getattr(metadata, column)
        counted = collections.Counter(_label(value) for value in values.tolist())
        counts[column] = dict(sorted(counted.items(), key=lambda item: _sort_key(item[0])))

    value_ranges = {
        name: (float(dataset.values[:, index].min()), float(dataset.values[:, index].max()))
        for index, name in enumerate(dataset.quantities)
    }
    axis_ranges: dict[str, dict[str, tuple[float, float]]] = {}
    for flavor in sorted(set(metadata.flavor.tolist())):
        rows = metadata.flavor == flavor
        axis_ranges[flavor] = {
            axis: (float(getattr(dataset, axis)[rows].min()), float(getattr(dataset, axis)[rows].max()))
            for axis in AXES
        }
    return Summary(
        n_samples=dataset.n_samples,
        grid_shape=dataset.grid_shape,
        counts=counts,
        value_ranges=value_ranges,
        axis_ranges=axis_ranges,
        missing_quantities=tuple(name for name in QUANTITIES if name not in dataset.quantities),
        attrs=dict(dataset.attrs),
    )


def format_summary(summary: Summary, source: str) -> str:
    """Render a summary as plain text lines."""
    n_vbs, n_vgs, n_vds = summary.grid_shape
    lines = [
        f"{source}",
        f"  samples: {summary.n_samples}   grid: Vbs x Vgs x Vds = {n_vbs} x {n_vgs} x {n_vds}",
    ]
    generator = summary.attrs.get("generator")
    if generator:
        lines.append(f"  generator: {generator} {summary.attrs.get('generator_version', '')}".rstrip())
    lines.append("  counts:")
    for column, counted in summary.counts.items():
        cells = ", ".join(f"{value}: {count}" for value, count in counted.items())
        lines.append(f"    {column:<14} {cells}")
    lines.append("  value ranges:")
    for name, (low, high) in summary.value_ranges.items():
        lines.append(f"    {name:<6} {low:>11.3e} .. {high:>10.3e} {QUANTITY_UNITS[name]}")
    if summary.missing_quantities:
        lines.append(f"    missing quantities: {', '.join(summary.missing_quantities)}")
    lines.append("  voltage axes by flavor (V):")
    for flavor, ranges in summary.axis_ranges.items():
        cells = "   ".join(f"{axis} {low:+.2f}..{high:+.2f}" for axis, (low, high) in ranges.items())
        lines.append(f"    {flavor:<5} {cells}")
    return "\n".join(lines)


def plot_iv_curves(dataset: Dataset, path: str | os.PathLike[str], *, n_devices: int = 4) -> Path:
    """Save Id-Vds curves at Vbs = 0 of a few devices, one per flavor first.

    Args:
        dataset: The dataset; it must contain ibias.
        path: Target PNG file, written atomically.
        n_devices: Number of panels.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from circtune.data.preprocess import square_law_targets

    targets = square_law_targets(dataset)
    chosen = _pick_samples(dataset, n_devices)
    figure, axes = plt.subplots(1, len(chosen), figsize=(4 * len(chosen), 3.4), squeeze=False)
    for panel, sample in zip(axes[0], chosen, strict=True):
        colors = plt.get_cmap("viridis")(np.linspace(0, 1, targets.vgs.shape[1]))
        for column, vgs in enumerate(targets.vgs[sample]):
            panel.plot(targets.vds[sample], targets.current[sample, column] * 1e6, color=colors[column], lw=1.2)
            panel.annotate(f"{vgs:.2f} V", (targets.vds[sample, -1], targets.current[sample, column, -1] * 1e6),
                           fontsize=6, color=colors[column])  # fmt: skip
        metadata = dataset.metadata
        panel.set_title(
            f"{metadata.device[sample]} {metadata.corner[sample]} {metadata.temperature_c[sample]:g} C", fontsize=9
        )
        panel.set_xlabel("|Vds| (V)")
        panel.set_ylabel("|Id| (uA)")
        panel.grid(alpha=0.3)
    figure.suptitle("Drain current at Vbs = 0, one curve per |Vgs|", fontsize=10)
    figure.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as temporary:
        figure.savefig(temporary, dpi=110, format="png")
    plt.close(figure)
    return target


def _pick_samples(dataset: Dataset, n_devices: int) -> list[int]:
    chosen: list[int] = []
    for flavor in sorted(set(dataset.metadata.flavor.tolist())):
        chosen.append(int(np.flatnonzero(dataset.metadata.flavor == flavor)[0]))
    for sample in range(dataset.n_samples):
        if len(chosen) >= n_devices:
            break
        if sample not in chosen:
            chosen.append(sample)
    return chosen[:n_devices]


def _label(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _sort_key(label: str) -> tuple[int, float, str]:
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)

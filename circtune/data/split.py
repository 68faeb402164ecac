"""Held-out-flavor splits and labelled subsets.

Training samples are those whose flavor is not held out. The held-out
samples are split again, by device group, into a validation part that scores
search trials and a test part that only the final report touches. A device
group is one device model at one corner, temperature and size: its mismatch
draws are near copies of each other, so they always land in the same part.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from circtune.data.dataset import Metadata
from circtune.errors import ConfigError, DataError

DEFAULT_HELD_OUT_FLAVORS: tuple[str, ...] = ("hv",)
_GROUP_COLUMNS = ("device", "corner", "temperature_c", "length_m", "width_m")


@dataclasses.dataclass(frozen=True)
class Split:
    """Sample indices of the three parts, each sorted.

    Attributes:
        train: Samples of the flavors used for training.
        validation: Held-out samples that score search trials.
        test: Held-out samples for the final report only.
        held_out_flavors: The flavors held out of training.
    """

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    held_out_flavors: tuple[str, ...]

    def sizes(self) -> dict[str, int]:
        """Return the number of samples in each part."""
        return {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)}


def split_by_flavor(
    metadata: Metadata,
    held_out_flavors: tuple[str, ...] = DEFAULT_HELD_OUT_FLAVORS,
    *,
    validation_fraction: float = 0.5,
    seed: int = 0,
) -> Split:
    """Split samples into training flavors and held-out validation and test parts.

    Args:
        metadata: Per-sample description of the dataset.
        held_out_flavors: Flavors that neither the embedding nor the
            downstream model may see during training.
        validation_fraction: Share of held-out device groups that go to
            validation; the rest go to test.
        seed: Seed of the group shuffle.

    Returns:
        The split; identical for identical arguments.

    Raises:
        ConfigError: If ``validation_fraction`` is not in (0, 1) or no
            flavor is held out.
        DataError: If a held-out flavor is absent, the training part is
            empty, or the held-out part has fewer than two device groups.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ConfigError(f"validation_fraction must lie in (0, 1), but got {validation_fraction}")
    if not held_out_flavors:
        raise ConfigError("held_out_flavors is empty; hold out at least one flavor, for example ['hv']")
    present = sorted(set(metadata.flavor.tolist()))
    absent = [flavor for flavor in held_out_flavors if flavor not in present]
    if absent:
        raise DataError(f"held-out flavors {absent} are not in the data; the data has flavors {present}")

    held_out = np.isin(metadata.flavor, list(held_out_flavors))
    train = np.flatnonzero(~held_out)
    if len(train) == 0:
        raise DataError(
            f"holding out {list(held_out_flavors)} leaves no training samples; the data has flavors {present}, "
            "so hold out fewer flavors"
        )
    validation, test = _split_groups(metadata, np.flatnonzero(held_out), validation_fraction, seed)
    return Split(train=train, validation=validation, test=test, held_out_flavors=tuple(held_out_flavors))


def labelled_subset(train: np.ndarray, size: int, *, seed: int) -> np.ndarray:
    """Draw ``size`` labelled training samples for the downstream model.

    Args:
        train: Indices of the training part.
        size: Number of labelled samples to draw.
        seed: Seed of the draw; the same seed gives the same subset.

    Returns:
        Sorted indices, a subset of ``train``.

    Raises:
        ConfigError: If ``size`` is not between 1 and ``len(train)``.
    """
    if not 1 <= size <= len(train):
        raise ConfigError(
            f"downstream training size {size} is outside [1, {len(train)}], the number of training samples; "
            "choose a smaller size or add training data"
        )
    generator = np.random.default_rng(seed)
    return np.sort(generator.choice(train, size=size, replace=False))


def _split_groups(
    metadata: Metadata, held_out: np.ndarray, validation_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    keys = [tuple(str(getattr(metadata, column)[index]) for column in _GROUP_COLUMNS) for index in held_out]
    groups = sorted(set(keys))
    if len(groups) < 2:
        raise DataError(
            f"the held-out samples form {len(groups)} device group (device, corner, temperature, size), "
            "but validation and test need one each; add held-out devices or conditions"
        )
    order = np.random.default_rng(seed).permutation(len(groups))
    n_validation = min(max(1, round(validation_fraction * len(groups))), len(groups) - 1)
    validation_groups = {groups[position] for position in order[:n_validation]}
    in_validation = np.array([key in validation_groups for key in keys])
    return np.sort(held_out[in_validation]), np.sort(held_out[~in_validation])

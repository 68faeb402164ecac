"""Scoring a representation by Square Law extraction on held-out devices.

Shape legend: N samples, F features of a representation, G Vgs points, D Vds
points.

A score freezes the representation and fits a fresh downstream head on
``n`` labelled training devices for each size in ``objective/train_sizes``.
It measures the head's predictions on a held-out part by the scale-free
loss and the relative error in percent, each a mean over devices, and
reports the oracle floor of that part beside them. Trials are scored on the validation part; the test part
is read only through ``evaluate_test`` or an explicit ``part="test"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from circtune.data.split import labelled_subset
from circtune.models.downstream import DownstreamHead, InputKind, embed, fit_pca
from circtune.models.square_law import current_scale, scale_free_loss, square_law_errors
from circtune.models.vae import VAE
from circtune.objective.config import DownstreamConfig, TrialConfig
from circtune.objective.data import OracleFloor, Part, TensorData, oracle_floor
from circtune.objective.train import NonFiniteLossError

# Maps (n,) sample indices to the (n, F) features of those samples only.
FeatureFunction = Callable[[Tensor], Tensor]


class SizeScore(NamedTuple):
    """Errors of a head fitted on one number of labelled devices.

    Attributes:
        size: Number of labelled training devices.
        loss: Scale-free Square Law loss, mean over the scored devices.
        relative_error_pct: Relative error in percent, mean over devices.
    """

    size: int
    loss: float
    relative_error_pct: float


class TrialScore(NamedTuple):
    """Score of a representation on one held-out part.

    Attributes:
        part: ``"validation"`` or ``"test"``.
        loss: Mean over sizes of the scale-free loss; the trial objective.
        relative_error_pct: Mean over sizes of the relative error in percent.
        oracle: Direct-fit floor on the same devices.
        per_size: The score of each size.
    """

    part: Part
    loss: float
    relative_error_pct: float
    oracle: OracleFloor
    per_size: tuple[SizeScore, ...]


def score_validation(vae: VAE, data: TensorData, config: TrialConfig, *, epoch: int | None = None) -> TrialScore:
    """Score a VAE's embeddings on the validation part; never reads test samples.

    Args:
        vae: The trained VAE; its weights are not changed.
        data: Trial tensors.
        config: Gives the downstream head, the sizes and the seed.
        epoch: Training epoch, named in errors.

    Raises:
        NonFiniteLossError: If a head diverges or a validation loss is not
            finite.
        ConfigError: If a size exceeds the number of training devices.
    """
    return _score_vae(vae, data, config, part="validation", epoch=epoch)


def evaluate_test(vae: VAE, data: TensorData, config: TrialConfig) -> TrialScore:
    """Score a VAE's embeddings on the test part, for the final report only.

    Raises:
        NonFiniteLossError: If a head diverges or a test loss is not finite.
        ConfigError: If a size exceeds the number of training devices.
    """
    return _score_vae(vae, data, config, part="test", epoch=None)


def score_features(
    features_of: FeatureFunction,
    data: TensorData,
    downstream: DownstreamConfig,
    *,
    part: Part,
    sizes: Sequence[int],
    seed: int,
    epoch: int | None = None,
) -> tuple[SizeScore, ...]:
    """Fit a fresh head per size on labelled training devices and score it on ``part``.

    Features are computed for the training samples and for the samples of
    ``part``, never for other samples. All training samples set the head's
    input standardization, and ``size`` of them are labelled.

    Args:
        features_of: The representation, as a function of sample indices.
        data: Trial tensors.
        downstream: Width and training of the fresh heads.
        part: The held-out part to score on.
        sizes: Numbers of labelled training devices.
        seed: Seed of the labelled subsets and of head initialisation.
        epoch: Training epoch, named in errors.

    Raises:
        NonFiniteLossError: If a head diverges or a loss on ``part`` is not
            finite.
        ConfigError: If a size exceeds the number of training devices.
    """
    train = data.source.train
    scored = data.indices[part]
    train_features = features_of(data.indices["train"])  # (n_train, F)
    scored_features = features_of(scored)  # (n_scored, F)
    measured = data.current[scored]  # (n_scored, G, D)
    measured_scale = current_scale(measured)  # (n_scored,)
    scores = []
    for size in sizes:
        labelled = labelled_subset(train, size, seed=seed)
        positions_np = np.searchsorted(train, labelled)  # train is sorted
        assert np.array_equal(train[positions_np], labelled)
        positions = torch.as_tensor(positions_np, device=data.device)
        labelled_indices = data.indices["train"][positions]
        head = fit_head(
            train_features[positions],
            data.current[labelled_indices],
            data.vgs[labelled_indices],
            data.vds[labelled_indices],
            config=downstream,
            standardize_with=train_features,
            warm_start=data.warm_start,
            seed=seed,
            epoch=epoch,
        )
        with torch.no_grad():
            predicted = head.predict_current(scored_features, data.vgs[scored], data.vds[scored], measured_scale)
            errors = square_law_errors(predicted, measured)
        score = SizeScore(size, float(errors.loss.mean()), float(errors.relative_error_pct.mean()))
        for value in (score.loss, score.relative_error_pct):
            if not math.isfinite(value):
                raise NonFiniteLossError(f"{part} Square Law", epoch=epoch, value=value)
        scores.append(score)
    return tuple(scores)


def fit_head(
    features: Tensor,
    current: Tensor,
    vgs: Tensor,
    vds: Tensor,
    *,
    config: DownstreamConfig,
    standardize_with: Tensor,
    warm_start: Tensor,
    seed: int,
    epoch: int | None = None,
) -> DownstreamHead:
    """Train a fresh downstream head by full-batch Adam on labelled devices.

    Args:
        features: ``(n, F)`` inputs of the labelled devices.
        current: ``(n, G, D)`` their measured |I| in amperes.
        vgs: ``(n, G)`` |Vgs| in volts.
        vds: ``(n, D)`` |Vds| in volts.
        config: Width, steps and learning rate.
        standardize_with: ``(m, F)`` features whose mean and standard
            deviation standardize the head's inputs (training samples only).
        warm_start: ``(4,)`` dimensionless log parameters for the output bias.
        seed: Seed of the weight initialisation.
        epoch: Training epoch, named in errors.

    Returns:
        The trained head, in evaluation mode.

    Raises:
        NonFiniteLossError: If the training loss ends NaN or infinite.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = DownstreamHead(int(features.shape[1]), hidden=config.hidden)
    head.to(features.device)
    head.set_standardization(standardize_with.detach())
    head.warm_start(warm_start)
    optimizer = torch.optim.Adam(head.parameters(), lr=config.lr, fused=features.device.type in ("cpu", "cuda"))
    features = features.detach()
    scale = current_scale(current)

    loss = torch.zeros((), device=features.device)
    for _ in range(config.epochs):
        loss = scale_free_loss(head.predict_current(features, vgs, vds, scale), current, scale=scale).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    final = float(loss.detach())
    if not math.isfinite(final):
        raise NonFiniteLossError("downstream head training", epoch=epoch, value=final)
    return head.eval()


def representation(
    kind: InputKind, data: TensorData, *, vae: VAE | None = None, n_components: int = 0
) -> FeatureFunction:
    """Return the feature function of one input kind.

    Args:
        kind: ``"embedding"`` (encoder mean of ``vae``), ``"raw"`` (the
            normalized ibias cube) or ``"pca"`` (projection of the full
            table on ``n_components`` principal components fitted on the
            training samples).
        data: Trial tensors.
        vae: Required for ``"embedding"``.
        n_components: Required for ``"pca"``.

    Raises:
        ValueError: If ``vae`` is missing for embeddings or the kind is
            unknown.
        ConfigError: If the PCA has more components than training samples.
    """
    if kind == "embedding":
        if vae is None:
            raise ValueError("the embedding representation needs a VAE")
        trained_vae = vae
        return lambda indices: embed(trained_vae, data.inputs[indices])
    if kind == "raw":
        raw = data.ibias_features()
        return lambda indices: raw[indices]
    if kind == "pca":
        pca = fit_pca(data.inputs[data.indices["train"]], n_components)
        return lambda indices: pca.project(data.inputs[indices])
    raise ValueError(f"unknown input kind {kind!r}; use embedding, raw or pca")


def summarize(per_size: Sequence[SizeScore], *, part: Part, oracle: OracleFloor) -> TrialScore:
    """Average size scores into one ``TrialScore``."""
    return TrialScore(
        part=part,
        loss=float(np.mean([score.loss for score in per_size])),
        relative_error_pct=float(np.mean([score.relative_error_pct for score in per_size])),
        oracle=oracle,
        per_size=tuple(per_size),
    )


def part_oracle(data: TensorData, part: Part) -> OracleFloor:
    """Return the direct-fit floor of ``part``: cached for validation, fitted on demand for test."""
    if part == "validation":
        return data.source.oracle_validation
    indices = getattr(data.source, part)
    source = data.source
    return oracle_floor(source.current[indices], source.vgs[indices], source.vds[indices])


def _score_vae(vae: VAE, data: TensorData, config: TrialConfig, *, part: Part, epoch: int | None) -> TrialScore:
    per_size = score_features(
        representation("embedding", data, vae=vae),
        data,
        config.downstream,
        part=part,
        sizes=config.objective.train_sizes,
        seed=config.seed,
        epoch=epoch,
    )
    return summarize(per_size, part=part, oracle=part_oracle(data, part))

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import torch

from circtune.data.dataset import Dataset
from circtune.data.split import Split, split_by_flavor
from circtune.data.synthetic import GeneratorSettings, generate
from circtune.errors import ConfigError
from circtune.models.square_law import current_scale, to_physical
from circtune.objective.config import DownstreamConfig, TrialConfig
from circtune.objective.data import TensorData, TrialData, prepare_trial_data, to_device
from circtune.objective.run import run_trial
from circtune.objective.score import (
    TrialScore,
    evaluate_test,
    representation,
    score_features,
    score_validation,
)
from circtune.objective.train import EpochMetrics, JointTrainer, NonFiniteLossError

_CPU = torch.device("cpu")
ConfigFactory = Callable[..., TrialConfig]
Poison = Callable[[TrialData, str], TrialData]


def _trained(data: TrialData, config: TrialConfig) -> tuple[JointTrainer, TensorData]:
    tensors = to_device(data, _CPU)
    trainer = JointTrainer(config, tensors, device=_CPU)
    trainer.train_epoch()
    return trainer, tensors


def test_score_validation_per_size(tiny_trial_data: TrialData, make_config: ConfigFactory) -> None:
    config = make_config()
    trainer, tensors = _trained(tiny_trial_data, config)
    score = score_validation(trainer.vae, tensors, config)
    assert score.part == "validation"
    assert [s.size for s in score.per_size] == list(config.objective.train_sizes)
    assert score.loss == pytest.approx(np.mean([s.loss for s in score.per_size]))
    assert np.isfinite(score.relative_error_pct)


def test_score_validation_oracle_beside(tiny_trial_data: TrialData, make_config: ConfigFactory) -> None:
    config = make_config()
    trainer, tensors = _trained(tiny_trial_data, config)
    score = score_validation(trainer.vae, tensors, config)
    assert score.oracle == tiny_trial_data.oracle_validation
    assert score.oracle.n_devices == len(tiny_trial_data.validation)
    # the tiny dataset's currents follow the law exactly, so the oracle fit is near perfect
    assert score.oracle.relative_error_pct < 0.1


def test_score_validation_never_reads_test(
    tiny_trial_data: TrialData, make_config: ConfigFactory, poison: Poison
) -> None:
    config = make_config()
    clean_trainer, clean = _trained(tiny_trial_data, config)
    poisoned_trainer, poisoned = _trained(poison(tiny_trial_data, "test"), config)
    expected = score_validation(clean_trainer.vae, clean, config)
    assert score_validation(poisoned_trainer.vae, poisoned, config) == expected


def test_evaluate_test_reads_test(tiny_trial_data: TrialData, make_config: ConfigFactory, poison: Poison) -> None:
    config = make_config()
    trainer, poisoned = _trained(poison(tiny_trial_data, "test"), config)
    with pytest.raises(NonFiniteLossError, match="test Square Law loss is nan after training"):
        evaluate_test(trainer.vae, poisoned, config)


def test_evaluate_test_scores_test_part(tiny_trial_data: TrialData, make_config: ConfigFactory) -> None:
    config = make_config()
    trainer, tensors = _trained(tiny_trial_data, config)
    score = evaluate_test(trainer.vae, tensors, config)
    assert score.part == "test"
    assert score.oracle.n_devices == len(tiny_trial_data.test)


def test_score_non_finite_validation_raises(
    tiny_trial_data: TrialData, make_config: ConfigFactory, poison: Poison
) -> None:
    config = make_config()
    trainer, poisoned = _trained(poison(tiny_trial_data, "validation"), config)
    with pytest.raises(NonFiniteLossError, match="validation Square Law loss is nan at epoch 3") as raised:
        score_validation(trainer.vae, poisoned, config, epoch=3)
    assert raised.value.epoch == 3


def test_score_diverging_head_raises(tiny_trial_data: TrialData, make_config: ConfigFactory) -> None:
    config = make_config()
    trainer, _ = _trained(tiny_trial_data, config)
    current = tiny_trial_data.current.copy()
    current[tiny_trial_data.train] = np.inf
    broken = to_device(dataclasses.replace(tiny_trial_data, current=current), _CPU)
    with pytest.raises(NonFiniteLossError, match="downstream head training"):
        score_validation(trainer.vae, broken, config)


def test_score_leaves_vae_unchanged(tiny_trial_data: TrialData, make_config: ConfigFactory) -> None:
    config = make_config(**{"model/dropout": 0.3})
    trainer, tensors = _trained(tiny_trial_data, config)
    before = [p.detach().clone() for p in trainer.vae.parameters()]
    score_validation(trainer.vae, tensors, config)
    assert trainer.vae.training
    for a, b in zip(before, trainer.vae.parameters(), strict=True):
        assert torch.equal(a, b)


def test_score_repeatable(tiny_trial_data: TrialData, make_config: ConfigFactory) -> None:
    config = make_config()
    trainer, tensors = _trained(tiny_trial_data, config)
    assert score_validation(trainer.vae, tensors, config) == score_validation(trainer.vae, tensors, config)


def test_score_size_above_training_devices_raises(tiny_trial_data: TrialData, make_config: ConfigFactory) -> None:
    config = make_config(**{"objective/train_sizes": [len(tiny_trial_data.train) + 1]})
    trainer, tensors = _trained(tiny_trial_data, config)
    with pytest.raises(ConfigError, match="downstream training size"):
        score_validation(trainer.vae, tensors, config)


@pytest.mark.parametrize(("kind", "width"), [("embedding", 4), ("raw", 3 * 6 * 6), ("pca", 4)])
def test_representation_shapes(tiny_trial_data: TrialData, make_config: ConfigFactory, kind: str, width: int) -> None:
    trainer, tensors = _trained(tiny_trial_data, make_config())
    features_of = representation(kind, tensors, vae=trainer.vae, n_components=4)  # type: ignore[arg-type]
    assert features_of(tensors.indices["validation"]).shape == (len(tiny_trial_data.validation), width)


def test_representation_raw_is_ibias_channel(tiny_trial_data: TrialData) -> None:
    tensors = to_device(tiny_trial_data, _CPU)
    raw = representation("raw", tensors)(tensors.indices["train"])
    expected = tiny_trial_data.inputs.reshape(-1, *tiny_trial_data.grid_shape)[tiny_trial_data.train, 0]
    np.testing.assert_array_equal(raw.numpy(), expected.reshape(len(expected), -1))


def test_score_features_pca_ignores_test(
    tiny_trial_data: TrialData, make_config: ConfigFactory, poison: Poison
) -> None:
    config = make_config()
    scores = []
    for data in (tiny_trial_data, poison(tiny_trial_data, "test")):
        tensors = to_device(data, _CPU)
        features_of = representation("pca", tensors, n_components=4)
        scores.append(score_features(features_of, tensors, config.downstream, part="validation", sizes=[8], seed=0))
    assert scores[0] == scores[1]


def test_prepare_normalizer_ignores_held_out(tiny_dataset: Dataset, tiny_trial_data: TrialData) -> None:
    values = tiny_dataset.values.copy()
    held_out = np.concatenate([tiny_trial_data.validation, tiny_trial_data.test])
    values[held_out] *= 3.0
    changed = prepare_trial_data(dataclasses.replace(tiny_dataset, values=values), _split_of(tiny_trial_data))
    np.testing.assert_array_equal(changed.inputs[tiny_trial_data.train], tiny_trial_data.inputs[tiny_trial_data.train])
    np.testing.assert_array_equal(changed.warm_start, tiny_trial_data.warm_start)


def test_prepare_warm_start_near_training_devices(tiny_trial_data: TrialData) -> None:
    # the warm start is dimensionless; the average training device's scales give it units
    train = tiny_trial_data.train
    current, vgs, vds = (torch.from_numpy(array[train].mean(axis=0)[None]) for array in
                         (tiny_trial_data.current, tiny_trial_data.vgs, tiny_trial_data.vds))  # fmt: skip
    normalized = torch.from_numpy(tiny_trial_data.warm_start)[None]
    vt, kp, lam, eta = to_physical(normalized, vgs, vds, current_scale(current))[0].exp().tolist()
    assert 0.3 < vt < 0.6
    assert 5e-5 < kp < 5e-4
    assert 0.05 < lam < 0.15
    assert eta == pytest.approx(2.0, rel=0.1)


def test_run_trial_scores_and_callbacks(tiny_trial_data: TrialData, make_config: ConfigFactory) -> None:
    config = make_config(**{"train/epochs": 4})
    calls: list[tuple[int, EpochMetrics, TrialScore | None]] = []
    checkpoints: list[int] = []
    result = run_trial(
        config,
        tiny_trial_data,
        device=_CPU,
        on_epoch=lambda epoch, metrics, score: calls.append((epoch, metrics, score)),
        eval_every=3,
        on_checkpoint=lambda epoch, state: checkpoints.append(epoch),
    )
    assert [epoch for epoch, _, _ in calls] == [1, 2, 3, 4]
    assert [epoch for epoch, _, score in calls if score is not None] == [3, 4]
    assert checkpoints == [3, 4]
    assert [epoch for epoch, _ in result.scores] == [3, 4]
    assert result.final_score == calls[-1][2]


def test_run_trial_resumes_to_same_result(tiny_trial_data: TrialData, make_config: ConfigFactory) -> None:
    config = make_config(**{"train/epochs": 4, "model/dropout": 0.2})
    states: dict[int, dict[str, object]] = {}
    straight = run_trial(config, tiny_trial_data, device=_CPU, eval_every=2, on_checkpoint=states.__setitem__)
    resumed = run_trial(config, tiny_trial_data, device=_CPU, resume_state=states[2])
    assert _losses(resumed.history) == _losses(straight.history[2:])
    assert resumed.final_score == straight.final_score


def _losses(history: tuple[EpochMetrics, ...]) -> list[tuple[float, ...]]:
    return [(m.epoch, m.reconstruction, m.kl, m.downstream, m.total) for m in history]


def _split_of(data: TrialData) -> Split:
    return Split(train=data.train, validation=data.validation, test=data.test, held_out_flavors=("hv",))


def _raw_score(dataset: Dataset, held_out: tuple[str, ...], size: int) -> tuple[float, float]:
    """Return the relative error of a head on raw ibias and the oracle floor, on validation, in percent."""
    split = split_by_flavor(dataset.metadata, held_out, validation_fraction=0.5, seed=0)
    data = to_device(prepare_trial_data(dataset, split), _CPU)
    (score,) = score_features(representation("raw", data), data, DownstreamConfig(), part="validation",
                              sizes=(size,), seed=0)  # fmt: skip
    return score.relative_error_pct, data.source.oracle_validation.relative_error_pct


def test_held_out_flavor_in_training_range_reaches_oracle() -> None:
    # svt lies between lvt and hvt, so a head trained on the other flavors must come close to the direct fit
    dataset = generate(GeneratorSettings(n_mismatch_draws=1, n_vbs=3, n_vgs=8, n_vds=8, temperatures_c=(27.0, 125.0)))
    error, oracle = _raw_score(dataset, ("svt",), 32)
    assert error < 2.5 * oracle


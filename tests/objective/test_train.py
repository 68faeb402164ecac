import dataclasses
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from circtune.errors import ConfigError
from circtune.objective.config import TrialConfig
from circtune.objective.data import TrialData, to_device
from circtune.objective.train import EpochMetrics, JointTrainer, NonFiniteLossError

_CPU = torch.device("cpu")


TrainerFactory = Callable[..., JointTrainer]


@pytest.fixture
def make_trainer(make_config: Callable[..., TrialConfig]) -> TrainerFactory:
    def build(data: TrialData, **updates: object) -> JointTrainer:
        return JointTrainer(make_config(**updates), to_device(data, _CPU), device=_CPU)

    return build


def _train(trainer: JointTrainer, epochs: int) -> list[EpochMetrics]:
    return [trainer.train_epoch() for _ in range(epochs)]


def _losses(history: list[EpochMetrics]) -> list[tuple[float, ...]]:
    return [(m.reconstruction, m.kl, m.downstream, m.total) for m in history]


def _parameters(trainer: JointTrainer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in [*trainer.vae.parameters(), *trainer.head.parameters()]]


def test_train_epoch_metrics(tiny_trial_data: TrialData, make_trainer: TrainerFactory) -> None:
    trainer = make_trainer(tiny_trial_data, **{"loss/gamma": 0.5})
    metrics = trainer.train_epoch()
    assert metrics.epoch == 1
    assert trainer.epoch == 1
    assert metrics.samples_per_s > 0
    assert metrics.total == pytest.approx(metrics.reconstruction + 1e-3 * metrics.kl + 0.5 * metrics.downstream)


def test_train_loss_decreases(tiny_trial_data: TrialData, make_trainer: TrainerFactory) -> None:
    history = _train(make_trainer(tiny_trial_data), 8)
    assert history[-1].reconstruction < history[0].reconstruction


def test_train_same_seed_identical_twice(tiny_trial_data: TrialData, make_trainer: TrainerFactory) -> None:
    updates = {"model/dropout": 0.2, "loss/gamma": 1.0}
    first = make_trainer(tiny_trial_data, **updates)
    second = make_trainer(tiny_trial_data, **updates)
    assert _losses(_train(first, 3)) == _losses(_train(second, 3))
    for a, b in zip(_parameters(first), _parameters(second), strict=True):
        assert torch.equal(a, b)


def test_train_other_seed_differs(tiny_trial_data: TrialData, make_trainer: TrainerFactory) -> None:
    first = _losses(_train(make_trainer(tiny_trial_data, seed=0), 2))
    second = _losses(_train(make_trainer(tiny_trial_data, seed=1), 2))
    assert first != second


def test_train_joint_lowers_downstream_loss(tiny_trial_data: TrialData, make_trainer: TrainerFactory) -> None:
    two_stage = _train(make_trainer(tiny_trial_data, **{"loss/gamma": 0.0}), 10)[-1]
    joint = _train(make_trainer(tiny_trial_data, **{"loss/gamma": 10.0}), 10)[-1]
    assert joint.downstream < 0.5 * two_stage.downstream


def test_train_gamma_zero_head_leaves_encoder_alone(tiny_trial_data: TrialData, make_trainer: TrainerFactory) -> None:
    # with gamma = 0 the VAE trajectory must not depend on the head at all
    small_head = make_trainer(tiny_trial_data, **{"loss/gamma": 0.0, "downstream/hidden": 4})
    large_head = make_trainer(tiny_trial_data, **{"loss/gamma": 0.0, "downstream/hidden": 64})
    _train(small_head, 2)
    _train(large_head, 2)
    for a, b in zip(small_head.vae.parameters(), large_head.vae.parameters(), strict=True):
        assert torch.equal(a, b)


def test_train_gamma_positive_head_shapes_encoder(tiny_trial_data: TrialData, make_trainer: TrainerFactory) -> None:
    small_head = make_trainer(tiny_trial_data, **{"loss/gamma": 1.0, "downstream/hidden": 4})
    large_head = make_trainer(tiny_trial_data, **{"loss/gamma": 1.0, "downstream/hidden": 64})
    _train(small_head, 2)
    _train(large_head, 2)
    encoder_a = small_head.vae.encoder[0].weight
    encoder_b = large_head.vae.encoder[0].weight
    assert not torch.equal(encoder_a, encoder_b)


def test_train_state_dict_resumes_identically(
    tiny_trial_data: TrialData, make_trainer: TrainerFactory, tmp_path: Path
) -> None:
    updates = {"model/dropout": 0.2, "loss/gamma": 1.0}
    straight = make_trainer(tiny_trial_data, **updates)
    _train(straight, 2)
    path = f"{tmp_path}/state.pt"
    torch.save(straight.state_dict(), path)
    expected = _losses(_train(straight, 2))

    resumed = make_trainer(tiny_trial_data, **updates)
    resumed.load_state_dict(torch.load(path, weights_only=True))
    assert resumed.epoch == 2
    assert _losses(_train(resumed, 2)) == expected
    for a, b in zip(_parameters(straight), _parameters(resumed), strict=True):
        assert torch.equal(a, b)


def test_train_state_dict_is_a_copy(tiny_trial_data: TrialData, make_trainer: TrainerFactory) -> None:
    trainer = make_trainer(tiny_trial_data)
    state = trainer.state_dict()
    before = state["vae"]["to_output.bias"].clone()
    _train(trainer, 1)
    assert torch.equal(state["vae"]["to_output.bias"], before)


def test_train_load_state_dict_other_config_raises(tiny_trial_data: TrialData, make_trainer: TrainerFactory) -> None:
    state = make_trainer(tiny_trial_data, seed=0).state_dict()
    with pytest.raises(ConfigError, match="resume with the same config"):
        make_trainer(tiny_trial_data, seed=1).load_state_dict(state)


def test_train_non_finite_loss_raises(tiny_trial_data: TrialData, make_trainer: TrainerFactory) -> None:
    inputs = tiny_trial_data.inputs.copy()
    inputs[tiny_trial_data.train[0]] = np.nan
    trainer = make_trainer(dataclasses.replace(tiny_trial_data, inputs=inputs))
    with pytest.raises(NonFiniteLossError, match="reconstruction loss is nan at epoch 1") as raised:
        trainer.train_epoch()
    assert raised.value.epoch == 1
    assert raised.value.loss_name == "reconstruction"


def test_train_non_finite_error_pickles() -> None:
    error = pickle.loads(pickle.dumps(NonFiniteLossError("downstream", epoch=4, value=float("inf"))))
    assert error.epoch == 4
    assert error.loss_name == "downstream"
    assert "at epoch 4" in str(error)


def test_train_bfloat16_precision_finite(tiny_trial_data: TrialData, make_trainer: TrainerFactory) -> None:
    metrics = make_trainer(tiny_trial_data, **{"train/precision": "bfloat16", "loss/gamma": 1.0}).train_epoch()
    assert np.isfinite(metrics.total)


def test_train_reads_training_samples_only(tiny_trial_data: TrialData, make_trainer: TrainerFactory) -> None:
    held_out = np.concatenate([tiny_trial_data.validation, tiny_trial_data.test])
    inputs = tiny_trial_data.inputs.copy()
    current = tiny_trial_data.current.copy()
    inputs[held_out] = np.nan
    current[held_out] = np.nan
    poisoned = dataclasses.replace(tiny_trial_data, inputs=inputs, current=current)
    assert _losses(_train(make_trainer(poisoned), 2)) == _losses(_train(make_trainer(tiny_trial_data), 2))


def test_train_read_only_arrays_accepted(tiny_trial_data: TrialData, make_trainer: TrainerFactory) -> None:
    inputs = tiny_trial_data.inputs.copy()
    inputs.flags.writeable = False
    metrics = make_trainer(dataclasses.replace(tiny_trial_data, inputs=inputs)).train_epoch()
    assert np.isfinite(metrics.total)

import pytest

from circtune.errors import ConfigError
from circtune.objective.config import DEFAULT_WIDTHS, FLAT_KEYS, MAX_DEPTH, TrialConfig

_CUSTOM = {
    "model/latent_dim": 32,
    "model/depth": 3,
    "model/width_1": 1024,
    "model/width_2": 256,
    "model/width_3": 64,
    "model/activation": "gelu",
    "model/dropout": 0.1,
    "loss/beta": 0.01,
    "loss/gamma": 2.5,
    "train/epochs": 7,
    "train/batch_size": 128,
    "train/lr": 3e-4,
    "train/weight_decay": 1e-5,
    "train/precision": "bfloat16",
    "downstream/hidden": 100,
    "downstream/epochs": 300,
    "downstream/lr": 5e-3,
    "objective/train_sizes": [8, 32, 128],
    "seed": 11,
}


def test_config_defaults_from_empty_dict() -> None:
    assert TrialConfig.from_flat({}) == TrialConfig()


def test_config_default_values() -> None:
    config = TrialConfig()
    assert config.model.widths == DEFAULT_WIDTHS[:2]
    assert config.downstream.hidden == 200
    assert config.loss.gamma == 0.0


def test_config_flat_round_trip() -> None:
    config = TrialConfig.from_flat(_CUSTOM)
    assert config.to_flat() == _CUSTOM
    assert TrialConfig.from_flat(config.to_flat()) == config


def test_config_sections_from_flat_keys() -> None:
    config = TrialConfig.from_flat(_CUSTOM)
    assert config.model.widths == (1024, 256, 64)
    assert config.model.depth == 3
    assert config.train.precision == "bfloat16"
    assert config.objective.train_sizes == (8, 32, 128)


def test_config_flat_keys_cover_to_flat() -> None:
    config = TrialConfig.from_flat({"model/depth": MAX_DEPTH})
    assert set(config.to_flat()) <= set(FLAT_KEYS)


def test_config_to_flat_lists_active_widths_only() -> None:
    flat = TrialConfig.from_flat({"model/depth": 1}).to_flat()
    assert "model/width_1" in flat
    assert "model/width_2" not in flat


def test_config_missing_width_takes_default() -> None:
    config = TrialConfig.from_flat({"model/depth": 3, "model/width_1": 100})
    assert config.model.widths == (100, DEFAULT_WIDTHS[1], DEFAULT_WIDTHS[2])


def test_config_unknown_key_raises() -> None:
    with pytest.raises(ConfigError, match="unknown parameter 'model/latent_size'"):
        TrialConfig.from_flat({"model/latent_size": 16})


def test_config_width_beyond_max_depth_raises() -> None:
    with pytest.raises(ConfigError, match=f"unknown parameter 'model/width_{MAX_DEPTH + 1}'"):
        TrialConfig.from_flat({f"model/width_{MAX_DEPTH + 1}": 16})


def test_config_inactive_width_raises() -> None:
    with pytest.raises(ConfigError, match="model/width_3 is set but model/depth is 2"):
        TrialConfig.from_flat({"model/depth": 2, "model/width_3": 64})


def test_config_inactive_width_dropped_when_allowed() -> None:
    config = TrialConfig.from_flat({"model/depth": 2, "model/width_3": 64}, allow_inactive=True)
    assert config.model.widths == DEFAULT_WIDTHS[:2]


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("model/latent_dim", 0, r"model/latent_dim must lie in \[1, "),
        ("model/depth", MAX_DEPTH + 1, "model/depth must lie in"),
        ("model/width_1", -4, "model/width_1 must lie in"),
        ("model/dropout", 1.0, r"model/dropout must lie in \[0, 1\)"),
        ("model/activation", "swish", "model/activation must be one of"),
        ("loss/beta", -0.1, "loss/beta must lie in"),
        ("loss/gamma", float("nan"), "loss/gamma must be a finite number"),
        ("train/epochs", 0, "train/epochs must lie in"),
        ("train/lr", 0.0, r"train/lr must lie in \(0, 1\]"),
        ("train/precision", "float16", "train/precision must be one of"),
        ("downstream/hidden", 0, "downstream/hidden must lie in"),
        ("objective/train_sizes", [], "objective/train_sizes is empty"),
        ("objective/train_sizes", [8, 0], "objective/train_sizes must lie in"),
        ("seed", -1, "seed must lie in"),
    ],
)
def test_config_out_of_range_raises(key: str, value: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TrialConfig.from_flat({key: value})


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("model/depth", 2.5, "model/depth must be an integer, but got 2.5"),
        ("model/depth", True, "model/depth must be an integer"),
        ("train/batch_size", "64", "train/batch_size must be an integer"),
        ("train/lr", "fast", "train/lr must be a number, but got 'fast'"),
        ("train/lr", None, "train/lr must be a number"),
        ("model/activation", 3, "model/activation must be one of"),
    ],
)
def test_config_wrong_type_raises(key: str, value: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TrialConfig.from_flat({key: value})


def test_config_integral_float_accepted() -> None:
    assert TrialConfig.from_flat({"train/batch_size": 64.0}).train.batch_size == 64


def test_config_float_string_accepted() -> None:
    # YAML 1.1 reads 1e-3 without a dot as a string
    assert TrialConfig.from_flat({"train/lr": "1e-3"}).train.lr == pytest.approx(1e-3)


def test_config_single_train_size_accepted() -> None:
    assert TrialConfig.from_flat({"objective/train_sizes": 16}).objective.train_sizes == (16,)


def test_config_with_values_validates() -> None:
    config = TrialConfig().with_values({"seed": 5})
    assert config.seed == 5
    with pytest.raises(ConfigError, match="unknown parameter 'sed'"):
        config.with_values({"sed": 5})


def test_config_frozen() -> None:
    config = TrialConfig()
    with pytest.raises(AttributeError):
        config.seed = 3  # type: ignore[misc]

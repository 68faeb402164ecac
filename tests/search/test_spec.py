"""Tests for circtune.search.spec: loading, validation and round trip of experiment files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from circtune.errors import ConfigError
from circtune.search.space import CategoricalParameter, Condition, IntParameter
from circtune.search.spec import (
    ExperimentSpec,
    SearchSettings,
    find_spec_file,
    load_spec,
    parse_spec,
    resolve_dataset_path,
    resolve_tracking_uri,
    save_spec,
    spec_names,
    spec_to_dict,
)

# The trial config's flat keys, as the search engine passes them.
KNOWN_PARAMETERS = (
    "model/latent_dim", "model/depth", "model/width_1", "model/width_2", "model/width_3", "model/width_4",
    "model/activation", "model/dropout", "loss/beta", "loss/gamma", "train/epochs", "train/batch_size",
    "train/lr", "train/weight_decay", "downstream/hidden", "downstream/epochs", "downstream/lr", "seed",
)  # fmt: skip
KNOWN_METRICS = ("validation_loss", "reconstruction")
REPOSITORY = Path(__file__).resolve().parents[2]

FULL = """\
dataset:
  source: default
  generator: {n_devices: 4}
split:
  held_out_flavors: [hv, hvt]
  validation_fraction: 0.25
  seed: 3
space:
  model/latent_dim: {type: categorical, values: [8, 16, 32]}
  model/depth: {type: int, low: 1, high: 3}
  model/width_1: {type: int, low: 64, high: 512, step: 64}
  model/width_2: {type: int, low: 32, high: 256, step: 32, when: {model/depth: [2, 3]}}
  loss/beta: {type: loguniform, low: 1.0e-4, high: 1.0}
  loss/gamma: {type: uniform, low: 0, high: 2}
  model/activation: {type: categorical, values: [relu, gelu, tanh]}
  downstream/hidden: {type: int, low: 16, high: 256, log: true}
fixed:
  train/epochs: 20
  train/lr: 1.0e-3
  downstream/hidden_sizes: [64, 32]
objective:
  train_sizes: [8, 32]
  metrics: [reconstruction, validation_loss]
search:
  n_trials: 30
  sampler: nsga2
  scheduler: none
  grace_period: 2
  reduction_factor: 2.5
  eval_every: 4
  max_concurrent: null
  max_failures: 0
  population_size: 10
resources:
  cpus_per_trial: 0.5
  gpus_per_trial: 0.25
tracking:
  uri: http://127.0.0.1:5000
  experiment: round-trip
seed: 7
"""

BASE = """\
space:
  model/depth: {type: int, low: 1, high: 3}
  model/width_1: {type: int, low: 64, high: 512, step: 64}
"""

# (case id, document, regex the message must contain: the key path and the problem)
BAD_FILES = [
    (
        "point_unknown_key",
        BASE + "search: {points_to_evaluate: [{model/depth: 1, model/width_1: 64, model/widht_2: 3}]}\n",
        r"search\.points_to_evaluate\[0\]\.model/widht_2: not a searched parameter",
    ),
    (
        "point_out_of_range",
        BASE + "search: {points_to_evaluate: [{model/depth: 9, model/width_1: 64}]}\n",
        r"search\.points_to_evaluate\[0\]\.model/depth: value 9 is outside",
    ),
    (
        "point_missing_key",
        BASE + "search: {points_to_evaluate: [{model/depth: 1}]}\n",
        r"search\.points_to_evaluate\[0\]: missing a value for model/width_1",
    ),
    (
        "point_not_mapping",
        BASE + "search: {points_to_evaluate: [3]}\n",
        r"search\.points_to_evaluate\[0\]: expected a mapping",
    ),
    ("yaml_syntax", "space: [1, 2\nseed: 3\n", r"bad\.yaml:2:5: invalid YAML"),
    ("top_level_list", "- space\n- seed\n", r"top level: expected a mapping .*but got \['space', 'seed'\]"),
    ("empty_file", "# nothing\n", r"top level: the file is empty"),
    ("space_missing", "seed: 1\n", r"space: missing or empty"),
    ("unknown_top_key", BASE + "serach: {n_trials: 3}\n", r"serach: unknown key \(did you mean 'search'\?\)"),
    (
        "unknown_nested_key",
        BASE + "search: {n_trails: 3}\n",
        r"search\.n_trails: unknown key \(did you mean 'n_trials'\?\)",
    ),
    (
        "unknown_parameter_key",
        "space:\n  model/depth: {type: int, low: 1, high: 3, lo: 2}\n",
        r"space\.model/depth\.lo: unknown key \(did you mean 'low'\?\)",
    ),
    (
        "string_for_int",
        BASE + "search: {n_trials: twenty}\n",
        r"search\.n_trials: expected an integer, but got 'twenty'",
    ),
    ("bool_for_int", BASE + "search: {n_trials: true}\n", r"search\.n_trials: expected an integer, but got true"),
    (
        "bool_for_int_bound",
        "space:\n  model/depth: {type: int, low: true, high: 3}\n",
        r"space\.model/depth\.low: expected an integer",
    ),
    (
        "exponent_without_dot",
        "space:\n  loss/beta: {type: loguniform, low: 1e-4, high: 1.0}\n",
        r"space\.loss/beta\.low: expected a number, but got '1e-4'.*1\.0e-4",
    ),
    (
        "low_above_high",
        "space:\n  model/depth: {type: int, low: 3, high: 1}\n",
        r"space\.model/depth\.low: low 3 is greater than high 1",
    ),
    (
        "float_low_above_high",
        "space:\n  loss/gamma: {type: uniform, low: 2.0, high: 0.5}\n",
        r"space\.loss/gamma\.low: low 2\.0 must be less than high 0\.5",
    ),
    (
        "loguniform_low_zero",
        "space:\n  loss/beta: {type: loguniform, low: 0, high: 1}\n",
        r"space\.loss/beta\.low: a loguniform low must be greater than 0",
    ),
    (
        "step_not_dividing",
        "space:\n  model/width_1: {type: int, low: 64, high: 500, step: 64}\n",
        r"space\.model/width_1\.step: step 64 does not divide",
    ),
    (
        "int_log_with_step",
        "space:\n  model/width_1: {type: int, low: 64, high: 512, step: 64, log: true}\n",
        r"space\.model/width_1\.log: log: true needs step 1",
    ),
    (
        "empty_categorical",
        "space:\n  model/activation: {type: categorical, values: []}\n",
        r"space\.model/activation\.values: the list of values is empty",
    ),
    (
        "duplicate_categorical",
        "space:\n  model/activation: {type: categorical, values: [relu, gelu, relu]}\n",
        r"space\.model/activation\.values: 'relu' appears twice",
    ),
    (
        "categorical_not_scalar",
        "space:\n  model/activation: {type: categorical, values: [[relu]]}\n",
        r"space\.model/activation\.values: expected a string, number or boolean",
    ),
    (
        "unknown_type",
        "space:\n  model/depth: {type: integer, low: 1, high: 3}\n",
        r"space\.model/depth\.type: unknown distribution type 'integer'",
    ),
    ("type_missing", "space:\n  model/depth: {low: 1, high: 3}\n", r"space\.model/depth\.type: missing"),
    ("bound_missing", "space:\n  model/depth: {type: int, low: 1}\n", r"space\.model/depth\.high: missing"),
    (
        "when_unknown_parameter",
        BASE + "  model/width_2: {type: int, low: 32, high: 64, step: 32, when: {model/detph: 2}}\n",
        r"space\.model/width_2\.when\.model/detph: unknown parameter 'model/detph' \(did you mean 'model/depth'\?\)",
    ),
    (
        "when_later_parameter",
        "space:\n  model/width_2: {type: int, low: 32, high: 64, when: {model/depth: 2}}\n"
        "  model/depth: {type: int, low: 1, high: 3}\n",
        r"space\.model/width_2\.when\.model/depth: model/depth comes after model/width_2",
    ),
    (
        "when_fixed_parameter",
        "space:\n  model/width_2: {type: int, low: 32, high: 64, when: {train/epochs: 2}}\nfixed:\n  train/epochs: 2\n",
        r"space\.model/width_2\.when\.train/epochs: train/epochs is fixed, not searched",
    ),
    (
        "when_impossible_value",
        BASE + "  model/width_2: {type: int, low: 32, high: 64, when: {model/depth: [2, 5]}}\n",
        r"space\.model/width_2\.when\.model/depth: 5 is not a possible value of model/depth",
    ),
    (
        "when_continuous_parent",
        "space:\n  loss/gamma: {type: uniform, low: 0, high: 1}\n"
        "  loss/beta: {type: uniform, low: 0, high: 1, when: {loss/gamma: 0.5}}\n",
        r"space\.loss/beta\.when\.loss/gamma: loss/gamma is continuous",
    ),
    (
        "bad_key_format",
        "space:\n  Model/Depth: {type: int, low: 1, high: 3}\n",
        r"space\.Model/Depth: invalid key 'Model/Depth'",
    ),
    ("key_without_section", "space:\n  depth: {type: int, low: 1, high: 3}\n", r"space\.depth: invalid key 'depth'"),
    (
        "key_in_space_and_fixed",
        BASE + "fixed:\n  model/depth: 2\n",
        r"fixed\.model/depth: model/depth is also in space",
    ),
    (
        "duplicate_yaml_key",
        BASE + "  model/depth: {type: int, low: 1, high: 2}\n",
        r"bad\.yaml:4:3: space\.model/depth: duplicate key",
    ),
    (
        "unknown_parameter",
        "space:\n  model/widht_1: {type: int, low: 64, high: 512, step: 64}\n",
        r"space\.model/widht_1: unknown parameter 'model/widht_1' in space \(did you mean 'model/width_1'\?\); "
        r"known parameters: .*model/width_1",
    ),
    (
        "unknown_fixed_parameter",
        BASE + "fixed:\n  train/epoch: 20\n",
        r"fixed\.train/epoch: unknown parameter 'train/epoch' in fixed \(did you mean 'train/epochs'\?\)",
    ),
    (
        "fixed_null",
        BASE + "fixed:\n  train/epochs: null\n",
        r"fixed\.train/epochs: expected a string, number or boolean, but got null",
    ),
    (
        "gpus_fraction_above_one",
        BASE + "resources: {gpus_per_trial: 1.5}\n",
        r"resources\.gpus_per_trial: 1\.5 GPUs cannot be reserved",
    ),
    (
        "cpus_zero",
        BASE + "resources: {cpus_per_trial: 0}\n",
        r"resources\.cpus_per_trial: must be a finite number greater than 0",
    ),
    (
        "two_metrics_with_asha",
        BASE + "objective: {metrics: [reconstruction, validation_loss]}\n",
        r"search\.scheduler: asha needs exactly one metric",
    ),
    (
        "two_metrics_with_cmaes",
        BASE + "objective: {metrics: [reconstruction, validation_loss]}\nsearch: {sampler: cmaes, scheduler: none}\n",
        r"search\.sampler: cmaes optimizes one metric",
    ),
    ("three_metrics", BASE + "objective: {metrics: [a, b, c]}\n", r"objective\.metrics: list one metric, or two"),
    (
        "unknown_metric",
        BASE + "objective: {metrics: [validaton_loss]}\n",
        r"objective\.metrics: unknown metric 'validaton_loss'",
    ),
    ("train_size_zero", BASE + "objective: {train_sizes: [0, 8]}\n", r"objective\.train_sizes: sizes must be positive"),
    ("unknown_flavor", BASE + "split: {held_out_flavors: [hvx]}\n", r"split\.held_out_flavors: unknown flavor 'hvx'"),
    ("empty_flavors", BASE + "split: {held_out_flavors: []}\n", r"split\.held_out_flavors: empty"),
    (
        "all_flavors",
        BASE + "split: {held_out_flavors: [lvt, svt, hvt, hv]}\n",
        r"split\.held_out_flavors: every flavor",
    ),
    (
        "validation_fraction_one",
        BASE + "split: {validation_fraction: 1.0}\n",
        r"split\.validation_fraction: must lie strictly",
    ),
    ("unknown_sampler", BASE + "search: {sampler: bayes}\n", r"search\.sampler: unknown sampler 'bayes'"),
    (
        "unknown_scheduler",
        BASE + "search: {scheduler: hyperband}\n",
        r"search\.scheduler: unknown scheduler 'hyperband'",
    ),
    (
        "reduction_factor_one",
        BASE + "search: {reduction_factor: 1}\n",
        r"search\.reduction_factor: must be a finite number greater than 1",
    ),
    ("max_failures_negative", BASE + "search: {max_failures: -1}\n", r"search\.max_failures: must be an integer >= 0"),
    (
        "startup_with_random",
        BASE + "search: {sampler: random, n_startup_trials: 3}\n",
        r"search\.n_startup_trials: applies only",
    ),
    (
        "population_with_tpe",
        BASE + "search: {population_size: 8}\n",
        r"search\.population_size: applies only to sampler nsga2",
    ),
    ("experiment_empty", BASE + "tracking: {experiment: ''}\n", r"tracking\.experiment: empty"),
    ("dataset_not_h5", BASE + "dataset: {source: data/table.csv}\n", r"dataset\.source: 'data/table\.csv' is neither"),
    (
        "generator_with_file",
        BASE + "dataset: {source: data/sky130.h5, generator: {n_devices: 2}}\n",
        r"dataset\.generator: applies only to source: default",
    ),
    ("generator_not_mapping", BASE + "dataset: {generator: [1]}\n", r"dataset\.generator: expected a mapping"),
    ("seed_negative", BASE + "seed: -1\n", r"seed: must lie in \[0, 4294967295\]"),
    ("section_not_mapping", BASE + "search: 20\n", r"search: expected a mapping"),
    ("boolean_key", BASE + "search: {yes: 3}\n", r"search: key true \(a boolean\) is not a string"),
]


def _write(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("text", "match"), [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES])
def test_load_spec_rejects_bad_file(tmp_path: Path, text: str, match: str) -> None:
    path = _write(tmp_path, text)

    with pytest.raises(ConfigError, match=match) as caught:
        load_spec(str(path), known_parameters=KNOWN_PARAMETERS, known_metrics=KNOWN_METRICS)

    assert str(caught.value).startswith(str(path))
    assert "\n" not in str(caught.value)


def test_bad_file_table_covers_enough_cases() -> None:
    assert len(BAD_FILES) >= 20


def test_parse_spec_full_document_values() -> None:
    spec = parse_spec(yaml.safe_load(FULL), "full.yaml")

    assert spec.split.held_out_flavors == ("hv", "hvt")
    assert spec.space[3] == IntParameter(
        key="model/width_2", low=32, high=256, step=32, when=(Condition(key="model/depth", values=(2, 3)),)
    )
    assert spec.fixed["train/lr"] == 1e-3
    assert spec.fixed["downstream/hidden_sizes"] == (64, 32)
    assert spec.search.max_concurrent is None
    assert spec.resources.gpus_per_trial == 0.25
    assert spec.dataset.generator == {"n_devices": 4}


def test_parse_spec_fills_defaults() -> None:
    spec = parse_spec(yaml.safe_load(BASE), "base.yaml")

    assert spec.search == SearchSettings()
    assert spec.split.held_out_flavors == ("hv",)
    assert spec.objective.metrics == ("validation_loss",)
    assert spec.tracking.uri is None
    assert spec.dataset.is_default


def test_parse_spec_single_when_value_becomes_tuple() -> None:
    text = BASE + "  model/width_2: {type: int, low: 32, high: 64, step: 32, when: {model/depth: 2}}\n"

    spec = parse_spec(yaml.safe_load(text), "when.yaml")

    assert spec.space[2].when == (Condition(key="model/depth", values=(2,)),)


def test_parse_spec_error_names_source() -> None:
    with pytest.raises(ConfigError, match=r"^memory\.yaml: search\.n_trials"):
        parse_spec({"space": yaml.safe_load(BASE)["space"], "search": {"n_trials": 0}}, "memory.yaml")


@pytest.mark.parametrize("text", [FULL, BASE], ids=["full", "base"])
def test_spec_round_trip(text: str) -> None:
    spec = parse_spec(yaml.safe_load(text), "round.yaml")

    document = spec_to_dict(spec)
    again = parse_spec(yaml.safe_load(yaml.safe_dump(document, sort_keys=False)), "round.yaml")

    assert again == spec
    assert spec_to_dict(again) == document


def test_save_spec_writes_loadable_yaml(tmp_path: Path) -> None:
    spec = parse_spec(yaml.safe_load(FULL), "full.yaml")
    target = tmp_path / "resolved.yaml"

    save_spec(spec, target)

    assert load_spec(str(target)) == spec
    assert [path.name for path in tmp_path.iterdir()] == ["resolved.yaml"]


@pytest.mark.parametrize("name", ["vae", "vae.yaml", "sky130", "sky130.yaml"])
def test_find_spec_file_bare_name(name: str) -> None:
    path = find_spec_file(name)

    assert path == REPOSITORY / "search_spaces" / (name.removesuffix(".yaml") + ".yaml")


def test_find_spec_file_path(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE, "mine.yaml")

    assert find_spec_file(str(path)) == path


def test_find_spec_file_working_folder_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "search_spaces").mkdir()
    _write(tmp_path / "search_spaces", BASE, "local.yaml")
    monkeypatch.chdir(tmp_path)

    assert find_spec_file("local") == tmp_path / "search_spaces" / "local.yaml"
    assert "local" in spec_names()


def test_find_spec_file_bare_name_in_working_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, BASE, "mine.yaml")
    monkeypatch.chdir(tmp_path)

    assert find_spec_file("mine.yaml") == Path("mine.yaml")


def test_find_spec_file_missing_lists_names() -> None:
    with pytest.raises(ConfigError, match=r"no_such_experiment: experiment file not found.*names: .*sky130, vae"):
        find_spec_file("no_such_experiment")


def test_load_spec_missing_path_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"

    with pytest.raises(ConfigError, match=r"absent\.yaml: experiment file not found"):
        load_spec(str(missing))


@pytest.mark.parametrize("name", ["vae", "sky130"])
def test_shipped_file_parses(name: str) -> None:
    spec = load_spec(name, known_parameters=KNOWN_PARAMETERS, known_metrics=KNOWN_METRICS)

    assert spec.warnings == ()
    assert parse_spec(spec_to_dict(spec), spec.source) == spec


def test_shipped_vae_uses_default_dataset() -> None:
    spec = load_spec("vae")

    assert spec.dataset.is_default
    assert spec.split.held_out_flavors == ("hv",)


def test_shipped_sky130_dataset_path() -> None:
    spec = load_spec("sky130")

    assert spec.dataset.source == "data/sky130.h5"
    assert spec.split.held_out_flavors == ("hv",)


def test_spec_warns_cmaes_with_categorical() -> None:
    spec = parse_spec(
        {
            "space": {"model/activation": {"type": "categorical", "values": ["relu", "gelu"]}},
            "search": {"sampler": "cmaes"},
        },
        "cmaes.yaml",
    )

    assert any("CMA-ES samples the categorical parameters model/activation" in text for text in spec.warnings)


def test_spec_warns_gp_with_conditional() -> None:
    text = (
        BASE
        + "  model/width_2: {type: int, low: 32, high: 64, step: 32, when: {model/depth: 2}}\nsearch: {sampler: gp}\n"
    )

    spec = parse_spec(yaml.safe_load(text), "gp.yaml")

    assert any("conditional parameters model/width_2 at random" in message for message in spec.warnings)


def test_spec_warns_startup_covers_all_trials() -> None:
    spec = parse_spec(yaml.safe_load(BASE + "search: {n_trials: 8}\n"), "tpe.yaml")

    assert any("draws its first 10 trials at random" in message for message in spec.warnings)


def test_spec_accepts_sectionless_seed_parameter() -> None:
    spec = parse_spec(yaml.safe_load(BASE + "fixed: {seed: 4}\n"), "seed.yaml", known_parameters=KNOWN_PARAMETERS)

    assert spec.fixed["seed"] == 4


def test_spec_parameter_keys_order() -> None:
    spec = parse_spec(yaml.safe_load(BASE + "fixed: {train/epochs: 4}\n"), "keys.yaml")

    assert spec.parameter_keys == ("model/depth", "model/width_1", "train/epochs")


def test_spec_equality_ignores_source() -> None:
    first = parse_spec(yaml.safe_load(BASE), "a.yaml")
    second = parse_spec(yaml.safe_load(BASE), "b.yaml")

    assert first == second


def test_spec_direct_construction_validates() -> None:
    space = (
        IntParameter(key="model/depth", low=1, high=2),
        CategoricalParameter(
            key="model/activation", values=("relu",), when=(Condition(key="model/depth", values=(3,)),)
        ),
    )
    with pytest.raises(ConfigError, match=r"space\.model/activation\.when\.model/depth: 3 is not a possible value"):
        ExperimentSpec(space=space)


def test_resolve_dataset_path_prefers_experiment_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    experiment_folder = tmp_path / "experiments"
    working_folder = tmp_path / "work"
    for folder in (experiment_folder / "data", working_folder / "data"):
        folder.mkdir(parents=True)
        (folder / "sky130.h5").write_bytes(b"")
    path = _write(experiment_folder, BASE + "dataset: {source: data/sky130.h5}\n", "exp.yaml")

    resolved = resolve_dataset_path(load_spec(str(path)), working_folder=working_folder)

    assert resolved == (experiment_folder / "data" / "sky130.h5").resolve()


def test_resolve_dataset_path_falls_back_to_working_folder(tmp_path: Path) -> None:
    (tmp_path / "work" / "data").mkdir(parents=True)
    (tmp_path / "work" / "data" / "sky130.h5").write_bytes(b"")
    path = _write(tmp_path, BASE + "dataset: {source: data/sky130.h5}\n", "exp.yaml")

    resolved = resolve_dataset_path(load_spec(str(path)), working_folder=tmp_path / "work")

    assert resolved == (tmp_path / "work" / "data" / "sky130.h5").resolve()


def test_resolve_dataset_path_missing(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE + "dataset: {source: data/absent.h5}\n", "exp.yaml")

    with pytest.raises(ConfigError, match=r"dataset\.source: file 'data/absent\.h5' not found"):
        resolve_dataset_path(load_spec(str(path)), working_folder=tmp_path)


def test_resolve_dataset_path_default_is_none() -> None:
    assert resolve_dataset_path(load_spec("vae")) is None


def test_resolve_tracking_uri_default(tmp_path: Path) -> None:
    spec = parse_spec(yaml.safe_load(BASE), "base.yaml")

    assert resolve_tracking_uri(spec, working_folder=tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def test_resolve_tracking_uri_explicit() -> None:
    spec = parse_spec(yaml.safe_load(FULL), "full.yaml")

    assert resolve_tracking_uri(spec) == "http://127.0.0.1:5000"

"""Physical facts and calibration of the synthetic MOSFET generator, on small settings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from circtune.data.dataset import QUANTITIES, Dataset
from circtune.data.synthetic import (
    GENERATOR_VERSION,
    GeneratorSettings,
    ModelParameters,
    SmallSignalParameters,
    device_type,
    drain_current,
    generate,
    instance_parameters,
    small_signal_parameters,
    terminal_charges,
)
from circtune.errors import ConfigError

POSITIVE_CAPACITANCES = ("cgd", "cgs", "cgb", "cdb", "csb")
_STEP_V = 1e-4
_LINEAR_VDS_V = 0.05


def _small_settings(**overrides: object) -> GeneratorSettings:
    values: dict[str, object] = {
        "corners": ["tt", "ff", "ss", "fs", "sf"],
        "temperatures_c": [-40.0, 27.0, 125.0],
        "length_multiples": [1.0],
        "n_mismatch_draws": 1,
        "n_vbs": 3,
        "n_vgs": 6,
        "n_vds": 6,
    }
    values.update(overrides)
    return GeneratorSettings.from_dict(values)


@pytest.fixture(scope="module")
def corner_dataset() -> Dataset:
    """All flavors, polarities, corners and three temperatures, at minimum length and without mismatch."""
    return generate(_small_settings())


def _params(
    flavor: str,
    polarity: str = "n",
    *,
    corner: str = "tt",
    temperature_c: float = 27.0,
    length_multiple: float = 1.0,
) -> ModelParameters:
    length_m = device_type(flavor, polarity).min_length_um * length_multiple * 1e-6
    return instance_parameters(
        [flavor],
        [polarity],
        corner=[corner],
        temperature_c=np.array([temperature_c]),
        length_m=np.array([length_m]),
        width_m=np.array([1e-6]),
        delta_vt_v=np.zeros(1),
        beta_factor=np.ones(1),
    )


def _current(params: ModelParameters, vgs: torch.Tensor, vds: float, vbs: float = 0.0) -> torch.Tensor:
    zero = torch.zeros_like(vgs)
    return drain_current(params, vgs, zero + vds, zero, zero + vbs)


def _grid(rated_v: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return NMOS-frame Vgs ``(1, 1, G, 1)``, Vds ``(1, 1, 1, D)`` and Vbs ``(1, B, 1, 1)``."""
    vgs = torch.linspace(0.0, rated_v, 13, dtype=torch.float64).reshape(1, 1, -1, 1)
    vds = torch.linspace(0.0, rated_v, 13, dtype=torch.float64).reshape(1, 1, 1, -1)
    vbs = torch.linspace(0.0, -rated_v / 2, 3, dtype=torch.float64).reshape(1, -1, 1, 1)
    return vgs, vds, vbs


def _extrapolated_threshold(params: ModelParameters, rated_v: float) -> float:
    """Threshold by linear extrapolation at maximum gm, at Vds = 50 mV."""
    vgs = torch.linspace(0.0, rated_v, 4001, dtype=torch.float64)
    current = _current(params, vgs, _LINEAR_VDS_V)
    gm = torch.gradient(current, spacing=(vgs,))[0]
    peak = int(torch.argmax(gm))
    return float(vgs[peak] - current[peak] / gm[peak] - _LINEAR_VDS_V / 2)


def _constant_current_threshold(params: ModelParameters, rated_v: float, vds: float, current_a: float) -> float:
    vgs = torch.linspace(0.0, rated_v, 20001, dtype=torch.float64)
    current = _current(params, vgs, vds)
    return float(np.interp(math.log(current_a), np.log(current.numpy()), vgs.numpy()))


def _select(dataset: Dataset, **columns: object) -> np.ndarray:
    """Return the indices of the samples whose metadata match ``columns``."""
    mask = np.ones(dataset.n_samples, dtype=bool)
    for name, value in columns.items():
        mask &= getattr(dataset.metadata, name) == value
    return np.flatnonzero(mask)


def _only(dataset: Dataset, **columns: object) -> int:
    (index,) = _select(dataset, **columns)
    return int(index)


# Physics: derivatives


@pytest.mark.parametrize(("flavor", "polarity"), [("svt", "n"), ("lvt", "p"), ("hv", "n")])
@pytest.mark.parametrize(("quantity", "axis"), [("gm", "vgs"), ("gds", "vds"), ("gb", "vbs")])
def test_conductance_matches_finite_difference(flavor: str, polarity: str, quantity: str, axis: str) -> None:
    params = _params(flavor, polarity).reshape(-1, 1, 1, 1)
    voltages = dict(zip(("vgs", "vds", "vbs"), _grid(device_type(flavor, polarity).rated_voltage_v), strict=True))
    exact = getattr(small_signal_parameters(params, **voltages), quantity)

    def current(offset_v: float) -> torch.Tensor:
        shifted = {**voltages, axis: voltages[axis] + offset_v}
        shape = torch.broadcast_shapes(*(value.shape for value in shifted.values()))
        vg, vd, vb = (shifted[name].expand(shape) for name in ("vgs", "vds", "vbs"))
        return drain_current(params, vg, vd, torch.zeros(shape, dtype=torch.float64), vb)

    difference = (current(_STEP_V) - current(-_STEP_V)) / (2 * _STEP_V)
    significant = exact > 1e-3 * exact.max()
    assert significant.sum() > 20
    relative = ((difference - exact).abs() / exact)[significant]
    assert float(relative.max()) < 1e-2


@pytest.mark.parametrize(
    ("quantity", "charge", "terminal"),
    [
        ("cgd", "gate", "vd"),
        ("cgs", "gate", "vs"),
        ("cgb", "gate", "vb"),
        ("cds", "drain", "vs"),
        ("cdb", "drain", "vb"),
        ("csb", "source", "vb"),
    ],
)
def test_capacitance_matches_charge_difference(quantity: str, charge: str, terminal: str) -> None:
    params = _params("svt").reshape(-1, 1, 1, 1)
    vgs, vds, vbs = _grid(device_type("svt", "n").rated_voltage_v)
    exact = getattr(small_signal_parameters(params, vgs, vds, vbs), quantity)
    shape = exact.shape
    potentials = {"vg": vgs.expand(shape), "vd": vds.expand(shape), "vs": torch.zeros(shape, dtype=torch.float64)}
    potentials["vb"] = vbs.expand(shape)

    def terminal_charge(offset_v: float) -> torch.Tensor:
        shifted = {**potentials, terminal: potentials[terminal] + offset_v}
        return getattr(terminal_charges(params, **shifted), charge)

    difference = -(terminal_charge(_STEP_V) - terminal_charge(-_STEP_V)) / (2 * _STEP_V)
    significant = exact.abs() > 1e-3 * exact.abs().max()
    relative = ((difference - exact).abs() / exact.abs())[significant]
    assert float(relative.max()) < 1e-2


def test_terminal_charges_sum_to_zero() -> None:
    params = _params("hv").reshape(-1, 1, 1, 1)
    vgs, vds, vbs = _grid(device_type("hv", "n").rated_voltage_v)
    shape = torch.broadcast_shapes(vgs.shape, vds.shape, vbs.shape)
    charges = terminal_charges(params, vgs.expand(shape), vds.expand(shape), torch.zeros(shape), vbs.expand(shape))
    total = charges.gate + charges.drain + charges.source + charges.bulk
    assert float(total.abs().max()) < 1e-6 * float(charges.gate.abs().max())


def test_small_signal_fields_follow_quantities() -> None:
    assert SmallSignalParameters._fields == QUANTITIES


def test_drain_current_rises_with_vgs_in_saturation() -> None:
    vgs = torch.linspace(0.0, 1.2, 61, dtype=torch.float64)
    current = _current(_params("svt"), vgs, vds=1.2)
    assert bool((torch.diff(current) > 0).all())


def test_drain_current_rises_with_vds() -> None:
    vds = torch.linspace(0.0, 1.2, 61, dtype=torch.float64)
    current = drain_current(
        _params("svt"), torch.full_like(vds, 0.8), vds, torch.zeros_like(vds), torch.zeros_like(vds)
    )
    assert bool((torch.diff(current) > 0).all())


# Generated dataset: signs, ranges, ordering


def test_generate_shapes_match_settings(corner_dataset: Dataset) -> None:
    settings = _small_settings()
    assert corner_dataset.values.shape == (settings.n_samples, len(QUANTITIES), 3, 6, 6)


def test_default_settings_have_at_least_1000_samples() -> None:
    assert GeneratorSettings().n_samples >= 1000


def test_default_grid_is_11_cubed() -> None:
    settings = GeneratorSettings()
    assert (settings.n_vbs, settings.n_vgs, settings.n_vds) == (11, 11, 11)


def test_generate_values_are_finite(corner_dataset: Dataset) -> None:
    assert bool(np.isfinite(corner_dataset.values).all())


@pytest.mark.parametrize("quantity", POSITIVE_CAPACITANCES)
def test_capacitances_are_positive(corner_dataset: Dataset, quantity: str) -> None:
    assert float(corner_dataset.quantity(quantity).min()) > 0.0


@pytest.mark.parametrize("quantity", ("gm", "gds", "gb"))
def test_conductances_are_not_negative(corner_dataset: Dataset, quantity: str) -> None:
    assert float(corner_dataset.quantity(quantity).min()) >= 0.0


def test_gds_is_positive(corner_dataset: Dataset) -> None:
    assert float(corner_dataset.quantity("gds").min()) > 0.0


def test_gm_is_positive_away_from_zero_vds(corner_dataset: Dataset) -> None:
    assert float(corner_dataset.quantity("gm")[..., 1:].min()) > 0.0


def test_cds_is_negative_in_inversion(corner_dataset: Dataset) -> None:
    # raising the source potential removes channel charge, part of it from the drain's share
    strong = corner_dataset.quantity("cds")[:, 0, -1, :]  # (N, D) at Vbs = 0, Vgs = rated
    assert float(strong.max()) < 0.0


def test_cds_is_not_positive(corner_dataset: Dataset) -> None:
    assert float(corner_dataset.quantity("cds").max()) <= 0.0


def test_nonzero_values_are_normal_float32(corner_dataset: Dataset) -> None:
    magnitudes = np.abs(corner_dataset.values)
    assert float(magnitudes[magnitudes > 0].min()) >= np.finfo(np.float32).tiny


def test_current_is_zero_at_zero_vds(corner_dataset: Dataset) -> None:
    assert float(np.abs(corner_dataset.quantity("ibias")[..., 0]).max()) == 0.0


def test_pmos_current_is_not_positive(corner_dataset: Dataset) -> None:
    pmos = _select(corner_dataset, polarity="p")
    assert float(corner_dataset.quantity("ibias")[pmos].max()) <= 0.0


def test_pmos_current_is_negative_in_saturation(corner_dataset: Dataset) -> None:
    pmos = _select(corner_dataset, polarity="p")
    assert float(corner_dataset.quantity("ibias")[pmos][:, 0, -1, -1].max()) < 0.0


def test_nmos_current_is_not_negative(corner_dataset: Dataset) -> None:
    nmos = _select(corner_dataset, polarity="n")
    assert float(corner_dataset.quantity("ibias")[nmos].min()) >= 0.0


@pytest.mark.parametrize(("axis", "sign"), [("vgs", -1.0), ("vds", -1.0), ("vbs", 1.0)])
def test_pmos_axes_signs(corner_dataset: Dataset, axis: str, sign: float) -> None:
    pmos = _select(corner_dataset, polarity="p")
    assert float((sign * getattr(corner_dataset, axis)[pmos]).min()) >= 0.0


@pytest.mark.parametrize(("axis", "sign"), [("vgs", 1.0), ("vds", 1.0), ("vbs", -1.0)])
def test_nmos_axes_signs(corner_dataset: Dataset, axis: str, sign: float) -> None:
    nmos = _select(corner_dataset, polarity="n")
    assert float((sign * getattr(corner_dataset, axis)[nmos]).min()) >= 0.0


def test_pmos_quantities_other_than_ibias_are_positive(corner_dataset: Dataset) -> None:
    pmos = _select(corner_dataset, polarity="p")
    values = corner_dataset.values[pmos][:, [QUANTITIES.index(name) for name in ("gds", *POSITIVE_CAPACITANCES)]]
    assert float(values.min()) > 0.0


def test_vbs_axis_starts_at_zero(corner_dataset: Dataset) -> None:
    assert float(np.abs(corner_dataset.vbs[:, 0]).max()) == 0.0


@pytest.mark.parametrize("polarity", ["n", "p"])
def test_hv_axes_reach_5_volts(corner_dataset: Dataset, polarity: str) -> None:
    hv = _select(corner_dataset, flavor="hv", polarity=polarity)
    assert np.abs(corner_dataset.vds[hv, -1]) == pytest.approx(5.0)
    assert np.abs(corner_dataset.vgs[hv, -1]) == pytest.approx(5.0)


def test_hv_lengths_are_at_least_half_a_micron() -> None:
    dataset = generate(_small_settings(flavors=["hv"], corners=["tt"], temperatures_c=[27.0], length_multiples=[1, 2]))
    assert float(dataset.metadata.length_m.min()) >= 0.5e-6


@pytest.mark.parametrize("polarity", ["n", "p"])
def test_flavor_current_order(corner_dataset: Dataset, polarity: str) -> None:
    # at Vgs = 0.48 V, Vds = 1.2 V, Vbs = 0, tt, 27 C: lvt > svt > hvt
    currents = [
        abs(float(corner_dataset.quantity("ibias")[index, 0, 2, -1]))
        for flavor in ("lvt", "svt", "hvt")
        for index in [_only(corner_dataset, flavor=flavor, polarity=polarity, corner="tt", temperature_c=27.0)]
    ]
    assert currents[0] > currents[1] > currents[2]


@pytest.mark.parametrize("polarity", ["n", "p"])
@pytest.mark.parametrize("flavor", ["svt", "hv"])
def test_corner_current_order(corner_dataset: Dataset, flavor: str, polarity: str) -> None:
    currents = [
        abs(float(corner_dataset.quantity("ibias")[index, 0, -1, -1]))
        for corner in ("ff", "tt", "ss")
        for index in [_only(corner_dataset, flavor=flavor, polarity=polarity, corner=corner, temperature_c=27.0)]
    ]
    assert currents[0] > currents[1] > currents[2]


@pytest.mark.parametrize(("corner", "faster"), [("fs", "n"), ("sf", "p")])
def test_skewed_corner_speeds_one_polarity(corner_dataset: Dataset, corner: str, faster: str) -> None:
    ratios = {}
    for polarity in ("n", "p"):
        skewed = _only(corner_dataset, flavor="svt", polarity=polarity, corner=corner, temperature_c=27.0)
        typical = _only(corner_dataset, flavor="svt", polarity=polarity, corner="tt", temperature_c=27.0)
        ibias = corner_dataset.quantity("ibias")
        ratios[polarity] = float(ibias[skewed, 0, -1, -1] / ibias[typical, 0, -1, -1])
    slower = "p" if faster == "n" else "n"
    assert ratios[faster] > 1.0
    assert ratios[slower] < 1.0


def test_low_vgs_current_rises_with_temperature(corner_dataset: Dataset) -> None:
    currents = [
        float(corner_dataset.quantity("ibias")[index, 0, 1, -1])
        for temperature in (-40.0, 27.0, 125.0)
        for index in [_only(corner_dataset, flavor="svt", polarity="n", corner="tt", temperature_c=temperature)]
    ]
    assert currents[0] < currents[1] < currents[2]


def test_reverse_body_bias_lowers_current(corner_dataset: Dataset) -> None:
    index = _only(corner_dataset, flavor="svt", polarity="n", corner="tt", temperature_c=27.0)
    ibias = corner_dataset.quantity("ibias")[index, :, -1, -1]  # (B,)
    assert bool((np.diff(ibias) < 0).all())


# Settings, determinism, provenance


def test_same_seed_gives_identical_values() -> None:
    settings = _small_settings(corners=["tt"], temperatures_c=[27.0], n_mismatch_draws=3, seed=5)
    assert np.array_equal(generate(settings).values, generate(settings).values)


def test_different_seed_changes_mismatch_draws() -> None:
    first = generate(_small_settings(corners=["tt"], temperatures_c=[27.0], n_mismatch_draws=3, seed=1))
    second = generate(_small_settings(corners=["tt"], temperatures_c=[27.0], n_mismatch_draws=3, seed=2))
    drawn = first.metadata.mismatch_draw > 0
    assert not np.array_equal(first.values[drawn], second.values[drawn])


def test_different_seed_keeps_nominal_draw() -> None:
    first = generate(_small_settings(corners=["tt"], temperatures_c=[27.0], n_mismatch_draws=2, seed=1))
    second = generate(_small_settings(corners=["tt"], temperatures_c=[27.0], n_mismatch_draws=2, seed=2))
    nominal = first.metadata.mismatch_draw == 0
    assert np.array_equal(first.values[nominal], second.values[nominal])


def test_mismatch_spread_follows_pelgrom() -> None:
    settings = _small_settings(
        flavors=["svt"], polarities=["n"], corners=["tt"], temperatures_c=[27.0], n_mismatch_draws=400, n_vgs=2
    )
    dataset = generate(settings)
    drawn = dataset.metadata.mismatch_draw > 0
    nominal = _only(dataset, mismatch_draw=0)
    # the subthreshold current at Vgs = 0 is exp(-dVt / (n Ut)) times nominal, and n Ut = ibias / gm
    log_current = np.log(dataset.quantity("ibias")[drawn, 0, 0, -1])
    slope_v = float(dataset.quantity("ibias")[nominal, 0, 0, -1] / dataset.quantity("gm")[nominal, 0, 0, -1])
    sigma_vt_v = float(np.std(log_current)) * slope_v
    expected_v = 4.5e-3 / math.sqrt(0.13)
    assert sigma_vt_v == pytest.approx(expected_v, rel=0.2)


def test_batch_size_does_not_change_values() -> None:
    settings = _small_settings(corners=["tt", "ff"], temperatures_c=[27.0], n_mismatch_draws=2)
    batched = generate(GeneratorSettings.from_dict({**settings.to_dict(), "samples_per_batch": 3}))
    assert np.array_equal(generate(settings).values, batched.values)


def test_progress_reports_each_batch() -> None:
    calls: list[tuple[int, int]] = []
    settings = _small_settings(corners=["tt"], temperatures_c=[27.0], samples_per_batch=3)
    generate(settings, progress=lambda done, total: calls.append((done, total)))
    assert len(calls) == math.ceil(settings.n_samples / 3)
    assert calls[-1] == (settings.n_samples, settings.n_samples)


def test_attrs_record_generator_and_settings(corner_dataset: Dataset) -> None:
    assert corner_dataset.attrs == {
        "generator": "circtune.data.synthetic",
        "generator_version": GENERATOR_VERSION,
        "settings": _small_settings().to_dict(),
    }


def test_metadata_names_devices(corner_dataset: Dataset) -> None:
    assert set(corner_dataset.metadata.device.tolist()) == {
        f"{polarity}mos_{flavor}" for flavor in ("lvt", "svt", "hvt", "hv") for polarity in "np"
    }
    assert set(corner_dataset.metadata.technology.tolist()) == {"circtune-ekv"}


def test_settings_round_trip_through_dict() -> None:
    settings = _small_settings(seed=3)
    assert GeneratorSettings.from_dict(settings.to_dict()) == settings


def test_from_dict_rejects_unknown_key() -> None:
    with pytest.raises(ConfigError, match="unknown generator setting 'n_vgs_points'"):
        GeneratorSettings.from_dict({"n_vgs_points": 11})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("n_vgs", 1, "'n_vgs' must be an integer >= 2"),
        ("n_vds", 2.5, "'n_vds' must be an integer >= 2"),
        ("seed", -1, "'seed' must be an integer >= 0"),
        ("flavors", ["svt", "xvt"], "'flavors' must be a non-empty list"),
        ("corners", [], "'corners' must be a non-empty list"),
        ("temperatures_c", [27.0, 27.0], "'temperatures_c' must be a non-empty list of distinct numbers"),
        ("temperatures_c", [400.0], "'temperatures_c' must be a number from -55 to 175"),
        ("length_multiples", [0.5], "'length_multiples' must be a number from 1 to"),
        ("width_um", 0.0, "'width_um' must be a number"),
        ("max_reverse_body_bias", 0.0, "'max_reverse_body_bias' must be above 0"),
    ],
)
def test_settings_reject_invalid_value(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GeneratorSettings.from_dict({key: value})


# Calibration against public 130 nm magnitudes


@pytest.mark.parametrize("flavor", ["lvt", "svt", "hvt", "hv"])
@pytest.mark.parametrize("polarity", ["n", "p"])
def test_subthreshold_swing_at_27c(flavor: str, polarity: str) -> None:
    rated_v = device_type(flavor, polarity).rated_voltage_v
    vgs = torch.linspace(0.0, rated_v, 2001, dtype=torch.float64)
    current = _current(_params(flavor, polarity), vgs, rated_v)
    swing_v_per_decade = math.log(10) * current / torch.gradient(current, spacing=(vgs,))[0]
    assert 0.070 <= float(swing_v_per_decade.min()) <= 0.090


@pytest.mark.parametrize("flavor", ["lvt", "svt", "hvt", "hv"])
@pytest.mark.parametrize("polarity", ["n", "p"])
def test_threshold_temperature_slope(flavor: str, polarity: str) -> None:
    rated_v = device_type(flavor, polarity).rated_voltage_v
    cold_v = _extrapolated_threshold(_params(flavor, polarity, temperature_c=-40.0), rated_v)
    hot_v = _extrapolated_threshold(_params(flavor, polarity, temperature_c=125.0), rated_v)
    slope_mv_per_k = (cold_v - hot_v) / 165.0 * 1e3
    assert 0.5 <= slope_mv_per_k <= 0.9


@pytest.mark.parametrize("polarity", ["n", "p"])
@pytest.mark.parametrize(("lower", "higher"), [("lvt", "svt"), ("svt", "hvt")])
def test_flavor_threshold_step(polarity: str, lower: str, higher: str) -> None:
    lower_v = _extrapolated_threshold(_params(lower, polarity), 1.2)
    higher_v = _extrapolated_threshold(_params(higher, polarity), 1.2)
    assert higher_v - lower_v == pytest.approx(0.10, abs=0.02)


def test_hv_threshold_near_0_7_volts() -> None:
    assert _extrapolated_threshold(_params("hv"), 5.0) == pytest.approx(0.7, abs=0.05)


def test_nmos_drive_current_per_micron() -> None:
    current_a = float(_current(_params("svt"), torch.tensor([1.2], dtype=torch.float64), 1.2)[0])
    assert current_a == pytest.approx(0.44e-3, rel=0.1)


@pytest.mark.parametrize("flavor", ["svt", "hv"])
def test_pmos_is_two_to_three_times_weaker(flavor: str) -> None:
    rated_v = device_type(flavor, "n").rated_voltage_v
    full = torch.tensor([rated_v], dtype=torch.float64)
    ratio = float(_current(_params(flavor, "n"), full, rated_v)[0] / _current(_params(flavor, "p"), full, rated_v)[0])
    assert 2.0 <= ratio <= 3.0


@pytest.mark.parametrize(("length_multiple", "low_mv_per_v", "high_mv_per_v"), [(1.0, 50.0, 75.0), (5.0, 15.0, 30.0)])
def test_core_dibl_range(length_multiple: float, low_mv_per_v: float, high_mv_per_v: float) -> None:
    params = _params("svt", length_multiple=length_multiple)
    criterion_a = 1e-7 / (0.13 * length_multiple)  # 100 nA times W/L
    linear_v = _constant_current_threshold(params, 1.2, _LINEAR_VDS_V, criterion_a)
    saturated_v = _constant_current_threshold(params, 1.2, 1.2, criterion_a)
    dibl_mv_per_v = (linear_v - saturated_v) / (1.2 - _LINEAR_VDS_V) * 1e3
    assert low_mv_per_v <= dibl_mv_per_v <= high_mv_per_v


def test_oxide_capacitance_of_core_flavor() -> None:
    # in strong inversion at Vds = 0, cgs + cgd + cgb is Cox W L plus the overlaps
    svt = device_type("svt", "n")
    length_um = 5.0 * svt.min_length_um
    point = small_signal_parameters(
        _params("svt", length_multiple=5.0),
        torch.tensor([1.2], dtype=torch.float64),
        torch.zeros(1, dtype=torch.float64),
        torch.zeros(1, dtype=torch.float64),
    )
    overlaps_ff = 2 * svt.overlap_ff_per_um + svt.gate_bulk_overlap_ff_per_um * length_um
    gate_ff = float(point.cgs[0] + point.cgd[0] + point.cgb[0]) * 1e15
    cox_ff_per_um2 = (gate_ff - overlaps_ff) / length_um
    assert cox_ff_per_um2 == pytest.approx(11.0, rel=0.05)

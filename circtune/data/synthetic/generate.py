"""Generate the synthetic dataset: settings, sample table, sweeps and batching.

One sample is one device instance in one condition. Samples cover every
combination of flavor, polarity, corner, temperature, length and mismatch
draw, nested in that order, so the draw varies fastest. Draw 0 is the
nominal instance. Each other draw takes its own Pelgrom threshold and beta
deviates, so no two samples share a mismatch instance.

Sweeps, per sample, scaled to the flavor's rated voltage V: every axis starts
at 0 V and grows in magnitude. NMOS: Vgs and Vds rise from 0 to V, Vbs falls
from 0 to ``-max_reverse_body_bias * V``. PMOS: Vgs and Vds fall from 0 to
-V, Vbs rises from 0 to ``+max_reverse_body_bias * V``, and ibias is
negative. So index 0 of the Vbs axis is always Vbs = 0.

Shape legend: N samples, P quantities, B Vbs points, G Vgs points, D Vds
points. Values are float32 in A, S and F; magnitudes below the smallest
normal float32 (about 1.2e-38) are stored as 0.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import time
from collections.abc import Callable, Mapping

import numpy as np
import torch

from circtune.data.dataset import CORNERS, FLAVORS, METADATA_COLUMNS, POLARITIES, QUANTITIES, Dataset, Metadata
from circtune.data.synthetic.devices import (
    TECHNOLOGY,
    device_name,
    device_type,
    draw_mismatch,
    instance_parameters,
    pelgrom_sigmas,
)
from circtune.data.synthetic.physics import ModelParameters, small_signal_parameters
from circtune.errors import ConfigError

logger = logging.getLogger(__name__)

GENERATOR_NAME = "circtune.data.synthetic"
# Changes whenever the same settings would produce different values.
GENERATOR_VERSION = "1"

_FLOAT32_TINY = float(np.finfo(np.float32).tiny)  # smallest normal float32, about 1.2e-38
_TEMPERATURE_RANGE_C = (-55.0, 175.0)
_MAX_LENGTH_MULTIPLE = 1000.0
_WIDTH_RANGE_UM = (0.1, 1000.0)
_COUNT_MINIMUMS: dict[str, int] = {
    "seed": 0,
    "n_mismatch_draws": 1,
    "n_vbs": 1,
    "n_vgs": 2,
    "n_vds": 2,
    "samples_per_batch": 1,
}
_NAME_CHOICES: dict[str, tuple[str, ...]] = {"flavors": FLAVORS, "polarities": POLARITIES, "corners": CORNERS}
_NUMBER_TUPLES = ("temperatures_c", "length_multiples")
_FLOAT_FIELDS = ("width_um", "avt_mv_um", "abeta_pct_um", "max_reverse_body_bias")


@dataclasses.dataclass(frozen=True)
class GeneratorSettings:
    """Settings of the synthetic generator; the defaults make the default dataset.

    Attributes:
        seed: Seed of the numpy Generator that draws mismatch.
        flavors: Flavors to generate, a subset of ``FLAVORS``.
        polarities: Polarities to generate, a subset of ``POLARITIES``.
        corners: Process corners, a subset of ``CORNERS``.
        temperatures_c: Temperatures in degrees Celsius, within -55 to 175.
        length_multiples: Channel lengths as multiples (at least 1) of each
            flavor's minimum length: 0.13 um for the core flavors and 0.5 um
            for hv.
        width_um: Channel width in micrometres.
        n_mismatch_draws: Mismatch draws per device and condition,
            including the nominal draw 0.
        avt_mv_um: Pelgrom threshold coefficient A_VT in mV um.
        abeta_pct_um: Pelgrom coefficient of the relative mobility
            mismatch, A_beta, in % um.
        n_vbs: Vbs grid points (B); 1 gives only Vbs = 0.
        n_vgs: Vgs grid points (G).
        n_vds: Vds grid points (D).
        max_reverse_body_bias: Largest |Vbs| as a fraction of the rated
            voltage, in (0, 1].
        samples_per_batch: Samples per autograd pass; sets memory use and
            speed, not the values.
    """

    seed: int = 0
    flavors: tuple[str, ...] = FLAVORS
    polarities: tuple[str, ...] = POLARITIES
    corners: tuple[str, ...] = CORNERS
    temperatures_c: tuple[float, ...] = (-40.0, 27.0, 125.0)
    length_multiples: tuple[float, ...] = (1.0, 2.0, 5.0)
    width_um: float = 1.0
    n_mismatch_draws: int = 3
    avt_mv_um: float = 4.5
    abeta_pct_um: float = 1.0
    n_vbs: int = 11
    n_vgs: int = 11
    n_vds: int = 11
    max_reverse_body_bias: float = 0.5
    samples_per_batch: int = 64

    def __post_init__(self) -> None:
        for name, minimum in _COUNT_MINIMUMS.items():
            _check_count(name, getattr(self, name), minimum)
        for name, allowed in _NAME_CHOICES.items():
            object.__setattr__(self, name, _check_names(name, getattr(self, name), allowed))
        for name in _NUMBER_TUPLES:
            object.__setattr__(self, name, _check_numbers(name, getattr(self, name)))
        self._check_ranges()

    @property
    def n_samples(self) -> int:
        """Number of samples these settings generate, without generating them."""
        return (
            math.prod(
                len(group)
                for group in (self.flavors, self.polarities, self.corners, self.temperatures_c, self.length_multiples)
            )
            * self.n_mismatch_draws
        )

    def to_dict(self) -> dict[str, object]:
        """Return the settings as a JSON-serializable dict (tuples become lists)."""
        return {
            field.name: list(value) if isinstance(value := getattr(self, field.name), tuple) else value
            for field in dataclasses.fields(self)
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> GeneratorSettings:
        """Build settings from a mapping such as parsed YAML; missing keys keep their defaults.

        Raises:
            ConfigError: If a key is unknown or a value is invalid.
        """
        known = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(str(key) for key in values if key not in known)
        if unknown:
            raise ConfigError(f"unknown generator setting {unknown[0]!r}; valid settings are {known}")
        converted = {key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}
        return cls(**converted)  # type: ignore[arg-type]

    def _check_ranges(self) -> None:
        for temperature in self.temperatures_c:
            _check_range("temperatures_c", temperature, *_TEMPERATURE_RANGE_C)
        for multiple in self.length_multiples:
            _check_range("length_multiples", multiple, 1.0, _MAX_LENGTH_MULTIPLE)
        _check_range("width_um", self.width_um, *_WIDTH_RANGE_UM)
        _check_range("avt_mv_um", self.avt_mv_um, 0.0, 100.0)
        _check_range("abeta_pct_um", self.abeta_pct_um, 0.0, 100.0)
        _check_range("max_reverse_body_bias", self.max_reverse_body_bias, 0.0, 1.0)
        for name in _FLOAT_FIELDS:
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.max_reverse_body_bias == 0.0:
            raise ConfigError(
                "generator setting 'max_reverse_body_bias' must be above 0 so the Vbs axis is strictly monotonic; "
                "set it in (0, 1], or set n_vbs to 1 for a Vbs = 0 grid"
            )


def generate(settings: GeneratorSettings, *, progress: Callable[[int, int], None] | None = None) -> Dataset:
    """Generate the synthetic dataset described by ``settings``.

    Args:
        settings: What to generate; the same settings give identical arrays.
        progress: Called as ``progress(done, total)`` in samples after each
            batch.

    Returns:
        A dataset of ``settings.n_samples`` samples with all ten quantities,
        values of shape ``(N, 10, B, G, D)``.
    """
    started_s = time.perf_counter()
    table = _sample_table(settings)
    n_samples = len(table["flavor"])
    rng = np.random.default_rng(settings.seed)
    sigma_vt_v, sigma_beta = pelgrom_sigmas(
        table["width_m"], table["length_m"], avt_mv_um=settings.avt_mv_um, abeta_pct_um=settings.abeta_pct_um
    )
    delta_vt_v, beta_factor = draw_mismatch(rng, sigma_vt_v, sigma_beta, table["mismatch_draw"])
    params = instance_parameters(
        table["flavor"],
        table["polarity"],
        corner=table["corner"],
        temperature_c=table["temperature_c"],
        length_m=table["length_m"],
        width_m=table["width_m"],
        delta_vt_v=delta_vt_v,
        beta_factor=beta_factor,
    )
    sign = np.where(table["polarity"] == "n", 1.0, -1.0)  # (N,)
    vbs, vgs, vds = _voltage_axes(settings, table["rated_voltage_v"], sign)

    values = np.empty((n_samples, len(QUANTITIES), settings.n_vbs, settings.n_vgs, settings.n_vds), dtype=np.float32)
    for start in range(0, n_samples, settings.samples_per_batch):
        stop = min(start + settings.samples_per_batch, n_samples)
        values[start:stop] = _evaluate_batch(params, sign, vbs, vgs, vds, slice(start, stop))
        if progress is not None:
            progress(stop, n_samples)

    logger.info("Generated %d synthetic samples in %.1f s", n_samples, time.perf_counter() - started_s)
    return Dataset(
        values=values,
        quantities=QUANTITIES,
        vbs=vbs,
        vgs=vgs,
        vds=vds,
        metadata=Metadata.from_columns({name: table[name] for name in METADATA_COLUMNS}),
        attrs={"generator": GENERATOR_NAME, "generator_version": GENERATOR_VERSION, "settings": settings.to_dict()},
    )




def _sample_table(settings: GeneratorSettings) -> dict[str, np.ndarray]:
    """Return one column per sample property, samples in nesting order."""
    rows = list(
        itertools.product(
            settings.flavors,
            settings.polarities,
            settings.corners,
            settings.temperatures_c,
            settings.length_multiples,
            range(settings.n_mismatch_draws),
        )
    )
    flavor, polarity, corner, temperature_c, multiple, draw = (np.array(column) for column in zip(*rows, strict=True))
    types = [device_type(name, pol) for name, pol in zip(flavor, polarity, strict=True)]
    min_length_um = np.array([entry.min_length_um for entry in types])
    return {
        "technology": np.full(len(rows), TECHNOLOGY),
        "device": np.array([device_name(name, pol) for name, pol in zip(flavor, polarity, strict=True)]),
        "flavor": flavor,
        "polarity": polarity,
        "corner": corner,
        "temperature_c": temperature_c.astype(np.float64),
        "length_m": min_length_um * multiple.astype(np.float64) * 1e-6,
        "width_m": np.full(len(rows), settings.width_um * 1e-6),
        "mismatch_draw": draw.astype(np.int64),
        "rated_voltage_v": np.array([entry.rated_voltage_v for entry in types]),
    }


def _voltage_axes(
    settings: GeneratorSettings, rated_voltage_v: np.ndarray, sign: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return signed ``(N, B)`` Vbs, ``(N, G)`` Vgs and ``(N, D)`` Vds axes, each starting at 0 V."""
    scale_v = (sign * rated_voltage_v)[:, None]  # (N, 1)
    vbs = -settings.max_reverse_body_bias * scale_v * np.linspace(0.0, 1.0, settings.n_vbs)[None, :]
    vgs = scale_v * np.linspace(0.0, 1.0, settings.n_vgs)[None, :]
    vds = scale_v * np.linspace(0.0, 1.0, settings.n_vds)[None, :]
    return vbs + 0.0, vgs, vds  # + 0.0 turns -0.0 into 0.0


def _evaluate_batch(
    params: ModelParameters,
    sign: np.ndarray,
    vbs: np.ndarray,
    vgs: np.ndarray,
    vds: np.ndarray,
    batch: slice,
) -> np.ndarray:
    """Return the ``(n, P, B, G, D)`` float32 values of the samples in ``batch``."""
    frame = torch.from_numpy(sign[batch])  # (n,) NMOS-frame mirror: +1 NMOS, -1 PMOS
    mirror = frame[:, None]  # (n, 1)
    batch_params = params.take(batch).reshape(-1, 1, 1, 1)
    quantities = small_signal_parameters(
        batch_params,
        vgs=(mirror * torch.from_numpy(vgs[batch]))[:, None, :, None],  # (n, 1, G, 1)
        vds=(mirror * torch.from_numpy(vds[batch]))[:, None, None, :],  # (n, 1, 1, D)
        vbs=(mirror * torch.from_numpy(vbs[batch]))[:, :, None, None],  # (n, B, 1, 1)
    )
    stacked = torch.stack(tuple(quantities), dim=1)  # (n, P, B, G, D)
    stacked[:, QUANTITIES.index("ibias")] *= frame[:, None, None, None]
    values = stacked.to(torch.float32).numpy()
    # subnormals (cds deep in cut-off) and the -0.0 of mirrored PMOS currents become 0.0
    values[np.abs(values) < _FLOAT32_TINY] = 0.0
    return values


def _check_count(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"generator setting {name!r} must be an integer >= {minimum}, but got {value!r}")


def _check_names(name: str, value: object, allowed: tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(value) if isinstance(value, list | tuple) else ()
    invalid = [entry for entry in names if entry not in allowed]
    if not names or invalid or len(set(names)) != len(names):
        raise ConfigError(
            f"generator setting {name!r} must be a non-empty list of distinct values from {list(allowed)}, "
            f"but got {value!r}"
        )
    return names


def _check_numbers(name: str, value: object) -> tuple[float, ...]:
    entries = tuple(value) if isinstance(value, list | tuple) else ()
    numeric = all(isinstance(entry, int | float) and not isinstance(entry, bool) for entry in entries)
    if not entries or not numeric or len(set(entries)) != len(entries):
        raise ConfigError(f"generator setting {name!r} must be a non-empty list of distinct numbers, but got {value!r}")
    return tuple(float(entry) for entry in entries)


def _check_range(name: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"generator setting {name!r} must be a number from {low:g} to {high:g}, but got {value!r}")

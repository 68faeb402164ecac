"""Simulate a characterization dataset with ngspice, in parallel and resumably.

One sample is one instance (device, length, width, mismatch draw) in one
condition (corner, temperature). Samples are simulated in jobs: one job is
one device, corner and temperature with up to ``instances_per_run``
instances, run by one ngspice process. Jobs run on a process pool over all
cores, or as tasks on a Ray cluster.

Resuming: every finished job is written atomically to
``<output>.parts/<key>.npz``, where the key is a hash of everything that
determines the job's tables (instances, mismatch values, grid, corner,
temperature, ngspice and PDK package versions). A rerun with the same
settings skips the jobs whose part exists, so an interrupted run loses at
most the jobs in flight and never stores a table twice. At the end the
parts are merged in job order into the output file, which is written
atomically, and the parts folder is removed. A lock file keeps two runs from
sharing one parts folder.

Mismatch: draw 0 is the nominal instance. Draw k > 0 adds ``delvto`` ~
N(0, A_VT / sqrt(W L)) and sets ``mulu0`` = 1 + N(0, A_beta / sqrt(W L)),
from a generator seeded by the seed, PDK, device, length, width and k. So
one draw is the same physical instance in every corner and temperature.
A_VT and A_beta are per-transistor standard deviations times sqrt(area),
in mV um and % um.

Failed samples: an instance that does not converge at some bias point is
dropped with a warning and listed in the output's ``failed_samples``
attribute and in a closing log summary. No number of it is written. A run
in which every instance fails raises ``DataError``.

Shape legend: N samples, P quantities, B Vbs points, G Vgs points, D Vds
points.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import math
import multiprocessing
import os
import shutil
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import h5py
import numpy as np

from circtune import __version__
from circtune.data.dataset import METADATA_COLUMNS, QUANTITIES, Dataset, Metadata
from circtune.data.h5format import atomic_path, write_dataset
from circtune.data.ngspice import pdk as pdk_catalogue
from circtune.data.ngspice.netlist import AC_FREQUENCY_HZ, SIMULATOR_OPTIONS, InstanceParams, SweepGrid
from circtune.data.ngspice.runner import DEFAULT_TIMEOUT_S, ngspice_executable, ngspice_version, run_batch
from circtune.errors import ConfigError, DataError, ServiceError

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

GENERATOR = "circtune.data.ngspice"
DEFAULT_GRID_POINTS = 11  # points per axis of a BOMB-style table
PARTS_SUFFIX = ".parts"
_PART_FORMAT_VERSION = 1
_TEMPERATURE_RANGE_C = (-60.0, 200.0)
_LOCK_NAME = ".lock"
_SCRATCH_NAME = "scratch"


@dataclasses.dataclass(frozen=True)
class SimulationSettings:
    """Settings of one simulation run, validated when built.

    Attributes:
        pdk: Catalogue PDK, ``"sky130"`` or ``"gf180mcu"``.
        devices: Catalogue device names; empty means every device of the PDK.
        corners: Process corners, from tt, ff, ss, fs, sf.
        temperatures_c: Temperatures in degrees Celsius.
        lengths_m: Channel lengths in metres: one sequence for every
            device, a mapping from device name to its lengths, or None for
            each device's catalogue defaults (1, 2 and 4 times its minimum).
            Each length must lie in a model bin (checked by ``simulate``).
        widths_m: Channel widths in metres, for every device.
        n_mismatch_draws: Instances per geometry; draw 0 is nominal.
        avt_mv_um: Pelgrom threshold coefficient A_VT in mV um.
        abeta_pct_um: Pelgrom coefficient of the relative mobility, % um.
        n_vbs: Vbs points (B), at least 1.
        n_vgs: Vgs points (G), at least 2.
        n_vds: Vds points (D), at least 2.
        seed: Seed of the mismatch draws.
        workers: Parallel ngspice processes; 0 uses every core.
        instances_per_run: Maximum number of instances that one ngspice
            process simulates.
        timeout_s: Wall-clock limit of one ngspice process in seconds.
    """

    pdk: str = "sky130"
    devices: tuple[str, ...] = ()
    corners: tuple[str, ...] = ("tt",)
    temperatures_c: tuple[float, ...] = (27.0,)
    lengths_m: Mapping[str, Sequence[float]] | Sequence[float] | None = None
    widths_m: tuple[float, ...] = (1e-6,)
    n_mismatch_draws: int = 1
    avt_mv_um: float = 4.5
    abeta_pct_um: float = 1.0
    n_vbs: int = DEFAULT_GRID_POINTS
    n_vgs: int = DEFAULT_GRID_POINTS
    n_vds: int = DEFAULT_GRID_POINTS
    seed: int = 0
    workers: int = 0
    instances_per_run: int = 16
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        spec = pdk_catalogue.get_pdk(self.pdk)
        devices = tuple(self.devices) or tuple(spec.devices)
        for device in devices:
            pdk_catalogue.get_device(self.pdk, device)
        object.__setattr__(self, "devices", _unique(devices, "devices"))
        corners = tuple(pdk_catalogue.check_corner(self.pdk, corner) for corner in self.corners)
        object.__setattr__(self, "corners", _unique(corners, "corners"))
        temperatures = tuple(_number(value, "temperatures_c", *_TEMPERATURE_RANGE_C) for value in self.temperatures_c)
        object.__setattr__(self, "temperatures_c", _unique(temperatures, "temperatures_c"))
        widths = tuple(_number(value, "widths_m", 1e-9, 1e-3) for value in self.widths_m)
        object.__setattr__(self, "widths_m", _unique(widths, "widths_m"))
        object.__setattr__(self, "lengths_m", self._normalized_lengths(spec))
        for name, low, high in (("avt_mv_um", 0.0, 50.0), ("abeta_pct_um", 0.0, 20.0), ("timeout_s", 1.0, 86400.0)):
            object.__setattr__(self, name, _number(getattr(self, name), name, low, high))
        for name, low in (
            ("n_mismatch_draws", 1),
            ("n_vbs", 1),
            ("n_vgs", 2),
            ("n_vds", 2),
            ("seed", 0),
            ("workers", 0),
            ("instances_per_run", 1),
        ):
            _integer(getattr(self, name), name, low)

    @property
    def device_lengths_m(self) -> dict[str, tuple[float, ...]]:
        """Lengths in metres of each device."""
        assert isinstance(self.lengths_m, Mapping)
        return {device: tuple(lengths) for device, lengths in self.lengths_m.items()}

    def to_dict(self) -> dict[str, object]:
        """Return the settings as JSON-serializable values."""
        values = dataclasses.asdict(self)
        values["lengths_m"] = {device: list(lengths) for device, lengths in self.device_lengths_m.items()}
        return values

    def _normalized_lengths(self, spec: pdk_catalogue.PdkSpec) -> dict[str, tuple[float, ...]]:
        if self.lengths_m is None:
            requested: Mapping[str, Sequence[float]] = {
                name: spec.devices[name].default_lengths_m for name in self.devices
            }
        elif isinstance(self.lengths_m, Mapping):
            unknown = sorted(set(self.lengths_m) - set(self.devices))
            missing = [name for name in self.devices if name not in self.lengths_m]
            if unknown or missing:
                raise ConfigError(
                    f"lengths_m has entries for {unknown} that are not simulated and none for {missing}; "
                    "give lengths for exactly the simulated devices"
                )
            requested = self.lengths_m
        else:
            requested = {name: tuple(self.lengths_m) for name in self.devices}
        lengths = {}
        for name in self.devices:
            values = tuple(_number(value, f"lengths_m[{name}]", 1e-9, 1e-3) for value in requested[name])
            lengths[name] = _unique(values, f"lengths_m[{name}]")
        return lengths


@dataclasses.dataclass(frozen=True)
class Progress:
    """Progress of a simulation, passed to the ``progress`` callback.

    Attributes:
        done_tables: Tables finished, including resumed and failed ones.
        total_tables: Tables of the whole run.
        resumed_tables: Tables found in parts of an earlier run.
        failed_tables: Tables dropped after a convergence failure.
        elapsed_s: Seconds since this run started.
    """

    done_tables: int
    total_tables: int
    resumed_tables: int
    failed_tables: int
    elapsed_s: float

    @property
    def tables_per_s(self) -> float:
        """Tables simulated per second in this run (resumed ones excluded)."""
        simulated = self.done_tables - self.resumed_tables
        return simulated / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float:
        """Estimated seconds until the last table; infinite before the first."""
        rate = self.tables_per_s
        return (self.total_tables - self.done_tables) / rate if rate > 0 else math.inf


@dataclasses.dataclass(frozen=True)
class _Job:
    """One ngspice run: up to ``instances_per_run`` instances of one device."""

    key: str
    pdk: str
    pdk_version: str
    ngspice_version: str
    device: str
    corner: str
    temperature_c: float
    instances: tuple[InstanceParams, ...]
    draws: tuple[int, ...]
    grid: SweepGrid
    timeout_s: float


@dataclasses.dataclass(frozen=True)
class _JobResult:
    key: str
    values: np.ndarray  # (k, P, B, G, D) float32, converged instances only
    length_m: np.ndarray  # (k,)
    width_m: np.ndarray  # (k,)
    draw: np.ndarray  # (k,)
    failures: tuple[dict[str, object], ...]


@dataclasses.dataclass(frozen=True)
class _Plan:
    jobs: tuple[_Job, ...]
    installed: pdk_catalogue.InstalledPdk
    ngspice_version: str
    digest: str


def simulate(
    settings: SimulationSettings,
    output_path: str | os.PathLike[str],
    *,
    progress: Callable[[Progress], None] | None = None,
    ray_address: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Simulate the dataset that ``settings`` describe and write it to ``output_path``.

    Args:
        settings: What to simulate.
        output_path: Target HDF5 file; its parts folder ``<output>.parts``
            sits beside it while the run is in progress.
        progress: Called after each finished job, and once at the start.
        ray_address: Address of a Ray cluster (e.g. ``"auto"`` or
            ``"ray://head:10001"``) to run the jobs on; every node needs
            ngspice and the same PDK package. When Ray is already
            initialized in this process, that connection is used. None runs
            on a local process pool.
        overwrite: Replace an existing ``output_path`` that contains other
            data; without it such a file is an error, checked before any
            simulation.

    Returns:
        The path written.

    Raises:
        ConfigError: If a length or width lies outside the model bins, or
            the output exists with other data and ``overwrite`` is false.
        ServiceError: If ngspice, the PDK package or Ray is unavailable.
        DataError: If ngspice rejects a netlist or no table converges.
    """
    output = Path(output_path)
    plan = _plan(settings)
    if _is_complete(output, plan.digest):
        logger.info("%s already contains this simulation; nothing to do", output)
        return output
    if output.exists() and not overwrite:
        raise ConfigError(
            f"output file {output} already exists and contains other data; pass --force to overwrite it "
            "or choose another output path"
        )

    parts = output.with_name(output.name + PARTS_SUFFIX)
    parts.mkdir(parents=True, exist_ok=True)
    try:
        with _locked(parts):
            _prepare_parts(parts)
            _run_pending(plan, parts, settings, progress, ray_address)
            dataset, failures = _merge(plan, parts, settings)
            write_dataset(dataset, output)
    except BaseException:
        # Finished parts stay for the next run to resume from. A folder without any is removed.
        if not _finished_parts(parts):
            shutil.rmtree(parts, ignore_errors=True)
        raise
    shutil.rmtree(parts, ignore_errors=True)
    _log_summary(output, dataset.n_samples, failures)
    return output


def mismatch_parameters(
    settings: SimulationSettings, device: str, length_m: float, width_m: float, draw: int
) -> tuple[float, float]:
    """Return ``(delvto_v, mulu0)`` of one mismatch draw; draw 0 is ``(0.0, 1.0)``.

    The draw depends only on the seed, PDK, device, geometry and draw index.

    Raises:
        ConfigError: If the mobility factor comes out non-positive, which
            only an extreme A_beta on a tiny device can cause.
    """
    if draw == 0:
        return 0.0, 1.0
    identity = json.dumps([settings.pdk, device, repr(float(length_m)), repr(float(width_m))])
    stream = int.from_bytes(hashlib.sha256(identity.encode()).digest()[:8], "little")
    generator = np.random.default_rng([settings.seed, stream, draw])
    root_area_um = math.sqrt(length_m * width_m) * 1e6
    delvto_v = float(generator.normal(0.0, settings.avt_mv_um * 1e-3 / root_area_um))
    mulu0 = 1.0 + float(generator.normal(0.0, settings.abeta_pct_um * 1e-2 / root_area_um))
    if mulu0 <= 0:
        raise ConfigError(
            f"mismatch draw {draw} of {device} (L={length_m:g} m, W={width_m:g} m) gives mulu0={mulu0:.3g}; "
            "lower abeta_pct_um or use a larger device"
        )
    return delvto_v, mulu0


def device_grid(device: pdk_catalogue.DeviceSpec, *, n_vbs: int, n_vgs: int, n_vds: int) -> SweepGrid:
    """Return the signed bias grid of a device, each axis starting at 0 V.

    Vgs and Vds grow in magnitude to the rated voltage and Vbs to half of it
    in reverse bias; PMOS axes are negative except Vbs, which is positive.
    """
    sign = device.sign
    return SweepGrid(
        vbs_v=tuple(-sign * device.max_reverse_body_bias_v * np.linspace(0.0, 1.0, n_vbs) + 0.0),
        vgs_v=tuple(sign * device.rated_voltage_v * np.linspace(0.0, 1.0, n_vgs) + 0.0),
        vds_v=tuple(sign * device.rated_voltage_v * np.linspace(0.0, 1.0, n_vds) + 0.0),
    )


def _plan(settings: SimulationSettings) -> _Plan:
    """Check the environment and the geometry, and list the jobs."""
    installed = pdk_catalogue.locate_pdk(settings.pdk)
    version = ngspice_version(ngspice_executable())
    jobs = []
    for name in settings.devices:
        device = pdk_catalogue.get_device(settings.pdk, name)
        rows = [
            (length, width, draw)
            for length in settings.device_lengths_m[name]
            for width in settings.widths_m
            for draw in range(settings.n_mismatch_draws)
        ]
        for length, width in dict.fromkeys((length, width) for length, width, _ in rows):
            pdk_catalogue.check_geometry(installed, device, length, width)
        instances = [
            InstanceParams(length, width, *mismatch_parameters(settings, name, length, width, draw))
            for length, width, draw in rows
        ]
        draws = [draw for _, _, draw in rows]
        grid = device_grid(device, n_vbs=settings.n_vbs, n_vgs=settings.n_vgs, n_vds=settings.n_vds)
        for corner in settings.corners:
            for temperature_c in settings.temperatures_c:
                for start in range(0, len(rows), settings.instances_per_run):
                    stop = start + settings.instances_per_run
                    jobs.append(
                        _make_job(
                            installed,
                            version,
                            name,
                            corner,
                            temperature_c,
                            tuple(instances[start:stop]),
                            tuple(draws[start:stop]),
                            grid,
                            settings,
                        )
                    )
    digest = hashlib.sha256("\n".join(job.key for job in jobs).encode()).hexdigest()
    return _Plan(jobs=tuple(jobs), installed=installed, ngspice_version=version, digest=digest)


def _make_job(
    installed: pdk_catalogue.InstalledPdk,
    version: str,
    device: str,
    corner: str,
    temperature_c: float,
    instances: tuple[InstanceParams, ...],
    draws: tuple[int, ...],
    grid: SweepGrid,
    settings: SimulationSettings,
) -> _Job:
    identity = {
        "part_format": _PART_FORMAT_VERSION,
        "pdk": [settings.pdk, installed.spec.distribution, installed.version],
        "ngspice": version,
        "device": device,
        "corner": corner,
        "temperature_c": temperature_c,
        "instances": [
            [repr(i.length_m), repr(i.width_m), repr(i.delvto_v), repr(i.mulu0), d]
            for i, d in zip(instances, draws, strict=True)
        ],
        "grid": [list(map(repr, axis)) for axis in (grid.vbs_v, grid.vgs_v, grid.vds_v)],
        "options": [list(option) for option in SIMULATOR_OPTIONS],
        "ac_frequency_hz": AC_FREQUENCY_HZ,
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]
    return _Job(
        key=key,
        pdk=settings.pdk,
        pdk_version=installed.version,
        ngspice_version=version,
        device=device,
        corner=corner,
        temperature_c=temperature_c,
        instances=instances,
        draws=draws,
        grid=grid,
        timeout_s=settings.timeout_s,
    )


def _run_job(job: _Job, scratch_dir: Path | None) -> _JobResult:
    """Simulate one job; runs in a pool process or a Ray worker."""
    installed = pdk_catalogue.locate_pdk(job.pdk)
    version = ngspice_version(ngspice_executable())
    if installed.version != job.pdk_version or version != job.ngspice_version:
        raise ServiceError(
            f"this worker has {installed.spec.distribution} {installed.version} and ngspice {version}, but the run "
            f"was planned with {job.pdk_version} and ngspice {job.ngspice_version}; install the same versions everywhere"
        )
    device = pdk_catalogue.get_device(job.pdk, job.device)
    result = run_batch(
        device,
        job.corner,
        temperature_c=job.temperature_c,
        instances=job.instances,
        grid=job.grid,
        installed=installed,
        timeout_s=job.timeout_s,
        scratch_dir=scratch_dir,
    )
    ok = result.ok
    failures = tuple(
        {
            "device": job.device,
            "corner": job.corner,
            "temperature_c": job.temperature_c,
            "length_m": job.instances[failure.instance].length_m,
            "width_m": job.instances[failure.instance].width_m,
            "mismatch_draw": job.draws[failure.instance],
            "reason": failure.describe(),
        }
        for failure in result.failures
    )
    return _JobResult(
        key=job.key,
        values=result.values[ok].astype(np.float32),
        length_m=np.array([instance.length_m for instance in job.instances])[ok],
        width_m=np.array([instance.width_m for instance in job.instances])[ok],
        draw=np.array(job.draws, dtype=np.int64)[ok],
        failures=failures,
    )


def _run_pending(
    plan: _Plan,
    parts: Path,
    settings: SimulationSettings,
    progress: Callable[[Progress], None] | None,
    ray_address: str | None,
) -> None:
    """Run the jobs that have no part yet, writing each part when it finishes."""
    sizes = {job.key: len(job.instances) for job in plan.jobs}
    pending = [job for job in plan.jobs if _load_part(parts, job.key) is None]
    resumed = sum(sizes.values()) - sum(sizes[job.key] for job in pending)
    if resumed:
        logger.info("resuming: %d of %d tables are done in %s", resumed, sum(sizes.values()), parts)
    start_s = time.monotonic()
    done, failed = resumed, 0

    def report() -> None:
        if progress is not None:
            progress(Progress(done, sum(sizes.values()), resumed, failed, time.monotonic() - start_s))

    report()
    for result in _execute(pending, settings.workers, ray_address, parts / _SCRATCH_NAME):
        _write_part(parts, result)
        done += sizes[result.key]
        failed += len(result.failures)
        report()


def _execute(jobs: Sequence[_Job], workers: int, ray_address: str | None, scratch_dir: Path) -> Iterator[_JobResult]:
    """Yield job results as they finish, on Ray, a process pool or in-process.

    Local runs keep their ngspice run folders in ``scratch_dir``, so the
    next run removes what a killed run left; Ray workers, which may sit on
    other machines, use their own temporary folder.
    """
    if not jobs:
        return
    if ray_address is not None:
        yield from _execute_on_ray(jobs, ray_address)
        return
    n_workers = min(workers or os.cpu_count() or 1, len(jobs))
    if n_workers == 1:
        for job in jobs:
            yield _run_job(job, scratch_dir)
        return
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=n_workers, mp_context=context) as pool:
        futures = [pool.submit(_run_job, job, scratch_dir) for job in jobs]
        try:
            for future in concurrent.futures.as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def _execute_on_ray(jobs: Sequence[_Job], address: str) -> Iterator[_JobResult]:
    try:
        import ray
    except ImportError as error:
        raise ServiceError(
            "Ray is not installed; install it with 'pip install ray' or run without --address"
        ) from error
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ServiceError(
                f"cannot connect to the Ray cluster at {address!r} ({error}); start it or fix the address"
            ) from error
    else:
        logger.info("using the Ray connection of this process; address %r is not used", address)
    try:
        remote = ray.remote(num_cpus=1)(_run_job)
        pending = [remote.remote(job, None) for job in jobs]
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            yield ray.get(finished[0])
    finally:
        if started_here:
            ray.shutdown()


def _write_part(parts: Path, result: _JobResult) -> None:
    with atomic_path(parts / f"{result.key}.npz") as temporary, temporary.open("wb") as handle:
        np.savez_compressed(
            handle,
            key=np.array(result.key),
            values=result.values,
            length_m=result.length_m,
            width_m=result.width_m,
            draw=result.draw,
            failures=np.array(json.dumps(result.failures)),
        )


def _load_part(parts: Path, key: str) -> _JobResult | None:
    """Return a finished job's part, or None if it is missing or unreadable."""
    path = parts / f"{key}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as part:
            result = _JobResult(
                key=str(part["key"]),
                values=part["values"],
                length_m=part["length_m"],
                width_m=part["width_m"],
                draw=part["draw"],
                failures=tuple(json.loads(str(part["failures"]))),
            )
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        logger.warning("%s is unreadable (%s); simulating that job again", path, error)
        path.unlink(missing_ok=True)
        return None
    if result.key != key:
        logger.warning("%s belongs to job %s; simulating that job again", path, result.key)
        path.unlink(missing_ok=True)
        return None
    return result


def _merge(plan: _Plan, parts: Path, settings: SimulationSettings) -> tuple[Dataset, list[dict[str, object]]]:
    """Stack all parts in job order into one dataset with provenance."""
    values: list[np.ndarray] = []
    failures: list[dict[str, object]] = []
    columns: dict[str, list[object]] = {name: [] for name in METADATA_COLUMNS}
    axes: dict[str, list[np.ndarray]] = {"vbs": [], "vgs": [], "vds": []}
    for job in plan.jobs:
        result = _load_part(parts, job.key)
        if result is None:
            raise DataError(f"{parts}: the part of job {job.key} vanished during the run; run the command again")
        failures += result.failures
        n_ok = result.values.shape[0]
        if n_ok == 0:
            continue
        device = pdk_catalogue.get_device(job.pdk, job.device)
        values.append(result.values)
        for name, value in (
            ("technology", job.pdk),
            ("device", job.device),
            ("flavor", device.flavor),
            ("polarity", device.polarity),
            ("corner", job.corner),
            ("temperature_c", job.temperature_c),
        ):
            columns[name] += [value] * n_ok
        columns["length_m"] += result.length_m.tolist()
        columns["width_m"] += result.width_m.tolist()
        columns["mismatch_draw"] += result.draw.tolist()
        for axis, grid_values in (("vbs", job.grid.vbs_v), ("vgs", job.grid.vgs_v), ("vds", job.grid.vds_v)):
            axes[axis].append(np.tile(np.asarray(grid_values), (n_ok, 1)))
    if not values:
        raise DataError(f"no table converged in the {len(failures)} tables simulated; see the log for the failures")
    attrs = {
        "generator": GENERATOR,
        "generator_version": __version__,
        "settings": settings.to_dict(),
        "simulator": {"name": "ngspice", "version": plan.ngspice_version},
        "pdk_package": {"name": plan.installed.spec.distribution, "version": plan.installed.version},
        "failed_samples": failures,
        "jobs_digest": plan.digest,
    }
    dataset = Dataset(
        values=np.concatenate(values),
        quantities=QUANTITIES,
        vbs=np.concatenate(axes["vbs"]),
        vgs=np.concatenate(axes["vgs"]),
        vds=np.concatenate(axes["vds"]),
        metadata=Metadata.from_columns(columns),
        attrs=attrs,
    )
    return dataset, failures


def _is_complete(output: Path, digest: str) -> bool:
    """Return whether ``output`` is this simulation's finished file."""
    if not output.is_file() or not h5py.is_hdf5(output):
        return False
    with h5py.File(output, "r") as handle:
        return handle.attrs.get("generator") == GENERATOR and handle.attrs.get("jobs_digest") == digest


@contextlib.contextmanager
def _locked(parts: Path) -> Iterator[None]:
    """Hold an exclusive lock on the parts folder; the OS releases it if the process dies."""
    with (parts / _LOCK_NAME).open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise ServiceError(f"{parts} is in use by another simulation; wait for it to finish") from error
        yield


def _finished_parts(parts: Path) -> list[Path]:
    """Return the finished part files in ``parts``. Partly written parts are hidden files, so they do not match."""
    return list(parts.glob("[!.]*.npz"))


def _prepare_parts(parts: Path) -> None:
    """Delete what a killed run left: partly written parts and ngspice run folders."""
    for path in parts.glob(".*.partial"):
        path.unlink(missing_ok=True)
    shutil.rmtree(parts / _SCRATCH_NAME, ignore_errors=True)
    # Workers of a killed run can outlive it for a moment and recreate files
    # here; each job runs in its own subfolder, so leftovers are harmless.
    (parts / _SCRATCH_NAME).mkdir(exist_ok=True)


def _log_summary(output: Path, n_samples: int, failures: Sequence[Mapping[str, object]]) -> None:
    if not failures:
        logger.info("wrote %d tables to %s", n_samples, output)
        return
    logger.warning("wrote %d tables to %s and dropped %d that did not converge:", n_samples, output, len(failures))
    for failure in failures[:20]:
        logger.warning(
            "  %s %s %g C L=%g m W=%g m draw %s: %s",
            failure["device"],
            failure["corner"],
            failure["temperature_c"],
            failure["length_m"],
            failure["width_m"],
            failure["mismatch_draw"],
            failure["reason"],
        )
    if len(failures) > 20:
        logger.warning("  and %d more, listed in the attribute 'failed_samples' of %s", len(failures) - 20, output)


def _unique(values: tuple[_T, ...], name: str) -> tuple[_T, ...]:
    if not values:
        raise ConfigError(f"{name} is empty; give at least one value")
    if len(set(values)) != len(values):
        raise ConfigError(f"{name} repeats values in {list(values)}; give each value once")
    return values


def _number(value: object, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ConfigError(f"{name} must be a number, but got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and low <= number <= high):
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, but got {number!r}")
    return number


def _integer(value: object, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"{name} must be an integer of at least {low}, but got {value!r}")

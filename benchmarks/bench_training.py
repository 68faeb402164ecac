"""Training throughput of JointTrainer against a plain per-sample DataLoader pipeline.

Usage::

    python benchmarks/bench_training.py [--grid 11x11x11] [--samples 1024] [--epochs 5] [--batch-size 64]
                                        [--widths 512,128] [--latent 16] [--precisions float32,bfloat16]
                                        [--threads N] [--device cpu]

Both pipelines train the same network (by default the default VAE on 10
quantities, and a downstream head on the encoder mean, gamma = 1) on the same
random data for the same number of epochs:

    JointTrainer  batches by indexing tensors already on the device; the
                  Square Law is one vectorized log-space expression
    baseline      a per-sample torch.utils.data.Dataset and DataLoader that
                  collate NumPy rows every step, and a Square Law head that
                  loops over Vds in Python

Shape legend: N samples, P quantities, B Vbs, G Vgs, D Vds points.

The model FLOP rate counts only matrix multiplies: ``2 * in * out`` per
linear layer and sample for the forward pass, times 3 for forward plus
backward. The CPU peak is an estimate: threads x clock x FP32 FLOPs per cycle
(64 with AVX-512, 32 with AVX2: two FMA units), read from /proc/cpuinfo;
a large float32 matrix multiply measured on the spot is printed beside it.
"""

from __future__ import annotations

import argparse
import itertools
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from circtune.data.preprocess import Normalizer
from circtune.models.square_law import current_scale, square_law_current, to_normalized, to_physical
from circtune.objective.config import TrialConfig
from circtune.objective.data import OracleFloor, TrialData, to_device
from circtune.objective.train import JointTrainer

N_QUANTITIES = 10
_BASELINE_NAME = "baseline DataLoader + Vds loop"
_MATMUL_SIZE = 2048


def main() -> None:
    arguments = _parser().parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    device = torch.device(arguments.device)
    grid = tuple(int(size) for size in arguments.grid.lower().split("x"))
    assert len(grid) == 3, "--grid takes B x G x D, e.g. 11x11x11"
    widths = [int(width) for width in arguments.widths.split(",")]
    config = TrialConfig.from_flat(
        {"train/epochs": arguments.epochs, "train/batch_size": arguments.batch_size, "loss/gamma": 1.0,
         "model/latent_dim": arguments.latent, "model/depth": len(widths),
         **{f"model/width_{i}": width for i, width in enumerate(widths, start=1)}}
    )  # fmt: skip
    data = make_data(arguments.samples, grid)
    flops = training_flops_per_sample(data.n_features, config)

    pipelines: dict[str, Callable[[], float]] = {}
    for precision in arguments.precisions.split(","):
        trainer = JointTrainer(
            config.with_values({"train/precision": precision}), to_device(data, device), device=device
        )
        pipelines[f"JointTrainer ({precision})"] = _epoch_rate(trainer)
    pipelines[_BASELINE_NAME] = BaselinePipeline(config, data, device).train_epoch
    rates = measure_interleaved(pipelines, epochs=arguments.epochs)
    rows = [(name, float(np.median(values))) for name, values in rates.items()]
    baseline = dict(rows)[_BASELINE_NAME]

    peak, peak_source = estimated_peak_flops(torch.get_num_threads())
    measured = measured_matmul_flops(device)
    print(f"grid {'x'.join(map(str, grid))}, F = {data.n_features} inputs, widths {widths}, latent {arguments.latent}, "
          f"{arguments.samples} samples, "
          f"batch {arguments.batch_size}, {arguments.epochs} epochs, {torch.get_num_threads()} threads, {device}")  # fmt: skip
    print(f"model FLOPs per training sample: {flops / 1e6:.1f} M (matmuls, forward + backward)")
    print(f"peak estimate: {peak / 1e9:.0f} GFLOP/s ({peak_source}); measured {_MATMUL_SIZE}^3 float32 matmul: "
          f"{measured / 1e9:.0f} GFLOP/s")  # fmt: skip
    print(f"{'pipeline':<32} {'samples/s':>10} {'GFLOP/s':>9} {'% of peak':>10} {'% of matmul':>12}")
    for name, rate in rows:
        achieved = rate * flops
        print(f"{name:<32} {rate:>10.1f} {achieved / 1e9:>9.1f} {100 * achieved / peak:>10.1f} "
              f"{100 * achieved / measured:>12.1f}")  # fmt: skip
    for name, rate in rows[:-1]:
        print(f"speed-up of {name} over the baseline: {rate / baseline:.2f}x")
    print("samples/s is the median over the timed epochs; the pipelines take turns epoch by epoch")


def make_data(n_samples: int, grid: tuple[int, ...]) -> TrialData:
    """Return random trial data: standard normal inputs and Square Law currents of random devices."""
    generator = np.random.default_rng(0)
    n_vbs, n_vgs, n_vds = grid
    n_features = N_QUANTITIES * n_vbs * n_vgs * n_vds
    inputs = generator.standard_normal((n_samples, n_features), dtype=np.float32)

    vgs = np.tile(np.linspace(0.0, 1.8, n_vgs, dtype=np.float32), (n_samples, 1))
    vds = np.tile(np.linspace(0.0, 1.8, n_vds, dtype=np.float32), (n_samples, 1))
    log_params = np.stack(
        [np.log(generator.uniform(0.3, 0.6, n_samples)), np.log(generator.uniform(1e-4, 4e-4, n_samples)),
         np.log(generator.uniform(0.02, 0.2, n_samples)), np.log(generator.uniform(1.6, 2.2, n_samples))],
        axis=1,
    )  # fmt: skip
    vgs_t, vds_t = torch.from_numpy(vgs).double(), torch.from_numpy(vds).double()
    current = square_law_current(torch.from_numpy(log_params), vgs_t, vds_t)

    everyone = np.arange(n_samples)
    cube = n_vbs * n_vgs * n_vds
    return TrialData(
        inputs=inputs,
        ibias_columns=(0, cube),
        current=current.float().numpy(),
        vgs=vgs,
        vds=vds,
        train=everyone,
        validation=everyone[:1],
        test=everyone[:1],
        flavor=np.full(n_samples, "svt"),
        corner=np.full(n_samples, "tt"),
        grid_shape=(N_QUANTITIES, n_vbs, n_vgs, n_vds),
        warm_start=to_normalized(torch.from_numpy(log_params), vgs_t, vds_t, current_scale(current)).median(dim=0).values.numpy(),
        oracle_validation=OracleFloor(loss=0.0, relative_error_pct=0.0, n_devices=1),
        normalizer=Normalizer(quantities=(), mean=np.zeros(0), std=np.ones(0)),
    )


def training_flops_per_sample(n_features: int, config: TrialConfig) -> float:
    """Return matmul FLOPs of one training sample through the VAE and the head, forward and backward."""
    widths = list(config.model.widths)
    latent = config.model.latent_dim
    encoder = [n_features, *widths, 2 * latent]
    decoder = [latent, *reversed(widths), n_features]
    head = [latent, config.downstream.hidden, 4]
    forward = sum(2 * a * b for sizes in (encoder, decoder, head) for a, b in itertools.pairwise(sizes))
    return 3.0 * forward


def measure_interleaved(pipelines: dict[str, Callable[[], float]], *, epochs: int) -> dict[str, list[float]]:
    """Run one warm-up epoch of each pipeline, then ``epochs`` rounds of one epoch each; return samples/s.

    Taking turns spreads the load of other processes on a shared machine
    evenly over the pipelines.
    """
    for run_epoch in pipelines.values():
        run_epoch()
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(epochs):
        for name, run_epoch in pipelines.items():
            rates[name].append(run_epoch())
    return rates


def _epoch_rate(trainer: JointTrainer) -> Callable[[], float]:
    """Return a function that trains one epoch and returns its samples per second."""
    return lambda: trainer.train_epoch().samples_per_s


class _PerSampleDataset(TorchDataset[tuple[Tensor, Tensor, Tensor, Tensor]]):
    """One sample per ``__getitem__``, as NumPy rows turned into tensors."""

    def __init__(self, data: TrialData) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data.inputs)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        data = self.data
        return (torch.tensor(data.inputs[index]), torch.tensor(data.current[index]), torch.tensor(data.vgs[index]),
                torch.tensor(data.vds[index]))  # fmt: skip


class _BaselineModel(nn.Module):
    """The same VAE and head as JointTrainer's, written as plain Sequential stacks."""

    def __init__(self, n_features: int, config: TrialConfig, warm_start: np.ndarray) -> None:
        super().__init__()
        widths = list(config.model.widths)
        latent = config.model.latent_dim
        self.latent = latent
        self.encoder = _mlp([n_features, *widths, 2 * latent])
        self.decoder = _mlp([latent, *reversed(widths), n_features])
        self.head = _mlp([latent, config.downstream.hidden, 4])
        output = self.head[-1]
        assert isinstance(output, nn.Linear)
        with torch.no_grad():
            output.bias.copy_(torch.as_tensor(warm_start, dtype=torch.float32))


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if index < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


def _looped_square_law(log_params: Tensor, vgs: Tensor, vds: Tensor) -> Tensor:
    """Evaluate the Square Law one Vds column at a time, directly (not in log space)."""
    vt, kp, lam, eta = (column[:, None] for column in log_params.exp().unbind(dim=1))  # (n, 1)
    vov = (vgs - vt).clamp(min=1e-6)  # (n, G)
    columns = []
    for d in range(vds.shape[1]):
        drain = vds[:, d : d + 1]  # (n, 1)
        saturation = 0.5 * kp * vov**eta * (1 + lam * drain)
        triode = kp * (vov * drain - drain**2 / 2) * (1 + lam * drain)
        columns.append(torch.where(vgs > vt, torch.where(drain > vov, saturation, triode), torch.zeros_like(vov)))
    return torch.stack(columns, dim=2)  # (n, G, D)


class BaselinePipeline:
    """A per-sample Dataset and DataLoader feeding Sequential stacks and a looped Square Law."""

    def __init__(self, config: TrialConfig, data: TrialData, device: torch.device) -> None:
        torch.manual_seed(0)
        self.config = config
        self.device = device
        self.n_samples = len(data.inputs)
        # the baseline head predicts physical parameters, so it starts at those of the first device's scales
        first = (torch.from_numpy(data.current[:1]), torch.from_numpy(data.vgs[:1]), torch.from_numpy(data.vds[:1]))
        warm_start = to_physical(torch.from_numpy(data.warm_start)[None], first[1], first[2], current_scale(first[0]))
        self.model = _BaselineModel(data.n_features, config, warm_start[0].numpy()).to(device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.train.lr)
        self.loader = DataLoader(_PerSampleDataset(data), batch_size=config.train.batch_size, shuffle=True)

    def train_epoch(self) -> float:
        """Train one epoch; return samples per second."""
        model, device = self.model, self.device
        beta, gamma = self.config.loss.beta, self.config.loss.gamma
        start_s = time.perf_counter()
        for x, current, vgs, vds in self.loader:
            x, current, vgs, vds = x.to(device), current.to(device), vgs.to(device), vds.to(device)
            mu, logvar = model.encoder(x).chunk(2, dim=1)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            reconstruction = (model.decoder(z) - x).square().mean()
            kl = (0.5 * (mu.square() + logvar.exp() - 1 - logvar)).sum(dim=1).mean()
            predicted = _looped_square_law(model.head(mu), vgs, vds)
            scale = current.amax(dim=(1, 2), keepdim=True).clamp(min=1e-12)
            downstream = ((predicted - current) / scale).square().mean()
            loss = reconstruction + beta * kl + gamma * downstream
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return self.n_samples / (time.perf_counter() - start_s)


def estimated_peak_flops(threads: int) -> tuple[float, str]:
    """Return an FP32 peak estimate in FLOP/s and how it was made."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    clocks = [float(value) for value in re.findall(r"cpu MHz\s*:\s*([\d.]+)", text)]
    clock_hz = (max(clocks) if clocks else 2500.0) * 1e6
    flags = set(re.findall(r"\b(avx512f|avx2)\b", text))
    per_cycle = 16
    if "avx2" in flags:
        per_cycle = 32
    if "avx512f" in flags:
        per_cycle = 64
    source = f"{threads} threads x {clock_hz / 1e9:.2f} GHz x {per_cycle} FP32 FLOP/cycle"
    return threads * clock_hz * per_cycle, source


def measured_matmul_flops(device: torch.device) -> float:
    """Return the FLOP rate of a large float32 matrix multiply on ``device``."""
    a = torch.randn(_MATMUL_SIZE, _MATMUL_SIZE, device=device)
    b = torch.randn(_MATMUL_SIZE, _MATMUL_SIZE, device=device)
    a @ b
    repeats = 5
    if device.type == "cuda":
        torch.cuda.synchronize()
    start_s = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return repeats * 2 * _MATMUL_SIZE**3 / (time.perf_counter() - start_s)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="11x11x11", help="B x G x D grid (default 11x11x11)")
    parser.add_argument("--samples", type=int, default=1024, help="training samples (default 1024)")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs after one warm-up (default 5)")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per step (default 64)")
    parser.add_argument(
        "--widths", default="512,128", help="encoder hidden widths (default 512,128, the config default)"
    )
    parser.add_argument("--latent", type=int, default=16, help="latent size (default 16)")
    parser.add_argument("--precisions", default="float32", help="JointTrainer precisions, e.g. float32,bfloat16")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    return parser


if __name__ == "__main__":
    main()

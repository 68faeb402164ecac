"""Time the generation of the default synthetic dataset on one CPU core.

Run: ``python benchmarks/bench_generate.py``. Prints one line with the
sample count, the wall time in seconds and the samples per second.
"""

from __future__ import annotations

import time

import torch

from circtune.data.synthetic import GeneratorSettings, generate


def main() -> None:
    """Generate the default dataset once with one torch thread and print the timing."""
    torch.set_num_threads(1)
    settings = GeneratorSettings()
    started_s = time.perf_counter()
    dataset = generate(settings)
    elapsed_s = time.perf_counter() - started_s
    print(f"samples={dataset.n_samples} seconds={elapsed_s:.2f} samples_per_s={dataset.n_samples / elapsed_s:.0f}")


if __name__ == "__main__":
    main()

"""Choice of the torch device that models train on."""

from __future__ import annotations

import torch

from circtune.errors import ConfigError


def select_device(name: str = "auto") -> torch.device:
    """Return the torch device named ``name``.

    Args:
        name: ``"auto"`` (the first CUDA device when one is present, else
            the CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:<index>"``.

    Raises:
        ConfigError: If the name is invalid or names a CUDA device that is
            not present.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"device {name!r} is invalid; use auto, cpu, cuda or cuda:<index>") from error
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ConfigError(f"device {name!r} is not supported; use auto, cpu, cuda or cuda:<index>")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was requested but CUDA is not available here; use auto or cpu")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} is not present; this machine has {torch.cuda.device_count()} CUDA devices")
    return device

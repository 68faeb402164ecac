"""The embedded default dataset: generated once, then read from a cache file.

The cache folder is ``$CIRCTUNE_CACHE_DIR`` if set, else
``$XDG_CACHE_HOME/circtune`` (``~/.cache/circtune`` by default). The file name
carries a hash of the generator settings and version, so changing either
produces a new file instead of reusing a stale one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from circtune.data.dataset import Dataset
from circtune.data.h5format import read_dataset, write_dataset

logger = logging.getLogger(__name__)

DEFAULT_NAME = "default"


def cache_dir() -> Path:
    """Return the folder where generated datasets are cached."""
    explicit = os.environ.get("CIRCTUNE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "circtune"


def default_dataset_path(settings: object | None = None) -> Path:
    """Return the cache path of the dataset made with ``settings``.

    Args:
        settings: A ``GeneratorSettings``; the default settings if None.
    """
    from circtune.data.synthetic import GENERATOR_VERSION, GeneratorSettings

    resolved = settings if settings is not None else GeneratorSettings()
    assert isinstance(resolved, GeneratorSettings)
    key = json.dumps({"version": GENERATOR_VERSION, "settings": resolved.to_dict()}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir() / f"synthetic-{digest}.h5"


def load_default_dataset(
    settings: object | None = None, *, progress: Callable[[int, int], None] | None = None
) -> Dataset:
    """Return the generated dataset, generating and caching it on first use.

    Args:
        settings: A ``GeneratorSettings``; the default settings if None.
        progress: Called as ``progress(done, total)`` while generating.
    """
    path = ensure_default_dataset(settings, progress=progress)
    return read_dataset(path)


def ensure_default_dataset(
    settings: object | None = None, *, progress: Callable[[int, int], None] | None = None
) -> Path:
    """Generate the dataset into the cache unless it is there; return its path."""
    from circtune.data.synthetic import GeneratorSettings, generate

    resolved = settings if settings is not None else GeneratorSettings()
    assert isinstance(resolved, GeneratorSettings)
    path = default_dataset_path(resolved)
    if path.exists():
        logger.debug("Using cached dataset %s", path)
        return path
    logger.info("Generating the default dataset into %s", path)
    write_dataset(generate(resolved, progress=progress), path)
    return path

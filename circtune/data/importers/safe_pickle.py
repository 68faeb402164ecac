"""Load pickled NumPy data without running code from the file.

Unpickling calls whatever functions a pickle names, so a pickle from an
untrusted file can run arbitrary code. ``RestrictedUnpickler`` resolves only
the few NumPy globals that rebuild plain arrays, dtypes and scalars, and
raises ``DataError`` for any other global. Containers (dict, list, tuple,
str, bytes, int, float) need no globals and load as usual.

A full unpickle is available through ``allow_unsafe=True``. It runs code
from the file and is meant for files the user created or trusts.

NOTE: The allowed NumPy functions still parse array and dtype state from
the file in C code. The restriction stops code execution through globals,
but it relies on NumPy to reject malformed state. Byte-flipped pickles made
NumPy 2.4.6 raise internal RuntimeError and SystemError; most load as
DataError, but some were raised later, while the half-built arrays were freed.
"""

from __future__ import annotations

import codecs
import importlib
import logging
import pickle
import struct
from collections.abc import Callable
from typing import IO

import numpy as np

from circtune.errors import DataError

logger = logging.getLogger(__name__)

UNSAFE_FLAG = "--allow-unsafe-pickle"

# (module, name) pairs that pickles of plain NumPy arrays reference. NumPy 2
# moved numpy.core to numpy._core; files written by either version name
# their own module, so both spellings map to the same function.
_ARRAY_GLOBALS: dict[tuple[str, str], tuple[str, str]] = {
    ("numpy.core.multiarray", "_reconstruct"): ("multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"): ("multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"): ("numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numeric", "_frombuffer"),
}
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {*_ARRAY_GLOBALS, ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}
)

# Errors that a corrupt or truncated pickle stream raises while loading.
_CORRUPT_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    LookupError,
    AttributeError,
    RuntimeError,
    SystemError,
    struct.error,
    MemoryError,
)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds NumPy arrays and rejects every other global.

    Args:
        file: Binary stream positioned at the start of the pickle.
        source: Name used in error messages, such as the file path.
    """

    def __init__(self, file: IO[bytes], *, source: str) -> None:
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> object:
        """Return the allowed global ``module.name``.

        Raises:
            DataError: If the global is not one of ``ALLOWED_GLOBALS``.
        """
        if (module, name) not in ALLOWED_GLOBALS:
            raise DataError(
                f"{self._source}: the pickle references the forbidden global '{module}.{name}', so it was not "
                f"loaded; pass {UNSAFE_FLAG} only if you trust the file, because that runs code from it"
            )
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if (module, name) == ("_codecs", "encode"):
            return _encode_latin1
        return _numpy_core_function(*_ARRAY_GLOBALS[(module, name)])


def load_pickle(stream: IO[bytes], *, source: str, allow_unsafe: bool = False) -> object:
    """Unpickle one object from ``stream``.

    Args:
        stream: Binary stream positioned at the start of the pickle.
        source: Name used in error messages, such as the file path.
        allow_unsafe: Run a full unpickle, which executes code named by the
            file. Only for files the user trusts.

    Returns:
        The unpickled object.

    Raises:
        DataError: If the pickle references a forbidden global (unless
            ``allow_unsafe``) or is corrupt or truncated.
    """
    if allow_unsafe:
        logger.warning("%s: unpickling without restrictions, which runs code from the file", source)
        unpickler: pickle.Unpickler = pickle.Unpickler(stream, encoding="latin1")
    else:
        unpickler = RestrictedUnpickler(stream, source=source)
    try:
        return unpickler.load()
    except _ForbiddenCodecError as error:
        raise DataError(
            f"{source}: the pickle {error}, so it was not loaded; pass {UNSAFE_FLAG} only if you trust the file"
        ) from error
    except _CORRUPT_ERRORS as error:
        raise DataError(
            f"{source}: the pickled data is corrupt or truncated ({type(error).__name__}: {error}); "
            "copy or generate the file again"
        ) from error


class _ForbiddenCodecError(pickle.UnpicklingError):
    """A pickle called _codecs.encode with a codec other than latin1."""


def _numpy_core_function(submodule: str, name: str) -> Callable[..., object]:
    # numpy._core exists from NumPy 2.0; NumPy 1.x has only numpy.core.
    for package in ("numpy._core", "numpy.core"):
        try:
            module = importlib.import_module(f"{package}.{submodule}")
        except ImportError:
            continue
        function: Callable[..., object] = getattr(module, name)
        return function
    raise DataError(f"this NumPy {np.__version__} has no {submodule}.{name}; install NumPy 1.26 or newer")


def _encode_latin1(text: str, encoding: str = "utf-8") -> bytes:
    # Python 2 era pickles store bytes as _codecs.encode(text, "latin1").
    # Other codecs are rejected: some (zlib, bz2) decompress unbounded data.
    if codecs.lookup(encoding).name != "iso8859-1":
        raise _ForbiddenCodecError(f"calls _codecs.encode with the forbidden encoding {encoding!r}")
    return text.encode("latin1")

"""Shared plumbing for the command-line entry points."""

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from circtune.errors import CirctuneError, ConfigError

EXIT_USAGE = 2


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line, like every other circtune error."""

    def error(self, message: str) -> NoReturn:
        """Print ``error: <prog>: <message>; see <prog> --help`` and exit with status 2."""
        self.exit(EXIT_USAGE, f"error: {self.prog}: {message}; see {self.prog} --help\n")


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a CLI ``main`` and turn user errors into one line and exit code 2.

    Args:
        main: The command's main function; returns an exit status.
        argv: Arguments without the program name; ``sys.argv[1:]`` if None.

    Returns:
        The exit status: the one ``main`` returned, 2 after a
        :class:`CirctuneError`, or 130 after Ctrl-C.
    """
    try:
        return main(argv)
    except CirctuneError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def check_output_folder(path: Path | None, flag: str) -> None:
    """Reject an output folder path that is a file or lies under one, before any work is done.

    Raises:
        ConfigError: If ``path`` exists and is not a folder, or an existing
            parent of it is a file.
    """
    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file, not a folder; give a folder path (it is created if missing)")
    _check_parents(path, flag)


def check_output_file(path: Path | None, flag: str) -> None:
    """Reject an output file path that is a folder or lies under a file, before any work is done.

    Raises:
        ConfigError: If ``path`` is an existing folder, or an existing
            parent of it is a file.
    """
    if path is None:
        return
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; give a file path inside it, e.g. {path / 'out.h5'}")
    _check_parents(path, flag)


def _check_parents(path: Path, flag: str) -> None:
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{flag} {path}: {parent} is a file, not a folder; choose another path")
            return


def configure_logging(verbose: bool = False) -> None:
    """Send circtune's log records to stderr, one line each."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )

"""A plain progress line for long work in the command-line tools."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_MIN_INTERVAL_S = 1.0


class ProgressLine:
    """Print ``label done/total, rate, eta`` to a stream, at most once a second.

    On a terminal the line is rewritten in place; elsewhere (a log file, CI)
    each update is a new line. Call the object as ``progress(done, total)``.
    """

    def __init__(self, label: str, unit: str, *, stream: TextIO | None = None) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self._start_s = time.monotonic()
        self._last_s = 0.0
        self._in_place = self.stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        now_s = time.monotonic()
        finished = done >= total
        if not finished and now_s - self._last_s < _MIN_INTERVAL_S:
            return
        self._last_s = now_s
        elapsed_s = max(now_s - self._start_s, 1e-9)
        rate = done / elapsed_s
        eta = f", eta {(total - done) / rate:.0f} s" if rate > 0 and not finished else ""
        text = f"{self.label}: {done}/{total} {self.unit}, {rate:.1f} {self.unit}/s{eta}"
        if self._in_place:
            self.stream.write("\r" + text + ("\n" if finished else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

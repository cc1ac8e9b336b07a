"""A progress bar for reading large traces: bytes of the input consumed, on stderr.

The bar appears only once reading has taken ``delay_s`` (1 s by default), so small traces
print nothing, and only when stderr is a terminal (a log file gets no redraws). It is
drawn by ``tqdm`` when that is installed (it comes with kvtier's ``bench`` and ``test``
extras); without it reading is silent. Readers advance it by the
file bytes they consume (compressed bytes for a compressed file), so a folder's bar
covers all of its files.
"""

from __future__ import annotations

import os
import sys
import time


class ReadProgress:
    """Counts bytes read out of ``total_bytes`` and shows a bar labelled ``label`` on
    ``stream`` (stderr) once ``delay_s`` seconds have passed. Use it as a context manager
    (or call ``close``) so the bar is cleared when reading ends. ``clock`` is injectable
    for tests; ``bar_factory`` (tqdm's signature) too, ``None`` meaning tqdm if installed
    and ``stream`` is a terminal (else no bar)."""

    def __init__(self, total_bytes: int, label: str, *, delay_s: float = 1.0, stream=None,
                 clock=time.monotonic, bar_factory=None) -> None:
        self.total_bytes = int(total_bytes)
        self.read_bytes = 0
        self.label = label
        self._delay_s = float(delay_s)
        self._stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._start = clock()
        # A bar redraws with carriage returns: in a log file (stderr not a terminal) it is noise.
        if bar_factory is None and _is_terminal(self._stream):
            bar_factory = _tqdm_factory()
        self._factory = bar_factory
        self._bar = None

    def advance(self, num_bytes: int) -> None:
        """Record ``num_bytes`` more bytes read (draws the bar once it is due)."""
        self.read_bytes += num_bytes
        if self._bar is None:
            if self._factory is None or self._clock() - self._start < self._delay_s:
                return
            self._bar = self._factory(total=self.total_bytes, initial=self.read_bytes - num_bytes, desc=self.label,
                                      unit="B", unit_scale=True, unit_divisor=1024, file=self._stream, leave=False,
                                      dynamic_ncols=True)
        self._bar.update(num_bytes)

    @property
    def shown(self) -> bool:
        """Whether the bar has been drawn (reading took longer than the delay)."""
        return self._bar is not None

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> ReadProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _tqdm_factory():
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


def input_bytes(paths) -> int:
    """Total size in bytes of ``paths`` (files that cannot be stat'ed count 0)."""
    total = 0
    for p in paths:
        try:
            total += os.path.getsize(p)
        except OSError:
            pass
    return total

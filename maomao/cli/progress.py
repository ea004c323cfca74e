"""A git transfer's progress for people: one redrawn line on a terminal, plain lines otherwise.

:class:`TransferMeter` is called with libgit2's transfer statistics (objects
received of the total, bytes received, deltas resolved) as a clone or fetch
goes.  On a terminal it redraws one line with ``\\r`` (at most ten times a
second); anywhere else (a pipe, a log, cron's mail) it writes a plain line
at most once a ``interval`` and, at the end, one summary line.  The clock is
injected so tests can drive it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Protocol, TextIO

__all__ = ["TransferMeter", "TransferStats", "human_bytes"]

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


class TransferStats(Protocol):
    """What libgit2 reports as it transfers (``pygit2.remotes.TransferProgress``)."""

    @property
    def total_objects(self) -> int: ...
    @property
    def received_objects(self) -> int: ...
    @property
    def indexed_objects(self) -> int: ...
    @property
    def total_deltas(self) -> int: ...
    @property
    def indexed_deltas(self) -> int: ...
    @property
    def received_bytes(self) -> int: ...


def human_bytes(count: float) -> str:
    """``512 B``, ``1.5 KiB``, ``12.0 MiB``: binary units, one decimal."""
    if count < 1024:
        return f"{int(count)} B"
    value = float(count)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def _percent(done: int, total: int) -> int:
    return 100 if total <= 0 else min(100, done * 100 // total)


class TransferMeter:
    """Renders transfer progress to ``out``; call it with each statistics update, then :meth:`finish`."""

    #: seconds of history the rate is measured over
    window = 3.0

    def __init__(
        self,
        out: TextIO,
        *,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 1.0,
        redraw: float = 0.1,
    ) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.clock = clock
        self.interval = interval if not self.tty else redraw
        self._start: float | None = None
        self._last_shown: float = 0.0
        self._samples: deque[tuple[float, int]] = deque()
        self._stats: TransferStats | None = None
        self._drawn = 0  # width of the line on the terminal now, 0 when none

    # -- what is shown ------------------------------------------------------

    def rate(self) -> float:
        """Bytes per second over the last ``window`` seconds (0 until time has passed)."""
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    def line(self) -> str:
        """The current state in one line."""
        stats = self._stats
        if stats is None:
            return ""
        total = stats.total_objects
        received = stats.received_objects
        if received < total or not stats.total_deltas:
            return (
                f"receiving objects: {_percent(received, total)}% ({received}/{total}), "
                f"{human_bytes(stats.received_bytes)} | {human_bytes(self.rate())}/s"
            )
        deltas, indexed = stats.total_deltas, stats.indexed_deltas
        return (
            f"resolving deltas: {_percent(indexed, deltas)}% ({indexed}/{deltas}), "
            f"{human_bytes(stats.received_bytes)} received"
        )

    def summary(self) -> str | None:
        """``received N objects, SIZE in T s (RATE/s)``; None when nothing was transferred."""
        stats = self._stats
        if stats is None or self._start is None or stats.total_objects == 0:
            return None
        elapsed = max(0.0, self._samples[-1][0] - self._start) if self._samples else 0.0
        size = stats.received_bytes
        rate = f" ({human_bytes(size / elapsed)}/s)" if elapsed > 0 else ""
        return f"received {stats.received_objects} objects, {human_bytes(size)} in {elapsed:.1f} s{rate}"

    # -- being called ---------------------------------------------------------

    def __call__(self, stats: TransferStats) -> None:
        now = self.clock()
        if self._start is None:
            self._start = self._last_shown = now
        self._stats = stats
        self._samples.append((now, stats.received_bytes))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()
        if stats.total_objects == 0:
            return  # nothing to fetch (yet): nothing to show
        if self.tty:
            done = stats.received_objects >= stats.total_objects and stats.indexed_deltas >= stats.total_deltas
            if done or now - self._last_shown >= self.interval or not self._drawn:
                self._draw(self.line())
                self._last_shown = now
        elif now - self._last_shown >= self.interval:
            self.out.write(self.line() + "\n")
            self.out.flush()
            self._last_shown = now

    def _draw(self, text: str) -> None:
        pad = " " * max(0, self._drawn - len(text))
        self.out.write(f"\r{text}{pad}")
        self.out.flush()
        self._drawn = len(text)

    def finish(self) -> None:
        """The transfer ended: end the terminal's line with ``done``, or write the summary line."""
        if self.tty:
            if self._drawn:
                self._draw(self.line() + ", done.")
                self.out.write("\n")
                self.out.flush()
                self._drawn = 0
            return
        summary = self.summary()
        if summary is not None:
            self.out.write(summary + "\n")
            self.out.flush()

    def abort(self) -> None:
        """The transfer failed: wipe the terminal's line so an error line stands alone."""
        if self.tty and self._drawn:
            self.out.write("\r" + " " * self._drawn + "\r")
            self.out.flush()
            self._drawn = 0

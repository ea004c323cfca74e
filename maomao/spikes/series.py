"""A tool's metric series, read from its data repository.

Two kinds, as DESIGN section 6 says:

- the original contract: ``control-*.csv`` files, one number each, ordered
  by the natural order of their suffix (``control-9`` before
  ``control-10``; dates, being runs of digits, sort as dates);
- declared metrics, ``NAME=GLOB[:COLUMN]``: CSV files matching GLOB (under
  the data directory) with a header row; the value is COLUMN (else the
  second column), the time is the column named ``time``, ``timestamp``,
  ``date`` or ``datetime`` (else the first).  Rows appended per run, or one
  file per run: rows are ordered by their time, then by file (natural
  order) and line.

A bad point (an empty file or cell, not a number, NaN or infinite) is
skipped and counted, never fatal.  No numpy here: the detector takes the
values as they are.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from maomao.model import parse_number

CONTROL = "control"
CONTROL_GLOB = "control-*.csv"
TIME_COLUMNS = ("time", "timestamp", "date", "datetime")
#: files bigger than this are not read as a series (a runaway tool must not stall detection)
MAX_FILE_BYTES = 64 << 20
_CHUNKS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """A sort key under which ``control-9`` comes before ``control-10`` and dates sort as dates."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in _CHUNKS.split(text) if part)


TimeKey = tuple[int, float, tuple[tuple[int, int | str], ...]]


def time_key(stamp: str) -> TimeKey:
    """Numbers (epoch seconds) by value, before anything else; other stamps (ISO times) naturally."""
    number = parse_number(stamp)
    if number is not None:
        return (0, number, ())
    return (1, 0.0, natural_key(stamp))


@dataclass
class Series:
    """One metric's points, oldest first, each with the label it is known by (file or time)."""

    name: str
    values: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    skipped: int = 0

    def add(self, label: str, text: str | None) -> None:
        value = parse_number(text)
        if value is None:
            self.skipped += 1
            return
        self.values.append(value)
        self.labels.append(label)


def _inside(path: Path, directory: Path) -> bool:
    """A regular file that is really in ``directory``: a symlink (or ``..``) a tool made to point
    elsewhere is not read."""
    try:
        return path.is_file() and not path.is_symlink() and path.resolve().is_relative_to(directory.resolve())
    except OSError:
        return False


def _small_text(path: Path) -> str | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def control_series(directory: Path) -> Series:
    """The ``control-<n>.csv`` files: one number each, in the natural order of their names."""
    series = Series(CONTROL)
    found = (p for p in directory.glob(CONTROL_GLOB) if _inside(p, directory))
    files = sorted(found, key=lambda p: natural_key(p.name))
    for path in files:
        text = _small_text(path)
        # one number: the file's first non-empty line (a trailing newline or a header-less CSV cell)
        first = next((line for line in (text or "").splitlines() if line.strip()), None)
        series.add(path.name, first.split(",")[0] if first is not None else None)
    return series


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """``NAME=GLOB[:COLUMN]`` of ``tool add --metric``."""

    name: str
    glob: str
    column: str | None

    @classmethod
    def parse(cls, text: str) -> MetricSpec:
        name, _, rest = text.partition("=")
        glob, _, column = rest.partition(":")
        return cls(name, glob, column or None)


def _rows(path: Path) -> Iterable[list[str]]:
    text = _small_text(path)
    if text is None:
        return []
    return csv.reader(text.splitlines())


def declared_series(directory: Path, spec: MetricSpec) -> Series:
    """A declared metric: COLUMN of the CSV files matching GLOB, ordered by time, file and line."""
    series = Series(spec.name)
    files = sorted(
        (p for p in directory.glob(spec.glob) if _inside(p, directory)),
        key=lambda p: natural_key(str(p.relative_to(directory))),
    )
    points: list[tuple[TimeKey, int, int, str, str | None]] = []
    for order, path in enumerate(files):
        rows = iter(_rows(path))
        header = [cell.strip() for cell in next(rows, [])]
        if not header:
            continue
        lowered = [cell.lower() for cell in header]
        time_at = next((lowered.index(name) for name in TIME_COLUMNS if name in lowered), 0)
        if spec.column is not None:
            if spec.column not in header:
                series.skipped += 1  # the whole file lacks the column
                continue
            value_at = header.index(spec.column)
        else:
            value_at = 1 if len(header) > 1 else 0
        for line, row in enumerate(rows):
            if not row or not any(cell.strip() for cell in row):
                continue
            stamp = row[time_at].strip() if time_at < len(row) else ""
            cell = row[value_at] if value_at < len(row) else None
            points.append((time_key(stamp), order, line, stamp or f"{path.name}:{line + 2}", cell))
    points.sort(key=lambda point: point[:3])
    for _key, _order, _line, label, cell in points:
        series.add(label, cell)
    return series


def tool_series(directory: Path, metrics: Iterable[str]) -> list[Series]:
    """Every series of a tool: ``control`` when it has control files, then each declared metric."""
    found = []
    control = control_series(directory)
    if control.values or control.skipped:
        found.append(control)
    found.extend(declared_series(directory, MetricSpec.parse(text)) for text in metrics)
    return found

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

What a tool wrote is not trusted: nothing here follows a symlink (not a
file's, not a directory's on the way down a ``**``), enters a ``.git``,
reads anything but a regular file (opened ``O_NOFOLLOW``), takes a name
that is not printable UTF-8, or leaves the data directory (a GLOB that is absolute or has ``..`` matches nothing).
A control file is read up to :data:`CONTROL_BYTES`, a declared metric's
file up to :data:`MAX_FILE_BYTES` (bigger ones are skipped).
"""

from __future__ import annotations

import csv
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from maomao.model import parse_number

CONTROL = "control"
CONTROL_GLOB = "control-*.csv"
TIME_COLUMNS = ("time", "timestamp", "date", "datetime")
#: files bigger than this are not read as a series (a runaway tool must not stall detection)
MAX_FILE_BYTES = 64 << 20
#: bytes of a control file read (it holds one number)
CONTROL_BYTES = 64 << 10
#: directories a ``**`` goes down at most
MAX_DEPTH = 32
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


def _read(path: Path, limit: int | None = None) -> str | None:
    """A regular file's text (at most ``limit`` bytes of it), never through a symlink; None if it is
    not a regular file, cannot be read or is over :data:`MAX_FILE_BYTES` (without a ``limit``)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or (limit is None and info.st_size > MAX_FILE_BYTES):
                return None
            data = handle.read(limit if limit is not None else MAX_FILE_BYTES)
        except OSError:
            return None
    return data.decode("utf-8", errors="replace")


def _files(directory: Path, pattern: str) -> list[Path]:
    """Regular files under ``directory`` matching the glob ``pattern`` (``*``, ``?``, ``[..]``, ``**``).

    Like ``Path.glob``, but no symlink is followed and no ``.git`` entered,
    and a pattern that is absolute or has ``..`` matches nothing.
    """
    parts = [part for part in pattern.split("/") if part not in ("", ".")]
    if not parts or pattern.startswith("/") or ".." in parts:
        return []
    found: dict[str, Path] = {}
    seen: set[tuple[str, int]] = set()

    def entries(path: str) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(path) as listing:
                # a name that is not printable UTF-8 (a newline, bytes of another encoding) is no series'
                return [entry for entry in listing if entry.name != ".git" and entry.name.isprintable()]
        except OSError:
            return []

    def walk(path: str, at: int, depth: int) -> None:
        if (path, at) in seen or depth > MAX_DEPTH:
            return
        seen.add((path, at))
        part = parts[at]
        if part == "**":
            if at + 1 < len(parts):
                walk(path, at + 1, depth)
            for entry in entries(path):
                if entry.is_dir(follow_symlinks=False):
                    walk(entry.path, at, depth + 1)
            return
        last = at == len(parts) - 1
        for entry in entries(path):
            if not fnmatchcase(entry.name, part):
                continue
            if last and entry.is_file(follow_symlinks=False):
                found[entry.path] = Path(entry.path)
            elif not last and entry.is_dir(follow_symlinks=False):
                walk(entry.path, at + 1, depth + 1)

    try:
        if stat.S_ISDIR(os.lstat(directory).st_mode):
            walk(str(directory), 0, 0)
    except OSError:
        return []
    return list(found.values())


def control_series(directory: Path) -> Series:
    """The ``control-<n>.csv`` files: one number each, in the natural order of their names."""
    series = Series(CONTROL)
    files = sorted(_files(directory, CONTROL_GLOB), key=lambda p: natural_key(p.name))
    for path in files:
        text = _read(path, CONTROL_BYTES)
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
    text = _read(path)
    if text is None:
        return []
    return csv.reader(text.splitlines())


def declared_series(directory: Path, spec: MetricSpec) -> Series:
    """A declared metric: COLUMN of the CSV files matching GLOB, ordered by time, file and line."""
    series = Series(spec.name)
    files = sorted(_files(directory, spec.glob), key=lambda p: natural_key(str(p.relative_to(directory))))
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

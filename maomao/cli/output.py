"""Rendering for ``ctl``: aligned tables and detail views for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO


def emit_json(objects: Iterable[Mapping[str, Any]], out: TextIO | None = None) -> None:
    """A JSON list of objects, one object a line (``indent`` would cost the C encoder)."""
    out = out or sys.stdout
    lines = ",\n".join(json.dumps(obj, ensure_ascii=False) for obj in objects)
    out.write(f"[\n{lines}\n]\n" if lines else "[]\n")


def printable(text: str) -> str:
    """``text`` with its control characters (ESC, NUL, newlines, bidi overrides) escaped: one safe line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode() for c in text)


def emit_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO | None = None
) -> None:
    """Columns aligned on the widest cell; the last column is not padded; control characters escaped."""
    out = out or sys.stdout
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in (headers, *rows):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    out.write("\n".join(lines) + "\n")


def emit_details(pairs: Sequence[tuple[str, str]], out: TextIO | None = None) -> None:
    """``key: value`` lines, keys aligned; one record for people (an empty key continues the one above).

    Control characters in a value are escaped (an env value may hold ESC or a newline)."""
    out = out or sys.stdout
    pairs = [(k, printable(v)) for k, v in pairs]
    width = max(len(k) for k, _ in pairs) + 1
    out.write("".join(f"{(k + ':' if k else '').ljust(width)} {v}\n" for k, v in pairs))


def warn(message: str) -> None:
    """One line on stderr that is not an error (the command goes on); control characters escaped."""
    sys.stderr.write(f"warning: {printable(message)}\n")

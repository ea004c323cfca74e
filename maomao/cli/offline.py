"""``maomao spikes score|plot INPUT.csv``: the daemon's detector on a CSV file, offline.

``score`` writes ``timestamp,value,anomaly_score,spike`` (one row per input
row, in order; ``spike`` is 0 or 1, the default decisions with the
cool-down) with the detector and the defaults the daemon uses (``[spikes]``
of the config, if there is one).  A row whose value is empty or not a
number keeps its place with an empty value, score 0 and no spike.
``plot`` draws the series with its spikes marked; it needs matplotlib
(``pip install 'maomao[plot]'``).
"""

from __future__ import annotations

import csv
import io
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from cyclopts import App, Parameter

from maomao.cli.context import Common
from maomao.errors import MaomaoError, UsageError
from maomao.model import parse_number

app = App(name="spikes", help="Spike detection on a CSV file, offline: score, plot.")


@dataclass(frozen=True, slots=True)
class Table:
    """A CSV series: its time stamps and its values (NaN where a row had no number)."""

    times: list[str]
    values: list[float]
    texts: list[str]  # the value cells as written (empty where there was no number)
    skipped: int


def read_table(path: Path, time_column: str, value_column: str) -> Table:
    """The two columns of ``path``; a missing file or column is a usage error (exit 2)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    rows = csv.reader(io.StringIO(text))
    header = [cell.strip() for cell in next(rows, [])]
    for column in (time_column, value_column):
        if column not in header:
            known = ", ".join(header) or "none"
            raise UsageError(f"{path} has no column {column!r} (columns: {known})")
    time_at, value_at = header.index(time_column), header.index(value_column)
    times, values, texts, skipped = [], [], [], 0
    for row in rows:
        if not row:
            continue
        times.append(row[time_at].strip() if time_at < len(row) else "")
        cell = row[value_at].strip() if value_at < len(row) else ""
        value = parse_number(cell)
        if value is None:
            skipped += 1
        values.append(math.nan if value is None else value)
        texts.append(cell if value is not None else "")
    return Table(times, values, texts, skipped)


def _scored(table: Table, common: Common) -> Any:
    import numpy as np

    from maomao.config import load_config
    from maomao.daemon.detection import detector_params
    from maomao.spikes.detector import score_series

    params = detector_params(load_config(common.config))
    return score_series(np.asarray(table.values, dtype=float), params)


TimeColumn = Annotated[str, Parameter(help="The column of time stamps.")]
ValueColumn = Annotated[str, Parameter(help="The column of values.")]


@app.command
def score(
    input: Path,
    /,
    *,
    time_column: TimeColumn = "timestamp",
    value_column: ValueColumn = "value",
    output: Annotated[Path | None, Parameter(name=["--output", "-o"], help="Write here (default: stdout).")] = None,
    common: Common = Common(),
) -> None:
    """Score a series: writes timestamp,value,anomaly_score,spike.

    Parameters
    ----------
    input
        A CSV file with a header row.
    """
    table = read_table(input, time_column, value_column)
    scored = _scored(table, common)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["timestamp", "value", "anomaly_score", "spike"])
    for i, stamp in enumerate(table.times):
        writer.writerow([stamp, table.texts[i], f"{float(scored.scores[i]):.6f}", int(bool(scored.spikes[i]))])
    if output is None:
        sys.stdout.write(out.getvalue())
    else:
        try:
            output.write_text(out.getvalue())
        except OSError as exc:
            raise MaomaoError(f"cannot write {output}: {exc.strerror or exc}") from None
    if table.skipped:
        sys.stderr.write(f"{table.skipped} rows had no number and were not scored\n")


@app.command
def plot(
    input: Path,
    /,
    *,
    output: Annotated[Path, Parameter(name=["--output", "-o"], help="The PNG file to write.")],
    time_column: TimeColumn = "timestamp",
    value_column: ValueColumn = "value",
    common: Common = Common(),
) -> None:
    """Draw the series with its spikes marked, as a PNG.

    Parameters
    ----------
    input
        A CSV file with a header row.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MaomaoError("plotting needs matplotlib: pip install 'maomao[plot]' (or pip install matplotlib)") from None
    table = read_table(input, time_column, value_column)
    scored = _scored(table, common)
    positions = range(len(table.values))
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(12, 5), sharex=True, height_ratios=(3, 1))
    top.plot(positions, table.values, linewidth=0.8, color="#335")
    spikes = [i for i in positions if bool(scored.spikes[i])]
    top.scatter(spikes, [table.values[i] for i in spikes], color="#d22", zorder=3, label=f"{len(spikes)} spikes")
    top.set_title(f"{input.name}: {value_column}")
    top.legend(loc="upper left")
    bottom.plot(positions, scored.scores, linewidth=0.8, color="#a60")
    bottom.set_ylim(0, 1.05)
    bottom.set_ylabel("anomaly score")
    step = max(1, len(table.times) // 6)
    bottom.set_xticks(list(positions)[::step], [table.times[i] for i in positions][::step], fontsize=7)
    figure.tight_layout()
    try:
        figure.savefig(output, dpi=100)
    except OSError as exc:
        raise MaomaoError(f"cannot write {output}: {exc.strerror or exc}") from None
    print(f"{output}: {len(table.values)} points, {len(spikes)} spikes")

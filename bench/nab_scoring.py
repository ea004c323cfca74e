"""The NAB scorer, as ``/work/shared/nab/README.md`` states its rules.

Per profile (weights tp, fp, fn) and file of n rows:

1. probation: the first ``min(floor(0.15 * n), 750)`` rows are not scored;
2. ``S(x) = 2 * sigmoid(-5x) - 1`` (``-1`` for ``x > 3``);
3. a detection at row i inside a window [left, right] of width w weighs
   ``tp * S(-(right - i + 1) / w) / S(-1)``; only the best detection of a
   window counts, a window without one costs ``-fn``;
4. a detection outside every window weighs ``fp * S((i - r) / (w' - 1))``
   with r, w' the right edge and width of the file's previous window, and
   ``-fp`` when no window came before;
5. the raw score sums over all files; one corpus-wide threshold is chosen
   among all distinct emitted scores, the one with the best raw score;
6. normalised = ``100 * (raw - null) / (perfect - null)``, null = ``-fn *
   windows``, perfect = ``tp * windows``.

The threshold sweep is vectorised: every scored row gets the change it makes
to the raw score when the threshold drops to its score (a false positive its
weight; a window row the improvement of its window's best detection), the
rows are sorted by score, descending, and the cumulative sum at the end of
each group of equal scores is the raw score at that threshold.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Profile:
    """Weights of one NAB application profile."""

    name: str
    tp: float
    fp: float
    fn: float


PROFILES: tuple[Profile, ...] = (
    Profile("standard", 1.0, 0.11, 1.0),
    Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
)


@dataclass(frozen=True)
class Series:
    """One NAB data file: its timestamps, values and labelled windows (row index ranges, inclusive)."""

    name: str
    timestamps: npt.NDArray[np.datetime64]
    values: FloatArray
    windows: tuple[tuple[int, int], ...]


def scaled_sigmoid(x: FloatArray | float) -> FloatArray:
    """NAB's ``S``: ``2 * sigmoid(-5x) - 1``, and ``-1`` where ``x > 3``."""
    arr = np.asarray(x, dtype=np.float64)
    return np.where(arr > 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * arr)) - 1.0)


def probation_rows(n: int) -> int:
    """The number of leading rows of an n-row file that are not scored."""
    return min(math.floor(0.15 * n), 750)


def read_series(path: Path) -> tuple[npt.NDArray[np.datetime64], FloatArray]:
    """A NAB CSV (``timestamp,value`` or ``timestamp,anomaly_score,...``): timestamps and the second column."""
    stamps: list[str] = []
    values: list[float] = []
    with path.open(newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            if not row:
                continue
            stamps.append(row[0].replace(" ", "T"))
            values.append(float(row[1]) if row[1] else math.nan)
    return np.array(stamps, dtype="datetime64[us]"), np.array(values, dtype=np.float64)


def window_rows(timestamps: npt.NDArray[np.datetime64], limits: Iterable[Sequence[str]]) -> tuple[tuple[int, int], ...]:
    """Row index ranges [left, right] (inclusive) of labelled windows given by their first and last timestamps."""
    rows = []
    for start, end in limits:
        left = int(np.searchsorted(timestamps, np.datetime64(start.replace(" ", "T"), "us"), side="left"))
        right = int(np.searchsorted(timestamps, np.datetime64(end.replace(" ", "T"), "us"), side="right")) - 1
        if right >= left:
            rows.append((left, right))
    return tuple(rows)


def load_corpus(data_dir: Path, labels_file: Path) -> list[Series]:
    """Every labelled file of the corpus, in the order of the labels file."""
    labels: Mapping[str, list[list[str]]] = json.loads(labels_file.read_text())
    corpus = []
    for name, limits in labels.items():
        stamps, values = read_series(data_dir / name)
        corpus.append(Series(name, stamps, values, window_rows(stamps, limits)))
    return corpus


def load_reference(results_dir: Path, detector: str, corpus: Sequence[Series]) -> list[FloatArray]:
    """A published detector's scores for every file of the corpus (``<det>/<category>/<det>_<file>.csv``)."""
    scores = []
    for series in corpus:
        category, file = series.name.split("/")
        stamps, values = read_series(results_dir / detector / category / f"{detector}_{file}")
        if len(stamps) != len(series.timestamps) or not np.array_equal(stamps, series.timestamps):
            raise ValueError(f"{detector} results for {series.name} do not match the data rows")
        scores.append(values)
    return scores


@dataclass(frozen=True)
class _Rows:
    """The scored rows of one file for one profile: their weights and the window each belongs to (-1: none)."""

    weight: FloatArray
    window: npt.NDArray[np.int64]


def _row_weights(n: int, windows: Sequence[tuple[int, int]], profile: Profile, window_base: int) -> _Rows:
    """Every row's weight as a detection (true positive in a window, false positive outside) and its window."""
    idx = np.arange(n, dtype=np.float64)
    weight = np.full(n, -profile.fp, dtype=np.float64)
    window = np.full(n, -1, dtype=np.int64)
    max_tp = float(scaled_sigmoid(-1.0))
    for k, (left, right) in enumerate(windows):
        width = right - left + 1
        inside = slice(left, right + 1)
        weight[inside] = profile.tp * scaled_sigmoid(-(right - idx[inside] + 1) / width) / max_tp
        window[inside] = window_base + k
        end = windows[k + 1][0] if k + 1 < len(windows) else n
        after = slice(right + 1, end)
        if width > 1:
            weight[after] = profile.fp * scaled_sigmoid((idx[after] - right) / (width - 1))
        else:  # NAB divides by zero here; such a window does not occur in the corpus
            weight[after] = -profile.fp
    start = probation_rows(n)
    return _Rows(weight[start:], window[start:])


@dataclass(frozen=True)
class Sweep:
    """A profile's raw and normalised score at the best corpus-wide threshold."""

    profile: str
    threshold: float
    raw: float
    normalised: float
    windows: int


def _normalise(raw: float, windows: int, profile: Profile) -> float:
    null = -profile.fn * windows
    perfect = profile.tp * windows
    if perfect == null:  # no windows: nothing to normalise against
        return 0.0
    return 100.0 * (raw - null) / (perfect - null)


def _prepare(
    corpus: Sequence[Series], scores: Sequence[FloatArray], profile: Profile
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int64], int]:
    """Scores, weights and windows of all scored rows of the corpus, and the number of windows."""
    all_scores, all_weights, all_windows = [], [], []
    base = 0
    for series, score in zip(corpus, scores, strict=True):
        n = len(series.values)
        if len(score) != n:
            raise ValueError(f"{series.name}: {len(score)} scores for {n} rows")
        rows = _row_weights(n, series.windows, profile, base)
        base += len(series.windows)
        all_scores.append(np.nan_to_num(np.asarray(score, dtype=np.float64)[probation_rows(n) :], nan=0.0))
        all_weights.append(rows.weight)
        all_windows.append(rows.window)
    return np.concatenate(all_scores), np.concatenate(all_weights), np.concatenate(all_windows), base


def sweep(corpus: Sequence[Series], scores: Sequence[FloatArray], profile: Profile) -> Sweep:
    """The best corpus-wide threshold among all distinct emitted scores, and the score there."""
    score, weight, window, windows = _prepare(corpus, scores, profile)
    delta = np.where(window < 0, weight, 0.0)
    in_win = np.flatnonzero(window >= 0)
    if in_win.size:
        # window rows by window, then score descending: the running best of each window (offset per window
        # so that one global running maximum never carries over from one window to the next)
        order = in_win[np.lexsort((-score[in_win], window[in_win]))]
        span = 4.0 * (profile.tp + profile.fn + 1.0)
        offset = window[order] * span
        best = np.maximum.accumulate(weight[order] + offset) - offset
        first = np.ones(order.size, dtype=bool)
        first[1:] = window[order][1:] != window[order][:-1]
        previous = np.empty_like(best)
        previous[0] = -profile.fn
        previous[1:] = best[:-1]
        previous[first] = -profile.fn
        delta[order] = best - previous
    order = np.argsort(-score, kind="stable")
    cum = np.cumsum(delta[order]) - profile.fn * windows
    ordered = score[order]
    last = np.ones(ordered.size, dtype=bool)
    last[:-1] = ordered[:-1] != ordered[1:]
    candidates = cum[last]
    thresholds = ordered[last]
    if candidates.size == 0:
        raw, threshold = -profile.fn * windows, math.inf
    else:
        k = int(np.argmax(candidates))
        raw, threshold = float(candidates[k]), float(thresholds[k])
    return Sweep(profile.name, threshold, raw, _normalise(raw, windows, profile), windows)


def score_decisions(corpus: Sequence[Series], decisions: Sequence[npt.NDArray[np.bool_]], profile: Profile) -> Sweep:
    """The score of fixed decisions (True = detection), every detection row counted as NAB does."""
    as_scores = [np.asarray(d, dtype=np.float64) for d in decisions]
    score, weight, window, windows = _prepare(corpus, as_scores, profile)
    hit = score >= 1.0
    raw = -profile.fn * windows + float(weight[hit & (window < 0)].sum())
    detected = hit & (window >= 0)
    if detected.any():
        best = np.full(windows, -np.inf)
        np.maximum.at(best, window[detected], weight[detected])
        got = np.isfinite(best)
        raw += float((best[got] + profile.fn).sum())
    return Sweep(profile.name, 1.0, raw, _normalise(raw, windows, profile), windows)

"""The spike detector: a causal anomaly score in [0, 1] per point, and alert decisions with a cool-down.

How a point is scored (``y`` are the series' values with missing points left out; every statistic uses
only the point and the points before it, so appending points never changes an earlier score):

* The first ``min_history`` points: the original MAO-MAO rule.  The newest value is compared with the
  mean of all the points before it; the relative deviation ``rel = |y - mean| / mean(|earlier|)`` (the
  mean magnitude of the earlier points, which is ``|mean|`` for a positive series; ``epsilon`` when all
  earlier points are 0, so a zero history never divides by zero) is a spike above ``short_threshold``
  (20 %: 600, 630, 900 is one, 600, 630, 640 is not).  Score ``1 - 2 ** (-rel / short_threshold)``:
  0.5 exactly at the percentage.
* From then on, four surprises in units of the series' own recent variability (so scale and shift do
  not matter):

  - jump ``z_j = |y_t - y_{t-1}| / s_j``, ``s_j`` the mean ``|y_i - y_{i-1}|`` over the previous
    ``scale_window`` points: a spike or the start of a level shift, either direction;
  - level ``z_l = |y_t - m_t| / s_l``, ``m_t`` the mean of the previous ``level_window`` points and
    ``s_l`` the mean of the same absolute deviation over the previous ``scale_window`` points: a
    shift or drift that builds up over a few points;
  - smoothed level: the same with the mean of the latest ``smooth_window`` points (at most the latest
    half of the points so far) in place of ``y_t``, against the ``level_window`` points before them: a
    slow drift or a shift hidden in noise;
  - calm ``z_c = s_j / c_t``, ``c_t`` the mean ``|y_i - y_{i-1}|`` over the latest ``calm_window``
    points (floored at ``s_j / 1000``): the variability collapses, a sensor or a load that flat-lines.

  Each surprise counts only by how much it beats the largest surprise of its kind among the previous
  ``memory`` points: ``novelty = max(0, z - max_past) / (z + damping)``.  So the score spikes at the
  onset of an incident and not again while the incident goes on; what recurs (a daily jump, a spiky
  but regular load) stops being news after its first occurrence; and ``damping`` keeps records of
  tiny surprises in a calm stretch small.  ``raw`` is the largest of the four novelties, set to 0
  unless it beats the ``raw`` of each of the previous ``quiet`` points (within an incident only a
  larger novelty scores again, at any threshold), and the score is ``1 - 2 ** (-raw / onset)``: 0.5
  when the new surprise beats the old ones by ``onset`` of itself.

A spike is a score of at least ``threshold`` (0.5) more than ``cooldown`` points after the previous
spike.  Missing values (NaN, and infinities) get score 0, no spike, a NaN baseline and deviation, and
are left out of every statistic.  A constant series never spikes; scales are floored at ``1e-12`` of
the values' magnitude (and the smallest positive float), never divided by zero.

Defaults, one set for every series, chosen on the Numenta Anomaly Benchmark subset in
``/work/shared/nab`` (``bench/nab.py``; standard profile 61.2 at the best threshold, 61.9 for these
decisions; 54.0 / 55.9 with the jump and level surprises alone, 58.5 with the smoothed level and the
quiet period added, the calm surprise adds the flat-lining incidents): ``memory`` 300 points (about a
day of 5-minute samples: what recurs daily is not news), ``scale_window`` 2000, ``level_window`` 100,
``damping`` 30 (also halves the alerts that the records of plain Gaussian noise raise, to about one in
5000 points), ``onset`` 0.035 so that the best threshold on NAB falls near 0.5, ``smooth_window`` and
``calm_window`` 20 (10 and 50 do worse), ``quiet`` 100 (30 to 150 within 3 points) and ``cooldown`` 30
(longer cool-downs swallow the next, real incident).  The price of counting only records: after a
large incident, a smaller one within ``memory`` points scores low.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_TINY = float(np.finfo(np.float64).tiny)
_RELATIVE_FLOOR = 1e-12


@dataclass(frozen=True)
class DetectorParams:
    """Settings of :func:`score_series`; the defaults suit every series (one set, tuned on NAB)."""

    threshold: float = 0.5
    """A point whose score is at least this is a spike (unless in the cool-down of an earlier one)."""
    cooldown: int = 30
    """After a spike, the next this many points raise no spike: one incident, one alert."""
    min_history: int = 20
    """Points before this index (of present values) use the short-history rule."""
    short_threshold: float = 0.20
    """Short-history rule: a spike when the relative deviation from the mean of the earlier points exceeds this."""
    epsilon: float = 1e-12
    """Short-history rule: the scale of deviations from an all-zero history (instead of dividing by zero)."""
    scale_window: int = 2000
    """Surprises are in units of the mean absolute change / deviation over this many previous points."""
    level_window: int = 100
    """The level surprise compares a point with the mean of this many previous points."""
    memory: int = 300
    """A surprise counts only by how much it beats the largest of its kind among this many previous points."""
    damping: float = 30.0
    """Added to a surprise when weighing its excess over the past ones: small surprises stay small."""
    onset: float = 0.035
    """The relative excess (novelty) that scores 0.5; the score is ``1 - 2 ** (-novelty / onset)``."""
    smooth_window: int = 20
    """The second level surprise compares the mean of this many latest points with the ``level_window`` before."""
    calm_window: int = 20
    """The calm surprise compares the mean absolute change over this many latest points with the long one."""
    quiet: int = 100
    """A point scores only if its novelty beats that of each of this many previous points (else 0)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        if self.cooldown < 0:
            raise ValueError("cooldown must be >= 0")
        if self.min_history < 2:
            raise ValueError("min_history must be >= 2")
        if self.short_threshold <= 0 or self.epsilon <= 0 or self.damping < 0 or self.onset <= 0:
            raise ValueError("short_threshold, epsilon and onset must be > 0, damping >= 0")
        if min(self.scale_window, self.level_window, self.memory, self.smooth_window, self.calm_window) < 1:
            raise ValueError("scale_window, level_window, memory, smooth_window and calm_window must be >= 1")
        if self.quiet < 0:
            raise ValueError("quiet must be >= 0")


@dataclass(frozen=True, eq=False)
class Scored:
    """The detector's verdict on every point of a series (arrays as long as the series)."""

    scores: FloatArray
    """Anomaly score in [0, 1] (float64); 0 for missing points and the first present point."""
    spikes: BoolArray
    """The alert decisions: score >= threshold and not within ``cooldown`` points after the previous spike."""
    baseline: FloatArray
    """The expected value: the mean of the earlier points (short history) or of the previous ``level_window``."""
    deviation: FloatArray
    """``(value - baseline) / scale``, signed; the scale is the earlier points' mean magnitude in the short
    history (so this is the relative deviation: 0.46 = 46 % above) and afterwards the mean absolute deviation
    from the baseline over the previous ``scale_window`` points.  NaN where undefined."""


def _trailing_sums(values: FloatArray) -> FloatArray:
    """``c[i] = sum(values[:i])``: windowed sums by difference, exactly the same for every prefix."""
    out = np.zeros(values.size + 1, dtype=np.float64)
    np.cumsum(values, out=out[1:])
    return out


def _window_mean(sums: FloatArray, start: npt.NDArray[np.intp], stop: npt.NDArray[np.intp]) -> FloatArray:
    """Mean of ``values[start:stop]`` per row (NaN where empty) from the trailing sums."""
    count = stop - start
    out = np.full(count.size, np.nan)
    ok = count > 0
    out[ok] = (sums[stop[ok]] - sums[start[ok]]) / count[ok]
    return out


def _past_max(values: FloatArray, window: int) -> FloatArray:
    """``max(values[t - window : t])`` per t (0 where no earlier value); values must be >= 0."""
    n = values.size
    if n == 0:
        return np.zeros(0)
    padded = np.concatenate([np.zeros(window), values[:-1]])
    out: FloatArray = sliding_window_view(padded, window).max(axis=1)
    return out


def _novelty(z: FloatArray, memory: int, damping: float) -> FloatArray:
    """How much each surprise beats the largest of the previous ``memory`` ones, relative to itself."""
    excess = np.maximum(z - _past_max(z, memory), 0.0)
    denom = z + damping
    return np.divide(excess, denom, out=np.zeros_like(z), where=denom > 0)


def _cooldown(candidates: BoolArray, cooldown: int) -> BoolArray:
    """Keep a candidate only if no kept one is among the ``cooldown`` points before it."""
    kept = np.zeros(candidates.size, dtype=bool)
    last = -cooldown - 1
    for i in np.flatnonzero(candidates).tolist():
        if i - last > cooldown:
            kept[i] = True
            last = i
    return kept


def _score_present(y: FloatArray, p: DetectorParams) -> tuple[FloatArray, BoolArray, FloatArray, FloatArray]:
    """Scores, short-rule spikes, baselines and deviations of a series without missing values."""
    n = y.size
    scores = np.zeros(n)
    short_spike = np.zeros(n, dtype=bool)
    baseline = np.full(n, np.nan)
    deviation = np.full(n, np.nan)
    if n < 2:
        return scores, short_spike, baseline, deviation
    idx = np.arange(n)
    # shift by the first value: exact prefix sums of small numbers (the result does not depend on it)
    yc = y - y[0]
    sums = _trailing_sums(yc)
    abs_sums = _trailing_sums(np.abs(y))

    # the short-history rule (the original's): the mean of all earlier points, relative to their magnitude
    short = np.arange(1, min(n, p.min_history))
    mean_before = sums[short] / short + y[0]
    magnitude = abs_sums[short] / short
    scale_short = np.where(magnitude > 0, magnitude, p.epsilon)
    rel = (y[short] - mean_before) / scale_short
    baseline[short] = mean_before
    deviation[short] = rel
    scores[short] = 1.0 - np.exp2(-np.abs(rel) / p.short_threshold)
    short_spike[short] = np.abs(rel) > p.short_threshold

    # jump surprise: |change| against the mean |change| over the previous scale_window points
    floor = np.maximum(_RELATIVE_FLOOR * np.abs(y), _TINY)
    step = np.zeros(n)
    step[1:] = np.abs(np.diff(y))
    step_sums = _trailing_sums(step)
    lo = np.maximum(idx - p.scale_window, 1)
    s_jump = _window_mean(step_sums, lo, idx)
    z_jump = np.zeros(n)
    ok = idx >= 2
    z_jump[ok] = step[ok] / np.maximum(s_jump[ok], floor[ok])

    # level surprise: |value - mean of the previous level_window| against its own mean over scale_window
    level = _window_mean(sums, np.maximum(idx - p.level_window, 0), idx) + y[0]
    dev_level = np.zeros(n)
    dev_level[1:] = np.abs(y[1:] - level[1:])
    dev_sums = _trailing_sums(dev_level)
    s_level = _window_mean(dev_sums, lo, idx)
    z_level = np.zeros(n)
    z_level[ok] = dev_level[ok] / np.maximum(s_level[ok], floor[ok])

    # smoothed level surprise: |mean of the latest smooth_window points - mean of the level_window before them|
    # (in a short history: the latest half of the points; so, like the others, it starts at the third point
    # and has set its record by min_history, when the scores start to count)
    start = np.maximum(idx - p.smooth_window + 1, (idx + 1) // 2)
    recent = _window_mean(sums, start, idx + 1)
    before = _window_mean(sums, np.maximum(start - p.level_window, 0), start)
    dev_smooth = np.zeros(n)
    dev_smooth[1:] = np.abs(recent[1:] - before[1:])
    s_smooth = _window_mean(_trailing_sums(dev_smooth), lo, idx)
    z_smooth = np.zeros(n)
    z_smooth[ok] = dev_smooth[ok] / np.maximum(s_smooth[ok], floor[ok])

    # calm surprise: the long mean |change| against that of the latest calm_window points (a flat line: 1000)
    recent_step = _window_mean(step_sums, np.maximum(idx - p.calm_window + 1, 1), idx + 1)
    z_calm = np.zeros(n)
    ok_calm = ok
    calm_floor = np.maximum(1e-3 * s_jump[ok_calm], floor[ok_calm])
    z_calm[ok_calm] = s_jump[ok_calm] / np.maximum(recent_step[ok_calm], calm_floor)

    raw = np.zeros(n)
    for z in (z_jump, z_level, z_smooth, z_calm):
        raw = np.maximum(raw, _novelty(z, p.memory, p.damping))
    long = idx >= p.min_history
    raw[~long] = 0.0
    if p.quiet > 0:  # within an incident only a still larger novelty scores again
        raw = np.where(raw > _past_max(raw, p.quiet), raw, 0.0)
    scores[long] = 1.0 - np.exp2(-raw[long] / p.onset)
    baseline[long] = level[long]
    s_dev = np.maximum(s_level[long], floor[long])
    deviation[long] = (y[long] - level[long]) / s_dev
    return np.clip(scores, 0.0, 1.0), short_spike, baseline, deviation


def score_series(values: FloatArray | Sequence[float], params: DetectorParams | None = None) -> Scored:
    """Score every point of a series (oldest first; NaN = missing) and decide the spikes.

    Causal: the result for ``values[:k]`` is the first k entries of the result for ``values``.
    """
    p = params or DetectorParams()
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    present = np.isfinite(x)
    y = x[present]
    with np.errstate(all="ignore"):  # values near the float limits overflow to inf: maximal surprise
        s, short_spike, b, d = _score_present(y, p)
    s = np.nan_to_num(s, nan=0.0)
    candidates = s >= p.threshold
    short = np.arange(y.size) < p.min_history
    candidates[short] = short_spike[short]
    spikes_present = _cooldown(candidates, p.cooldown)

    n = x.size
    scores = np.zeros(n)
    spikes = np.zeros(n, dtype=bool)
    baseline = np.full(n, np.nan)
    deviation = np.full(n, np.nan)
    scores[present] = s
    spikes[present] = spikes_present
    baseline[present] = b
    deviation[present] = d
    return Scored(scores=scores, spikes=spikes, baseline=baseline, deviation=deviation)

"""Unit tests of the spike detector: causality, invariance, degenerate input, the original's rule, incidents."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maomao.spikes import DetectorParams, Scored, score_series

DEFAULT = DetectorParams()


def noisy(n: int, seed: int = 0, level: float = 100.0, sigma: float = 1.0) -> np.ndarray:
    return level + sigma * np.random.default_rng(seed).standard_normal(n)


def check_shapes(result: Scored, n: int) -> None:
    assert result.scores.shape == result.spikes.shape == result.baseline.shape == result.deviation.shape == (n,)
    assert result.scores.dtype == np.float64
    assert result.spikes.dtype == np.bool_
    assert np.all((result.scores >= 0) & (result.scores <= 1))


def incidents(spikes: np.ndarray) -> list[int]:
    return np.flatnonzero(spikes).tolist()


# causality -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_causal_prefixes_give_the_same_scores(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.standard_normal(3000)) + 5 * (rng.random(3000) < 0.01) * rng.standard_normal(3000) * 20
    x[rng.random(3000) < 0.02] = np.nan
    full = score_series(x)
    for k in (0, 1, 2, 3, 19, 20, 21, 101, 299, 300, 301, 1000, 2001, 2999):
        part = score_series(x[:k])
        np.testing.assert_array_equal(part.scores, full.scores[:k])
        np.testing.assert_array_equal(part.spikes, full.spikes[:k])
        np.testing.assert_array_equal(part.baseline, full.baseline[:k])
        np.testing.assert_array_equal(part.deviation, full.deviation[:k])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(float("nan"))), min_size=0, max_size=120),
    st.integers(0, 120),
)
def test_causal_for_any_series(values: list[float], k: int) -> None:
    full = score_series(values, DetectorParams(memory=15, level_window=7, scale_window=40, min_history=5))
    part = score_series(values[:k], DetectorParams(memory=15, level_window=7, scale_window=40, min_history=5))
    np.testing.assert_array_equal(part.scores, full.scores[:k])
    np.testing.assert_array_equal(part.spikes, full.spikes[:k])
    check_shapes(full, len(values))


# invariance ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), [(3.0, 0.0), (1e-3, 0.0), (1e6, 0.0), (2.0, 1e4), (0.5, -300.0), (1.0, 1e6)])
def test_scale_and_shift_invariant(a: float, b: float) -> None:
    rng = np.random.default_rng(7)
    x = noisy(2500, seed=7)
    x[rng.integers(100, 2500, 8)] += 15
    x[1500:] += 6
    base = score_series(x)
    moved = score_series(a * x + b)
    long = np.arange(x.size) >= DEFAULT.min_history
    np.testing.assert_allclose(moved.scores[long], base.scores[long], atol=1e-7)
    np.testing.assert_array_equal(moved.spikes[long], base.spikes[long])
    np.testing.assert_allclose(moved.baseline, a * base.baseline + b, rtol=1e-9, atol=1e-6 * abs(b) + 1e-9)
    np.testing.assert_allclose(moved.deviation[long], base.deviation[long], rtol=1e-6, atol=1e-6)


def test_short_history_rule_is_scale_invariant() -> None:
    x = np.array([600.0, 630.0, 900.0, 610.0, 640.0])
    for a in (1e-6, 1.0, 1e9):
        result = score_series(a * x)
        np.testing.assert_allclose(result.scores, score_series(x).scores, atol=1e-12)
        assert incidents(result.spikes) == [2]


# degenerate input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0.0, 45.0, -3.5, 1e12, 1e-300])
def test_constant_series(value: float) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = score_series(np.full(3000, value))
    check_shapes(result, 3000)
    assert not result.spikes.any()
    assert np.all(result.scores == 0)
    assert np.all(result.baseline[1:] == value)
    assert np.all(result.deviation[1:] == 0)


@pytest.mark.parametrize("values", [[], [1.0], [1.0, 2.0], [600.0, 630.0, 900.0], [np.nan], [np.nan, np.nan, 3.0]])
def test_tiny_series(values: list[float]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = score_series(values)
    check_shapes(result, len(values))


def test_tiny_series_first_points() -> None:
    assert score_series([]).spikes.size == 0
    one = score_series([5.0])
    assert one.scores.tolist() == [0.0] and not one.spikes.any() and np.isnan(one.baseline[0])
    two = score_series([5.0, 5.5])
    assert not two.spikes.any() and two.baseline[1] == 5.0 and two.deviation[1] == pytest.approx(0.1)
    assert score_series([5.0, 7.0]).spikes.tolist() == [False, True]


def test_nan_points_are_skipped() -> None:
    x = noisy(2000, seed=3)
    x[1200] += 30
    holes = x.copy()
    rng = np.random.default_rng(3)
    missing = rng.random(2000) < 0.2
    missing[1200] = False
    holes[missing] = np.nan
    holes[[5, 6, 7]] = [np.inf, -np.inf, np.nan]
    missing[[5, 6, 7]] = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = score_series(holes)
    check_shapes(result, 2000)
    assert np.all(result.scores[missing] == 0)
    assert not result.spikes[missing].any()
    assert np.all(np.isnan(result.baseline[missing]))
    # the present points score as the series without the holes
    compact = score_series(holes[~missing])
    np.testing.assert_array_equal(result.scores[~missing], compact.scores)
    assert result.spikes[1200]
    assert incidents(result.spikes[1000:1500]) == [200]


def test_all_nan() -> None:
    result = score_series([np.nan] * 50)
    check_shapes(result, 50)
    assert not result.spikes.any() and np.all(result.scores == 0)


# the original's rule for short histories ---------------------------------------------------------------


def test_original_demo() -> None:
    assert score_series([600, 630, 900]).spikes.tolist() == [False, False, True]
    assert score_series([600, 630, 640]).spikes.tolist() == [False, False, False]
    spike = score_series([600, 630, 900])
    assert spike.baseline[2] == 615
    assert spike.deviation[2] == pytest.approx(285 / 615)
    assert spike.scores[2] >= DEFAULT.threshold > score_series([600, 630, 640]).scores[2]


def test_short_rule_downward_and_threshold() -> None:
    assert score_series([600, 630, 400]).spikes.tolist() == [False, False, True]
    assert not score_series([100, 100, 119.9]).spikes.any()
    assert score_series([100, 100, 120.1]).spikes[2]
    assert score_series([100, 100, 130], DetectorParams(short_threshold=0.5)).spikes.tolist() == [False] * 3


def test_short_rule_zero_mean_and_floats() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert score_series([0.0, 0.0, 5.0]).spikes.tolist() == [False, False, True]
        assert not score_series([0.0, 0.0, 0.0]).spikes.any()
        assert not score_series([0.1, 0.2, 0.15000000000000002]).spikes[2]
        assert not score_series([0.1 + 0.2, 0.3, 0.30000000000000004]).spikes.any()
        # a mean of 0 from values of both signs: deviations relative to their magnitude
        assert not score_series([-1.0, 1.0, 0.1]).spikes[2]
        assert score_series([-1.0, 1.0, 3.0], DetectorParams(cooldown=0)).spikes[2]


# incidents -----------------------------------------------------------------------------------------


def test_clear_spike_in_a_long_noisy_series_is_one_alert() -> None:
    x = noisy(4000, seed=11)
    x[2500] += 25
    result = score_series(x)
    assert result.spikes[2500]
    assert result.scores[2500] > 0.95
    assert incidents(result.spikes[2000:]) == [500]


def test_an_incident_of_several_points_is_one_alert() -> None:
    x = noisy(4000, seed=12)
    x[2500:2520] += np.linspace(25, 30, 20) * np.random.default_rng(1).choice([1, 1.2], 20)
    result = score_series(x)
    assert incidents(result.spikes[2000:2800]) == [500]


def test_quiet_noise_raises_few_alerts() -> None:
    # records in the noise itself: about one alert in 5000 points of Gaussian noise
    alerts = sum(
        np.count_nonzero(score_series(noisy(10000, seed=seed)).spikes[DEFAULT.min_history :]) for seed in range(5)
    )
    assert alerts <= 25


@pytest.mark.parametrize("direction", [1, -1])
def test_level_shift_detected_once(direction: int) -> None:
    x = noisy(4000, seed=21)
    x[3000:] += direction * 8
    result = score_series(x)
    assert result.spikes[3000]
    assert incidents(result.spikes[2500:]) == [500]
    assert np.sign(result.deviation[3000]) == direction


@pytest.mark.parametrize("direction", [1, -1])
def test_spike_in_both_directions(direction: int) -> None:
    x = noisy(3000, seed=5)
    x[2000] += direction * 20
    result = score_series(x)
    assert incidents(result.spikes[1000:]) == [1000]
    assert result.baseline[2000] == pytest.approx(100, abs=0.5)


def test_step_after_a_constant_stretch() -> None:
    x = np.concatenate([np.full(500, 3.0), np.full(500, 4.0)])
    result = score_series(x)
    assert incidents(result.spikes) == [500]


def test_recurring_pattern_stops_alerting() -> None:
    # a square wave that jumps the same way every 50 points: news the first time only
    x = np.where((np.arange(3000) // 50) % 2 == 0, 10.0, 20.0) + 0.1 * np.random.default_rng(2).standard_normal(3000)
    result = score_series(x)
    assert np.count_nonzero(result.spikes[500:]) == 0


def test_cooldown_parameter() -> None:
    x = noisy(3000, seed=8)
    x[[2000, 2010]] += [20, 40]
    assert incidents(score_series(x).spikes[1500:2300]) == [500]
    # without the cool-down, and without the quiet period of the scores (the second novelty is the smaller)
    assert incidents(score_series(x, DetectorParams(cooldown=0, quiet=0)).spikes[1500:2300]) == [500, 510]
    assert incidents(score_series(x, DetectorParams(cooldown=0)).spikes[1500:2300]) == [500]


def test_flat_line_in_a_noisy_series_is_one_alert() -> None:
    # a sensor that freezes: the variability collapses (the calm surprise)
    x = noisy(4000, seed=13)
    x[3000:3300] = x[2999]
    result = score_series(x)
    found = incidents(result.spikes[2500:])
    assert len(found) == 1 and 500 < found[0] < 500 + DEFAULT.calm_window


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=80))
def test_any_input_scores_in_range(values: list[float]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = score_series(values)
    check_shapes(result, len(values))
    assert not np.isnan(result.scores).any()


def test_bad_params() -> None:
    for bad in (
        {"threshold": 0.0},
        {"cooldown": -1},
        {"min_history": 1},
        {"memory": 0},
        {"onset": 0.0},
        {"quiet": -1},
        {"calm_window": 0},
    ):
        with pytest.raises(ValueError):
            DetectorParams(**bad)  # type: ignore[arg-type]

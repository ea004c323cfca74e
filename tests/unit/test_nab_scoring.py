"""Unit tests of the NAB scorer (bench/nab_scoring.py): the reference scores and the rules on small cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.nab_scoring import (
    PROFILES,
    Series,
    load_corpus,
    load_reference,
    probation_rows,
    scaled_sigmoid,
    score_decisions,
    sweep,
)

NAB = Path("/work/shared/nab")
REFERENCE = {
    "numenta": (68.58, 62.21, 72.77),
    "twitterADVec": (38.91, 28.07, 44.78),
}


@pytest.fixture(scope="module")
def corpus() -> list[Series]:
    return load_corpus(NAB / "data", NAB / "labels" / "combined_windows.json")


def test_corpus(corpus: list[Series]) -> None:
    assert len(corpus) == 41
    assert sum(len(s.windows) for s in corpus) == 69


@pytest.mark.parametrize("detector", sorted(REFERENCE))
def test_reference_scores(corpus: list[Series], detector: str) -> None:
    scores = load_reference(NAB / "reference-results", detector, corpus)
    got = tuple(round(sweep(corpus, scores, p).normalised, 2) for p in PROFILES)
    assert got == REFERENCE[detector]


def test_never_firing_scores_zero(corpus: list[Series]) -> None:
    silent = [np.zeros(len(s.values), dtype=bool) for s in corpus]
    for p in PROFILES:
        assert score_decisions(corpus, silent, p).normalised == 0.0


def test_helpers() -> None:
    assert probation_rows(4032) == 604
    assert probation_rows(22695) == 750
    assert float(scaled_sigmoid(0.0)) == 0.0
    assert float(scaled_sigmoid(3.5)) == -1.0
    assert float(scaled_sigmoid(-1.0)) == pytest.approx(2 / (1 + np.exp(-5)) - 1)


def toy(n: int, windows: tuple[tuple[int, int], ...]) -> list[Series]:
    stamps = np.arange(n).astype("datetime64[m]").astype("datetime64[us]")
    return [Series("toy/a.csv", stamps, np.zeros(n), windows)]


def test_rules_on_a_toy_file() -> None:
    standard = PROFILES[0]
    corpus = toy(100, ((50, 59),))  # probation: 15 rows
    max_tp = float(scaled_sigmoid(-1.0))
    # a detection at the left edge of the window: about tp; only the best (earliest) counts
    first = np.zeros(100, dtype=bool)
    first[[50, 55]] = True
    assert score_decisions(corpus, [first], standard).raw == pytest.approx(1.0)
    # a detection before any window costs -fp; one during probation costs nothing
    early = np.zeros(100, dtype=bool)
    early[[5, 20]] = True
    assert score_decisions(corpus, [early], standard).raw == pytest.approx(-1.0 - 0.11)
    # a detection right after the window costs less than one far away
    after = np.zeros(100, dtype=bool)
    after[60] = True
    w = 10
    expected = -1.0 + 0.11 * float(scaled_sigmoid((60 - 59) / (w - 1)))
    assert score_decisions(corpus, [after], standard).raw == pytest.approx(expected)
    # the right edge of the window
    late = np.zeros(100, dtype=bool)
    late[59] = True
    assert score_decisions(corpus, [late], standard).raw == pytest.approx(float(scaled_sigmoid(-1 / w)) / max_tp)


def test_sweep_picks_the_best_threshold() -> None:
    corpus = toy(100, ((50, 59),))
    scores = np.zeros(100)
    scores[30] = 0.9  # a false positive with the highest score
    scores[52] = 0.8  # the true positive
    scores[70] = 0.3
    best = sweep(corpus, [scores], PROFILES[0])
    assert best.threshold == 0.8
    decisions = scores >= 0.8
    assert best.raw == pytest.approx(score_decisions(corpus, [decisions], PROFILES[0]).raw)

"""Benchmark: the spike detector (``maomao.spikes``) on the NAB subset in ``/work/shared/nab``.

First checks the scorer (``bench/nab_scoring.py``, the rules of the subset's README) against the
published results beside the data: Numenta HTM must give 68.58 / 62.21 / 72.77 and Twitter ADVec
38.91 / 28.07 / 44.78 (standard / reward_low_FP_rate / reward_low_FN_rate); a mismatch stops the
benchmark.  Then runs ``score_series`` with its default parameters over every series and prints, for
all three profiles, the normalised score at the best corpus-wide threshold (the ``scores``) and the
score of the default decisions (the ``spikes`` as they are, every detection row counted), the
detector's time over all series and its throughput (points per second, detector time only: the best
of ``--repeat`` passes).  Everything goes to ``bench/results/nab.json`` (or ``--json``).

Targets (issue 5): standard >= 60 at the best threshold, >= 50 for the default decisions, all series
in under 1 s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.nab_scoring import PROFILES, load_corpus, load_reference, score_decisions, sweep
from maomao.spikes import DetectorParams, Scored, score_series

NAB = Path("/work/shared/nab")
EXPECTED = {
    "numenta": (68.58, 62.21, 72.77),
    "twitterADVec": (38.91, 28.07, 44.78),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=NAB / "data", help="NAB data directory")
    parser.add_argument("--labels", type=Path, default=NAB / "labels" / "combined_windows.json")
    parser.add_argument("--check-reference", type=Path, default=NAB / "reference-results", metavar="DIR")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes of the detector (the best counts)")
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "nab.json")
    args = parser.parse_args()

    corpus = load_corpus(args.data, args.labels)
    points = sum(len(s.values) for s in corpus)
    windows = sum(len(s.windows) for s in corpus)
    print(f"NAB subset: {len(corpus)} series, {points} points, {windows} windows")

    reference: dict[str, dict[str, float]] = {}
    ok = True
    for detector, expected in EXPECTED.items():
        scores = load_reference(args.check_reference, detector, corpus)
        got = {p.name: sweep(corpus, scores, p).normalised for p in PROFILES}
        reference[detector] = got
        match = all(round(got[p.name], 2) == e for p, e in zip(PROFILES, expected, strict=True))
        ok &= match
        shown = " / ".join(f"{got[p.name]:.2f}" for p in PROFILES)
        print(
            f"scorer check {detector:13s} {shown}  (expected {' / '.join(map(str, expected))}) "
            f"{'OK' if match else 'MISMATCH'}"
        )
    if not ok:
        print("the scorer does not reproduce the reference scores: stopping")
        return 1

    params = DetectorParams()
    results: list[Scored] = []
    times = []
    for _ in range(max(1, args.repeat)):
        start = time.perf_counter()
        results = [score_series(s.values, params) for s in corpus]
        times.append(time.perf_counter() - start)
    detector_time = min(times)

    scores = [r.scores for r in results]
    spikes = [r.spikes for r in results]
    best = {p.name: sweep(corpus, scores, p) for p in PROFILES}
    default = {p.name: score_decisions(corpus, spikes, p) for p in PROFILES}
    alerts = int(sum(int(np.count_nonzero(s)) for s in spikes))

    print(f"detector defaults: {params}")
    print(f"{'profile':20s} {'best threshold':>15s} {'score':>7s} {'default decisions':>18s}")
    for p in PROFILES:
        print(
            f"{p.name:20s} {best[p.name].threshold:15.4f} {best[p.name].normalised:7.2f} "
            f"{default[p.name].normalised:18.2f}"
        )
    print(
        f"default decisions: {alerts} spikes over {points} points (threshold {params.threshold}, "
        f"cool-down {params.cooldown} points)"
    )
    print(
        f"detector time: {detector_time * 1000:.1f} ms for all {len(corpus)} series "
        f"(best of {len(times)}), {points / detector_time:,.0f} points/s"
    )

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "series": len(corpus),
                "points": points,
                "windows": windows,
                "scorer_check": {
                    d: {"got": reference[d], "expected": dict(zip([p.name for p in PROFILES], e, strict=True))}
                    for d, e in EXPECTED.items()
                },
                "params": {k: getattr(params, k) for k in params.__dataclass_fields__},
                "best_threshold": {
                    name: {"threshold": s.threshold, "raw": s.raw, "normalised": s.normalised}
                    for name, s in best.items()
                },
                "default_decisions": {name: {"raw": s.raw, "normalised": s.normalised} for name, s in default.items()},
                "spikes": alerts,
                "detector_seconds": detector_time,
                "detector_seconds_all_passes": times,
                "points_per_second": points / detector_time,
                "per_series_spikes": {
                    s.name: int(np.count_nonzero(r.spikes)) for s, r in zip(corpus, results, strict=True)
                },
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

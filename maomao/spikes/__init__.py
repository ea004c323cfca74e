"""Spike detection on the collected series (DESIGN.md section 6).

:func:`score_series` gives every point of a series a causal anomaly score in [0, 1] (comparable across
series: invariant to the series' scale and offset) and the alert decisions (``spikes``: a score of at
least the threshold, with a cool-down so that one incident is one alert).  The method and its defaults
are described in :mod:`maomao.spikes.detector`; ``bench/nab.py`` measures it on the NAB subset.
"""

from typing import Any

__all__ = ["DetectorParams", "Scored", "score_series"]


def __getattr__(name: str) -> Any:
    # numpy loads with the detector only: the series and alert modules, and ctl, do without it
    if name in __all__:
        from maomao.spikes import detector

        return getattr(detector, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

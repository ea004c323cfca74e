"""Spike detection on the collected series (DESIGN.md section 6).

:func:`score_series` gives every point of a series a causal anomaly score in [0, 1] (comparable across
series: invariant to the series' scale and offset) and the alert decisions (``spikes``: a score of at
least the threshold, with a cool-down so that one incident is one alert).  The method and its defaults
are described in :mod:`maomao.spikes.detector`; ``bench/nab.py`` measures it on the NAB subset.
"""

from maomao.spikes.detector import DetectorParams, Scored, score_series

__all__ = ["DetectorParams", "Scored", "score_series"]

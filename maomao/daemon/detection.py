"""Spike detection after each successful run (DESIGN section 6).

The tool's series (:mod:`maomao.spikes.series`: its ``control-*.csv``
files and its declared metrics) are read from its data directory and
scored with the detector (:mod:`maomao.spikes.detector`, causal, so
scoring the whole history again gives the old points the scores they had).
Spikes are looked for among the points no run had looked at yet: the
newest point per metric that the tool's last run (by any member) recorded
in its ``detection``, else the one this member kept in
``state_dir/detection/<tool>.json`` (while the store does not answer);
the first time, only the newest point counts.  Each spike goes:

- to journald, with ``MESSAGE_ID`` :data:`~maomao.spikes.alerts.MESSAGE_ID`
  (or a ``<4>`` line on stderr without a journal);
- to the store, ``spikes/<tool>/<run-id>.<metric>`` (swept by retention);
- to the ``[spikes] webhook``, from a task of its own, with a timeout and
  retries, never holding the run up.

The run record gets one entry per metric: its newest point, value,
baseline, deviation, score and whether a spike was found.  Reading and
scoring happen in a worker thread; nothing here fails a run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from maomao.config import Config
from maomao.errors import MaomaoError, StoreError, StoreUnavailable
from maomao.metrics import Metrics
from maomao.model import Run, Spike, Tool, utc_iso
from maomao.spikes.alerts import Alert, emit, post_json
from maomao.store import Store
from maomao.store.keys import Keys

if TYPE_CHECKING:
    from maomao.spikes.series import Series

log = logging.getLogger(__name__)

#: alerts waiting for the webhook; beyond this, new ones are dropped (and logged)
WEBHOOK_QUEUE = 1000


def detector_params(config: Config, tool: Mapping[str, float] | None = None, metric: str | None = None) -> Any:
    """The detector's parameters for one metric: its defaults, then ``[spikes]``, then the tool's
    ``--spike PARAM=V`` settings, then its ``--spike METRIC.PARAM=V`` ones."""
    from maomao.spikes.detector import DetectorParams

    spikes = config.spikes
    values: dict[str, float] = {"short_percent": spikes.short_percent}
    for name in ("threshold", "cooldown", "min_history"):
        if getattr(spikes, name) is not None:
            values[name] = getattr(spikes, name)
    for key, value in (tool or {}).items():
        if "." not in key:
            values[key] = value
    for key, value in (tool or {}).items():
        owner, _, name = key.rpartition(".")
        if owner and owner == metric:
            values[name] = value
    changes: dict[str, Any] = {"short_threshold": values.pop("short_percent") / 100}
    whole = ("cooldown", "min_history")
    changes.update({name: int(value) if name in whole else value for name, value in values.items()})
    return dataclasses.replace(DetectorParams(), **changes)


def _deviation(value: float, baseline: float) -> float | None:
    return (value - baseline) / abs(baseline) if baseline != 0 and math.isfinite(baseline) else None


class Detection:
    """Scores a tool's series after its runs and sends the alerts."""

    def __init__(
        self, config: Config, store: Store | None, keys: Keys | None, metrics: Metrics | None = None
    ) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.store = store
        self.keys = keys
        self.alerts = 0
        self._send, self._receive = trio.open_memory_channel[Alert](WEBHOOK_QUEUE)

    def _state_path(self, tool: str) -> Path:
        return self.config.daemon.state_dir / "detection" / f"{tool}.json"

    def _load(self, tool: str) -> dict[str, str]:
        try:
            data = json.loads(self._state_path(tool).read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _save(self, tool: str, seen: dict[str, str]) -> None:
        path = self._state_path(tool)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(seen, sort_keys=True))
        os.replace(tmp, path)

    async def last_seen(self, tool: str) -> dict[str, str]:
        """The newest point per metric that the tool's latest run with detection entries looked at."""
        if self.store is None or self.keys is None:
            return {}
        try:
            found = await self.store.range(self.keys.runs(tool))
        except (StoreUnavailable, StoreError) as exc:
            log.warning("spike detection of %s: run records not readable (%s); using this member's state", tool, exc)
            return {}
        for kv in reversed(found.kvs):  # run ids sort by time: the newest last
            try:
                run = Run.from_value(kv.value)
            except MaomaoError:
                continue
            points = {str(e["metric"]): str(e["point"]) for e in run.detection if e.get("metric") and e.get("point")}
            if points:
                return points
        return {}

    @staticmethod
    def series(tool: Tool, workdir: Path) -> list[Series]:
        """Blocking: the tool's series as its data directory holds them now."""
        from maomao.spikes.series import tool_series

        return tool_series(workdir, tool.metrics)

    def score(
        self, tool: Tool, run_id: str, member: str, workdir: Path, recorded: dict[str, str] | None = None,
        found_series: list[Series] | None = None,
    ) -> tuple[list[dict[str, Any]], list[Alert]]:
        """Blocking: the run record's entries and the alerts of the new points (after ``recorded``'s)."""
        import numpy as np

        from maomao.spikes.detector import score_series

        seen = {**self._load(tool.name), **(recorded or {})}
        entries: list[dict[str, Any]] = []
        alerts: list[Alert] = []
        now = utc_iso(datetime.now(UTC))
        for series in found_series if found_series is not None else self.series(tool, workdir):
            entry: dict[str, Any] = {"metric": series.name, "points": len(series.values), "skipped": series.skipped}
            if not series.values:
                entries.append({**entry, "spike": False})
                continue
            params = detector_params(self.config, tool.spikes, series.name)
            scored = score_series(np.asarray(series.values, dtype=float), params)
            last = seen.get(series.name)
            start = series.labels.index(last) + 1 if last in series.labels else len(series.values) - 1
            newest = len(series.values) - 1
            found = [i for i in range(start, newest + 1) if bool(scored.spikes[i])]
            for i in found:
                value, baseline = series.values[i], float(scored.baseline[i])
                deviation = _deviation(value, baseline)
                alerts.append(
                    Alert(tool.name, series.name, run_id, member, series.labels[i], value, baseline,
                          math.nan if deviation is None else deviation, float(scored.scores[i]), now)
                )  # fmt: skip
            baseline = float(scored.baseline[newest])
            entries.append({
                **entry,
                "point": series.labels[newest],
                "value": series.values[newest],
                "baseline": baseline if math.isfinite(baseline) else None,
                "deviation": _deviation(series.values[newest], baseline),
                "score": float(scored.scores[newest]),
                "spike": bool(found),
                "new_points": newest + 1 - start,
            })  # fmt: skip
            seen[series.name] = series.labels[newest]
        self._save(tool.name, seen)
        return entries, alerts

    async def after_run(self, tool: Tool, run_id: str, member: str, workdir: Path) -> tuple[dict[str, Any], ...]:
        """Detect, alert, and return what goes into the run record; never raises."""
        try:
            found = await trio.to_thread.run_sync(self.series, tool, workdir)
            # what other members' runs looked at matters only when there are points to look at
            recorded = await self.last_seen(tool.name) if any(s.values for s in found) else {}
            entries, alerts = await trio.to_thread.run_sync(
                partial(self.score, tool, run_id, member, workdir, recorded, found)
            )
        except Exception:
            log.exception("spike detection of run %s of %s failed", run_id, tool.name)
            return ()
        for alert in alerts:
            self.alerts += 1
            self.metrics.spikes.inc(tool=alert.tool, metric=alert.metric)
            emit(alert)
            await self._record(alert)
            if self.config.spikes.webhook:
                self.queue(alert)
        return tuple(entries)

    def queue(self, alert: Alert) -> None:
        """Hand ``alert`` to :meth:`webhook_loop` (dropped, and logged, when WEBHOOK_QUEUE are waiting)."""
        try:
            self._send.send_nowait(alert)
        except trio.WouldBlock:
            log.warning("webhook queue full: alert of %s %s not sent", alert.tool, alert.metric)

    async def _record(self, alert: Alert) -> None:
        if self.store is None or self.keys is None:
            return
        spike = Spike(
            name=f"{alert.run_id}.{alert.metric}", tool=alert.tool, metric=alert.metric, run_id=alert.run_id,
            member=alert.member, point=alert.label, value=alert.value, baseline=alert.baseline,
            deviation=None if math.isnan(alert.deviation) else alert.deviation, score=alert.score,
            detected=alert.detected,
        )  # fmt: skip
        try:
            await self.store.put(self.keys.spike(alert.tool, spike.name), spike.to_value())
        except (StoreUnavailable, StoreError) as exc:
            log.warning("spike of %s %s not stored: %s (it is in the journal)", alert.tool, alert.metric, exc)

    async def webhook_loop(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send queued alerts to ``[spikes] webhook``: a timeout each, retries with growing pauses."""
        task_status.started()
        async for alert in self._receive:
            url = self.config.spikes.webhook
            if not url:
                continue
            payload = {"type": "maomao.spike", **alert.to_dict(), "message": alert.message()}
            if math.isnan(alert.deviation):
                payload["deviation"] = None
            for attempt in range(self.config.spikes.webhook_retries + 1):
                try:
                    await trio.to_thread.run_sync(
                        partial(post_json, url, payload, self.config.spikes.webhook_timeout), abandon_on_cancel=True
                    )
                    break
                except (OSError, ValueError) as exc:
                    if attempt == self.config.spikes.webhook_retries:
                        log.warning("webhook %s: alert of %s %s not delivered: %s", url, alert.tool, alert.metric, exc)
                    else:
                        await trio.sleep(min(60.0, 2.0**attempt))

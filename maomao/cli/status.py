"""``maomao ctl status [--json]``: the collaboration on one screen.

The store (which, where, how fast it answers), the live members, the runs in
progress, the next scheduled runs, and the last day's failed runs and
spikes.  One short conversation with the store; a store that does not
answer is the usual one-line error (exit 1).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from maomao.cli.context import Common, JsonFlag, with_registry
from maomao.cli.output import emit_table, warn
from maomao.config import Config
from maomao.errors import MaomaoError
from maomao.model import Claim, Member, Record, Run, Schedule, Spike, parse_iso, utc_iso
from maomao.registry import Registry, parse_at
from maomao.store import KeyValue

#: at most this many next runs, failures and spikes are shown
SHOWN = 10
#: failures and spikes of the last this long are shown
RECENT = timedelta(hours=24)
FAILED = ("failed", "timed_out")

R = TypeVar("R", bound=Record)


def _parse_all(kind: type[R], kvs: Iterable[KeyValue], root: str) -> list[R]:
    """The records of ``kvs``; a line on stderr naming each key that holds none."""
    found = []
    for kv in kvs:
        try:
            found.append(parse_at(kv, kind, root))
        except MaomaoError as exc:
            warn(str(exc))
    return found


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return parse_iso(text)
    except ValueError:
        return None


async def gather(registry: Registry, config: Config, now: datetime | None = None) -> dict[str, Any]:
    """Everything ``status`` shows, as one JSON-ready object."""
    now = now or datetime.now(UTC)
    keys, store = registry.keys, registry.store
    started = time.monotonic()
    members_kvs = await store.range(keys.members)
    latency = time.monotonic() - started
    members = _parse_all(Member, members_kvs.kvs, keys.members)
    schedules = _parse_all(Schedule, (await store.range(keys.schedules)).kvs, keys.schedules)
    claims = _parse_all(Claim, (await store.range(keys.claims)).kvs, keys.claims)
    runs = _parse_all(Run, (await store.range(keys.all_runs)).kvs, keys.all_runs)
    spikes = _parse_all(Spike, (await store.range(keys.all_spikes)).kvs, keys.all_spikes)

    upcoming = []
    for schedule in schedules:
        try:
            fire = schedule.parsed().next_after(now)
        except MaomaoError as exc:
            warn(f"schedule of {schedule.name}: {exc}")
            continue
        upcoming.append({"tool": schedule.name, "at": utc_iso(fire), "expression": schedule.expression})
    upcoming.sort(key=lambda entry: (entry["at"], entry["tool"]))

    oldest = now - RECENT
    failures = []
    for run in runs:
        when = _since(run.finished) or _since(run.started) or _since(_slot_time(run.slot))
        if run.state in FAILED and when is not None and when >= oldest:
            failures.append((when, run))
    failures.sort(key=lambda pair: (pair[0], pair[1].id), reverse=True)
    recent_spikes = [s for s in spikes if (_since(s.detected) or oldest - RECENT) >= oldest]
    recent_spikes.sort(key=lambda s: (s.detected, s.name), reverse=True)

    store_config = config.store
    where = str(store_config.path) if store_config.backend == "embedded" else ",".join(store_config.endpoints)
    return {
        "store": {
            "backend": store_config.backend,
            "where": where,
            "location": store.location,
            "answering": True,
            "latency_ms": round(latency * 1000, 1),
        },
        "members": [
            {"name": m.name, "host": m.host, "runtimes": list(m.runtimes), "labels": dict(m.labels),
             "version": m.version, "started": m.started}
            for m in sorted(members, key=lambda m: m.name)
        ],
        "running": [
            {"tool": c.tool, "run": c.name, "member": c.member, "state": c.state, "since": c.started or c.claimed}
            for c in sorted(claims, key=lambda c: (c.started or c.claimed, c.tool, c.name))
            if c.state in ("claimed", "running")
        ],
        "next": upcoming[:SHOWN],
        "failures": [
            {"tool": r.tool, "run": r.id, "member": r.member, "state": r.state, "exit_code": r.exit_code,
             "finished": r.finished, "detail": r.detail}
            for _, r in failures[:SHOWN]
        ],
        "spikes": [
            {"tool": s.tool, "metric": s.metric, "run": s.run_id, "member": s.member, "value": s.value,
             "baseline": s.baseline, "deviation": s.deviation, "score": s.score, "detected": s.detected}
            for s in recent_spikes[:SHOWN]
        ],
    }


def _slot_time(slot: str) -> str | None:
    from maomao.schedule import parse_slot_id

    try:
        return utc_iso(parse_slot_id(slot))
    except (MaomaoError, ValueError):
        return None


def _section(
    title: str, items: Sequence[Mapping[str, Any]], empty: str,
    columns: Sequence[tuple[str, Callable[[Mapping[str, Any]], str]]],
) -> None:
    print()
    if not items:
        print(f"{title}: {empty}")
        return
    print(f"{title}:")
    emit_table([h for h, _ in columns], [[cell(item) for _, cell in columns] for item in items])


def _labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def _change(spike: Mapping[str, Any]) -> str:
    deviation = spike.get("deviation")
    return f"{deviation:+.1%}" if isinstance(deviation, int | float) else "-"


def render(state: Mapping[str, Any]) -> None:
    """The one screen for people."""
    store = state["store"]
    print(f"store:    {store['backend']} {store['where']}, answering in {store['latency_ms']:g} ms")
    _section("members", state["members"], "none live", [
        ("NAME", lambda m: m["name"]), ("HOST", lambda m: m["host"]),
        ("RUNTIMES", lambda m: ",".join(m["runtimes"]) or "-"), ("LABELS", lambda m: _labels(m["labels"])),
    ])
    _section("running", state["running"], "nothing", [
        ("TOOL", lambda c: c["tool"]), ("RUN", lambda c: c["run"]), ("MEMBER", lambda c: c["member"]),
        ("STATE", lambda c: c["state"]), ("SINCE", lambda c: c["since"] or "-"),
    ])
    _section("next runs", state["next"], "no scheduled tools", [
        ("AT", lambda n: n["at"]), ("TOOL", lambda n: n["tool"]), ("SCHEDULE", lambda n: n["expression"]),
    ])
    _section("failures (24h)", state["failures"], "none", [
        ("FINISHED", lambda r: r["finished"] or "-"), ("TOOL", lambda r: r["tool"]), ("RUN", lambda r: r["run"]),
        ("MEMBER", lambda r: r["member"]), ("STATE", lambda r: r["state"]),
        ("EXIT", lambda r: "-" if r["exit_code"] is None else str(r["exit_code"])),
    ])
    _section("spikes (24h)", state["spikes"], "none", [
        ("DETECTED", lambda s: s["detected"]), ("TOOL", lambda s: s["tool"]), ("METRIC", lambda s: s["metric"]),
        ("VALUE", lambda s: f"{s['value']:g}"), ("CHANGE", _change), ("SCORE", lambda s: f"{s['score']:.3f}"),
        ("RUN", lambda s: s["run"]),
    ])


def status(*, json: JsonFlag = False, common: Common = Common()) -> None:
    """The collaboration on one screen: store, members, running and next runs, last day's failures and spikes.

    Parameters
    ----------
    json
        Print one JSON object (keys store, members, running, next, failures, spikes).
    """
    state = with_registry(common, gather)
    if json:
        import json as json_module

        sys.stdout.write(json_module.dumps(state, ensure_ascii=False, indent=2) + "\n")
        return
    render(state)

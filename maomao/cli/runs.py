"""A tool's runs for people and scripts: ``tool runs`` and the report ``tool run`` ends with.

A run in progress is a claim (``claims/<tool>/<run-id>``), a finished one a
run record (``runs/<tool>/<run-id>``); both are shown as :class:`Run`
records, a claim with its state ``claimed`` or ``running``.  Run ids sort
as their start times do (a scheduled run's id is its slot, a requested
one's starts with the time of the request), so newest first is reverse key
order.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from maomao.cli.output import emit_details, emit_json, emit_table, warn
from maomao.errors import MaomaoError, NotFound, ValidationError
from maomao.model import Claim, Run, parse_iso
from maomao.registry import Registry

COLUMNS = ("ID", "STATE", "TRIGGER", "SLOT", "MEMBER", "STARTED", "DURATION", "EXIT", "COMMIT")


def from_claim(claim: Claim) -> Run:
    """A claim shown as the run it will become."""
    try:
        return Run(
            id=claim.name,
            tool=claim.tool,
            slot=claim.slot,
            trigger=claim.trigger,
            member=claim.member,
            state=claim.state,
            started=claim.started,
        )
    except ValidationError as exc:
        raise MaomaoError(f"stored claim {claim.name!r} is invalid: {exc}") from None


async def list_runs(registry: Registry, tool: str, limit: int) -> list[Run]:
    """The tool's runs, newest first, at most ``limit`` of them (0: all)."""
    # claims first: a run that finishes between the two reads is then seen as its record, never missed
    claims = await registry.claims(tool).list()
    runs = await registry.runs(tool).list()
    merged: dict[str, Run] = {}
    for problem in (*claims.unreadable, *runs.unreadable):
        warn(problem)
    for claim in claims.records:
        try:
            merged[claim.name] = from_claim(claim)
        except MaomaoError as exc:
            warn(str(exc))
    merged.update((run.id, run) for run in runs.records)
    if not merged and await registry.store.get(registry.keys.tool(tool)) is None:
        raise NotFound(f"no tool named {tool!r}")
    newest_first = [merged[run_id] for run_id in sorted(merged, reverse=True)]
    return newest_first[:limit] if limit else newest_first


def to_json(run: Run) -> dict[str, Any]:
    return run.to_dict()


def duration(run: Run, now: datetime | None = None) -> str:
    """How long it took (``1m30s``), or has taken so far (``12s+``); ``-`` before it started."""
    if run.started is None:
        return "-"
    try:
        started = parse_iso(run.started)
        if run.finished is not None:
            return _span(parse_iso(run.finished) - started)
    except ValueError:
        return "?"
    if run.state in ("claimed", "running"):
        return _span((now or datetime.now(UTC)) - started) + "+"
    return "-"


def _span(delta: timedelta) -> str:
    from maomao.schedule import format_duration

    return format_duration(max(delta, timedelta(0)))


def exit_cell(run: Run) -> str:
    return "-" if run.exit_code is None else str(run.exit_code)


def commit_cell(run: Run) -> str:
    """``1a2b3c4d pushed``, ``1a2b3c4d pending``, ``1a2b3c4d conflict``; ``-`` without a commit."""
    if run.commit is None:
        return "-"
    return f"{run.commit[:8]} {run.push}" if run.push else run.commit[:8]


def detection_line(entry: Mapping[str, Any]) -> str:
    """``control: 900 against 615 (+46.3 %, score 0.982) SPIKE``: one metric after a run."""
    metric = entry.get("metric", "?")
    if entry.get("value") is None:
        return f"{metric}: no points" + (f" ({entry.get('skipped')} unreadable)" if entry.get("skipped") else "")
    baseline, deviation, score = entry.get("baseline"), entry.get("deviation"), entry.get("score")
    against = f" against {baseline:g}" if isinstance(baseline, int | float) else ""
    change = f"{deviation:+.1%}, " if isinstance(deviation, int | float) else ""
    scored = f"score {score:.3f}" if isinstance(score, int | float) else "not scored"
    verdict = "SPIKE" if entry.get("spike") else "no spike"
    return f"{metric}: {entry['value']:g}{against} ({change}{scored}) {verdict} at {entry.get('point', '?')}"


def commit_line(run: Run) -> str:
    """The commit, what became of it and the branch it is on, for the run report."""
    where = f" on {run.branch}" if run.branch else ""
    return f"{run.commit} ({run.push or 'local'}{where})"


def emit_runs(runs: Sequence[Run], tool: str, as_json: bool) -> None:
    if as_json:
        emit_json(to_json(run) for run in runs)
        return
    if not runs:
        sys.stderr.write(f"no runs of tool {tool}\n")
        return
    now = datetime.now(UTC)
    rows = [
        [
            run.id, run.state, run.trigger, run.slot, run.member, run.started or "-", duration(run, now),
            exit_cell(run), commit_cell(run),
        ]
        for run in runs
    ]
    emit_table(COLUMNS, rows)


def outcome_line(run: Run) -> str:
    """``succeeded``, ``failed (exit 3)``, ``timed_out``: how a run ended, in one line."""
    if run.state != "succeeded" and run.exit_code is not None:
        return f"{run.state} (exit {run.exit_code})"
    return run.state


def emit_report(run: Run) -> None:
    """What a finished run did: where, how long, its exit code and the end of its output."""
    pairs = [
        ("run", run.id),
        ("member", run.member),
        ("started", run.started or "-"),
        ("duration", duration(run)),
        ("exit", exit_cell(run)),
    ]
    if run.image:
        pairs.append(("image", run.image))
    if run.commit:
        pairs.append(("commit", commit_line(run)))
    if run.detail:
        pairs.append(("detail", " ".join(run.detail.split())))
    pairs.extend(("spikes" if i == 0 else "", detection_line(entry)) for i, entry in enumerate(run.detection))
    emit_details(pairs)
    tail = run.output_tail
    if not tail:
        print("output:   (none)")
        return
    print("output:")
    sys.stdout.write(tail if tail.endswith("\n") else tail + "\n")

"""What the daemon tests check about runs: exactly once per slot, against an execution ledger."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from maomao.model import Run, parse_iso, utc_iso
from maomao.schedule import parse_expression, slot_id


def ledger_command(ledger: Path, then: str = "") -> str:
    """A process tool command appending ``SLOT MEMBER RUN_ID`` to ``ledger/<tool>`` (O_APPEND: atomic)."""
    tail = f"; {then}" if then else ""
    return f"sh -c 'echo \"$MAOMAO_SLOT $MAOMAO_MEMBER $MAOMAO_RUN_ID\" >> {ledger}/$MAOMAO_TOOL{tail}'"


def read_ledger(ledger: Path, tool: str) -> list[tuple[str, str, str]]:
    path = ledger / tool
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        slot, member, run_id = line.split(" ")
        entries.append((slot, member, run_id))
    return entries


def grid(tool: str, expression: str, first: datetime, last: datetime) -> list[str]:
    """The tool's fire times in [first, last], as run records write them (computed independently)."""
    start = math.ceil(first.timestamp())
    end = math.floor(last.timestamp())
    parsed = parse_expression(expression, tool)
    return [
        utc_iso(moment)
        for moment in (datetime.fromtimestamp(t, UTC) for t in range(start, end + 1))
        if parsed.last_at_or_before(moment) == moment
    ]


def check_exactly_once(
    tools: list[str], expression: str, runs: list[Run], ledger: Path, first: datetime, last: datetime
) -> Counter[str]:
    """Every slot in [first, last] of each tool ran exactly once and is recorded once; none ran twice.

    Returns the number of runs recorded per member.
    """
    by_tool: dict[str, list[Run]] = {tool: [] for tool in tools}
    for run in runs:
        assert run.tool in by_tool, f"a run of an unknown tool: {run}"
        by_tool[run.tool].append(run)
    members: Counter[str] = Counter()
    problems: list[str] = []
    for tool, tool_runs in by_tool.items():
        expected = grid(tool, expression, first, last)
        assert len(expected) >= 3, f"the window {first}..{last} holds too few slots of {tool}"
        for run in tool_runs:
            members[run.member] += 1
            assert run.trigger == "schedule", run
            assert run.id == slot_id(parse_iso(run.slot)), f"run id {run.id} does not name slot {run.slot}"
            if run.state not in ("succeeded", "skipped"):
                problems.append(f"{tool} {run.slot}: {run.state} ({run.detail}; {run.output_tail!r})")
        recorded = Counter(run.slot for run in tool_runs)
        twice = sorted(slot for slot, n in recorded.items() if n > 1)
        if twice:
            problems.append(f"{tool}: recorded more than once: {twice}")
        missing = [slot for slot in expected if slot not in recorded]
        if missing:
            problems.append(f"{tool}: no run recorded for {missing}")
        executed = read_ledger(ledger, tool)
        ran = Counter(slot for slot, _, _ in executed)
        ran_twice = sorted(slot for slot, n in ran.items() if n > 1)
        if ran_twice:
            problems.append(f"{tool}: executed more than once: {ran_twice} ({executed})")
        succeeded = {run.slot: run for run in tool_runs if run.state == "succeeded"}
        if set(ran) != set(succeeded):
            problems.append(
                f"{tool}: executed but not recorded succeeded: {sorted(set(ran) - set(succeeded))}; "
                f"recorded succeeded but never executed: {sorted(set(succeeded) - set(ran))}"
            )
        for slot, member, run_id in executed:
            record = succeeded.get(slot)
            if record is not None and (record.member, record.id) != (member, run_id):
                problems.append(
                    f"{tool} {slot}: executed by {member} as {run_id}, recorded {record.member} {record.id}"
                )
    assert not problems, "\n".join(problems)
    return members


def wall(seconds_from_now: float = 0.0) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds_from_now)

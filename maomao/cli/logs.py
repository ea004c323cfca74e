"""``maomao ctl tool logs``: a run's output, from the log file the member wrote.

A member saves each run's stdout and stderr to
``importdir/.maomao/logs/<tool>/<run-id>.log``.  On the machine that ran
it, ``tool logs`` prints that file (``--follow`` keeps printing what is
appended until the run has finished, like ``tail -f`` that knows when to
stop).  A run that ran on another member has only the tail kept in its run
record here; that is printed, with a note on stderr saying where the whole
log is.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import BinaryIO

import trio

from maomao.cli.runs import list_runs
from maomao.config import Config
from maomao.errors import NotFound
from maomao.model import Run, check_name, check_run_id
from maomao.registry import Registry
from maomao.runner import log_path

#: how often --follow looks for more output and for the end of the run
POLL = 0.25
ACTIVE = ("claimed", "running")


async def find_run(registry: Registry, tool: str, run_id: str | None) -> Run:
    """The run (in progress or finished) to show; the newest when ``run_id`` is None."""
    runs = await list_runs(registry, tool, 0 if run_id else 1)
    if run_id is None:
        if not runs:
            raise NotFound(f"tool {tool} has no runs yet")
        return runs[0]
    for run in runs:
        if run.id == run_id:
            return run
    raise NotFound(f"tool {tool} has no run {run_id!r}")


async def poll_run(registry: Registry, run: Run, done: Callable[[], bool]) -> Run:
    """``run`` as stored once it has finished or ``done()`` holds, polling the store.

    (Polling, not a watch: this is a person's command, and a watch would
    need the store's watch thread for a few reads a second.)
    """
    while run.state in ACTIVE and not done():
        await trio.sleep(POLL)
        run = await find_run(registry, run.tool, run.id)
    return run


def _copy(handle: BinaryIO, out: BinaryIO) -> int:
    data = handle.read()
    if data:
        out.write(data)
        out.flush()
    return len(data)


async def show_logs(registry: Registry, config: Config, tool: str, run_id: str | None, follow: bool) -> int:
    check_name(tool, "tool name")
    if run_id is not None:
        check_run_id(run_id)
    run = await find_run(registry, tool, run_id)
    path = log_path(config.importdir, tool, run.id)
    out = sys.stdout.buffer
    if not path.exists() and run.state in ACTIVE and follow and run.member == config.member:
        # claimed here but not started: the file comes when it starts
        run = await poll_run(registry, run, lambda: path.exists())
    if not path.exists():
        if run.state in ACTIVE and follow:
            sys.stderr.write(f"run {run.id} is running on member {run.member}; waiting for it to finish\n")
            run = await poll_run(registry, run, lambda: False)
        where = f"member {run.member}" if run.member != config.member else "this member (the file is gone)"
        sys.stderr.write(
            f"the log of run {run.id} is on {where}; showing the last {len(run.output_tail)} characters "
            "kept in its run record\n"
        )
        sys.stdout.write(run.output_tail)
        return 0
    with path.open("rb") as handle:
        _copy(handle, out)
        if not follow:
            return 0

        def copy_more() -> bool:
            _copy(handle, out)
            return False  # follow until the run has ended

        await poll_run(registry, run, copy_more)
        _copy(handle, out)  # what came between the last read and the end of the run
    return 0

"""The ``process`` runtime: a tool's ``--command`` as a host process.

The command (split like a shell would, run without one) starts in the
tool's data directory, in a session of its own, with a clean environment
(see :meth:`~maomao.runner.RunSpec.environment`), stdin from /dev/null and
stdout+stderr into the run's log file.  On timeout or cancellation the
whole process group gets SIGTERM, then SIGKILL after the grace.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import signal
import subprocess
from datetime import UTC, datetime

import trio

from maomao.runner import RunnerUnavailable, RunOutcome, RunSpec, RunState, read_tail


def _signal_group(process: trio.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


async def _stop(process: trio.Process, grace: float) -> None:
    """SIGTERM the group, wait ``grace``, SIGKILL; shielded from cancellation."""
    with trio.CancelScope(shield=True):
        _signal_group(process, signal.SIGTERM)
        with trio.move_on_after(grace):
            await process.wait()
            return
        _signal_group(process, signal.SIGKILL)
        await process.wait()


class ProcessRunner:
    """Runs tools as host processes."""

    name = "process"

    async def run(self, spec: RunSpec) -> RunOutcome:
        if not spec.tool.command:
            raise RunnerUnavailable(f"tool {spec.tool.name} has no command for the process runtime")
        argv = shlex.split(spec.tool.command)
        if spec.workdir.is_symlink() or (spec.workdir.exists() and not spec.workdir.is_dir()):
            # a link a tool left in its place: running there would hand the tool what the link points at
            raise RunnerUnavailable(f"data directory {spec.workdir} is not a directory (a symlink?); not run")
        spec.workdir.mkdir(parents=True, exist_ok=True)
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = datetime.now(UTC)
        with spec.log_path.open("ab") as log:
            try:
                process = await trio.lowlevel.open_process(
                    argv,
                    cwd=spec.workdir,
                    env=spec.environment(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                log.write(f"maomao: cannot start {argv[0]!r}: {exc}\n".encode())
                log.flush()
                finished = datetime.now(UTC)
                return RunOutcome("failed", None, started, finished, read_tail(spec.log_path), str(exc))
            state: RunState
            code: int | None
            try:
                with trio.move_on_after(spec.timeout if spec.timeout > 0 else math.inf) as timer:
                    code = await process.wait()
                if timer.cancelled_caught:
                    await _stop(process, spec.kill_grace)
                    log.write(f"\nmaomao: timed out after {spec.timeout:g}s\n".encode())
                    state, code = "timed_out", process.returncode
                else:
                    state = "succeeded" if code == 0 else "failed"
            except trio.Cancelled:
                await _stop(process, spec.kill_grace)
                log.write(b"\nmaomao: cancelled\n")
                raise
        finished = datetime.now(UTC)
        return RunOutcome(state, code, started, finished, read_tail(spec.log_path))

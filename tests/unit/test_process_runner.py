"""The process runtime, with real processes: exit codes, timeouts, cancellation, environment."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from maomao.model import Tool
from maomao.runner import RunSpec, read_tail
from maomao.runner.process import ProcessRunner

pytestmark = pytest.mark.timeout(60)


def gone(pid: int) -> bool:
    """Dead: no such process, or a zombie waiting for a reaper that is not us."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def spec(tmp_path: Path, command: str, timeout: float = 30, **env: str) -> RunSpec:
    tool = Tool("p", "me", "busybox", "/d", "/c", "web", command=command, runtime="process", env=env)
    return RunSpec(
        tool=tool, run_id="r1", slot="2026-11-30T00:00:00Z", member="m1", workdir=tmp_path / "data",
        log_path=tmp_path / "logs" / "r1.log", timeout=timeout, kill_grace=1,
    )


async def test_success_and_output(tmp_path: Path) -> None:
    outcome = await ProcessRunner().run(spec(tmp_path, "sh -c 'echo out; echo err >&2; pwd > where'"))
    assert (outcome.state, outcome.exit_code) == ("succeeded", 0)
    assert "out\n" in outcome.output_tail and "err\n" in outcome.output_tail
    assert (tmp_path / "data" / "where").read_text().strip() == str(tmp_path / "data")


async def test_failure_keeps_the_exit_code(tmp_path: Path) -> None:
    outcome = await ProcessRunner().run(spec(tmp_path, "sh -c 'exit 3'"))
    assert (outcome.state, outcome.exit_code) == ("failed", 3)


async def test_missing_program_is_a_failed_run(tmp_path: Path) -> None:
    outcome = await ProcessRunner().run(spec(tmp_path, "/nonexistent/collector --now"))
    assert outcome.state == "failed" and outcome.exit_code is None
    assert "cannot start" in outcome.output_tail


async def test_timeout_terms_then_kills_the_whole_group(tmp_path: Path) -> None:
    # the shell ignores SIGTERM and has a child: both must be gone after the grace
    command = "sh -c 'trap \"\" TERM; sleep 30 & echo $! > child; wait'"
    started = time.monotonic()
    outcome = await ProcessRunner().run(spec(tmp_path, command, timeout=1))
    assert outcome.state == "timed_out"
    assert time.monotonic() - started < 10
    child = int((tmp_path / "data" / "child").read_text())
    await trio.sleep(0.2)
    assert gone(child)
    assert "timed out after 1s" in read_tail(tmp_path / "logs" / "r1.log")


async def test_cancellation_stops_the_process(tmp_path: Path) -> None:
    runner = ProcessRunner()
    with trio.move_on_after(1) as scope:
        await runner.run(spec(tmp_path, "sh -c 'echo $$ > pid; sleep 30'"))
    assert scope.cancelled_caught
    pid = int((tmp_path / "data" / "pid").read_text())
    assert gone(pid)
    assert "cancelled" in read_tail(tmp_path / "logs" / "r1.log")


async def test_environment_is_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("SECRET_TOKEN", "do not leak")
    outcome = await ProcessRunner().run(spec(tmp_path, "sh -c 'env > env.txt'", TARGET="x"))
    assert outcome.state == "succeeded"
    env = dict(line.split("=", 1) for line in (tmp_path / "data" / "env.txt").read_text().splitlines() if "=" in line)
    assert "NOTIFY_SOCKET" not in env and "SECRET_TOKEN" not in env
    assert env["TARGET"] == "x" and env["MAOMAO_TOOL"] == "p" and env["MAOMAO_RUN_ID"] == "r1"
    assert env["MAOMAO_SLOT"] == "2026-11-30T00:00:00Z" and env["MAOMAO_MEMBER"] == "m1"

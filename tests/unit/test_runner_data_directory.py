"""A data directory a tool replaced with a symlink (or a file) is never run in nor mounted."""

from __future__ import annotations

from pathlib import Path

import pytest

from maomao.config import RunnerConfig
from maomao.model import Tool
from maomao.runner import RunnerUnavailable, RunSpec
from maomao.runner.container import ContainerRunner
from maomao.runner.process import ProcessRunner

pytestmark = pytest.mark.timeout(30)


def spec(tmp_path: Path, runtime: str) -> RunSpec:
    tool = Tool("p", "me", "busybox", "/d", "/c", "web", command="sh -c 'touch written'", runtime=runtime)
    return RunSpec(
        tool=tool, run_id="r1", slot="2026-11-30T00:00:00Z", member="m1", workdir=tmp_path / "data",
        log_path=tmp_path / "logs" / "r1.log", timeout=10, kill_grace=1,
    )


class NoEngine(ContainerRunner):
    """A container runner whose engine answers (never asked: the data directory is refused first)."""

    async def _clients(self) -> tuple[object, object]:
        return object(), object()


@pytest.mark.parametrize("kind", ["link to a directory", "dangling link", "file"])
@pytest.mark.parametrize("runtime", ["process", "container"])
async def test_refused(tmp_path: Path, kind: str, runtime: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    data = tmp_path / "data"
    if kind == "link to a directory":
        data.symlink_to(elsewhere)
    elif kind == "dangling link":
        data.symlink_to(tmp_path / "nowhere")
    else:
        data.write_text("not a directory\n")
    engine = RunnerConfig(None, None, None, None, "none", False, 5)
    runner = ProcessRunner() if runtime == "process" else NoEngine(engine)
    with pytest.raises(RunnerUnavailable, match="not a directory"):
        await runner.run(spec(tmp_path, runtime))
    assert list(elsewhere.iterdir()) == [] and not (tmp_path / "nowhere").exists()

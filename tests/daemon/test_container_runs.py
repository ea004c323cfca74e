"""Tools as containers, end to end: ``maoctl`` -> a daemon -> Podman -> the git data remote.

Everything is real: a ``maomao daemon`` subprocess whose container runtime
talks to ``podman system service`` (the session's ``podman`` fixture),
images built locally from Debian's static busybox (no registry here),
bare git remotes in temporary directories, and ``maoctl`` as a subprocess.
The example collector is the one under ``examples/``, unchanged.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from maomao.model import Run
from tests.support.daemons import Daemon, Daemons, StoreSpec, embedded_spec, wait_for
from tests.support.git import git
from tests.support.podman import Podman

pytestmark = pytest.mark.integration

MakeDaemons = Callable[[StoreSpec], Daemons]
EXAMPLE = Path(__file__).parents[2] / "examples" / "memory-collector"
TOOL_IMAGE = "localhost/maomao-test/tool:1"  # WORKDIR /usr/src/app: ./data is the data repository
COLLECTOR_IMAGE = "localhost/maomao-test/memory-collector:1"


@pytest.fixture(scope="module")
def images(podman: Podman) -> Podman:
    podman.build_image(TOOL_IMAGE, workdir="/usr/src/app")
    # examples/memory-collector's Dockerfile, built here from busybox-static (no registry to pull from)
    podman.build_image(
        COLLECTOR_IMAGE, {"/usr/src/app/collect.sh": (EXAMPLE / "collect.sh").read_text()},
        cmd=["sh", "collect.sh"], workdir="/usr/src/app",
    )
    return podman


class Site:
    """One daemon on an embedded store, its container runtime on the test's Podman."""

    def __init__(self, cluster: Daemons, podman: Podman) -> None:
        self.cluster = cluster
        self.engine = {"DOCKER_HOST": podman.url}
        self.daemon: Daemon = cluster.start("alpha", env=self.engine)

    def ctl(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return self.cluster.ctl(*args, timeout=timeout, env=self.engine)

    def add(self, name: str, *options: str, image: str = TOOL_IMAGE) -> str:
        """Register a container tool with a fresh bare data remote; the remote's path."""
        remote = self.cluster.records.data_remote(name)
        added = self.ctl("tool", "add", name, "Test Author", image, remote, "https://git.example.org/code.git",
                         "test data", *options)  # fmt: skip
        assert added.returncode == 0, added
        return remote

    def run(self, name: str, ok: bool = True) -> Run:
        result = self.ctl("tool", "run", name, "--wait", "--claim-timeout", "20", timeout=120)
        assert (result.returncode == 0) == ok, result
        match = re.search(r"^run:\s+(\S+)", result.stdout, re.MULTILINE)
        assert match, result.stdout
        (run,) = [r for r in self.cluster.records.runs(name) if r.id == match.group(1)]
        return run


@pytest.fixture
def site(tmp_path: Path, make_daemons: MakeDaemons, images: Podman) -> Site:
    return Site(make_daemons(embedded_spec(tmp_path)), images)


@pytest.mark.timeout(120)
def test_the_example_collector_runs_unchanged_and_its_data_is_pushed(site: Site) -> None:
    remote = site.add("memory", image=COLLECTOR_IMAGE)
    first = site.run("memory")
    assert first.state == "succeeded" and first.exit_code == 0, first
    assert first.push == "pushed" and first.commit == git("-C", remote, "rev-parse", "main").strip(), first
    assert first.image and first.image.startswith("localhost/maomao-test/memory-collector@sha256:"), first
    value = git("-C", remote, "show", "main:control-0.csv").strip()
    assert value.isdigit() and int(value) > 0
    assert f"control-0.csv = {value} KiB" in first.output_tail
    message = git("-C", remote, "log", "-1", "--format=%B", "main")
    assert f"Maomao-Run: {first.id}" in message and f"Maomao-Slot: {first.slot}" in message
    second = site.run("memory")
    assert second.push == "pushed"
    assert git("-C", remote, "ls-tree", "--name-only", "main").split() == [
        "control-0.csv", "control-1.csv", "measurements.csv"
    ]
    assert len(git("-C", remote, "show", "main:measurements.csv").splitlines()) == 3  # header + 2 rows
    # the log of the newest run, and of the first by id: on the member's machine, the whole log file
    member_config = site.daemon.config_path
    newest = site.cluster.ctl("tool", "logs", "memory", env=site.engine, config=member_config)
    assert newest.returncode == 0 and newest.stderr == "" and "control-1.csv" in newest.stdout, newest
    shown = site.cluster.ctl("tool", "logs", "memory", first.id, env=site.engine, config=member_config)
    assert shown.returncode == 0 and "control-0.csv" in shown.stdout and "control-1.csv" not in shown.stdout
    # elsewhere: the tail kept in the run record, and a note saying where the log is
    elsewhere = site.ctl("tool", "logs", "memory", first.id)
    assert elsewhere.returncode == 0 and "control-0.csv" in elsewhere.stdout, elsewhere
    assert "on member alpha" in elsewhere.stderr
    # the container is gone after each run
    assert site.cluster.records.claims("memory") == {}


@pytest.mark.timeout(120)
def test_a_failed_run_and_a_timed_out_run_stay_off_main(site: Site) -> None:
    remote = site.add("broken", "--command", "sh -c 'echo partial > data/partial.txt; echo oops >&2; exit 1'")
    failed = site.run("broken", ok=False)
    assert failed.state == "failed" and failed.exit_code == 1, failed
    assert failed.branch == f"maomao/failed/{failed.id}" and failed.push == "pushed", failed
    assert git("-C", remote, "show", f"{failed.branch}:partial.txt") == "partial\n"
    assert "oops" in failed.output_tail
    assert subprocess.run(["git", "-C", remote, "rev-parse", "--verify", "-q", "main"],
                          capture_output=True).returncode != 0  # fmt: skip

    remote = site.add("slow", "--timeout", "2", "--command", "sh -c 'echo begun > data/begun.txt; sleep 60'")
    began = time.monotonic()
    timed_out = site.run("slow", ok=False)
    assert timed_out.state == "timed_out", timed_out
    assert time.monotonic() - began < 30
    assert timed_out.branch == f"maomao/failed/{timed_out.id}"
    assert git("-C", remote, "show", f"{timed_out.branch}:begun.txt") == "begun\n"
    assert "timed out after 2s" in timed_out.output_tail


@pytest.mark.timeout(120)
def test_a_tool_over_its_memory_limit_fails_and_says_so(site: Site) -> None:
    # a shell variable that doubles until it is far beyond 16 MiB
    hog = "sh -c 'x=0123456789abcdef; while true; do x=$x$x; done'"
    site.add("hungry", "--memory", "16m", "--command", hog)
    run = site.run("hungry", ok=False)
    assert run.state == "failed", run
    assert "memory limit 16m" in run.detail, run


@pytest.mark.timeout(150)
def test_a_pinned_tool_keeps_its_digest_when_the_tag_moves(site: Site, images: Podman) -> None:
    tag = f"localhost/maomao-test/moving-{uuid.uuid4().hex[:6]}:latest"
    images.build_image(tag, {"/VERSION": "1\n"})
    command = ["--command", "sh -c 'cat /VERSION > /usr/src/app/data/version.txt'"]
    remote = site.add("pinned", "--pin", *command, image=tag)
    stored = site.ctl("tool", "get", "pinned", "--json")
    (tool,) = json.loads(stored.stdout)
    assert tool["digest"] and tool["digest"].startswith("sha256:"), tool
    images.build_image(tag, {"/VERSION": "2\n"})  # the tag moves
    site.run("pinned")
    assert git("-C", remote, "show", "main:version.txt") == "1\n"
    # an unpinned tool on the same tag sees the new image
    other = site.add("floating", *command, image=tag)
    site.run("floating")
    assert git("-C", other, "show", "main:version.txt") == "2\n"
    # pin again: now it runs the new one
    pinned = site.ctl("tool", "pin", "pinned")
    assert pinned.returncode == 0 and "pinned to" in pinned.stdout, pinned
    run = site.run("pinned")
    assert git("-C", remote, "show", "main:version.txt") == "2\n", run
    assert run.image and run.image.endswith(json.loads(
        site.ctl("tool", "get", "pinned", "--json").stdout)[0]["digest"])


@pytest.mark.timeout(120)
def test_an_image_that_is_missing_and_cannot_be_pulled_fails_clearly(site: Site) -> None:
    site.add("ghost", image="localhost/maomao-test/never-built:1")
    began = time.monotonic()
    run = site.run("ghost", ok=False)
    assert run.state == "failed" and run.exit_code is None, run
    assert "localhost/maomao-test/never-built:1" in run.detail and "pulled" in run.detail, run
    assert time.monotonic() - began < 60
    # pinning it is refused with one line, exit 1, and writes nothing
    pin = site.ctl("tool", "pin", "ghost")
    assert pin.returncode == 1 and pin.stderr.count("\n") == 1 and pin.stderr.startswith("error: "), pin
    assert "never-built" in pin.stderr


@pytest.mark.timeout(120)
def test_logs_follow_prints_output_as_it_comes_until_the_run_ends(site: Site) -> None:
    site.add("chatty", "--command", "sh -c 'for i in 1 2 3 4; do echo line $i; sleep 0.7; done'")
    started = site.ctl("tool", "run", "chatty", "--no-wait")
    assert started.returncode == 0, started
    run_id = started.stdout.strip().split()[-1]
    # on the member's machine: the log file, as it grows
    began = time.monotonic()
    follow = site.cluster.ctl(
        "tool", "logs", "chatty", "--follow", timeout=60, env=site.engine, config=site.daemon.config_path
    )
    assert time.monotonic() - began > 1.0  # it waited for the run to go on
    assert follow.returncode == 0 and follow.stderr == "", follow
    assert [line for line in follow.stdout.splitlines() if line.startswith("line")] == [
        "line 1", "line 2", "line 3", "line 4"
    ]
    run = wait_for("the run record", lambda: next(
        (r for r in site.cluster.records.runs("chatty") if r.id == run_id), None), timeout=30)
    assert run.state == "succeeded"


@pytest.mark.timeout(60)
def test_pinning_without_an_engine_exits_1_and_writes_nothing(site: Site) -> None:
    nowhere = {"DOCKER_HOST": "unix:///nonexistent/maomao/engine.sock"}
    remote = site.cluster.records.data_remote("unpinned")
    added = site.cluster.ctl("tool", "add", "unpinned", "Test Author", TOOL_IMAGE, remote,
                             "https://git.example.org/code.git", "test data", "--pin", env=nowhere)  # fmt: skip
    assert added.returncode == 1, added
    assert added.stderr.startswith("error: ") and added.stderr.count("\n") == 1, added.stderr
    assert "/nonexistent/maomao/engine.sock" in added.stderr
    assert site.cluster.ctl("tool", "get", "unpinned").returncode == 2  # not registered

"""Runs write into their git data repository: real daemons, real bare remotes.

Each test runs twice: with the ``process`` runtime, and with the
``container`` runtime on the session's Podman (an image whose working
directory is its data mount, so the same shell commands write into the
data repository either way).  What is checked is what a collaborator sees
on the remote:
the commit with its trailers, failed runs on their own branch, both members'
commits after simultaneous pushes, the conflicts branch, and a push that
waited for the remote to come back.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from maomao.model import Run
from tests.support.daemons import Daemons, StoreSpec, embedded_spec, etcd_spec, wait_for
from tests.support.etcd import EtcdCluster
from tests.support.git import git
from tests.support.podman import Podman

pytestmark = pytest.mark.integration

MakeDaemons = Callable[[StoreSpec], Daemons]

FAST_RETRY = {"MAOMAO_GIT_PUSH_RETRY": "1", "MAOMAO_GIT_TIMEOUT": "5"}
IN_DATA_IMAGE = "localhost/maomao-test/in-data:1"  # WORKDIR is the data mount


@dataclass
class Runtime:
    """How the tools of a test run: the runtime, what the daemons need for it, the image."""

    name: str
    env: dict[str, str]
    image: str = "example.org/test/tool:1"

    def add_tool(self, cluster: Daemons, name: str, command: str, **fields: object) -> None:
        cluster.records.add_tool(name, command, runtime=self.name, image=self.image, **fields)


@pytest.fixture(scope="module")
def in_data_image(podman: Podman) -> str:
    podman.build_image(IN_DATA_IMAGE, workdir="/usr/src/app/data")
    return podman.url


@pytest.fixture(params=["process", "container"])
def runtime(request: pytest.FixtureRequest) -> Runtime:
    if request.param == "process":
        return Runtime("process", {})
    return Runtime("container", {"DOCKER_HOST": request.getfixturevalue("in_data_image")}, IN_DATA_IMAGE)


def message(remote: str, ref: str) -> str:
    return git("-C", remote, "log", "-1", "--format=%B", ref)


def finished(cluster: Daemons, tool: str, run_id: str, timeout: float = 30) -> Run:
    def done() -> Run | None:
        return next((r for r in cluster.records.runs(tool) if r.id == run_id), None)

    return wait_for(f"run {run_id} of {tool}", done, timeout)


def run_now(cluster: Daemons, tool: str, timeout: float = 30) -> Run:
    run_id = f"now-{uuid.uuid4().hex[:8]}"
    cluster.records.request(run_id, tool)
    return finished(cluster, tool, run_id, timeout)


@pytest.mark.timeout(90)
def test_a_run_commits_and_pushes_with_trailers(tmp_path: Path, make_daemons: MakeDaemons, runtime: Runtime) -> None:
    cluster = make_daemons(embedded_spec(tmp_path))
    daemon = cluster.start("alpha", env=runtime.env)
    remote = cluster.records.data_remote("counter")
    runtime.add_tool(cluster, "counter", "sh -c 'echo 41 > control-1.csv; echo collected'")
    run = run_now(cluster, "counter")
    assert run.state == "succeeded", run
    assert run.push == "pushed" and run.branch is None, run
    assert run.commit == git("-C", remote, "rev-parse", "main").strip()
    text = message(remote, "main")
    assert f"Maomao-Run: {run.id}" in text and f"Maomao-Slot: {run.slot}" in text
    assert "Maomao-Member: alpha" in text and "counter" in text.splitlines()[0]
    assert git("-C", remote, "show", "main:control-1.csv") == "41\n"
    # the author comes from [git] (default: maomao <maomao@MEMBER>)
    assert git("-C", remote, "log", "-1", "--format=%an <%ae>", "main").strip() == "maomao <maomao@alpha>"
    # a second run that writes the same thing commits nothing; the record says so
    again = run_now(cluster, "counter")
    assert again.state == "succeeded" and again.commit is None and again.push == "", again
    assert daemon.stop() == 0


@pytest.mark.timeout(90)
def test_a_failed_run_goes_to_its_own_branch(tmp_path: Path, make_daemons: MakeDaemons, runtime: Runtime) -> None:
    cluster = make_daemons(embedded_spec(tmp_path))
    daemon = cluster.start("alpha", env=runtime.env)
    remote = cluster.records.data_remote("flaky")
    runtime.add_tool(cluster, "flaky", "sh -c 'echo good > kept.txt'")
    good = run_now(cluster, "flaky")
    main_before = git("-C", remote, "rev-parse", "main").strip()
    assert good.commit == main_before
    runtime.add_tool(cluster, "flaky", "sh -c 'echo half > partial.csv; echo broken >&2; exit 1'")
    bad = run_now(cluster, "flaky")
    assert bad.state == "failed" and bad.exit_code == 1, bad
    assert bad.branch == f"maomao/failed/{bad.id}" and bad.push == "pushed", bad
    assert git("-C", remote, "rev-parse", "main").strip() == main_before  # main untouched
    assert git("-C", remote, "show", f"{bad.branch}:partial.csv") == "half\n"
    assert bad.commit == git("-C", remote, "rev-parse", bad.branch).strip()
    assert "Maomao-State: failed" in message(remote, bad.branch)
    # the work tree is back at main: the next good run does not carry the failed output
    runtime.add_tool(cluster, "flaky", "sh -c 'echo better > kept.txt'")
    after = run_now(cluster, "flaky")
    assert after.push == "pushed"
    files = git("-C", remote, "ls-tree", "--name-only", "main").split()
    assert "partial.csv" not in files and git("-C", remote, "show", "main:kept.txt") == "better\n"
    assert daemon.stop() == 0


@pytest.mark.timeout(120)
def test_remote_down_then_back_push_pending_then_pushed(
    tmp_path: Path, make_daemons: MakeDaemons, runtime: Runtime
) -> None:
    cluster = make_daemons(embedded_spec(tmp_path))
    daemon = cluster.start("alpha", env={**FAST_RETRY, **runtime.env})
    remote = cluster.records.data_remote("patient")
    runtime.add_tool(cluster, "patient", "sh -c 'echo $MAOMAO_RUN_ID >> runs.txt'")
    first = run_now(cluster, "patient")
    assert first.push == "pushed", first
    away = Path(remote + ".away")
    os.rename(remote, away)  # the remote is gone
    down = run_now(cluster, "patient")
    assert down.state == "succeeded" and down.push == "pending" and down.commit, down
    assert "fetch failed" in down.detail, down
    # the commit is kept in the clone
    clone = daemon.importdir / "patient"
    assert git("-C", clone, "log", "-1", "--format=%H").strip() == down.commit
    os.rename(away, remote)  # back
    settled = wait_for(
        "the pending push to land and the run record to say so",
        lambda: next((r for r in cluster.records.runs("patient") if r.id == down.id and r.push == "pushed"), None),
        timeout=30,
    )
    assert settled.commit == git("-C", remote, "rev-parse", "main").strip()
    assert f"Maomao-Run: {down.id}" in message(remote, "main")
    assert daemon.stop() == 0


@pytest.mark.timeout(120)
def test_a_clone_that_failed_is_tried_again(tmp_path: Path, make_daemons: MakeDaemons, runtime: Runtime) -> None:
    cluster = make_daemons(embedded_spec(tmp_path))
    daemon = cluster.start("alpha", env=runtime.env)
    missing = tmp_path / "later.git"
    runtime.add_tool(cluster, "late", "sh -c 'echo hello > hello.txt'", data_repo=str(missing))
    failed = run_now(cluster, "late")
    assert failed.state == "failed" and "clone failed" in failed.detail, failed
    assert failed.exit_code is None  # the tool never started
    assert not (daemon.importdir / "late").exists()
    git("init", "-q", "--bare", "-b", "main", missing)
    ok = run_now(cluster, "late")
    assert ok.state == "succeeded" and ok.push == "pushed", ok
    assert git("-C", missing, "show", "main:hello.txt") == "hello\n"
    assert daemon.stop() == 0


@pytest.mark.timeout(150)
def test_two_members_pushing_at_once_both_land(
    etcd: EtcdCluster, prefix: str, make_daemons: MakeDaemons, runtime: Runtime
) -> None:
    cluster = make_daemons(etcd_spec(etcd.endpoints, prefix))
    cluster.start_many(["alpha", "beta"], env=runtime.env)
    remote = cluster.records.data_remote("everywhere")
    # every member runs every slot, at the same moment, each writing a file of its own
    runtime.add_tool(cluster, "everywhere", "sh -c 'echo $MAOMAO_SLOT > $MAOMAO_MEMBER-$MAOMAO_RUN_ID.txt'")
    cluster.records.schedule("everywhere", "@every 2s", on="all", concurrency="allow")

    def enough() -> list[Run] | None:
        runs = [r for r in cluster.records.runs("everywhere") if r.state == "succeeded"]
        return runs if len({r.member for r in runs}) == 2 and len(runs) >= 6 else None

    wait_for("six runs on both members", enough, timeout=60)
    cluster.records.delete(cluster.records.keys.schedule("everywhere"))
    wait_for("runs to settle", lambda: not cluster.records.claims("everywhere") or None, timeout=30)
    runs = [r for r in cluster.records.runs("everywhere") if r.state == "succeeded"]
    assert all(r.push in ("pushed", "rebased") for r in runs), [(r.id, r.push, r.detail) for r in runs]
    assert any(r.push == "rebased" for r in runs), "no push ever raced another: the test did not test that"
    files = set(git("-C", remote, "ls-tree", "--name-only", "main").split())
    for run in runs:
        assert f"{run.member}-{run.id}.txt" in files, run
        # the recorded commit is the one on main (rebased ones included)
        assert git("-C", remote, "merge-base", "--is-ancestor", run.commit or "", "main", check=False) == ""
        assert f"Maomao-Run: {run.id}" in message(remote, run.commit or "")


@pytest.mark.timeout(90)
def test_a_conflicting_change_goes_to_the_conflicts_branch(
    tmp_path: Path, make_daemons: MakeDaemons, runtime: Runtime
) -> None:
    cluster = make_daemons(embedded_spec(tmp_path))
    daemon = cluster.start("alpha", env=runtime.env)
    remote = cluster.records.data_remote("contended")
    runtime.add_tool(cluster, "contended", "sh -c 'echo first > value.txt'")
    assert run_now(cluster, "contended").push == "pushed"
    # the tool takes its time; meanwhile someone else changes the same file on the remote
    started = daemon.importdir / "contended" / "started"  # the tool says it began, in its data directory
    runtime.add_tool(cluster, "contended", "sh -c 'touch started; sleep 3; echo $MAOMAO_RUN_ID > value.txt'")
    run_id = f"now-{uuid.uuid4().hex[:8]}"
    cluster.records.request(run_id, "contended")
    wait_for("the run to start", lambda: started.exists() or None, timeout=20)
    other = tmp_path / "other"
    git("clone", "-q", remote, other)
    (other / "value.txt").write_text("theirs\n")
    git("-C", other, "commit", "-q", "-am", "a change of someone else's")
    git("-C", other, "push", "-q", "origin", "HEAD:main")
    theirs = git("-C", remote, "rev-parse", "main").strip()
    run = finished(cluster, "contended", run_id)
    assert run.state == "succeeded" and run.push == "conflict", run
    assert run.branch == f"maomao/conflicts/{run_id}" and "conflict" in run.detail, run
    assert git("-C", remote, "rev-parse", "main").strip() == theirs  # main keeps their change
    assert git("-C", remote, "show", f"{run.branch}:value.txt") == f"{run_id}\n"
    assert run.commit == git("-C", remote, "rev-parse", run.branch).strip()
    # the clone follows main again: the next run builds on their change
    runtime.add_tool(cluster, "contended", "sh -c 'cat value.txt > seen.txt'")
    after = run_now(cluster, "contended")
    assert after.push == "pushed" and git("-C", remote, "show", "main:seen.txt") == "theirs\n"
    assert daemon.stop() == 0

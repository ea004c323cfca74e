"""Member faults on a three-node etcd: crashes, freezes, shutdown during runs, a name clash.

Three ``maomao daemon`` processes on a three-node etcd cluster; each tool
has a bare git remote of its own.  Every scenario counts what happened
three ways: run records, commits on the remote (``Maomao-Run`` trailers)
and the execution ledger the tools append to.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable

import pytest

from maomao.model import Claim
from tests.cluster.faults import branches, collector, commits, record_figures
from tests.daemon.checks import read_ledger
from tests.support.daemons import Daemon, Daemons, StoreSpec, etcd_spec, wait_for
from tests.support.etcd import EtcdCluster
from tests.support.git import git

pytestmark = pytest.mark.integration

MakeDaemons = Callable[[StoreSpec], Daemons]
MEMBERS = ["alpha", "beta", "gamma"]


def running_claim(cluster: Daemons, tool: str, run_id: str) -> Claim | None:
    claim = cluster.records.claims(tool).get(cluster.records.keys.claim(tool, run_id))
    return claim if claim is not None and claim.state == "running" else None


def holder(cluster: Daemons, daemons: list[Daemon], tool: str, run_id: str) -> Daemon:
    claim = wait_for("the run to be claimed and running", lambda: running_claim(cluster, tool, run_id), timeout=20)
    return next(d for d in daemons if d.name == claim.member)


def slow_run(cluster: Daemons, then: str, grace: float) -> tuple[str, list[Daemon], str, Daemon]:
    """Tool "slow" (the collector, then ``then``) requested on three members once they are ready:
    its remote, the daemons, the run id and the member running it."""
    remote = cluster.records.add_tool("slow", collector(cluster.shared, then)).data_repo
    daemons = cluster.start_many(MEMBERS, claim_grace=grace)
    run_id = f"now-{uuid.uuid4().hex[:8]}"
    cluster.records.request(run_id, "slow")
    running = holder(cluster, daemons, "slow", run_id)
    # the claim says running as the run starts (its data repository is fetched meanwhile): the fault
    # comes once the tool itself has started, so that it outlives a killed or frozen daemon
    wait_for(
        f"the tool to start on {running.name}",
        lambda: any(member == running.name for _, member, _ in read_ledger(cluster.shared, "slow")), timeout=10,
    )
    return remote, daemons, run_id, running


@pytest.mark.timeout(120)
def test_kill_9_of_the_member_running_a_slot(etcd3: EtcdCluster, prefix: str, make_daemons: MakeDaemons) -> None:
    ttl, grace = 3, 1.0
    cluster = make_daemons(etcd_spec(etcd3.endpoints, prefix, ttl=ttl))
    records = cluster.records
    remote, daemons, run_id, victim = slow_run(cluster, "sleep 5; echo done", grace)
    victim.kill()
    killed = time.monotonic()

    def taken_over() -> Claim | None:
        claim = running_claim(cluster, "slow", run_id)
        return claim if claim is not None and claim.member != victim.name else None

    survivor = wait_for("another member to take the slot over", taken_over, timeout=ttl + grace + 5, interval=0.05)
    takeover = time.monotonic() - killed
    run = wait_for("the run record", lambda: next(iter(records.runs("slow")), None), timeout=20)
    assert (run.id, run.member, run.state) == (run_id, survivor.member, "succeeded"), run
    assert len(records.runs("slow")) == 1
    landed = commits(remote)
    assert landed[run_id] == 1 and run.commit is not None, (landed, run)
    assert git("-C", remote, "show", f"{run.commit}:out/{run_id}").strip() == survivor.member
    # both starts are in the ledger: the killed member's (its tool outlived it) and the survivor's
    assert sorted(m for _, m, _ in read_ledger(cluster.shared, "slow")) == sorted([victim.name, survivor.member])
    assert records.claims() == {} and victim.name not in records.members()
    for daemon in daemons:
        if daemon is not victim:
            assert daemon.running, daemon.exited()
            assert "Traceback" not in daemon.stderr()
    assert takeover <= ttl + grace + 5
    record_figures(
        "kill -9 of the member running a slot", lease_ttl_s=ttl, claim_grace_s=grace,
        takeover_s=round(takeover, 2), run_records=1, commits=landed[run_id], duplicates=0, losses=0,
    )


@pytest.mark.timeout(150)
def test_a_member_frozen_past_its_lease_records_and_pushes_nothing(
    etcd3: EtcdCluster, prefix: str, make_daemons: MakeDaemons
) -> None:
    ttl, grace = 3, 1.0
    cluster = make_daemons(etcd_spec(etcd3.endpoints, prefix, ttl=ttl))
    records = cluster.records
    remote, daemons, run_id, frozen = slow_run(cluster, "sleep 3; echo done", grace)
    frozen.signal(signal.SIGSTOP)  # the daemon alone: its tool runs on and finishes meanwhile
    stopped = time.monotonic()
    try:
        run = wait_for(
            "another member to run and record the slot", lambda: next(iter(records.runs("slow")), None),
            timeout=ttl + grace + 20, interval=0.2,
        )
        assert run.member != frozen.name and run.state == "succeeded", run
        # the frozen member's tool finished long ago; its output waits in its clone
        assert (frozen.importdir / "slow" / "out" / run_id).exists()
    finally:
        frozen.signal(signal.SIGCONT)
    frozen_for = time.monotonic() - stopped
    # back: it finds its run's slot gone, sets the commit aside, records nothing
    wait_for(
        "the resumed member to notice it lost the slot",
        lambda: "went to another member" in frozen.stderr(), timeout=20, interval=0.2,
    )
    wait_for("the resumed member to be live again", lambda: frozen.name in records.members(), timeout=20)
    time.sleep(ttl)  # room for a wrong push or record to show up
    runs = records.runs("slow")
    assert [(r.id, r.member) for r in runs] == [(run_id, run.member)], runs
    landed = commits(remote)
    assert landed == {run_id: 1}, landed
    assert git("-C", remote, "show", f"main:out/{run_id}").strip() == run.member  # the survivor's output
    assert branches(remote) == []
    lost = git("-C", frozen.importdir / "slow", "branch", "--list", f"maomao/lost/{run_id}").strip()
    assert lost, "the frozen member's commit is not kept on maomao/lost/<run-id>"
    assert records.claims() == {}
    for daemon in daemons:
        assert daemon.running, daemon.exited()
        assert "Traceback" not in daemon.stderr()
    record_figures(
        "member frozen (SIGSTOP) past its lease", lease_ttl_s=ttl, frozen_s=round(frozen_for, 1),
        run_records=len(runs), commits_on_main=landed[run_id], records_by_frozen_member=0,
        pushes_by_frozen_member=0,
    )


@pytest.mark.timeout(120)
def test_sigterm_during_runs_drains_cancels_and_commits_nothing_half(
    etcd3: EtcdCluster, prefix: str, make_daemons: MakeDaemons
) -> None:
    grace, kill_grace = 4.0, 1.0
    cluster = make_daemons(etcd_spec(etcd3.endpoints, prefix, ttl=60))  # the member key can only go by revocation
    records = cluster.records
    quick_remote = records.add_tool("quick", collector(cluster.shared, "sleep 2")).data_repo
    stuck_remote = records.add_tool(
        "stuck", collector(cluster.shared, "echo partial > partial.csv; sleep 60; echo never > late.csv")
    ).data_repo
    daemon = cluster.start("alpha", shutdown_grace=grace, kill_grace=kill_grace)
    quick, stuck = (f"now-{uuid.uuid4().hex[:8]}" for _ in range(2))
    records.request(quick, "quick")
    records.request(stuck, "stuck")
    wait_for("both runs running", lambda: running_claim(cluster, "quick", quick) and running_claim(
        cluster, "stuck", stuck), timeout=20)
    daemon.signal(signal.SIGTERM)
    sent = time.monotonic()
    assert daemon.process is not None
    assert daemon.process.wait(grace + kill_grace + 15) == 0, daemon.stderr()
    took = time.monotonic() - sent
    assert records.members() == {} and records.claims() == {}  # lease revoked at once, not expired
    runs = {r.tool: r for r in records.runs()}
    assert (runs["quick"].state, runs["stuck"].state) == ("succeeded", "cancelled"), runs
    # the run that finished within the grace is committed and pushed on main
    assert commits(quick_remote) == {quick: 1}
    # the cancelled one never reaches main; what it wrote is kept on its failed branch
    assert commits(stuck_remote) == {}
    assert branches(stuck_remote) == [f"maomao/failed/{stuck}"], runs["stuck"]
    assert git("-C", stuck_remote, "show", f"maomao/failed/{stuck}:partial.csv").strip() == "partial"
    assert "late.csv" not in git("-C", stuck_remote, "ls-tree", "-r", "--name-only", f"maomao/failed/{stuck}")
    # the clone is clean: nothing half-committed is left for the next run
    assert git("-C", daemon.importdir / "stuck", "status", "--porcelain").strip() == ""
    assert "Traceback" not in daemon.stderr()
    record_figures(
        "SIGTERM during runs", shutdown_grace_s=grace, exit_s=round(took, 2), drained=1, cancelled=1,
        half_commits=0,
    )


@pytest.mark.timeout(60)
def test_a_second_daemon_with_a_live_members_name_is_refused(
    etcd3: EtcdCluster, prefix: str, make_daemons: MakeDaemons
) -> None:
    cluster = make_daemons(etcd_spec(etcd3.endpoints, prefix))
    daemons = cluster.start_many(MEMBERS)
    before = cluster.records.members()
    second = cluster.launch(cluster.make("beta"))
    assert second.process is not None
    assert second.process.wait(30) == 1, second.stderr()
    lines = second.stderr().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "'beta'" in lines[0], lines
    assert cluster.records.members() == before
    for daemon in daemons:
        assert daemon.running, daemon.exited()
    record_figures("second daemon with a live member's name", refused=True, exit_code=1)

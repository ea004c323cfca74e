"""etcd faults under three daemons: the leader killed, the whole cluster down for 30 s.

Tools run every 2 s on three members; what ran is known from the ledger
the tools append to and from the commits on their remotes, independently of
the run records.  Every slot in the window must have run and been recorded
exactly once, and landed in git once.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest

from maomao.model import Run, parse_iso
from tests.cluster.faults import collector, commits, lateness, leader, record_figures, stop_all
from tests.daemon.checks import check_exactly_once, grid, read_ledger, wall
from tests.support.daemons import Daemons, StoreSpec, etcd_spec, wait_for
from tests.support.etcd import EtcdCluster

pytestmark = pytest.mark.integration

MakeDaemons = Callable[[StoreSpec], Daemons]
MEMBERS = ["alpha", "beta", "gamma"]
EVERY = "@every 2s"
#: a daemon that dies of a bug says where (the tests also fail on any traceback in the logs)
DEBUG = {"MAOMAO_DEBUG": "1"}


def schedule_tools(cluster: Daemons, count: int) -> dict[str, str]:
    """``count`` collectors every 2 s; their remotes by tool name."""
    remotes = {}
    for i in range(count):
        name = f"t{i:02}"
        remotes[name] = cluster.records.add_tool(name, collector(cluster.shared)).data_repo
        cluster.records.schedule(name, EVERY)
    return remotes


def check_git(remotes: dict[str, str], runs: list[Run]) -> int:
    """Each succeeded run landed on its remote's main exactly once, and nothing else did; the commit count."""
    total = 0
    for tool, remote in remotes.items():
        landed = commits(remote)
        succeeded = Counter(r.id for r in runs if r.tool == tool and r.state == "succeeded")
        assert landed == succeeded, (tool, landed - succeeded, succeeded - landed)
        total += sum(landed.values())
    return total


@pytest.mark.timeout(240)
def test_the_etcd_leader_killed_under_running_members(
    etcd3: EtcdCluster, prefix: str, make_daemons: MakeDaemons
) -> None:
    cluster = make_daemons(etcd_spec(etcd3.endpoints, prefix, ttl=4))
    remotes = schedule_tools(cluster, 8)
    daemons = cluster.start_many(MEMBERS, env=DEBUG)
    ready = wall()
    time.sleep(12)

    def leading() -> list[int]:  # a list: wait_for wants something truthy, and node 0 may lead
        found = leader(etcd3)
        return [found] if found is not None else []

    (index,) = wait_for("the etcd leader", leading, timeout=10)
    etcd3.stop(index, sig=signal.SIGKILL)
    killed = wall()
    (new_leader,) = wait_for("a new etcd leader", leading, timeout=20, interval=0.2)
    elected = (wall() - killed).total_seconds()
    time.sleep(12)
    etcd3.start(index)  # the old leader comes back as a follower
    time.sleep(10)
    end = wall()
    stop_all(cluster, daemons)
    runs = cluster.records.runs()
    per_member = check_exactly_once(
        list(remotes), EVERY, runs, cluster.shared, ready + timedelta(seconds=3), end - timedelta(seconds=5)
    )
    landed = check_git(remotes, runs)
    around = [r for r in runs if killed - timedelta(seconds=2) <= parse_iso(r.slot) <= killed + timedelta(seconds=6)]
    assert around and all(r.state == "succeeded" for r in around), around
    for daemon in daemons:
        assert "Traceback" not in daemon.stderr()
    record_figures(
        "etcd leader killed", tools=len(remotes), slots_recorded=len(runs),
        succeeded=sum(r.state == "succeeded" for r in runs), commits=landed, duplicates=0, losses=0,
        new_leader_after_s=round(elected, 2), new_leader=f"n{new_leader}", runs_per_member=dict(per_member),
        **lateness(runs),
    )


@pytest.mark.timeout(300)
def test_all_of_etcd_down_for_30_seconds(etcd3: EtcdCluster, prefix: str, make_daemons: MakeDaemons) -> None:
    outage = 30.0
    cluster = make_daemons(etcd_spec(etcd3.endpoints, prefix, ttl=4))
    remotes = schedule_tools(cluster, 6)
    # one long run on each member, going when the store goes away
    long_remote = cluster.records.add_tool("long", collector(cluster.shared, "sleep 8")).data_repo
    daemons = cluster.start_many(MEMBERS, env=DEBUG)
    ready = wall()
    time.sleep(12)
    for name in MEMBERS:
        cluster.records.request(f"now-long-{name}", "long", on=name)
    wait_for(
        "the long runs to be going", lambda: sum(c.state == "running" for c in cluster.records.claims("long").values())
        == len(MEMBERS), timeout=15, interval=0.1,
    )
    etcd3.stop(sig=signal.SIGKILL)
    down = wall()
    until = time.monotonic() + outage
    while time.monotonic() < until:
        for daemon in daemons:
            assert daemon.running, daemon.exited()
            daemon.notify.drain()
        time.sleep(0.5)
    for daemon in daemons:
        statuses = daemon.notify.statuses()
        assert any("store UNREACHABLE" in s for s in statuses), (daemon.name, statuses[-3:])
    held = sum(len(list((d.state_dir / "outbox").glob("*.json"))) for d in daemons)
    assert held >= len(MEMBERS), "the long runs' records are not waiting in the outboxes"
    etcd3.start()
    back = wall()
    started_back = time.monotonic()
    wait_for(
        "every outbox to empty",
        lambda: all(not list((d.state_dir / "outbox").glob("*.json")) for d in daemons), timeout=30, interval=0.5,
    )
    recovered = time.monotonic() - started_back
    # their commits waited for the records (a fenced one must never be pushed); now they are pushed
    wait_for(
        "the long runs' commits on the remote",
        lambda: commits(long_remote) == Counter({f"now-long-{m}": 1 for m in MEMBERS}), timeout=20, interval=0.5,
    )
    pushed = time.monotonic() - started_back
    wait_for(
        "runs of slots after the outage",
        lambda: sum(parse_iso(r.slot) > back + timedelta(seconds=2) for r in cluster.records.runs("t00")) >= 2,
        timeout=30, interval=0.5,
    )
    time.sleep(10)
    end = wall()
    stop_all(cluster, daemons)
    runs = cluster.records.runs()
    long_runs = [r for r in runs if r.tool == "long"]
    assert sorted((r.id, r.state) for r in long_runs) == [(f"now-long-{m}", "succeeded") for m in MEMBERS], long_runs
    assert commits(long_remote) == Counter({f"now-long-{m}": 1 for m in MEMBERS})
    scheduled = [r for r in runs if r.tool != "long"]
    # before and after the outage: every slot recorded; across all of it, none recorded twice
    for first, last in ((ready + timedelta(seconds=3), down - timedelta(seconds=1)),
                        (back + timedelta(seconds=3), end - timedelta(seconds=5))):
        for tool in remotes:
            expected = grid(tool, EVERY, first, last)
            assert len(expected) >= 3, (first, last)
            recorded = {r.slot for r in scheduled if r.tool == tool}
            assert [slot for slot in expected if slot not in recorded] == [], tool
    for tool in remotes:
        twice = [slot for slot, n in Counter(r.slot for r in scheduled if r.tool == tool).items() if n > 1]
        assert twice == [], (tool, twice)
    # across all of it, nothing ran twice and all that ran is recorded and committed once
    for tool in remotes:
        ran = Counter(slot for slot, _, _ in read_ledger(cluster.shared, tool))
        assert all(n == 1 for n in ran.values()), (tool, ran)
        succeeded = {r.slot for r in scheduled if r.tool == tool and r.state == "succeeded"}
        assert set(ran) == succeeded, (tool, sorted(set(ran) ^ succeeded))
    landed = check_git({**remotes, "long": long_remote}, runs)
    missed = [r for r in scheduled if down < parse_iso(r.slot) <= back]
    for daemon in daemons:
        assert "Traceback" not in daemon.stderr()
    record_figures(
        "all of etcd down for 30 s", outage_s=outage, outbox_records=held, outbox_empty_after_s=round(recovered, 2),
        pushed_after_s=round(pushed, 2),
        slots_recorded=len(runs), commits=landed, missed_slots_caught_up=len(missed), duplicates=0, losses=0,
        daemon_restarts=0,
    )

"""Load: 300 tools every 10 s across three members for 3 minutes, on a three-node etcd.

Each run appends to the execution ledger (each tool's data repository is
fetched before every run, but the tool writes nothing to commit: 30 commits
and pushes a second do not fit on these 2-core machines next to three
etcd members and three daemons).  Every slot in the window must run once
and be recorded once; the figures (lateness, runs per member) go to
docs/RELIABILITY.md.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from tests.cluster.faults import FIGURES, lateness, record_figures, stop_all
from tests.daemon.checks import check_exactly_once, ledger_command, wall
from tests.support.daemons import Daemons, StoreSpec, etcd_spec
from tests.support.etcd import EtcdCluster

pytestmark = pytest.mark.integration

MakeDaemons = Callable[[StoreSpec], Daemons]
MEMBERS = ["alpha", "beta", "gamma"]
TOOLS = 300
EVERY = "@every 10s"
SECONDS = 180


@pytest.mark.timeout(SECONDS + 240)
def test_300_tools_every_10s_on_three_members(etcd3: EtcdCluster, prefix: str, make_daemons: MakeDaemons) -> None:
    cluster = make_daemons(etcd_spec(etcd3.endpoints, prefix, ttl=10))
    remotes = {}
    for i in range(TOOLS):
        name = f"load{i:03}"
        remotes[name] = cluster.records.add_tool(name, ledger_command(cluster.shared)).data_repo
        cluster.records.schedule(name, EVERY)
    daemons = cluster.start_many(MEMBERS, max_parallel=32)
    ready = wall()
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        for daemon in daemons:
            assert daemon.running, daemon.exited()
        time.sleep(1)
    end = wall()
    stop_all(cluster, daemons)
    logs = FIGURES.parent / "load-logs"
    logs.mkdir(parents=True, exist_ok=True)
    for daemon in daemons:
        shutil.copy(daemon.stderr_path, logs / f"{daemon.name}.log")
    runs = cluster.records.runs()
    first, last = ready + timedelta(seconds=10), end - timedelta(seconds=15)
    per_member = check_exactly_once(list(remotes), EVERY, runs, cluster.shared, first, last)
    assert len(per_member) == len(MEMBERS), per_member
    window = [r for r in runs if first.isoformat() <= r.slot]
    for daemon in daemons:
        assert "Traceback" not in daemon.stderr()
    record_figures(
        "load: 300 tools every 10 s on three members", tools=TOOLS, seconds=SECONDS, slots_recorded=len(runs),
        succeeded=sum(r.state == "succeeded" for r in runs), skipped=sum(r.state == "skipped" for r in runs),
        duplicates=0, losses=0, runs_per_member=dict(per_member), **lateness(runs),
        window_runs=len(window),
    )

"""Several real daemons on one real store: exactly once per slot, takeover after a crash, names.

Each daemon is a ``maomao daemon`` subprocess with a config, home and
import directory of its own; tools are host processes that append to a
ledger in a shared directory, so the tests see what actually ran, not only
what was recorded.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maomao.model import RunRequest, utc_iso
from maomao.schedule import parse_expression, slot_id
from tests.daemon.checks import check_exactly_once, ledger_command, read_ledger, wall
from tests.support.daemons import Daemons, StoreSpec, embedded_spec, etcd_spec, wait_for
from tests.support.etcd import EtcdCluster

pytestmark = pytest.mark.integration

MakeDaemons = Callable[[StoreSpec], Daemons]


def run_cluster(cluster: Daemons, members: list[str], tools: int, seconds: float) -> None:
    """Schedule ``tools`` tools every 2 s, run the members ``seconds``, stop them; check exactly once."""
    names = [f"t{i:02}" for i in range(tools)]
    for name in names:
        cluster.records.add_tool(name, ledger_command(cluster.shared))
        cluster.records.schedule(name, "@every 2s")
    daemons = cluster.start_many(members)
    ready = wall()
    time.sleep(seconds)
    end = wall()
    for daemon in daemons:
        assert daemon.running, daemon.exited()
    for daemon in daemons:
        assert daemon.stop(timeout=30) == 0, cluster.logs()
    # every lease was revoked at the exit: no member and no claim is left behind
    assert cluster.records.members() == {}
    assert cluster.records.claims() == {}
    per_member = check_exactly_once(
        names, "@every 2s", cluster.records.runs(), cluster.shared,
        ready + timedelta(seconds=3), end - timedelta(seconds=5),
    )
    if len(members) > 1:
        assert len(per_member) > 1, f"every run went to one member: {per_member}"
    for daemon in daemons:
        assert "Traceback" not in daemon.stderr(), daemon.stderr()


@pytest.mark.timeout(150)
def test_exactly_once_on_etcd_across_three_members(etcd: EtcdCluster, prefix: str, make_daemons: MakeDaemons) -> None:
    cluster = make_daemons(etcd_spec(etcd.endpoints, prefix))
    run_cluster(cluster, ["alpha", "beta", "gamma"], tools=20, seconds=30)


@pytest.mark.timeout(90)
def test_exactly_once_on_the_embedded_store(tmp_path: Path, make_daemons: MakeDaemons) -> None:
    cluster = make_daemons(embedded_spec(tmp_path))
    run_cluster(cluster, ["solo"], tools=5, seconds=15)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("trigger", ["request", "schedule"])
def test_a_member_killed_mid_run_is_taken_over(
    etcd: EtcdCluster, prefix: str, make_daemons: MakeDaemons, trigger: str
) -> None:
    ttl, grace = 3, 1.0
    cluster = make_daemons(etcd_spec(etcd.endpoints, prefix, ttl=ttl))
    records = cluster.records
    records.add_tool("slow", ledger_command(cluster.shared, "sleep 6; echo done"))
    if trigger == "request":
        run_id = f"now-{uuid.uuid4().hex[:8]}"
    else:
        # one slot that matters: the hour's latest, caught up at start (the schedule was created
        # before it); keep clear of the next fire, where that slot's deadline passes
        hourly = parse_expression("@every 1h", "slow")
        upcoming = (hourly.next_after(datetime.now(UTC)) - datetime.now(UTC)).total_seconds()
        if upcoming < 30:
            time.sleep(upcoming + 1)
        latest = hourly.last_at_or_before(datetime.now(UTC))
        assert latest is not None
        run_id = slot_id(latest)
    daemons = cluster.start_many(["alpha", "beta", "gamma"], claim_grace=grace)
    if trigger == "request":
        records.request(run_id, "slow")
    else:
        records.schedule("slow", "@every 1h", created=utc_iso(datetime.now(UTC) - timedelta(hours=2)))
    claim_key = records.keys.claim("slow", run_id)

    def running_claim() -> str | None:
        claim = records.claims("slow").get(claim_key)
        return claim.member if claim is not None and claim.state == "running" else None

    first = wait_for("the run to be claimed and running", running_claim, timeout=15)
    victim = next(d for d in daemons if d.name == first)
    victim.kill()
    killed_at = time.monotonic()

    # the lease expires within ttl; the others then claim after at most claim_grace
    def taken_over() -> str | None:
        member = running_claim()
        return member if member is not None and member != first else None

    second = wait_for("another member to take the slot over", taken_over, timeout=ttl + grace + 4)
    took = time.monotonic() - killed_at
    assert took <= ttl + grace + 4
    run = wait_for(
        "the run record", lambda: next(iter(records.runs("slow")), None), timeout=6 + 5
    )
    runs = records.runs("slow")
    assert len(runs) == 1, runs
    assert (run.id, run.member, run.state, run.trigger) == (run_id, second, "succeeded", trigger), run
    assert run.exit_code == 0 and "done" in run.output_tail
    assert records.claims("slow") == {}
    if trigger == "request":
        assert records.get(records.keys.request(run_id), RunRequest) is None  # the request is consumed
    # the killed member's process started once, the survivor's once: the ledger holds both starts
    starts = read_ledger(cluster.shared, "slow")
    assert sorted(member for _, member, _ in starts) == sorted([first, second]), starts
    assert first not in records.members()
    for daemon in daemons:
        if daemon is not victim:
            assert daemon.running, daemon.exited()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["etcd", "embedded"])
def test_a_second_daemon_with_a_live_members_name_refuses_to_start(
    etcd: EtcdCluster, prefix: str, tmp_path: Path, make_daemons: MakeDaemons, backend: str
) -> None:
    spec = etcd_spec(etcd.endpoints, prefix) if backend == "etcd" else embedded_spec(tmp_path)
    cluster = make_daemons(spec)
    first = cluster.start("alpha")
    before = cluster.records.members()["alpha"]
    second = cluster.launch(cluster.make("alpha"))
    assert second.process is not None
    code = second.process.wait(30)
    assert code == 1, second.stderr()
    lines = second.stderr().splitlines()
    assert len(lines) == 1, second.stderr()
    assert lines[0].startswith("error: ") and "'alpha'" in lines[0], lines[0]
    assert f"pid {before.pid}" in lines[0], lines[0]
    second.notify.drain()
    assert not any(m.has("READY") for m in second.notify.received), second.notify.received
    # the live member is untouched
    assert first.running, first.exited()
    assert cluster.records.members()["alpha"] == before
    assert first.stop() == 0

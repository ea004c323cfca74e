"""A store outage under a running daemon: it stays up, loses nothing, and goes on afterwards.

One daemon on an etcd of the test's own; etcd is stopped for 20 s while
runs are going.  What ran is known from a ledger the tool appends to; every
run that ran must be recorded once the store is back (from the daemon's
outbox), none twice, and scheduling must go on.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest

from maomao.model import parse_iso
from tests.daemon.checks import ledger_command, read_ledger, wall
from tests.support.daemons import Daemons, StoreSpec, etcd_spec, wait_for
from tests.support.etcd import EtcdCluster

pytestmark = pytest.mark.integration

MakeDaemons = Callable[[StoreSpec], Daemons]

OUTAGE = 20.0


@pytest.mark.timeout(120)
def test_runs_finished_during_an_outage_are_recorded_afterwards(
    own_etcd: EtcdCluster, prefix: str, make_daemons: MakeDaemons
) -> None:
    cluster = make_daemons(etcd_spec(own_etcd.endpoints, prefix, ttl=4))
    records = cluster.records
    records.add_tool("tick", ledger_command(cluster.shared, "sleep 1.5"))
    records.add_tool("long", ledger_command(cluster.shared, "sleep 6; echo long done"))
    records.schedule("tick", "@every 2s")
    daemon = cluster.start("alpha")
    outbox = daemon.state_dir / "outbox"

    # a few ordinary runs first
    wait_for("two tick runs recorded", lambda: len(records.runs("tick")) >= 2, timeout=15)
    long_id = f"now-{uuid.uuid4().hex[:8]}"
    records.request(long_id, "long")

    def both_running() -> bool:
        claims = records.claims()
        return sum(c.state == "running" for c in claims.values()) == 2

    # stop etcd while a tick run and the long run are both going
    wait_for("a tick run and the long run going at once", both_running, timeout=15, interval=0.05)
    own_etcd.stop(sig=signal.SIGKILL)  # at once: the tick run has little more than a second left
    stopped = wall()
    down_until = time.monotonic() + OUTAGE
    while time.monotonic() < down_until:
        assert daemon.running, daemon.exited()
        daemon.notify.drain(wait=0.25)
    statuses = daemon.notify.statuses()
    assert any("store UNREACHABLE" in s for s in statuses), statuses
    assert any("records in the outbox" in s for s in statuses), statuses
    # both runs that were going finished during the outage and wait in the outbox
    kept = sorted(p.name for p in outbox.glob("*.json"))
    assert any(name.startswith("long.") for name in kept), kept
    assert any(name.startswith("tick.") for name in kept), kept

    own_etcd.start()
    restarted = wall()
    executed = [slot for slot, _, _ in read_ledger(cluster.shared, "tick")]

    def all_recorded() -> bool:
        recorded = {run.slot for run in records.runs("tick")}
        return set(executed) <= recorded and bool(records.runs("long"))

    wait_for("every run that ran to be recorded", all_recorded, timeout=30, interval=0.5)
    wait_for("the outbox to empty", lambda: not list(outbox.glob("*.json")), timeout=10)
    # scheduling goes on: runs of slots after the restart are recorded
    wait_for(
        "new tick runs after the outage",
        lambda: sum(parse_iso(r.slot) > restarted + timedelta(seconds=1) for r in records.runs("tick")) >= 2,
        timeout=20,
        interval=0.5,
    )
    assert daemon.running, daemon.exited()
    assert daemon.stop() == 0

    runs = records.runs("tick")
    long_runs = records.runs("long")
    assert [(r.id, r.state) for r in long_runs] == [(long_id, "succeeded")], long_runs
    assert "long done" in long_runs[0].output_tail
    ledger = read_ledger(cluster.shared, "tick")
    ran = Counter(slot for slot, _, _ in ledger)
    assert all(n == 1 for n in ran.values()), f"a slot ran twice: {ledger}"
    succeeded = {r.slot for r in runs if r.state == "succeeded"}
    assert set(ran) == succeeded, (sorted(ran), sorted(succeeded))
    assert all(r.state in ("succeeded", "skipped") for r in runs), runs
    # nothing can be claimed during the outage; afterwards the slots it missed are caught up
    # with as catch_up = latest says: the newest of them once, not each one
    missed = [r for r in runs if stopped < parse_iso(r.slot) <= restarted]
    assert len(missed) <= 1, missed
    # ... and it runs: the run that was going when the store went away finished (its record
    # waited in the outbox), so it is no reason to skip
    assert all(r.state == "succeeded" for r in missed), missed
    assert "Traceback" not in daemon.stderr()

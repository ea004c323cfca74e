"""systemd's notify protocol, read from a real datagram socket as systemd reads it.

The subprocess tests run ``maomao daemon`` with ``NOTIFY_SOCKET`` pointing at
a socket the test bound; the watchdog test runs :class:`maomao.daemon.Daemon`
in the test's own Trio loop, so that it can make the scheduler loop hang.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

from maomao.config import load_config
from maomao.daemon import Daemon as InProcessDaemon
from maomao.daemon.notify import Notifier
from maomao.model import Schedule
from tests.support.daemons import Daemons, NotifySocket, StoreSpec, embedded_spec, etcd_spec, wait_for
from tests.support.etcd import EtcdCluster
from tests.support.tools import make_tool

pytestmark = pytest.mark.integration

MakeDaemons = Callable[[StoreSpec], Daemons]


@pytest.mark.timeout(90)
def test_ready_only_once_the_store_answers(own_etcd: EtcdCluster, prefix: str, make_daemons: MakeDaemons) -> None:
    own_etcd.stop()
    cluster = make_daemons(etcd_spec(own_etcd.endpoints, prefix))
    daemon = cluster.start("alpha", ready=False)
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        daemon.notify.drain(wait=0.2)
        assert daemon.running, daemon.exited()
    assert not any(m.has("READY") for m in daemon.notify.received), daemon.notify.received
    assert any("waiting for the store" in s for s in daemon.notify.statuses()), daemon.notify.statuses()

    own_etcd.start()
    ready = daemon.wait_ready(timeout=30)
    # READY=1 comes with the status line; it names the members and the store
    status = ready.get("STATUS") or ""
    assert "1 members" in status and "store ok" in status and own_etcd.endpoints[0] in status, status
    assert "alpha" in cluster.records.members()
    assert daemon.stop() == 0


@pytest.mark.timeout(60)
def test_status_lines_say_members_tools_and_store(etcd: EtcdCluster, prefix: str, make_daemons: MakeDaemons) -> None:
    cluster = make_daemons(etcd_spec(etcd.endpoints, prefix))
    alpha = cluster.start("alpha")
    cluster.start("beta")
    cluster.records.add_tool("noop", "true")
    cluster.records.schedule("noop", "@every 1h")

    def status_with_both() -> str | None:
        alpha.notify.drain()
        return next((s for s in alpha.notify.statuses() if s.startswith("alpha: 2 members, 1 scheduled tools")), None)

    status = wait_for("a STATUS= line counting 2 members and 1 tool", status_with_both, timeout=15)
    assert f"store ok (etcd at {etcd.endpoints[0]})" in status, status


@pytest.mark.timeout(60)
def test_sighup_reloads_and_relabels_the_member(etcd: EtcdCluster, prefix: str, make_daemons: MakeDaemons) -> None:
    cluster = make_daemons(etcd_spec(etcd.endpoints, prefix))
    daemon = cluster.start("alpha", labels="site=lab")
    assert cluster.records.members()["alpha"].labels == {"site": "lab"}

    daemon.daemon_keys["labels"] = "site=home,gpu=yes"
    daemon.write_config(cluster.store)
    daemon.notify.mark()
    daemon.signal(signal.SIGHUP)
    reloading = daemon.notify.wait("RELOADING", "1", timeout=10, alive=daemon.exited)
    assert (reloading.get("MONOTONIC_USEC") or "").isdigit(), reloading
    ready = daemon.notify.wait("READY", "1", timeout=10, alive=daemon.exited)
    assert ready.at >= reloading.at
    wait_for(
        "members/alpha to carry the new labels",
        lambda: cluster.records.members()["alpha"].labels == {"site": "home", "gpu": "yes"},
        timeout=10,
    )

    # a broken file on SIGHUP: the daemon says so, keeps its running config, stays ready
    daemon.config_path.write_text("[daemon]\nmax_parallel = lots\n")
    daemon.notify.mark()
    daemon.signal(signal.SIGHUP)
    daemon.notify.wait("RELOADING", "1", timeout=10, alive=daemon.exited)
    daemon.notify.wait("READY", "1", timeout=10, alive=daemon.exited)
    assert daemon.running, daemon.exited()
    # the log is written by a thread of its own: the line may come a moment after READY=1
    wait_for("the reload failure in the log", lambda: "reload failed" in daemon.stderr() or None, timeout=10)
    assert cluster.records.members()["alpha"].labels == {"site": "home", "gpu": "yes"}
    assert daemon.stop() == 0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(90)
def test_sigterm_drains_then_cancels_and_leaves(etcd: EtcdCluster, prefix: str, make_daemons: MakeDaemons) -> None:
    grace, kill_grace = 4.0, 1.0
    # a long ttl: the member key can only vanish at once if the lease is revoked
    cluster = make_daemons(etcd_spec(etcd.endpoints, prefix, ttl=60))
    records = cluster.records
    daemon = cluster.start("alpha", shutdown_grace=grace, kill_grace=kill_grace)
    records.add_tool("quick", "sh -c 'sleep 2; echo finished'")
    records.add_tool("stuck", "sh -c 'echo $$ > pid; echo started; sleep 60; echo survived'")
    quick, stuck = (f"now-{uuid.uuid4().hex[:8]}" for _ in range(2))
    records.request(quick, "quick")
    records.request(stuck, "stuck")

    def both_running() -> bool:
        claims = records.claims()
        return len(claims) == 2 and all(c.state == "running" for c in claims.values())

    wait_for("both runs to be running", both_running, timeout=15)
    pid_file = daemon.importdir / "stuck" / "pid"
    pgid = int(wait_for("the stuck tool's pid", lambda: pid_file.read_text().strip() if pid_file.exists() else "", 5))
    daemon.notify.mark()
    daemon.signal(signal.SIGTERM)
    sent = time.monotonic()
    daemon.notify.wait("STOPPING", "1", timeout=5, alive=daemon.exited)
    assert daemon.process is not None
    code = daemon.process.wait(grace + kill_grace + 10)
    took = time.monotonic() - sent
    assert code == 0, daemon.stderr()
    assert grace - 0.5 <= took <= grace + kill_grace + 10, took

    assert records.members() == {}  # lease revoked, not expired (ttl 60)
    assert records.claims() == {}
    runs = {run.tool: run for run in records.runs()}
    assert set(runs) == {"quick", "stuck"}, runs
    assert (runs["quick"].id, runs["quick"].state, runs["quick"].exit_code) == (quick, "succeeded", 0)
    assert "finished" in runs["quick"].output_tail
    assert (runs["stuck"].id, runs["stuck"].state) == (stuck, "cancelled"), runs["stuck"]
    assert "started" in runs["stuck"].output_tail and "survived" not in runs["stuck"].output_tail
    # the whole process group of the cancelled tool is gone
    wait_for("the cancelled tool's processes to be gone", lambda: not _group_alive(pgid), timeout=5)


@pytest.mark.timeout(60)
def test_tools_never_see_the_notify_socket(tmp_path: Path, make_daemons: MakeDaemons) -> None:
    cluster = make_daemons(embedded_spec(tmp_path))
    daemon = cluster.start("alpha", env={"WATCHDOG_USEC": "2000000"})
    # end to end through the CLI: register the tool, ask for a run now and wait for it
    added = cluster.ctl(
        "tool", "add", "envtool", "Test Author", "example.org/test/env:1", cluster.records.data_remote("envtool"),
        "https://git.example.org/c.git", "environment", "--runtime", "process", "--command", "sh -c 'env > env.txt'",
    )
    assert added.returncode == 0, added
    ran = cluster.ctl("tool", "run", "envtool", "--claim-timeout", "15")
    assert ran.returncode == 0, ran
    (run,) = cluster.records.runs("envtool")
    assert run.state == "succeeded" and run.member == "alpha", run
    run_id = run.id
    env_txt = (daemon.importdir / "envtool" / "env.txt").read_text()
    seen = dict(line.split("=", 1) for line in env_txt.splitlines() if "=" in line)
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        assert name not in seen, seen
    assert seen["MAOMAO_TOOL"] == "envtool"
    assert seen["MAOMAO_RUN_ID"] == run_id
    assert seen["MAOMAO_SLOT"] == run.slot == run_id
    assert seen["MAOMAO_MEMBER"] == "alpha"
    assert seen["HOME"] == str(daemon.root / "home")
    # the daemon itself kept the watchdog it was given: it pings
    daemon.notify.wait("WATCHDOG", "1", timeout=10, alive=daemon.exited)
    assert daemon.stop() == 0


# -- the watchdog, in-process ------------------------------------------------------


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    directory = Path(tempfile.mkdtemp(prefix="mao-wd-", dir="/tmp"))
    sock = NotifySocket(directory / "notify.sock")
    yield sock
    sock.close()
    shutil.rmtree(directory, ignore_errors=True)


async def _collect(sock: NotifySocket, seconds: float) -> None:
    end = trio.current_time() + seconds
    while trio.current_time() < end:
        sock.drain()
        await trio.sleep(0.02)


@pytest.mark.timeout(60)
async def test_watchdog_pings_only_while_the_scheduler_loop_progresses(
    tmp_path: Path, notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = tmp_path / "config.ini"
    config_path.write_text(
        f"[maomao]\nmember = dog\nimportdir = {tmp_path / 'import'}\n"
        f"[store]\nbackend = embedded\npath = {tmp_path / 'store.db'}\nttl = 4\n"
        f"[daemon]\nstate_dir = {tmp_path / 'state'}\n"
    )
    watchdog_usec = 400_000
    daemon = InProcessDaemon(
        load_config(config_path, environ={}), str(config_path), Notifier(str(notify_socket.path), watchdog_usec)
    )
    with trio.fail_after(45):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(daemon.serve)
            while not any(m.has("READY", "1") for m in notify_socket.received):
                notify_socket.drain()
                await trio.sleep(0.02)

            # healthy: a ping well within every watchdog period
            healthy_from = len(notify_socket.received)
            await _collect(notify_socket, 3.0)
            pings = [m.at for m in notify_socket.received[healthy_from:] if m.has("WATCHDOG", "1")]
            assert len(pings) >= 5, pings
            gaps = [b - a for a, b in itertools.pairwise(pings)]
            assert max(gaps) < watchdog_usec / 1e6, gaps

            # the scheduler loop hangs inside a pass
            entered = trio.Event()

            async def stuck() -> tuple[str, float]:
                entered.set()
                await trio.sleep_forever()
                raise AssertionError("unreachable")

            monkeypatch.setattr(daemon.scheduler, "tick", stuck)
            with trio.fail_after(5):
                await entered.wait()
            stuck_from = len(notify_socket.received)
            hung_at = time.monotonic()
            # the status task goes on: new schedules show in STATUS= while the loop hangs
            for i in range(6):
                # (a schedule counts once its tool is readable: the tool first)
                tool = make_tool(name=f"s{i}", runtime="process", command="true")
                await daemon.store.put(daemon.keys.tool(tool.name), tool.to_value())
                schedule = Schedule(name=f"s{i}", expression="@every 1h", created="2026-01-01T00:00:00Z")
                await daemon.store.put(daemon.keys.schedule(schedule.name), schedule.to_value())
                await _collect(notify_socket, 0.4)
            during = notify_socket.received[stuck_from:]
            late_pings = [m.at - hung_at for m in during if m.has("WATCHDOG", "1")]
            # a ping already under way when the loop hung may land in the first interval, none after
            assert all(t < watchdog_usec / 1e6 for t in late_pings), late_pings
            assert time.monotonic() - hung_at > 1.5 + watchdog_usec / 1e6
            statuses = [m.get("STATUS") for m in during if m.has("STATUS")]
            assert any("6 scheduled tools" in (s or "") for s in statuses), statuses
            assert len(statuses) >= 3, statuses
            nursery.cancel_scope.cancel()

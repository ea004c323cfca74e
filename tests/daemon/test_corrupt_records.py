"""A real daemon meets store values corrupted by hand, and repository URLs that try other transports.

Bad values sit beside good ones under every key the daemon reads (tools/,
schedules/, members/, requests/, claims/) and those it only passes by
(runs/, spikes/, datasets/): not JSON, a JSON list, schema v99, wrong types,
a missing field, bytes that are not UTF-8, a record under another name's
key.  The daemon logs each bad key once (not on every cache reload or
scheduler pass) and goes on: a good scheduled tool keeps running and is
recorded.  A bad record fixed by hand is used.

A tool record whose data repository URL tries another transport
(``ext::``, ``--upload-pack=``, ``fd::``, an ssh option smuggled in as a
host), written straight into the store past ctl's validation, is never
run: a request for it is recorded ``failed``, nothing it names executes
(its command and the URL's payload would each create a marker file), and
the log names the key and the URL.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from maomao.model import Member, Run, Schedule
from tests.daemon.checks import ledger_command, read_ledger
from tests.support.daemons import Daemon, Daemons, StoreSpec, embedded_spec, etcd_spec, now_iso, wait_for
from tests.support.etcd import EtcdCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MakeDaemons = Callable[[StoreSpec], Daemons]


def tool_fields(name: str, data_repo: str) -> dict[str, object]:
    return {
        "v": 1, "name": name, "author": "Mallory", "image": "example.org/test/tool:1", "data_repo": data_repo,
        "code_repo": "https://git.example.org/code.git", "artefact": "x", "runtime": "process",
    }


def put_raw(cluster: Daemons, key: str, value: bytes | dict[str, object]) -> None:
    from maomao.store import run_inline

    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    run_inline(cluster.records.store.put(key, raw))


def ignored_lines(daemon: Daemon, key: str) -> list[str]:
    """The daemon's log lines saying it ignores ``key``."""
    return [line for line in daemon.stderr().splitlines() if "ignoring" in line and f"{key} " in line]


def all_runs(cluster: Daemons, tool: str | None = None) -> list[Run]:
    """The run records (of one tool), skipping the values the test corrupted itself."""
    from maomao.store import run_inline

    keys = cluster.records.keys
    found = run_inline(cluster.records.store.range(keys.runs(tool) if tool else keys.all_runs))
    runs = []
    for kv in found.kvs:
        try:
            runs.append(Run.from_value(kv.value))
        except ValueError:
            continue
    return runs


def runs_of(cluster: Daemons, tool: str, state: str = "succeeded") -> list[Run]:
    return [run for run in all_runs(cluster, tool) if run.state == state]


@pytest.fixture(params=["embedded", "etcd"])
def cluster(request: pytest.FixtureRequest, make_daemons: MakeDaemons, tmp_path: Path) -> Daemons:
    if request.param == "embedded":
        return make_daemons(embedded_spec(tmp_path))
    etcd: EtcdCluster = request.getfixturevalue("etcd")
    return make_daemons(etcd_spec(etcd.endpoints, request.getfixturevalue("prefix")))


def test_bad_records_are_logged_once_and_the_rest_goes_on(cluster: Daemons, tmp_path: Path) -> None:
    keys = cluster.records.keys
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    records = cluster.records
    records.add_tool("good", ledger_command(ledger))
    records.schedule("good", "@every 1s")
    broken_tool = tool_fields("fixme", records.data_remote("fixme"))
    bad = {
        keys.tool("junk"): b"{not json",
        keys.tool("listed"): b"[1, 2]",
        keys.tool("future"): {**broken_tool, "name": "future", "v": 99},
        keys.tool("fixme"): {**broken_tool, "image": 5},
        keys.tool("alias"): {**tool_fields("good", records.data_remote("good")), "command": "true"},
        keys.schedule("fixme"): {"v": 1, "name": "fixme", "expression": "@every 1s", "created": 17},
        keys.schedule("nameless"): {"v": 1, "expression": "daily"},
        # a member record whose labels are a string: before, the scheduler's eligibility check died on it
        keys.member("ghost"): {"v": 1, "name": "ghost", "host": "h", "version": "1", "runtimes": ["process"],
                               "labels": "site=lab", "started": now_iso()},
        keys.member("undecodable"): b'{"v": 1, "name": "\xff"}',
        keys.request("20261130T000000Z-000abc"): {"v": 1, "name": "20261130T000000Z-000abc", "tool": ["good"]},
        keys.claim("good", "20261130T000000Z"): b"null",
        keys.run("good", "20261130T000000Z"): b"{",
        keys.spike("good", "x.y"): b"\xff",
        keys.dataset("bad"): b"[]",
    }
    for key, value in bad.items():
        put_raw(cluster, key, value)
    daemon = cluster.start("lab-1", claim_grace="0.2")

    # the good tool keeps running, and is recorded
    wait_for("three runs of the good tool", lambda: len(runs_of(cluster, "good")) >= 3, 30)
    read = {key for key in bad if not key.startswith((keys.all_runs, keys.all_spikes, keys.datasets))}
    for key in read:
        wait_for(f"the daemon to log {key}", lambda key=key: ignored_lines(daemon, key), 10)
    # ... and goes on running it without saying the same again, pass after pass, reload after reload
    count = len(runs_of(cluster, "good"))
    wait_for("three more runs", lambda: len(runs_of(cluster, "good")) >= count + 3, 30)
    for key in read:
        assert len(ignored_lines(daemon, key)) == 1, (key, ignored_lines(daemon, key))
    for key in set(bad) - read:  # never read by the daemon's cache: nothing to say
        assert not ignored_lines(daemon, key), key
    assert "bug" not in daemon.stderr().replace("debug", ""), daemon.stderr()[-3000:]
    assert "alias" not in {run.tool for run in all_runs(cluster)}  # a tool under another's key is not run
    executed = read_ledger(ledger, "good")
    assert executed and all(member == "lab-1" for _, member, _ in executed)

    # fixing the bad tool and its schedule by hand makes them used
    records.add_tool("fixme", ledger_command(ledger))
    records.schedule("fixme", "@every 1s")
    wait_for("a run of the fixed tool", lambda: runs_of(cluster, "fixme"), 30)
    assert read_ledger(ledger, "fixme")
    assert daemon.running


# -- repository URLs that try other transports, at run time ---------------------------------------

def hostile_urls(marker: Path) -> list[str]:
    """Data repository URLs that would run a command (creating ``marker``) if a git transport took them."""
    return [
        f"ext::sh -c touch% {marker}",
        f"--upload-pack=touch {marker}",
        f"-u touch {marker}",
        "fd::17",
        f"transport::sh -c 'touch {marker}'",
        f"ssh://-oProxyCommand=touch%20{marker}/x",
        f"git@-oProxyCommand=touch {marker}:y",
        f"ssh://h/x\n--upload-pack=touch {marker}",
        f"file:///tmp/x\x00{marker}",
        f"file://-oProxyCommand=touch {marker}/x",
    ]


def test_a_tool_whose_data_repository_tries_another_transport_never_runs(cluster: Daemons, tmp_path: Path) -> None:
    keys = cluster.records.keys
    marker = Path(f"/tmp/pwned-{uuid.uuid4().hex}")
    ran = tmp_path / "ran"
    urls = hostile_urls(marker)
    names = [f"evil-{i}" for i in range(len(urls))]
    for name, url in zip(names, urls, strict=True):
        fields = {**tool_fields(name, url), "command": f"touch {ran}"}
        put_raw(cluster, keys.tool(name), fields)
    # one of them scheduled too: its slots are never run
    put_raw(cluster, keys.schedule(names[0]), json.loads(Schedule(names[0], "@every 1s", created=now_iso()).to_value()))
    daemon = cluster.start("lab-1", claim_grace="0.2")
    for i, name in enumerate(names):
        cluster.records.request(f"20261130T000000Z-{i:03d}aaa", name)
    wait_for(
        "every request recorded",
        lambda: all(runs_of(cluster, name, "failed") for name in names) or None,
        30,
    )
    for name in names:
        (run,) = all_runs(cluster, name)
        assert run.state == "failed" and run.exit_code is None and not run.commit, run
        assert name in run.detail and "is not readable; nothing ran" in run.detail, run
        logged = ignored_lines(daemon, keys.tool(name))
        assert len(logged) == 1, (name, logged)
        assert "is invalid: data_repo" in logged[0], logged[0]
    time.sleep(2)  # the scheduled one's slots come and go
    assert not [run for run in all_runs(cluster, names[0]) if run.trigger == "schedule"]
    assert not marker.exists(), "a transport ran the URL's command"
    assert not ran.exists(), "the tool ran"
    assert not any((daemon.importdir / name).exists() for name in names), "a clone was attempted"
    assert daemon.running


def test_a_member_record_with_bad_labels_does_not_stop_scheduling(cluster: Daemons, tmp_path: Path) -> None:
    """The record that used to kill every scheduler pass (labels a string: ``.get`` on a str)."""
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    cluster.records.add_tool("good", ledger_command(ledger))
    cluster.records.schedule("good", "@every 1s", on="site=lab")
    ghost = Member("ghost", "h", "1", ("process",), {}, now_iso())
    raw = {**json.loads(ghost.to_value()), "labels": "site=lab"}
    put_raw(cluster, cluster.records.keys.member("ghost"), raw)
    daemon = cluster.start("lab-1", claim_grace="0.2", labels="site=lab")
    wait_for("runs of the good tool on the labelled member", lambda: len(runs_of(cluster, "good")) >= 2, 30)
    assert "bug in a scheduler pass" not in daemon.stderr()
    assert len(ignored_lines(daemon, cluster.records.keys.member("ghost"))) == 1


async def test_the_state_cache_says_it_once_across_reloads_and_forgets_a_fixed_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A reload (after a compaction or an outage) reads every bad value again: it is not logged again.
    A key fixed by hand is used; broken again later, it is logged again."""
    from maomao.daemon.cache import StateCache
    from maomao.store.embedded import EmbeddedStore
    from maomao.store.keys import Keys

    keys = Keys("/maomao/")
    store = EmbeddedStore(tmp_path / "store.db")
    try:
        good = {**tool_fields("t", "/srv/git/t.git"), "command": "true"}
        await store.put(keys.tool("t"), json.dumps({**good, "image": 5}).encode())
        await store.put(keys.tool("u"), json.dumps({**good, "name": "u"}).encode())
        cache = StateCache(store, keys)
        with caplog.at_level("ERROR", logger="maomao.daemon.cache"):
            for _ in range(3):
                await cache.load()
            assert set(cache.tools) == {"u"}
            said = [r.getMessage() for r in caplog.records if keys.tool("t") in r.getMessage()]
            assert len(said) == 1 and "image 5" in said[0], said
            await store.put(keys.tool("t"), json.dumps(good).encode())  # fixed by hand
            await cache.load()
            assert set(cache.tools) == {"t", "u"}
            await store.put(keys.tool("t"), b"[]")  # and broken again
            await cache.load()
            await cache.load()
            said = [r.getMessage() for r in caplog.records if keys.tool("t") in r.getMessage()]
            assert len(said) == 2 and "no schema version" in said[1], said
            assert set(cache.tools) == {"u"}
    finally:
        await store.aclose()


async def test_a_schedule_waits_aside_while_its_tool_cannot_be_read(tmp_path: Path) -> None:
    """The scheduler sees a schedule only while its tool is readable: no slot of it is queued, so none is
    logged as missed, slot after slot; the tool fixed, the schedule is back (and the scheduler told)."""
    from maomao.daemon.cache import StateCache
    from maomao.store import Event
    from maomao.store.embedded import EmbeddedStore
    from maomao.store.keys import Keys

    keys = Keys("/maomao/")
    store = EmbeddedStore(tmp_path / "store.db")
    try:
        good = {**tool_fields("t", "/srv/git/t.git"), "command": "true"}
        await store.put(keys.tool("t"), json.dumps({**good, "data_repo": "ext::sh -c x"}).encode())
        await store.put(keys.schedule("t"), Schedule("t", "@every 1s", created=now_iso()).to_value())
        await store.put(keys.schedule("orphan"), Schedule("orphan", "daily", created=now_iso()).to_value())
        cache = StateCache(store, keys)
        await cache.load()
        assert cache.schedules == {} and cache.tools == {}

        async def put(value: bytes) -> None:
            """Write the tool's value, and fold it into the cache as its watch would."""
            await store.put(keys.tool("t"), value)
            kv = await store.get(keys.tool("t"))
            assert kv is not None
            cache.apply(Event("put", kv))

        seen = cache.versions["schedules"]
        await put(json.dumps(good).encode())  # fixed by hand
        assert set(cache.schedules) == {"t"} and cache.versions["schedules"] > seen
        seen = cache.versions["schedules"]
        await put(b"{")  # broken again
        assert cache.schedules == {} and cache.versions["schedules"] > seen
    finally:
        await store.aclose()


def test_a_scheduled_tool_that_cannot_be_read_costs_one_log_line(make_daemons: MakeDaemons, tmp_path: Path) -> None:
    """Past the slots' deadline (the takeover window, about 8 s with ttl 2), not a line per slot."""
    cluster = make_daemons(embedded_spec(tmp_path, ttl=2))
    keys = cluster.records.keys
    put_raw(cluster, keys.tool("evil"), {**tool_fields("evil", "ext::sh -c x"), "command": "true"})
    cluster.records.schedule("evil", "@every 1s")
    daemon = cluster.start("lab-1", claim_grace="0.2")
    time.sleep(11)
    assert len(ignored_lines(daemon, keys.tool("evil"))) == 1
    noise = [line for line in daemon.stderr().splitlines() if "evil" in line and "ignoring" not in line]
    assert not noise, noise
    assert not all_runs(cluster, "evil")

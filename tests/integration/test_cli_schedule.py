"""``ctl tool schedule/unschedule``, the schedule columns of ``tool get``, ``ctl member get``.

The real ``maoctl`` / ``maomao ctl`` entry points as subprocesses, on the
embedded store and on a real etcd; records the daemons write (members) are
put with the Store API directly, as a daemon would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from maomao.model import SCHEMA_VERSION, Member
from maomao.schedule import parse_expression
from maomao.store import Store, inline, run_inline
from maomao.store.embedded import EmbeddedStore
from maomao.store.etcd import EtcdStore
from maomao.store.keys import Keys
from tests.support.cli import MAOCTL, MAOMAO, Ctl, clean_env, embedded_contents, embedded_put, etcd_contents, run_many
from tests.support.etcd import EtcdCluster, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

T = TypeVar("T")

TOOL = ["tool", "add", "tl-1", "Ada", "busybox:1.36", "/srv/git/d", "/srv/git/c", "pages"]
ISO = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


@dataclass
class Setup:
    """The CLI for one backend, and the Store API on the same store (as a daemon would use it)."""

    ctl: Ctl
    keys: Keys
    open_store: Callable[[], Store]

    def store(self, action: Callable[[Store], Coroutine[Any, Any, T]]) -> T:
        """Run ``action(store)`` (its coroutine) on a fresh inline store; return its result."""
        store = self.open_store()
        try:
            return run_inline(action(store))
        finally:
            run_inline(store.aclose())

    def ctl_args(self, *words: str) -> list[str]:
        """``words`` with ``--config`` for nouns the shared helper does not know (``member``)."""
        return [*words, "--config", str(self.ctl.config)]


def make_setup(kind: str, tmp_path: Path, prefix: str, request: pytest.FixtureRequest) -> Setup:
    home = tmp_path / "home"
    home.mkdir()
    settings = f"[maomao]\nimportdir = {tmp_path}/import\nmember = ctl-host\n\n"
    if kind == "embedded":
        db = tmp_path / "store.db"
        config = tmp_path / "embedded.ini"
        config.write_text(f"{settings}[store]\nbackend = embedded\npath = {db}\n")
        ctl = Ctl("embedded", home, config, embedded_contents(db), embedded_put(db))
        return Setup(ctl, Keys("/maomao/"), lambda: EmbeddedStore(db, offload=inline))
    cluster: EtcdCluster = request.getfixturevalue("etcd")
    config = tmp_path / "etcd.ini"
    config.write_text(f"{settings}[store]\nbackend = etcd\nendpoints = {cluster.endpoints[0]}\nprefix = {prefix}\n")

    def put_raw(key: str, value: bytes) -> None:
        cluster.etcdctl("put", key, value.decode())

    ctl = Ctl("etcd", home, config, etcd_contents(cluster.etcdctl, prefix), put_raw, prefix=prefix)
    return Setup(ctl, Keys(prefix), lambda: EtcdStore(cluster.endpoints, offload=inline))


@pytest.fixture(params=["embedded", "etcd"])
def setup(request: pytest.FixtureRequest, tmp_path: Path, prefix: str) -> Setup:
    return make_setup(request.param, tmp_path, prefix, request)


def table(stdout: str) -> list[list[str]]:
    return [re.split(r" {2,}", line) for line in stdout.splitlines()]


def details(stdout: str) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in stdout.splitlines())}


# -- schedule, unschedule, get ----------------------------------------------------------------


def test_schedule_get_unschedule(setup: Setup) -> None:
    ctl = setup.ctl
    ctl(*TOOL).ok()
    ctl("tool", "add", "tl-2", "Grace", "busybox", "/a", "/b", "logs").ok()

    # the original's shape: maoctl tool schedule NAME daily
    before = datetime.now(UTC)
    out = ctl("tool", "schedule", "tl-1", "daily").ok().stdout
    after = datetime.now(UTC)
    daily = parse_expression("daily", "tl-1")
    match = re.fullmatch(rf"tool tl-1 scheduled: daily \(UTC\), next run ({ISO.pattern})\n", out)
    assert match, out
    assert utc(daily.next_after(before)) <= match[1] <= utc(daily.next_after(after))

    stored = ctl.records("schedules")
    assert set(stored) == {"tl-1"}
    assert stored["tl-1"] == {
        "v": SCHEMA_VERSION,
        "name": "tl-1",
        "expression": "daily",
        "timezone": "UTC",
        "catch_up": "latest",
        "concurrency": "forbid",
        "on": "any",
        "created": stored["tl-1"]["created"],
    }
    assert utc(before) <= str(stored["tl-1"]["created"]) <= utc(after)

    # every option, through maomao ctl; the schedule is replaced
    out = ctl("tool", "schedule", "tl-2", "*/5 * * * *", "--tz", "Europe/Berlin", "--catch-up", "all",
              "--concurrency", "allow", "--on", "site=lab", entry="maomao").ok().stdout  # fmt: skip
    assert out.startswith("tool tl-2 scheduled: */5 * * * * (Europe/Berlin), on site=lab, next run "), out
    out = ctl("tool", "schedule", "tl-2", "@every 90s", "--on", "lab-1").ok().stdout
    assert out.startswith("tool tl-2 rescheduled: @every 1m30s (UTC), on lab-1, next run "), out
    assert ctl.records("schedules")["tl-2"]["expression"] == "@every 1m30s"
    assert ctl.records("schedules")["tl-2"]["catch_up"] == "latest"  # replaced whole, not merged

    rows = table(ctl("tool", "get").ok().stdout)
    assert rows[0] == ["NAME", "AUTHOR", "IMAGE", "ARTEFACT", "DATA_REPO", "CODE_REPO", "SCHEDULE", "NEXT_RUN"]
    assert rows[1][:7] == ["tl-1", "Ada", "busybox:1.36", "pages", "/srv/git/d", "/srv/git/c", "daily"]
    assert rows[2][:7] == ["tl-2", "Grace", "busybox", "logs", "/a", "/b", "@every 1m30s"]
    assert ISO.fullmatch(rows[1][7]) and ISO.fullmatch(rows[2][7])

    listed = ctl("tool", "get", "--json").json()
    assert [t["name"] for t in listed] == ["tl-1", "tl-2"]
    first, second = listed
    assert first["schedule"] == {k: v for k, v in stored["tl-1"].items() if k not in ("v", "name")}
    assert second["schedule"]["on"] == "lab-1" and second["schedule"]["expression"] == "@every 1m30s"
    for tool in listed:
        assert isinstance(tool["next_run"], str) and ISO.fullmatch(tool["next_run"])
        assert tool["author"] in ("Ada", "Grace")  # the tool's own fields are all still there
    every = parse_expression("@every 90s", "tl-2")
    now = datetime.now(UTC)
    assert utc(every.next_after(now)) >= second["next_run"] >= utc(every.next_after(now - every.period * 2))
    assert ctl("tool", "get", "tl-2", "--json", entry="maomao").json() == [second]

    shown = details(ctl("tool", "get", "tl-2").ok().stdout)
    assert shown["schedule"] == "@every 1m30s" and shown["timezone"] == "UTC"
    assert shown["catch_up"] == "latest" and shown["concurrency"] == "forbid" and shown["on"] == "lab-1"
    assert ISO.fullmatch(shown["next_run"]) and shown["name"] == "tl-2"

    # unschedule: the tool stays, without a schedule
    assert ctl("tool", "unschedule", "tl-2").ok().stdout == "tool tl-2 unscheduled\n"
    assert set(ctl.records("schedules")) == {"tl-1"}
    assert "'tl-2' is not scheduled" in ctl("tool", "unschedule", "tl-2", entry="maomao").error(2)
    assert "no tool named 'nope'" in ctl("tool", "unschedule", "nope").error(2)
    rows = table(ctl("tool", "get").ok().stdout)
    assert rows[2] == ["tl-2", "Grace", "busybox", "logs", "/a", "/b", "-", "-"]
    second = ctl("tool", "get", "tl-2", "--json").json()[0]
    assert second["schedule"] is None and second["next_run"] is None
    shown = details(ctl("tool", "get", "tl-2").ok().stdout)
    assert shown["schedule"] == "-" and shown["next_run"] == "-"

    # weekly, the original's other shape
    assert ctl("tool", "schedule", "tl-2", "weekly").ok().stdout.startswith("tool tl-2 scheduled: weekly (UTC)")


def test_remove_takes_the_schedule_with_it(setup: Setup) -> None:
    ctl = setup.ctl
    ctl(*TOOL).ok()
    ctl("tool", "add", "tl-2", "Grace", "busybox", "/a", "/b", "logs").ok()
    ctl("tool", "schedule", "tl-1", "hourly").ok()
    assert ctl("tool", "remove", "tl-1").ok().stdout == "tool tl-1 removed with its schedule\n"
    assert ctl.records("schedules") == {} and set(ctl.records("tools")) == {"tl-2"}
    assert ctl("tool", "remove", "tl-2").ok().stdout == "tool tl-2 removed\n"
    assert "no tool named 'tl-1'" in ctl("tool", "remove", "tl-1").error(2)
    # a schedule cannot outlive its tool, nor be made for a missing one
    assert "no tool named 'tl-1'" in ctl("tool", "schedule", "tl-1", "daily").error(2)
    assert ctl.contents() == {}


#: command lines that must fail with exit 2 and write nothing: (argv, a word the error names)
BAD_SCHEDULES = [
    (["tool", "schedule", "tl-1", "bogus"], "bogus"),
    (["tool", "schedule", "tl-1", "61 * * * *"], "61 * * * *"),
    (["tool", "schedule", "tl-1", "* * * * * *"], "seconds"),
    (["tool", "schedule", "tl-1", "0 0 30 2 *"], "day-of-month"),
    (["tool", "schedule", "tl-1", "@every 0s"], "zero"),
    (["tool", "schedule", "tl-1", "@every soon"], "soon"),
    (["tool", "schedule", "tl-1", "@every", "30s"], "30s"),
    (["tool", "schedule", "tl-1", ""], "''"),
    (["tool", "schedule", "tl-1", "daily", "--tz", "Mars/Olympus"], "Mars/Olympus"),
    (["tool", "schedule", "tl-1", "daily", "--tz", "localtime"], "localtime"),
    (["tool", "schedule", "tl-1", "daily", "--catch-up", "some"], "--catch-up"),
    (["tool", "schedule", "tl-1", "daily", "--concurrency", "maybe"], "--concurrency"),
    (["tool", "schedule", "tl-1", "daily", "--on", "two words"], "two words"),
    (["tool", "schedule", "tl-1", "daily", "--on", "=x"], "=x"),
    (["tool", "schedule", "tl-1", "daily", "--on=-lab"], "-lab"),
    (["tool", "schedule", "tl-1", "daily", "--bogus"], "--bogus"),
    (["tool", "schedule", "tl-1"], "EXPRESSION"),
    (["tool", "schedule", "nope", "daily"], "'nope'"),
    (["tool", "schedule", "a/b", "daily"], "a/b"),
    (["tool", "unschedule", "tl-1"], "not scheduled"),
    (["tool", "unschedule", "nope"], "'nope'"),
    (["tool", "unschedule", "-x"], "-x"),
    (["tool", "unschedule"], "NAME"),
]


def test_bad_schedule_input_fails_and_writes_nothing(setup: Setup) -> None:
    ctl = setup.ctl
    ctl(*TOOL).ok()
    before = ctl.contents()
    cases = BAD_SCHEDULES if ctl.kind == "embedded" else BAD_SCHEDULES[::3]
    results = ctl.many(*[(argv, "maomao" if i % 2 else "maoctl") for i, (argv, _) in enumerate(cases)])
    for (argv, named), result in zip(cases, results, strict=True):
        line = result.error(2)
        assert named in line, (argv, line)
    assert ctl.contents() == before


def test_unreadable_schedule_is_a_warning_in_the_listing(setup: Setup) -> None:
    ctl = setup.ctl
    ctl(*TOOL).ok()
    ctl.put_raw(f"{ctl.prefix}schedules/tl-1", json.dumps({"v": SCHEMA_VERSION + 1, "name": "tl-1"}).encode())
    listing = ctl("tool", "get").ok()
    assert table(listing.stdout)[1][-2:] == ["?", "?"]
    assert listing.stderr.startswith("warning: ") and "upgrade" in listing.stderr
    assert "upgrade" in ctl("tool", "get", "tl-1").error(1)
    # rescheduling replaces it
    ctl("tool", "schedule", "tl-1", "daily").ok()
    assert ctl("tool", "get", "tl-1", "--json").json()[0]["schedule"]["expression"] == "daily"


# -- members ----------------------------------------------------------------------------------

MEMBERS = [
    Member(
        "lab-1", "lab-1.example.org", "0.1.0", ("container", "process"), {"site": "lab", "gpu": "yes"},
        "2026-11-30T03:00:00Z", 4242,
    ),
    Member("home", "pc", "0.1.0", ("process",), {}, "2026-11-30T02:00:00Z"),
]  # fmt: skip


@pytest.fixture
def members(setup: Setup) -> Iterator[int]:
    """The two MEMBERS, put as a daemon does: bound to a lease."""

    async def register(store: Store) -> int:
        lease = await store.grant(60)
        for member in MEMBERS:
            await store.put(setup.keys.member(member.name), member.to_value(), lease=lease)
        return lease

    lease = setup.store(register)
    yield lease
    setup.store(lambda store: store.revoke(lease))


def test_member_get(setup: Setup, members: int) -> None:
    ctl = setup.ctl
    rows = table(ctl(*setup.ctl_args("member", "get")).ok().stdout)
    assert rows == [
        ["NAME", "HOST", "VERSION", "RUNTIMES", "LABELS", "STARTED"],
        ["home", "pc", "0.1.0", "process", "-", "2026-11-30T02:00:00Z"],
        ["lab-1", "lab-1.example.org", "0.1.0", "container,process", "gpu=yes,site=lab", "2026-11-30T03:00:00Z"],
    ]
    listed = ctl(*setup.ctl_args("member", "get", "--json"), entry="maomao").json()
    assert [m["name"] for m in listed] == ["home", "lab-1"]
    assert listed[1] == {
        "name": "lab-1",
        "host": "lab-1.example.org",
        "version": "0.1.0",
        "runtimes": ["container", "process"],
        "labels": {"site": "lab", "gpu": "yes"},
        "started": "2026-11-30T03:00:00Z",
        "pid": 4242,
    }
    shown = details(ctl(*setup.ctl_args("member", "get", "lab-1")).ok().stdout)
    assert shown["host"] == "lab-1.example.org" and shown["runtimes"] == "container, process"
    assert "no member named 'gone'" in ctl(*setup.ctl_args("member", "get", "gone")).error(2)

    # a member lives as long as its lease
    setup.store(lambda store: store.revoke(members))
    empty = ctl(*setup.ctl_args("member", "get")).ok()
    assert empty.stdout == "" and empty.stderr == "no records found\n"
    assert ctl(*setup.ctl_args("member", "get", "--json")).json() == []


# -- help, unreachable store ------------------------------------------------------------------

NEW_COMMANDS = [["tool", "schedule"], ["tool", "unschedule"], ["tool", "runs"], ["tool", "run"], ["member"],
                ["member", "get"]]  # fmt: skip


def test_help_of_the_new_commands(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    argvs: list[list[str | Path]] = [
        argv for words in NEW_COMMANDS for argv in ([MAOMAO, "ctl", *words, "--help"], [MAOCTL, *words, "--help"])
    ]
    results = iter(run_many(argvs, env=env, cwd=tmp_path))
    for via_maomao, via_maoctl in zip(results, results, strict=True):
        assert via_maomao.returncode == 0 and via_maomao.stderr == "", str(via_maomao)
        assert via_maomao.stdout.startswith("Usage: maomao ctl"), str(via_maomao)
        assert via_maomao.stdout == via_maoctl.stdout
    helps = {" ".join(words): result.stdout for words, result in zip(NEW_COMMANDS, run_many(
        [[MAOCTL, *words, "--help"] for words in NEW_COMMANDS], env=env, cwd=tmp_path), strict=True)}  # fmt: skip
    for word in ("EXPRESSION", "--tz", "--catch-up", "--concurrency", "--on", "--config", "@every"):
        assert word in helps["tool schedule"], word
    for word in ("--no-wait", "--on", "--here", "--claim-timeout", "--config"):
        assert word in helps["tool run"], word
    for word in ("--limit", "--json"):
        assert word in helps["tool runs"], word
    assert "get" in helps["member"]
    assert "member" in run_many([[MAOCTL, "--help"]], env=env, cwd=tmp_path)[0].stdout


@pytest.mark.timeout(60)
def test_unreachable_store_exits_1(tmp_path: Path, prefix: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    config = tmp_path / "dead.ini"
    config.write_text(f"[store]\nbackend = etcd\nendpoints = {dead}\nprefix = {prefix}\ntimeout = 1\n")
    env = clean_env(tmp_path)
    commands = [
        ["tool", "schedule", "t", "daily"],
        ["tool", "unschedule", "t"],
        ["tool", "runs", "t"],
        ["tool", "run", "t"],
        ["tool", "run", "t", "--here"],
        ["member", "get"],
    ]
    argvs: list[list[str | Path]] = [[MAOCTL, *words, "--config", config] for words in commands]
    for result in run_many(argvs, env=env, cwd=tmp_path):
        assert dead in result.error(1)


def utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

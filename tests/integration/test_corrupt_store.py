"""Store values corrupted by hand, read by every ``ctl`` read command.

Under each kind of key (tools/, schedules/, datasets/, runs/, members/,
claims/, spikes/) a good record sits beside a bad one: not JSON, a JSON
list or string instead of an object, schema v99, a field of the wrong type,
a required field missing, bytes that are not UTF-8, nesting deep enough to
break a recursive parser, a record whose name is not its key's.  Every
listing still shows the good records and says, in one ``warning:`` line on
stderr, which key is bad; a command that reads the bad record alone exits 1
with one ``error:`` line naming the key.  No traceback, ever; nothing is
written.

The commands run in process against an embedded store (see
tests/support/inprocess.py); one subprocess run checks the real entry point.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from maomao.model import Claim, Dataset, Member, Run, Schedule, Spike, Tool
from maomao.store.keys import Keys
from tests.support.cli import MAOCTL, Result, clean_env, run
from tests.support.inprocess import Embedded

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KEYS = Keys("/maomao/")
NOW = "2026-11-30T03:00:00Z"


def tool(name: str) -> Tool:
    return Tool(
        name=name, author="Ada", image="busybox", data_repo="/srv/git/data.git",
        code_repo="https://git.example.org/code.git", artefact="test",
    )


def run_record(tool_name: str, run_id: str, state: str = "failed") -> Run:
    return Run(
        id=run_id, tool=tool_name, slot=NOW, trigger="schedule", member="lab-1", state=state,
        started=NOW, finished=NOW, exit_code=1, output_tail="good output\n",
    )


def spike(tool_name: str, name: str) -> Spike:
    return Spike(
        name=name, tool=tool_name, metric="control", run_id=name.split(".")[0], member="lab-1",
        point="control-3.csv", value=900.0, baseline=600.0, deviation=0.5, score=0.99, detected=NOW,
    )


def good_fields(record: Tool | Dataset | Schedule | Member | Claim | Run | Spike) -> dict[str, object]:
    return {"v": 1, **record.to_dict()}


def corruptions(good: dict[str, object], wrong_type: tuple[str, object], required: str) -> dict[str, bytes]:
    """The ways a value can be bad, from one good record's fields."""
    field, value = wrong_type
    missing = {k: v for k, v in good.items() if k != required}
    return {
        "not-json": b"{not json",
        "list": json.dumps([good]).encode(),
        "string": b'"a tool"',
        "null": b"null",
        "empty": b"",
        "v99": json.dumps({**good, "v": 99}).encode(),
        "wrong-type": json.dumps({**good, field: value}).encode(),
        "missing": json.dumps(missing).encode(),
        "not-utf8": b'{"v": 1, "name": "\xff\xfe"}',
        "deep": b"[" * 100_000,
        "nan": json.dumps(good).replace('"v": 1', '"v": NaN').encode(),
    }


# kind -> (prefix of the bad key, name under it, a good record, its wrong-typed field, a required field)
KINDS: dict[str, tuple[str, str, object, tuple[str, object], str]] = {
    "tools": (KEYS.tools, "bad", tool("bad"), ("image", 5), "image"),
    "datasets": (KEYS.datasets, "bad", Dataset("bad", "/srv/git/bad.git"), ("url", ["/srv"]), "url"),
    "schedules": (KEYS.schedules, "good", Schedule("good", "daily", created=NOW), ("created", 17), "expression"),
    "members": (
        KEYS.members, "bad", Member("bad", "h", "1", ("process",), {"site": "lab"}, NOW),
        ("labels", "site=lab"), "runtimes",
    ),
    "runs": (KEYS.all_runs, "good/20261130T020000Z", run_record("good", "20261130T020000Z"), ("finished", 5), "state"),
    "claims": (
        KEYS.claims, "good/20261130T040000Z",
        Claim("20261130T040000Z", "good", "lab-1", NOW, "schedule", "running", NOW, NOW), ("member", None), "tool",
    ),
    "spikes": (
        KEYS.all_spikes, "good/20261130T020000Z.control", spike("good", "20261130T020000Z.control"),
        ("value", "big"), "score",
    ),
}

CASES = [
    (kind, corruption)
    for kind, (_, _, record, wrong, required) in KINDS.items()
    for corruption in corruptions(good_fields(record), wrong, required)  # type: ignore[arg-type]
]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Embedded:
    """Good records of every kind: a tool with a schedule, runs, a claim and a spike; a dataset; a member."""
    store = Embedded(tmp_path_factory.mktemp("corrupt"))
    store.put_raw(KEYS.tool("good"), tool("good").to_value())
    store.put_raw(KEYS.schedule("good"), Schedule("good", "@every 1h", created=NOW).to_value())
    store.put_raw(KEYS.run("good", "20261130T010000Z"), run_record("good", "20261130T010000Z").to_value())
    store.put_raw(KEYS.dataset("good"), Dataset("good", "/srv/git/good.git").to_value())
    store.put_raw(KEYS.member("lab-1"), Member("lab-1", "h", "1", ("process",), {}, NOW).to_value())
    store.put_raw(KEYS.spike("good", "20261130T010000Z.control"), spike("good", "20261130T010000Z.control").to_value())
    return store


# for each kind: the listings that must warn and still show the good record (args, what shows the good one)
LISTINGS: dict[str, list[tuple[list[str], Callable[[Result], bool]]]] = {
    "tools": [
        (["tool", "get"], lambda r: "good" in r.stdout.split()),
        (["tool", "get", "--json"], lambda r: [t["name"] for t in json.loads(r.stdout)] == ["good"]),
    ],
    "datasets": [
        (["dataset", "get"], lambda r: "good" in r.stdout.split()),
        (["dataset", "get", "--json"], lambda r: [d["name"] for d in json.loads(r.stdout)] == ["good"]),
    ],
    "schedules": [
        # the tool is listed; its schedule and next run show as unknown
        (["tool", "get", "--json"], lambda r: json.loads(r.stdout)[0]["name"] == "good"),
        (["status", "--json"], lambda r: json.loads(r.stdout)["next"] == []),
    ],
    "members": [
        (["member", "get", "--json"], lambda r: [m["name"] for m in json.loads(r.stdout)] == ["lab-1"]),
        (["status", "--json"], lambda r: [m["name"] for m in json.loads(r.stdout)["members"]] == ["lab-1"]),
    ],
    "runs": [
        (["tool", "runs", "good", "--json"], lambda r: [x["id"] for x in json.loads(r.stdout)] == ["20261130T010000Z"]),
        (["tool", "runs", "good"], lambda r: "20261130T010000Z" in r.stdout),
        (["tool", "logs", "good"], lambda r: "good output" in r.stdout),
        (["status", "--json"], lambda r: "members" in json.loads(r.stdout)),
    ],
    "claims": [
        (["tool", "runs", "good", "--json"], lambda r: [x["id"] for x in json.loads(r.stdout)] == ["20261130T010000Z"]),
        (["status", "--json"], lambda r: json.loads(r.stdout)["running"] == []),
    ],
    "spikes": [
        (["spikes", "get", "--since", "366d", "--json"], lambda r: len(json.loads(r.stdout)) == 1),
        (["spikes", "get", "good", "--since", "366d"], lambda r: "20261130T010000Z" in r.stdout),
        (["status", "--json"], lambda r: "spikes" in json.loads(r.stdout)),
    ],
}

# for each kind: the commands that read the bad record alone and must fail naming its key
SINGLE: dict[str, list[list[str]]] = {
    "tools": [["tool", "get", "bad"], ["tool", "run", "bad"], ["tool", "pin", "bad"], ["tool", "run", "bad", "--here"]],
    "datasets": [["dataset", "get", "bad"], ["dataset", "clone", "bad"]],
    "schedules": [["tool", "get", "good"]],
    "members": [["member", "get", "bad"]],
    "runs": [],
    "claims": [],
    "spikes": [],
}


def warned_about(result: Result, key: str) -> None:
    """Exit 0, and exactly one warning (or error) line on stderr, naming ``key`` (``tool logs`` adds a note)."""
    lines = [line for line in result.stderr.splitlines() if not line.startswith("the log of run ")]
    assert result.returncode == 0, str(result)
    assert len(lines) == 1 and lines[0].startswith("warning: ") and key in lines[0], str(result)


@pytest.mark.parametrize(("kind", "corruption"), CASES, ids=[f"{k}-{c}" for k, c in CASES])
def test_a_bad_value_is_named_and_the_rest_is_shown(base: Embedded, kind: str, corruption: str) -> None:
    prefix, name, record, wrong, required = KINDS[kind]
    value = corruptions(good_fields(record), wrong, required)[corruption]  # type: ignore[arg-type]
    key = prefix + name
    base.put_raw(key, value)
    try:
        before = base.contents()
        for args, shows_good in LISTINGS[kind]:
            result = base(*args)
            warned_about(result, key)
            assert shows_good(result), str(result)
        for args in SINGLE[kind]:
            line = base(*args).error(1)
            assert key in line, line
        assert base.contents() == before, "a read command wrote"
    finally:
        base.delete(key)


def test_a_record_under_another_name_is_refused(base: Embedded) -> None:
    """tools/alias holding tool "good" (or a run filed under another tool) is not taken for it."""
    key = KEYS.tool("alias")
    base.put_raw(key, tool("good").to_value())
    other = KEYS.run("good", "20261130T050000Z")
    base.put_raw(other, run_record("other", "20261130T050000Z").to_value())
    try:
        listing = base("tool", "get", "--json")
        warned_about(listing, key)
        assert "named 'good', not 'alias'" in listing.stderr
        assert [t["name"] for t in json.loads(listing.stdout)] == ["good"]
        assert key in base("tool", "get", "alias").error(1)
        runs = base("tool", "runs", "good", "--json")
        warned_about(runs, other)
        assert [r["id"] for r in json.loads(runs.stdout)] == ["20261130T010000Z"]
    finally:
        base.delete(key)
        base.delete(other)


def test_a_key_with_a_newline_is_shown_on_one_line(base: Embedded) -> None:
    key = KEYS.tools + "evil\nerror: forged"
    base.put_raw(key, b"{}")
    try:
        result = base("tool", "get")
        warned_about(result, repr(key))
    finally:
        base.delete(key)


def test_a_bad_record_can_still_be_replaced_and_removed(base: Embedded) -> None:
    base.put_raw(KEYS.tool("bad"), b"[1, 2]")
    base.put_raw(KEYS.dataset("bad"), b"\xff")
    try:
        base("tool", "add", "bad", "Ada", "busybox", "/srv/a", "/srv/b", "x", "--replace").ok()
        assert base("tool", "get", "bad", "--json").json()[0]["name"] == "bad"
        base("dataset", "remove", "bad").ok()
        assert [d["name"] for d in base("dataset", "get", "--json").json()] == ["good"]
    finally:
        base.delete(KEYS.tool("bad"))
        base.delete(KEYS.dataset("bad"))


def test_an_unreadable_value_is_a_value_error_too() -> None:
    """Code that skips unparsable records with ``except ValueError`` (the daemon's settling of pending
    pushes) skips these as well, instead of dying on them."""
    from maomao.model import UnreadableRecord

    for value in (b"{not json", b"[1]", json.dumps({**good_fields(tool("x")), "image": 5}).encode()):
        with pytest.raises(ValueError) as caught:
            Run.from_value(value) if value != b"[1]" else Tool.from_value(value)
        assert isinstance(caught.value, UnreadableRecord)


def test_the_real_entry_point_names_the_key(base: Embedded, tmp_path: Path) -> None:
    key = KEYS.tool("bad")
    base.put_raw(key, json.dumps({**good_fields(tool("bad")), "image": 5}).encode())
    try:
        env = clean_env(base.home)
        listing = run([MAOCTL, "tool", "get", "--config", str(base.config)], env=env, cwd=tmp_path)
        warned_about(listing, key)
        assert "image 5" in listing.stderr
        single = run([MAOCTL, "tool", "get", "bad", "--config", str(base.config)], env=env, cwd=tmp_path)
        assert key in single.error(1)
    finally:
        base.delete(key)


def test_a_hand_written_member_with_escape_sequences_is_not_shown(base: Embedded) -> None:
    """A member's host and version are shown in tables: a value driving the terminal is refused."""
    key = KEYS.member("shady")
    member = Member("shady", "h", "1", ("process",), {}, NOW)
    base.put_raw(key, json.dumps({**good_fields(member), "host": "\x1b]0;owned\x07h"}).encode())
    try:
        listing = base("member", "get")
        warned_about(listing, key)
        assert "\x1b" not in listing.stdout + listing.stderr and "lab-1" in listing.stdout
    finally:
        base.delete(key)


def test_the_checks_keep_every_record_a_daemon_writes(base: Embedded) -> None:
    """An ``--on all`` run's id is its slot and its member's name (up to 81 characters): still a good run,
    shown by ``tool runs`` and by ``tool logs NAME RUN_ID``; a claim with times the daemon did not write
    (they are only shown) is still listed."""
    member = "m" * 64
    run_id = f"20261130T000000Z.{member}"
    key = KEYS.run("good", run_id)
    record = Run(
        id=run_id, tool="good", slot=NOW, trigger="schedule", member=member, state="succeeded",
        started=NOW, finished=NOW, exit_code=0, output_tail="per member\n",
    )
    base.put_raw(key, record.to_value())
    claim_key = KEYS.claim("good", "20261130T050000Z")
    claim = Claim("20261130T050000Z", "good", "lab-1", NOW, "schedule", "claimed", "soon")
    base.put_raw(claim_key, claim.to_value())
    try:
        runs = base("tool", "runs", "good", "--json").ok()
        assert runs.stderr == "" and {r["id"] for r in runs.json()} >= {run_id, "20261130T050000Z"}, runs
        assert "per member" in base("tool", "logs", "good", run_id).ok().stdout
    finally:
        base.delete(key)
        base.delete(claim_key)

"""``maomao ctl`` / ``maoctl`` through their real entry points, on every backend.

Each test runs the installed console scripts as subprocesses against the
embedded store, a real etcd (new config format) and a real etcd selected by
the original MAO-MAO file format, and checks what they print, their exit
codes and what the store holds afterwards.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import maomao
from maomao.model import SCHEMA_VERSION
from tests.support.cli import (
    COMMANDS,
    MAOCTL,
    MAOMAO,
    PYTHON,
    Ctl,
    Result,
    clean_env,
    embedded_contents,
    embedded_put,
    etcd_contents,
    finish,
    run,
    run_many,
    start,
)
from tests.support.etcd import EtcdCluster, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOOL_FIELDS = {
    "name",
    "author",
    "image",
    "data_repo",
    "code_repo",
    "artefact",
    "command",
    "env",
    "timeout",
    "limits",
    "metrics",
    "runtime",
    "digest",
    "network",
    "read_only",
    "data_mount",
    "spikes",
    "schedule",
    "next_run",
}
DATASET_FIELDS = {"name", "url", "description", "clone"}
TOOL = ["tool", "add", "tl-1", "Ada Lovelace", "ghcr.io/lab/tl:1.2", "https://git.example.org/d.git",
        "git@git.example.org:lab/tl.git", "web pages"]  # fmt: skip


@pytest.fixture(params=["embedded", "etcd", "legacy"])
def ctl(request: pytest.FixtureRequest, tmp_path: Path, prefix: str) -> Ctl:
    """The CLI configured for one backend.

    embedded: ``[store] backend = embedded``, passed with ``--config``;
    etcd: ``[store] backend = etcd``, passed with ``--config``;
    legacy: the original ``[ETCD] host/port`` file, passed through
    ``$MAOMAO_CONFIG``, its prefix through ``$MAOMAO_STORE_PREFIX``.
    """
    home = tmp_path / "home"
    home.mkdir()
    if request.param == "embedded":
        config = tmp_path / "embedded.ini"
        config.write_text(f"[store]\nbackend = embedded\npath = {tmp_path}/store.db\n")
        db = tmp_path / "store.db"
        return Ctl("embedded", home, config, embedded_contents(db), embedded_put(db))
    cluster: EtcdCluster = request.getfixturevalue("etcd")
    contents = etcd_contents(cluster.etcdctl, prefix)

    def put_raw(key: str, value: bytes) -> None:
        cluster.etcdctl("put", key, value.decode())
    if request.param == "etcd":
        config = tmp_path / "etcd.ini"
        config.write_text(
            f"[store]\nbackend = etcd\nendpoints = {', '.join(cluster.endpoints)}\nprefix = {prefix}\n"
        )
        return Ctl("etcd", home, config, contents, put_raw, prefix=prefix)
    port = urlsplit(cluster.endpoints[0]).port
    config = tmp_path / "maoctl.ini"
    config.write_text(
        f"[WORKING_ENVIRONMENT]\nimportdir = {tmp_path}/import\n\n[ETCD]\nhost = 127.0.0.1\nport = {port}\n"
    )
    return Ctl(
        "legacy",
        home,
        config,
        contents,
        put_raw,
        flag=False,
        extra_env={"MAOMAO_STORE_PREFIX": prefix},
        prefix=prefix,
    )


def table(result: Result) -> list[list[str]]:
    """A table's rows split on runs of two or more spaces (cells here hold single spaces only)."""
    return [re.split(r" {2,}", line) for line in result.ok().stdout.splitlines()]


def details(result: Result) -> dict[str, str]:
    pairs = {}
    for line in result.ok().stdout.splitlines():
        key, _, value = line.partition(":")
        pairs[key] = value.strip()
    return pairs


# -- the commands, end to end ----------------------------------------------------------------


def test_tool_add_get_remove(ctl: Ctl) -> None:
    assert ctl(*TOOL).ok().stdout == "tool tl-1 added\n"
    assert ctl("tool", "add", "tl-2", "Grace", "busybox:1.36", "/srv/git/d2", "file:///srv/git/c2", "logs",
               "--command", "sh -c 'date > data/now'", "--env", "A=1", "--env", "B=x=y",
               entry="maomao").ok().stdout == "tool tl-2 added\n"  # fmt: skip

    # for people: a header and one aligned row per tool, in name order
    rows = table(ctl("tool", "get"))
    assert rows[0] == ["NAME", "AUTHOR", "IMAGE", "ARTEFACT", "DATA_REPO", "CODE_REPO", "SCHEDULE", "NEXT_RUN"]
    assert rows[1] == ["tl-1", "Ada Lovelace", "ghcr.io/lab/tl:1.2", "web pages",
                       "https://git.example.org/d.git", "git@git.example.org:lab/tl.git", "-", "-"]  # fmt: skip
    assert rows[2] == ["tl-2", "Grace", "busybox:1.36", "logs", "/srv/git/d2", "file:///srv/git/c2", "-", "-"]
    lines = ctl("tool", "get", entry="maomao").ok().stdout.splitlines()
    assert len(lines) == 3
    assert lines[1].index("Ada") == lines[0].index("AUTHOR") == lines[2].index("Grace")

    # for scripts: a list of objects named as the record's fields
    listed = ctl("tool", "get", "--json").json()
    assert [t["name"] for t in listed] == ["tl-1", "tl-2"]
    assert all(set(t) == TOOL_FIELDS for t in listed)
    first, second = listed
    assert first == {
        "name": "tl-1",
        "author": "Ada Lovelace",
        "image": "ghcr.io/lab/tl:1.2",
        "data_repo": "https://git.example.org/d.git",
        "code_repo": "git@git.example.org:lab/tl.git",
        "artefact": "web pages",
        "command": None,
        "env": {},
        "timeout": None,
        "limits": {"memory": None, "cpus": None, "pids": None},
        "metrics": [],
        "runtime": "container",
        "digest": None,
        "network": None,
        "read_only": None,
        "data_mount": "/usr/src/app/data",
        "spikes": {},
        "schedule": None,
        "next_run": None,
    }
    assert second["command"] == "sh -c 'date > data/now'"
    assert second["env"] == {"A": "1", "B": "x=y"}

    # one tool: details for people, a list of one for scripts
    shown = details(ctl("tool", "get", "tl-2"))
    assert shown["name"] == "tl-2" and shown["image"] == "busybox:1.36"
    assert shown["command"] == "sh -c 'date > data/now'" and shown["env"] == "A=1 B=x=y"
    assert ctl("tool", "get", "tl-2", "--json", entry="maomao").json() == [second]

    # what the store holds: the record as JSON with its schema version
    stored = ctl.records("tools")
    assert set(stored) == {"tl-1", "tl-2"}
    record = {k: v for k, v in first.items() if k not in ("schedule", "next_run")}  # what ctl adds to a tool
    assert stored["tl-1"] == {"v": SCHEMA_VERSION, **record}

    assert ctl("tool", "remove", "tl-1").ok().stdout == "tool tl-1 removed\n"
    assert [t["name"] for t in ctl("tool", "get", "--json", entry="maomao").json()] == ["tl-2"]
    assert set(ctl.records("tools")) == {"tl-2"}
    assert ctl("tool", "remove", "tl-2", entry="maomao").ok().stdout == "tool tl-2 removed\n"
    assert ctl("tool", "get", "--json").json() == []
    assert ctl.records("tools") == {}


def test_dataset_add_get_remove(ctl: Ctl) -> None:
    assert ctl("dataset", "add", "ds.one", "https://git.example.org/one.git",
               "--description", "Crawled pages, 2024").ok().stdout == "dataset ds.one added\n"  # fmt: skip
    assert ctl("dataset", "add", "ds_two", "ssh://git@git.example.org:2222/two.git",
               entry="maomao").ok().stdout == "dataset ds_two added\n"  # fmt: skip

    rows = table(ctl("dataset", "get"))
    assert rows[0] == ["NAME", "URL", "CLONED", "PATH", "HEAD", "DESCRIPTION"]
    assert rows[1] == ["ds.one", "https://git.example.org/one.git", "no", "-", "-", "Crawled pages, 2024"]
    assert rows[2] == ["ds_two", "ssh://git@git.example.org:2222/two.git", "no", "-", "-"]

    listed = ctl("dataset", "get", "--json", entry="maomao").json()
    assert listed == [
        {"name": "ds.one", "url": "https://git.example.org/one.git", "description": "Crawled pages, 2024",
         "clone": None},
        {"name": "ds_two", "url": "ssh://git@git.example.org:2222/two.git", "description": "", "clone": None},
    ]
    assert all(set(d) == DATASET_FIELDS for d in listed)
    assert details(ctl("dataset", "get", "ds_two")) == {
        "name": "ds_two",
        "url": "ssh://git@git.example.org:2222/two.git",
        "description": "-",
        "cloned": "no",
        "path": "-",
        "head": "-",
    }
    assert ctl("dataset", "get", "ds.one", "--json").json() == [listed[0]]
    stored = {k: v for k, v in listed[0].items() if k != "clone"}  # where it is cloned is this machine's, not stored
    assert ctl.records("datasets")["ds.one"] == {"v": SCHEMA_VERSION, **stored}

    assert ctl("dataset", "remove", "ds.one", entry="maomao").ok().stdout == "dataset ds.one removed\n"
    assert [d["name"] for d in ctl("dataset", "get", "--json").json()] == ["ds_two"]
    assert ctl("dataset", "remove", "ds_two").ok().stdout == "dataset ds_two removed\n"
    assert ctl.records("datasets") == {}


def test_empty_listing(ctl: Ctl) -> None:
    for noun in ("tool", "dataset"):
        empty = ctl(noun, "get").ok()
        assert empty.stdout == "" and empty.stderr == "no records found\n"
        assert ctl(noun, "get", "--json").json() == []


def test_add_of_an_existing_name_needs_replace(ctl: Ctl) -> None:
    ctl(*TOOL).ok()
    ctl("dataset", "add", "ds", "/srv/git/ds", "--description", "first").ok()
    before = ctl.contents()

    line = ctl(*TOOL[:4], "busybox", "/a", "/b", "other").error(2)
    assert "tl-1" in line and "--replace" in line
    line = ctl("dataset", "add", "ds", "/srv/git/other", entry="maomao").error(2)
    assert "ds" in line and "--replace" in line
    assert ctl.contents() == before

    assert ctl(*TOOL[:4], "busybox", "/a", "/b", "other", "--replace").ok().stdout == "tool tl-1 saved\n"
    assert ctl("dataset", "add", "ds", "/srv/git/other", "--replace").ok().stdout == "dataset ds saved\n"
    tool = ctl("tool", "get", "tl-1", "--json").json()[0]
    assert (tool["image"], tool["data_repo"], tool["code_repo"], tool["artefact"]) == ("busybox", "/a", "/b", "other")
    assert ctl("dataset", "get", "--json").json() == [
        {"name": "ds", "url": "/srv/git/other", "description": "", "clone": None}
    ]
    # --replace of a name that does not exist creates it
    assert ctl("dataset", "add", "fresh", "/srv/git/f", "--replace").ok().stdout == "dataset fresh saved\n"
    assert set(ctl.records("datasets")) == {"ds", "fresh"}


def test_missing_names(ctl: Ctl) -> None:
    ctl("dataset", "add", "keep", "/srv/git/keep").ok()
    before = ctl.contents()
    commands = [
        ([noun, *words], entry)
        for noun in ("tool", "dataset")
        for entry in ("maoctl", "maomao")
        for words in (["remove", "nope"], ["get", "nope"], ["get", "nope", "--json"])
    ]
    for result in ctl.many(*commands):
        assert "'nope'" in result.error(2)
    assert ctl.contents() == before


#: command lines that must fail with exit 2 and write nothing: (argv, a word the error names)
BAD_INPUT = [
    (["tool", "add", "-x", "a", "busybox", "/a", "/b", "c"], "-x"),
    (["tool", "add", "--", "-x", "a", "busybox", "/a", "/b", "c"], "-x"),
    (["tool", "add", ".hidden", "a", "busybox", "/a", "/b", "c"], ".hidden"),
    (["tool", "add", "a/b", "a", "busybox", "/a", "/b", "c"], "a/b"),
    (["tool", "add", "x" * 65, "a", "busybox", "/a", "/b", "c"], "x" * 65),
    (["tool", "add", "t", "a", "BusyBox", "/a", "/b", "c"], "BusyBox"),
    (["tool", "add", "t", "a", ":tag", "/a", "/b", "c"], ":tag"),
    (["tool", "add", "t", "a", "busybox", "ext::sh -c touch% /tmp/pwned", "/b", "c"], "data_repo"),
    (["tool", "add", "t", "a", "busybox", "/a", "ssh://-oProxyCommand=x/y", "c"], "code_repo"),
    (["tool", "add", "t", "a", "busybox", "relative/path", "/b", "c"], "data_repo"),
    (["tool", "add", "t", "", "busybox", "/a", "/b", "c"], "author"),
    (["tool", "add", "t", "a", "busybox", "/a", "/b", "c", "--env", "BAD-KEY=1"], "BAD-KEY"),
    (["tool", "add", "t", "a", "busybox", "/a", "/b", "c", "--network", "wifi"], "wifi"),
    (["tool", "add", "t", "a", "busybox", "/a", "/b", "c", "--data-mount", "data"], "data mount"),
    (["tool", "add", "t", "a", "busybox", "/a", "/b", "c", "--data-mount", "/usr/../etc"], "data mount"),
    (["tool", "add", "t", "a", "busybox", "/a", "/b", "c", "--data-mount", "/proc"], "data mount"),
    (["tool", "add", "t", "a", "busybox", "/a", "/b", "c", "--runtime", "process", "--command", "true", "--pin"],
     "--pin"),
    (["tool", "add", "t", "a", "busybox", "/a", "/b", "c", "--spike", "colour=1"], "colour"),
    (["tool", "add", "t", "a", "busybox", "/a", "/b", "c", "--spike", "threshold"], "--spike"),
    (["tool", "add", "t", "a", "busybox", "/a", "/b", "c", "--spike", "threshold=high"], "high"),
    (["tool", "add", "t", "a", "busybox", "/a", "/b", "c", "--spike", "control.cooldown=0.5"], "cooldown"),
    (["tool", "pin", "nosuchtool"], "nosuchtool"),
    (["tool", "pin", "../x"], "../x"),
    (["tool", "logs", "nosuchtool"], "nosuchtool"),
    (["tool", "logs", "tl-1", "../../etc/passwd"], "run id"),
    (["tool", "logs", "tl-1", "nosuchrun"], "nosuchrun"),
    (["tool", "add", "t", "a", "busybox", "/a", "/b", "c", "--env", "MAOMAO_X=1"], "MAOMAO_X"),
    (["tool", "add", "t", "a", "busybox", "/a", "/b", "c", "--env", "NOEQUALS"], "NOEQUALS"),
    (["tool", "add", "t", "a", "busybox", "/a", "/b", "c", "--env", "A=1", "--env", "A=2"], "A"),
    (["tool", "add", "t", "a", "busybox", "/a", "/b", "c", "--command", "'unclosed"], "command"),
    (["tool", "add", "t", "a", "busybox", "/a", "/b", "c", "--pids", "1.5"], "--pids"),
    (["tool", "add", "t", "a", "busybox", "/a", "/b", "c", "--timeout", "nan"], "timeout"),
    (["tool", "add", "t", "a", "busybox", "/a", "/b", "c", "--runtime", "vm"], "--runtime"),
    (["tool", "add", "t", "a", "busybox", "/a", "/b"], "ARTEFACT"),
    (["tool", "add", "t", "a", "busybox", "/a", "/b", "c", "extra"], "extra"),
    (["tool", "add", "t", "a", "busybox", "/a", "/b", "c", "--bogus"], "--bogus"),
    (["tool", "remove", "-x"], "-x"),
    (["tool", "remove", "a/b"], "a/b"),
    (["tool", "remove"], "NAME"),
    (["tool", "get", "--bogus"], "--bogus"),
    (["dataset", "add", "d", "ftp://example.org/d"], "ftp://"),
    (["dataset", "add", "d", "https://example.org/d", "--description", "two\nlines"], "description"),
    (["dataset", "add", "d", "https://example.org/d", "--description", "red \x9b31m text"], "description"),
    (["dataset", "add", "-d", "/srv/d"], "-d"),
    (["dataset", "add", "d"], "URL"),
    (["dataset", "remove", "../d"], "../d"),
    (["dataset", "get", "x", "y"], "y"),
    (["dataset", "frobnicate"], "frobnicate"),
]


def test_invalid_input_fails_and_writes_nothing(ctl: Ctl) -> None:
    ctl(*TOOL).ok()
    ctl("dataset", "add", "d", "/srv/git/d").ok()
    before = ctl.contents()
    assert len(before) == 2
    # validation does not depend on the backend: every case on one, a sample on the others
    cases = BAD_INPUT if ctl.kind == "embedded" else BAD_INPUT[:: 3 if ctl.kind == "etcd" else 4]
    results = ctl.many(*[(argv, "maomao" if i % 2 else "maoctl") for i, (argv, _) in enumerate(cases)])
    for (argv, named), result in zip(cases, results, strict=True):
        line = result.error(2)
        assert named in line, (argv, line)
    assert ctl.contents() == before


@pytest.mark.timeout(180)
def test_concurrent_adds_have_one_winner(ctl: Ctl) -> None:
    for round_ in range(5):
        name = f"race-{round_}"
        procs = [
            start(ctl.argv(["tool", "add", name, f"author-{i}", "busybox", "/a", "/b", "c"]), env=ctl.env, cwd=ctl.home)
            for i in range(2)
        ]
        results = [finish(p) for p in procs]
        winners = [i for i, r in enumerate(results) if r.returncode == 0]
        assert len(winners) == 1, [str(r) for r in results]
        loser = results[1 - winners[0]]
        assert "--replace" in loser.error(2)
        assert results[winners[0]].stdout == f"tool {name} added\n"
        assert ctl.records("tools")[name]["author"] == f"author-{winners[0]}"
    for round_ in range(3):
        name = f"drace-{round_}"
        procs = [
            start(ctl.argv(["dataset", "add", name, f"/srv/git/{i}"], entry="maomao"), env=ctl.env, cwd=ctl.home)
            for i in range(2)
        ]
        results = [finish(p) for p in procs]
        assert sorted(r.returncode for r in results) == [0, 2], [str(r) for r in results]
        winner = next(i for i, r in enumerate(results) if r.returncode == 0)
        assert ctl.records("datasets")[name]["url"] == f"/srv/git/{winner}"


def test_unreadable_records_are_reported_not_fatal(ctl: Ctl) -> None:
    """A record this maomao cannot read (newer schema, garbage) is a warning in a listing."""
    ctl(*TOOL).ok()
    ctl.put_raw(f"{ctl.prefix}tools/future", json.dumps({"v": SCHEMA_VERSION + 1, "name": "future"}).encode())
    ctl.put_raw(f"{ctl.prefix}tools/garbage", b"{not json")
    listing = ctl("tool", "get", "--json").ok()
    assert [t["name"] for t in json.loads(listing.stdout)] == ["tl-1"]
    warnings = listing.stderr.splitlines()
    assert len(warnings) == 2 and all(w.startswith("warning: ") for w in warnings), listing
    assert "upgrade" in warnings[0] and "future" in warnings[0]
    assert "garbage" in warnings[1]
    line = ctl("tool", "get", "future").error(1)
    assert f"v{SCHEMA_VERSION + 1}" in line and "upgrade" in line
    # the broken ones can still be removed
    ctl("tool", "remove", "garbage").ok()
    assert set(ctl.records("tools")) == {"tl-1", "future"}


def test_undecodable_arguments_are_refused(ctl: Ctl) -> None:
    """Bytes that are not UTF-8 (a surrogate in sys.argv) cannot be stored as text nor printed."""
    ctl("dataset", "add", "ok", "/srv/ok").ok()
    before = ctl.contents()
    bad = os.fsdecode(b"caf\xe9")
    for argv in (
        ["dataset", "add", "d", "/srv/d", "--description", bad],
        ["dataset", "add", "d", "/srv/" + bad],
        ["tool", "add", "t", bad, "busybox", "/a", "/b", "c"],
        ["tool", "add", "t", "a", "busybox", "/a", "/b", "c", "--env", "A=" + bad],
        ["tool", "get", bad],
    ):
        line = ctl(*argv).error(2)
        assert "\\udce9" in line or "undecodable" in line, line
    assert ctl.contents() == before
    listing = ctl("dataset", "get").ok()
    assert listing.stdout.splitlines()[1].split() == ["ok", "/srv/ok", "no", "-", "-"]


# -- entry points, help, version ------------------------------------------------------------


def test_help_for_every_command(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    groups = [[], ["tool"], ["dataset"], *[[n, v] for n, v in COMMANDS]]
    argvs = [argv for words in groups for argv in ([MAOMAO, "ctl", *words, "--help"], [MAOCTL, *words, "--help"])]
    results = iter(run_many(argvs, env=env, cwd=tmp_path))
    for via_maomao, via_maoctl in zip(results, results, strict=True):
        for result in (via_maomao, via_maoctl):
            assert result.returncode == 0, str(result)
            assert result.stderr == "", str(result)
            assert result.stdout.startswith("Usage: maomao ctl"), str(result)
        # maoctl X is exactly maomao ctl X
        assert via_maomao.stdout == via_maoctl.stdout
    tool_add = run([MAOCTL, "tool", "add", "--help"], env=env, cwd=tmp_path).stdout
    for word in ("NAME", "AUTHOR", "IMAGE", "DATA_REPO", "CODE_REPO", "ARTEFACT", "--command", "--env", "--replace"):
        assert word in tool_add
    dataset_add = run([MAOCTL, "dataset", "add", "--help"], env=env, cwd=tmp_path).stdout
    for word in ("NAME", "URL", "--description", "--replace", "--config"):
        assert word in dataset_add
    root = run([MAOMAO, "--help"], env=env, cwd=tmp_path).ok()
    assert "ctl" in root.stdout


def test_version_and_python_m(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    assert run([MAOMAO, "--version"], env=env, cwd=tmp_path).ok().stdout == f"{maomao.__version__}\n"
    assert run([PYTHON, "-m", "maomao", "--version"], env=env, cwd=tmp_path).ok().stdout == f"{maomao.__version__}\n"
    # python -m maomao is the maomao command, errors included
    run([PYTHON, "-m", "maomao", "ctl", "dataset", "add", "d", "/srv/d"], env=env, cwd=tmp_path).ok()
    assert run([PYTHON, "-m", "maomao", "ctl", "dataset", "get", "--json"], env=env, cwd=tmp_path).json() == [
        {"name": "d", "url": "/srv/d", "description": "", "clone": None}
    ]
    run([PYTHON, "-m", "maomao", "ctl", "dataset", "remove", "nope"], env=env, cwd=tmp_path).error(2)
    run([PYTHON, "-m", "maomao", "bogus"], env=env, cwd=tmp_path).error(2)


def test_maoctl_is_maomao_ctl(tmp_path: Path) -> None:
    """The same arguments give the same output, errors included."""
    env = clean_env(tmp_path)
    for words in (
        ["dataset", "add", "d", "/srv/d", "--description", "x"],
        ["dataset", "get"],
        ["dataset", "get", "--json"],
        ["dataset", "get", "d"],
        ["tool", "get", "--json"],
        ["tool", "add", "-x"],
        ["tool", "get", "nope"],
        ["bogus"],
    ):
        a = run([MAOMAO, "ctl", *words], env=env, cwd=tmp_path)
        if words[1:2] == ["add"] and a.returncode == 0:
            run([MAOCTL, "dataset", "remove", "d"], env=env, cwd=tmp_path).ok()
        b = run([MAOCTL, *words], env=env, cwd=tmp_path)
        assert (a.returncode, a.stdout, a.stderr) == (b.returncode, b.stdout, b.stderr), (str(a), str(b))


def test_usage_errors_are_one_line(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    argvs: list[list[str | Path]] = [
        [MAOMAO, "bogus"],
        [MAOMAO, "--bogus"],
        [MAOMAO, "ctl", "bogus"],
        [MAOCTL, "tool", "bogus"],
        [MAOCTL, "tool", "add"],
        [MAOCTL, "tool", "get", "--config"],
        [MAOCTL, "tool", "get", "--json", "--json"],
        [MAOCTL, "tool", "get", "-x"],
        [MAOCTL, "dataset", "add", "d", "/srv/d", "--description"],
    ]
    for result in run_many(argvs, env=env, cwd=tmp_path):
        result.error(2)
    assert not (tmp_path / "state").exists()  # nothing was even opened


# -- the store out of reach -------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_unreachable_etcd_exits_1_naming_the_endpoints(tmp_path: Path, prefix: str) -> None:
    dead = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    new = tmp_path / "new.ini"
    new.write_text(f"[store]\nbackend = etcd\nendpoints = {', '.join(dead)}\nprefix = {prefix}\n")
    legacy = tmp_path / "legacy.ini"
    legacy.write_text(f"[ETCD]\nhost = 127.0.0.1\nport = {urlsplit(dead[0]).port}\n")
    env = clean_env(tmp_path)
    runs = [
        (new, dead, ["tool", "get"]),
        (new, dead, ["tool", "get", "--json"]),
        (new, dead, ["tool", "get", "x"]),
        (new, dead, ["tool", "add", "t", "a", "busybox", "/a", "/b", "c"]),
        (new, dead, ["tool", "remove", "t"]),
        (legacy, dead[:1], ["dataset", "get"]),
        (legacy, dead[:1], ["dataset", "add", "d", "/srv/d"]),
        (legacy, dead[:1], ["dataset", "remove", "d"]),
    ]
    for config, endpoints, words in runs:
        line = run([MAOCTL, *words[:2], "--config", config, *words[2:]], env=env, cwd=tmp_path).error(1)
        for endpoint in endpoints:
            assert endpoint in line, line
    # and through $MAOMAO_CONFIG, via maomao
    line = run([MAOMAO, "ctl", "tool", "get"], env={**env, "MAOMAO_CONFIG": str(new)}, cwd=tmp_path).error(1)
    assert all(endpoint in line for endpoint in dead)


def test_embedded_file_out_of_reach_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "c.ini"
    config.write_text("[store]\nbackend = embedded\npath = /dev/null/maomao/store.db\n")
    env = clean_env(tmp_path)
    for words in (["tool", "get"], ["dataset", "add", "d", "/srv/d"]):
        line = run([MAOCTL, *words[:2], "--config", config, *words[2:]], env=env, cwd=tmp_path).error(1)
        assert "/dev/null/maomao/store.db" in line


def test_etcd_that_went_away(own_etcd: EtcdCluster, tmp_path: Path, prefix: str) -> None:
    config = tmp_path / "c.ini"
    config.write_text(f"[store]\nendpoints = {own_etcd.endpoints[0]}\nprefix = {prefix}\n")
    env = clean_env(tmp_path, {"MAOMAO_CONFIG": str(config)})
    run([MAOCTL, "dataset", "add", "d", "/srv/d"], env=env, cwd=tmp_path).ok()
    own_etcd.stop()
    assert own_etcd.endpoints[0] in run([MAOCTL, "dataset", "get"], env=env, cwd=tmp_path).error(1)
    own_etcd.start()
    assert run([MAOCTL, "dataset", "get", "--json"], env=env, cwd=tmp_path).json()[0]["name"] == "d"


# -- configuration through the CLI ------------------------------------------------------------


BAD_CONFIGS = [
    ("[store]\nbackend = zookeeper\n", ["[store] backend", "embedded, etcd"]),
    ("[store]\nttl = 0\n", ["[store] ttl", "2 to 3600"]),
    ("[store]\nendpoints = ftp://h:1\n", ["[store] endpoints", "http://"]),
    ("[store]\ncolour = blue\n", ["[store] colour", "unknown key"]),
    ("[store]\ncert = /etc/hostname\n", ["[store] cert", "key"]),
    ("[maomao]\nmember = -lab\n", ["[maomao] member", "letters"]),
    ("[ETCD]\nhost = 127.0.0.1\nport = http\n", ["[ETCD] port", "port number"]),
    ("[store\nttl = 5\n", ["line 1"]),
    ("no section\n", ["section"]),
]


def test_bad_config_file_exits_2(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    argvs: list[list[str | Path]] = []
    for i, (text, _words) in enumerate(BAD_CONFIGS):
        config = tmp_path / f"bad{i}.ini"
        config.write_text(text)
        argvs.append([MAOCTL, "tool", "get", "--config", config])
        argvs.append([MAOMAO, "ctl", "dataset", "add", "d", "/srv/d", "--config", config])
    results = run_many(argvs, env=env, cwd=tmp_path)
    for i, (text, words) in enumerate(BAD_CONFIGS):
        for result in results[2 * i : 2 * i + 2]:
            line = result.error(2)
            assert all(w in line for w in words), (text, line)
    line = run([MAOCTL, "tool", "get", "--config", tmp_path / "missing.ini"], env=env, cwd=tmp_path).error(2)
    assert "missing.ini" in line
    env["MAOMAO_CONFIG"] = str(tmp_path / "gone.ini")
    assert "gone.ini" in run([MAOCTL, "tool", "get"], env=env, cwd=tmp_path).error(2)
    # a good file, a bad override
    config = tmp_path / "good.ini"
    config.write_text("[store]\nttl = 5\n")
    env["MAOMAO_CONFIG"] = str(config)
    env["MAOMAO_STORE_TTL"] = "forever"
    line = run([MAOCTL, "tool", "get"], env=env, cwd=tmp_path).error(2)
    assert "MAOMAO_STORE_TTL" in line and "ttl" in line and "forever" in line
    assert not (tmp_path / "state").exists()


def test_config_search_order(tmp_path: Path) -> None:
    """--config, then $MAOMAO_CONFIG, then ./config.ini, then ~/.config/maomao/config.ini."""
    home = tmp_path / "home"
    work = tmp_path / "work"
    (home / ".config" / "maomao").mkdir(parents=True)
    work.mkdir()
    places = {
        "flag": tmp_path / "flag.ini",
        "env": tmp_path / "env.ini",
        "cwd": work / "config.ini",
        "home": home / ".config" / "maomao" / "config.ini",
    }
    for where, path in places.items():
        path.write_text(f"[store]\npath = {tmp_path}/{where}.db\n")
    env = clean_env(home, {"MAOMAO_CONFIG": str(places["env"])})

    added = iter(range(100))

    def used(*extra: str) -> str:
        """Add a dataset; return which config's store file holds it."""
        name = f"d{next(added)}"
        run([MAOCTL, "dataset", "add", name, "/srv/d", *extra], env=env, cwd=work).ok()
        (db,) = [p for p in tmp_path.glob("*.db") if f"/maomao/datasets/{name}" in embedded_contents(p)()]
        return db.stem

    assert used("--config", str(places["flag"])) == "flag"
    assert used() == "env"
    del env["MAOMAO_CONFIG"]
    assert used() == "cwd"
    places["cwd"].unlink()
    assert used() == "home"
    places["home"].unlink()
    # none at all: the embedded store under the state directory
    run([MAOCTL, "dataset", "add", "dflt", "/srv/d"], env=env, cwd=work).ok()
    assert (home / "state" / "maomao" / "store.db").is_file()
    # a MAOMAO_<SECTION>_<KEY> variable overrides the file
    places["cwd"].write_text(f"[store]\npath = {tmp_path}/cwd.db\n")
    env["MAOMAO_STORE_PATH"] = str(tmp_path / "override.db")
    assert used() == "override"

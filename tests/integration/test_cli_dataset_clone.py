"""``maomao ctl dataset clone`` / ``dataset get`` against real git: bare remotes in temporary directories.

The CLI runs through its real entry points as subprocesses on the embedded
store; the remotes are made and advanced with the ``git`` command line.
"""

from __future__ import annotations

import errno
import json
import os
import re
import select
import socket
import subprocess
import tty
from pathlib import Path

import pytest

from tests.support.cli import MAOCTL, Ctl, Result, embedded_contents, embedded_put
from tests.support.git import git

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CLONED = re.compile(r"cloned (\S+) into (\S+) \((\d+) commits?, HEAD ([0-9a-f]{7})\)")
UPDATED = re.compile(r"updated (\S+) at (\S+): (\d+) new commits? \(HEAD ([0-9a-f]{7})\)")



class Remote:
    """A bare remote on branch main and a work tree that pushes to it."""

    def __init__(self, root: Path, name: str = "remote") -> None:
        self.bare = root / f"{name}.git"
        self.seed = root / f"{name}-seed"
        git("init", "-q", "--bare", "-b", "main", self.bare)
        git("clone", "-q", self.bare, self.seed)

    def commit(self, files: dict[str, str], message: str = "data") -> str:
        for name, text in files.items():
            (self.seed / name).parent.mkdir(parents=True, exist_ok=True)
            (self.seed / name).write_text(text)
        git("-C", self.seed, "add", "-A")
        git("-C", self.seed, "commit", "-q", "-m", message)
        git("-C", self.seed, "push", "-q", "origin", "HEAD:main")
        return self.head()

    def head(self) -> str:
        return git("-C", self.bare, "rev-parse", "main").strip()


@pytest.fixture
def world(tmp_path: Path) -> tuple[Ctl, Path]:
    """The CLI on an embedded store with ``importdir`` in the temporary directory; returns it and importdir."""
    home = tmp_path / "home"
    home.mkdir()
    importdir = tmp_path / "import"
    config = tmp_path / "maomao.ini"
    config.write_text(f"[maomao]\nimportdir = {importdir}\n\n[store]\nbackend = embedded\npath = {tmp_path}/store.db\n")
    db = tmp_path / "store.db"
    return Ctl("embedded", home, config, embedded_contents(db), embedded_put(db)), importdir


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    remote = Remote(tmp_path / "remotes")
    remote.commit({"README": "the data\n", "series/control-1.csv": "1\n"}, "seed")
    return remote


def record(importdir: Path) -> dict[str, dict[str, str]]:
    data = json.loads((importdir / ".maomao" / "clones.json").read_text())
    assert data["v"] == 1
    clones = data["clones"]
    assert isinstance(clones, dict)
    return clones


def leftovers(importdir: Path) -> list[str]:
    """What is in importdir besides maomao's own ``.maomao``."""
    if not importdir.exists():
        return []
    return sorted(p.name for p in importdir.iterdir() if p.name != ".maomao")


def rows(result: Result) -> list[list[str]]:
    return [re.split(r" {2,}", line) for line in result.ok().stdout.splitlines()]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- clone, update, get ------------------------------------------------------------------


def test_clone_twice_then_update_and_get(world: tuple[Ctl, Path], remote: Remote) -> None:
    ctl, importdir = world
    config_before = ctl.config.read_text()
    ctl("dataset", "add", "series", str(remote.bare), "--description", "control series").ok()

    # before: registered, not cloned here
    table = rows(ctl("dataset", "get"))
    assert table[0] == ["NAME", "URL", "CLONED", "PATH", "HEAD", "DESCRIPTION"]
    assert table[1] == ["series", str(remote.bare), "no", "-", "-", "control series"]
    assert ctl("dataset", "get", "--json").json() == [
        {"name": "series", "url": str(remote.bare), "description": "control series", "clone": None}
    ]

    first = ctl("dataset", "clone", "series").ok()
    target = importdir / "series"
    match = CLONED.fullmatch(first.stdout.strip())
    assert match, str(first)
    assert match.groups() == ("series", str(target), "1", remote.head()[:7])
    assert "\r" not in first.stderr and "\r" not in first.stdout  # not a terminal: plain lines
    assert (target / "README").read_text() == "the data\n"
    assert (target / "series" / "control-1.csv").read_text() == "1\n"
    assert git("-C", target, "rev-parse", "HEAD").strip() == remote.head()
    clones = record(importdir)
    assert set(clones) == {"series"}
    assert clones["series"]["path"] == str(target)
    assert clones["series"]["url"] == str(remote.bare)
    cloned_at = clones["series"]["cloned"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", cloned_at)
    assert leftovers(importdir) == ["series"]  # no temporary clone directory left

    # again, nothing new
    again = ctl("dataset", "clone", "series", entry="maomao").ok()
    assert again.stdout == f"series at {target} is up to date\n"
    assert "\r" not in again.stderr

    # two more commits on the remote: the next clone fast-forwards and counts them
    remote.commit({"series/control-2.csv": "2\n"}, "run 2")
    newest = remote.commit({"series/control-3.csv": "3\n", "README": "more data\n"}, "run 3")
    update = ctl("dataset", "clone", "series").ok()
    match = UPDATED.fullmatch(update.stdout.strip())
    assert match, str(update)
    assert match.groups() == ("series", str(target), "2", newest[:7])
    assert (target / "series" / "control-3.csv").read_text() == "3\n"
    assert (target / "README").read_text() == "more data\n"
    assert git("-C", target, "rev-parse", "HEAD").strip() == newest
    assert git("-C", target, "status", "--porcelain") == ""
    clones = record(importdir)
    assert clones["series"]["cloned"] == cloned_at
    assert clones["series"]["updated"] >= cloned_at

    # after: cloned here, where, HEAD
    table = rows(ctl("dataset", "get"))
    assert table[1] == ["series", str(remote.bare), "yes", str(target), f"{newest[:7]} main", "control series"]
    listed = ctl("dataset", "get", "--json", entry="maomao").json()
    assert listed == [
        {
            "name": "series",
            "url": str(remote.bare),
            "description": "control series",
            "clone": {
                "path": str(target),
                "head": newest,
                "branch": "main",
                "cloned": cloned_at,
                "updated": clones["series"]["updated"],
            },
        }
    ]
    assert ctl("dataset", "get", "series", "--json").json() == listed
    one = dict(line.split(":", 1) for line in ctl("dataset", "get", "series").ok().stdout.splitlines())
    assert {k: v.strip() for k, v in one.items()} == {
        "name": "series",
        "url": str(remote.bare),
        "description": "control series",
        "cloned": "yes",
        "path": str(target),
        "head": f"{newest[:7]} main",
    }

    # the original's habit of writing [DATA_REPOS] into config.ini is gone
    assert ctl.config.read_text() == config_before
    assert "DATA_REPOS" not in ctl.config.read_text()


def test_a_vanished_clone_shows_as_not_cloned_and_clones_again(world: tuple[Ctl, Path], remote: Remote) -> None:
    ctl, importdir = world
    ctl("dataset", "add", "ds", f"file://{remote.bare}").ok()
    ctl("dataset", "clone", "ds").ok()
    subprocess.run(["rm", "-rf", str(importdir / "ds")], check=True)
    assert ctl("dataset", "get", "--json").json()[0]["clone"] is None
    assert rows(ctl("dataset", "get"))[1][2:5] == ["no", "-", "-"]
    result = ctl("dataset", "clone", "ds").ok()
    assert result.stdout.startswith(f"cloned ds into {importdir / 'ds'} (1 commit, HEAD ")
    assert ctl("dataset", "get", "--json").json()[0]["clone"]["head"] == remote.head()


def test_dest(world: tuple[Ctl, Path], remote: Remote) -> None:
    ctl, importdir = world
    ctl("dataset", "add", "ds", str(remote.bare)).ok()
    # relative to the working directory, like git clone
    first = ctl("dataset", "clone", "ds", "--dest", "here/ds-copy").ok()
    target = ctl.home / "here" / "ds-copy"
    assert first.stdout == f"cloned ds into {target} (1 commit, HEAD {remote.head()[:7]})\n"
    assert (target / "README").read_text() == "the data\n"
    assert leftovers(importdir) == []
    assert record(importdir)["ds"]["path"] == str(target)
    assert ctl("dataset", "get", "--json").json()[0]["clone"]["path"] == str(target)
    # without --dest, the clone it remembers is the one updated
    newest = remote.commit({"new.csv": "x\n"})
    update = ctl("dataset", "clone", "ds").ok()
    assert update.stdout == f"updated ds at {target}: 1 new commit (HEAD {newest[:7]})\n"
    assert leftovers(importdir) == []
    # an empty directory is fine to clone into
    (ctl.home / "empty").mkdir()
    ctl("dataset", "clone", "ds", "--dest", str(ctl.home / "empty")).ok()
    assert (ctl.home / "empty" / "new.csv").read_text() == "x\n"


# -- what is refused, and what is left -------------------------------------------------------


def test_unknown_dataset(world: tuple[Ctl, Path]) -> None:
    ctl, importdir = world
    line = ctl("dataset", "clone", "nope").error(2)
    assert "no dataset named" in line and "nope" in line
    ctl("dataset", "clone", "../bad").error(2)
    assert not importdir.exists()


def test_dest_occupied_is_refused_and_nothing_written(world: tuple[Ctl, Path], remote: Remote, tmp_path: Path) -> None:
    ctl, importdir = world
    ctl("dataset", "add", "ds", str(remote.bare)).ok()
    other = Remote(tmp_path / "remotes", "other")
    other.commit({"other": "x\n"})
    ctl("dataset", "add", "other", str(other.bare)).ok()

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine\n")
    line = ctl("dataset", "clone", "ds", "--dest", str(busy)).error(2)
    assert str(busy) in line and "not empty" in line
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert str(a_file) in ctl("dataset", "clone", "ds", "--dest", str(a_file)).error(2)
    assert a_file.read_text() == "x"

    # importdir/ds taken by a clone of another remote
    ctl("dataset", "clone", "other", "--dest", str(importdir / "ds")).ok()
    before = record(importdir)
    line = ctl("dataset", "clone", "ds").error(2)
    assert str(importdir / "ds") in line and str(other.bare) in line
    assert (importdir / "ds" / "other").read_text() == "x\n"
    assert record(importdir) == before
    assert not (importdir / ".maomao" / "locks" / "dataset-ds.lock").exists()


@pytest.mark.parametrize("kind", ["file", "http"])
def test_unreachable_remote_leaves_nothing(world: tuple[Ctl, Path], kind: str, tmp_path: Path) -> None:
    ctl, importdir = world
    url = f"file://{tmp_path}/missing.git" if kind == "file" else f"http://127.0.0.1:{closed_port()}/data.git"
    ctl("dataset", "add", "ds", url).ok()
    line = ctl("dataset", "clone", "ds").error(1)
    assert url in line
    assert leftovers(importdir) == []
    assert not (importdir / ".maomao" / "clones.json").exists()
    assert ctl("dataset", "get", "--json").json()[0]["clone"] is None
    # --dest: nothing left there either, not even its parent's temporary directory
    dest = tmp_path / "elsewhere" / "ds"
    ctl("dataset", "clone", "ds", "--dest", str(dest)).error(1)
    assert not dest.exists()
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []


def test_unreachable_remote_on_update_keeps_the_clone(world: tuple[Ctl, Path], remote: Remote) -> None:
    ctl, importdir = world
    ctl("dataset", "add", "ds", str(remote.bare)).ok()
    ctl("dataset", "clone", "ds").ok()
    remote.bare.rename(remote.bare.with_name("moved.git"))
    line = ctl("dataset", "clone", "ds").error(1)
    assert str(remote.bare) in line
    assert (importdir / "ds" / "README").read_text() == "the data\n"
    assert ctl("dataset", "get", "--json").json()[0]["clone"] is not None


def test_local_changes_blocking_a_fast_forward(world: tuple[Ctl, Path], remote: Remote) -> None:
    ctl, importdir = world
    ctl("dataset", "add", "ds", str(remote.bare)).ok()
    ctl("dataset", "clone", "ds").ok()
    target = importdir / "ds"
    old = git("-C", target, "rev-parse", "HEAD").strip()
    (target / "README").write_text("my edit\n")
    remote.commit({"README": "their edit\n"})
    line = ctl("dataset", "clone", "ds").error(1)
    assert "local changes" in line and str(target) in line
    # nothing lost, nothing moved
    assert (target / "README").read_text() == "my edit\n"
    assert git("-C", target, "rev-parse", "HEAD").strip() == old
    # once the edit is put away, the update goes through
    git("-C", target, "checkout", "--", "README")
    result = ctl("dataset", "clone", "ds").ok()
    assert result.stdout.startswith(f"updated ds at {target}: 1 new commit")
    assert (target / "README").read_text() == "their edit\n"


def test_local_commits_diverged_from_the_remote(world: tuple[Ctl, Path], remote: Remote) -> None:
    ctl, importdir = world
    ctl("dataset", "add", "ds", str(remote.bare)).ok()
    ctl("dataset", "clone", "ds").ok()
    target = importdir / "ds"
    (target / "mine.txt").write_text("mine\n")
    git("-C", target, "add", "mine.txt")
    git("-C", target, "commit", "-q", "-m", "local")
    mine = git("-C", target, "rev-parse", "HEAD").strip()
    assert ctl("dataset", "clone", "ds").ok().stdout == (
        f"ds at {target} is up to date (1 commit here not on the remote)\n"
    )
    remote.commit({"theirs.txt": "theirs\n"})
    line = ctl("dataset", "clone", "ds").error(1)
    assert "not fast-forwarded" in line
    assert git("-C", target, "rev-parse", "HEAD").strip() == mine


# -- progress ------------------------------------------------------------------------------


def big_remote(tmp_path: Path) -> Remote:
    """A remote with enough objects that the transfer reports progress."""
    big = Remote(tmp_path / "remotes", "big")
    big.commit({f"part-{i:04d}.bin": os.urandom(2048).hex() for i in range(400)}, "many files")
    return big


def test_progress_without_a_terminal_is_plain_lines(world: tuple[Ctl, Path], tmp_path: Path) -> None:
    ctl, _importdir = world
    big = big_remote(tmp_path)
    ctl("dataset", "add", "big", f"file://{big.bare}").ok()  # a path is copied, file:// is transferred
    result = ctl("dataset", "clone", "big").ok()
    assert "\r" not in result.stderr and "\x1b" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines, str(result)
    assert re.fullmatch(r"received \d+ objects, [\d.]+ (B|KiB|MiB) in [\d.]+ s( \(.+/s\))?", lines[-1]), lines
    for line in lines[:-1]:
        assert line.startswith("receiving objects: ") or line.startswith("resolving deltas: "), lines
    assert CLONED.fullmatch(result.stdout.strip())


def test_progress_on_a_terminal_is_one_redrawn_line(world: tuple[Ctl, Path], tmp_path: Path) -> None:
    ctl, _importdir = world
    big = big_remote(tmp_path)
    ctl("dataset", "add", "big", f"file://{big.bare}").ok()  # a path is copied, file:// is transferred
    controller, terminal = os.openpty()
    tty.setraw(terminal)  # no newline translation: what is written is what is read
    proc = subprocess.Popen(
        [str(MAOCTL), "dataset", "clone", "--config", str(ctl.config), "big"],
        env=ctl.env,
        cwd=ctl.home,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal,
    )
    os.close(terminal)
    seen = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 60)
        assert ready, seen
        try:
            chunk = os.read(controller, 65536)
        except OSError as exc:  # the other end closed
            assert exc.errno == errno.EIO
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out, seen)
    text = seen.decode()
    assert "\r" in text and "Traceback" not in text
    assert re.search(r"receiving objects: \d+% \(\d+/\d+\), [\d.]+ (B|KiB|MiB) \| [\d.]+ (B|KiB|MiB)/s", text), text
    assert text.rstrip().endswith(", done."), text
    assert text.count("\n") == 1  # one line, redrawn, ended once
    assert CLONED.fullmatch(out.decode().strip())

"""maomao.gitdata against a work tree a tool filled with garbage (local git repositories, no services).

What is committed (links as links, nested repositories' files without
their ``.git``, names in any bytes), what is left out and said (big files),
that no checkout writes through a tool's symlink out of the data directory,
and that a clone whose ``.git`` a tool rewrote or removed is found out and
restored.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pygit2
import pytest

from maomao.gitdata import DataRepo
from tests.support.git import git

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def clone(tmp_path: Path) -> DataRepo:
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", "-b", "main", remote)
    repo = DataRepo(tmp_path / "import" / "tool", str(remote), author_name="Mao", author_email="mao@example.org",
                    max_file_size=1 << 20)  # fmt: skip
    repo.ensure()
    (repo.path / "kept.txt").write_text("kept\n")
    (repo.path / "sub").mkdir()
    (repo.path / "sub" / "a.txt").write_text("tracked\n")
    assert repo.commit_run("seed", {}) is not None
    assert repo.push().state == "pushed"
    return repo


def tree_of(repo: DataRepo, ref: str = "HEAD") -> dict[bytes, tuple[int, bytes]]:
    """path (bytes) -> (mode, content) of every entry of ``ref``'s tree, recursively."""
    r = pygit2.Repository(str(repo.path))
    out: dict[bytes, tuple[int, bytes]] = {}

    def walk(tree: pygit2.Tree, prefix: bytes) -> None:
        for entry in tree:
            name = prefix + os.fsencode(entry.name or "")
            obj = r.get(entry.id)
            if isinstance(obj, pygit2.Tree):
                walk(obj, name + b"/")
            else:
                assert isinstance(obj, pygit2.Blob)
                out[name] = (int(entry.filemode), obj.data)

    walk(r.revparse_single(ref).peel(pygit2.Tree), b"")
    return out


def test_garbage_is_committed_safely_and_what_is_left_out_is_named(clone: DataRepo, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret-canary\n")
    work = clone.path
    (work / "shadow").symlink_to("/etc/shadow")
    (work / "secret-link").symlink_to(secret)
    (work / "up").symlink_to("../../..")
    (work / "big.bin").write_bytes(os.urandom(2 << 20))
    (work / "binary.dat").write_bytes(bytes(range(256)) * 4)
    (work / "new\nline.txt").write_text("nl\n")
    (work / os.fsdecode(b"latin-\xe9.txt")).write_text("latin\n")
    os.mkfifo(work / "fifo")
    nested = work / "nested"
    nested.mkdir()
    git("init", "-q", nested)
    (nested / "inner.txt").write_text("inner\n")
    git("-C", nested, "add", "inner.txt")
    git("-C", nested, "commit", "-q", "-m", "nested")
    (nested / "deeper").mkdir()
    git("init", "-q", nested / "deeper")
    (nested / "deeper" / "d.txt").write_text("d\n")
    (nested / "escape").symlink_to(tmp_path)
    commit = clone.commit_run("garbage", {})
    assert commit is not None
    tree = tree_of(clone)
    assert tree[b"shadow"] == (0o120000, b"/etc/shadow")
    assert tree[b"secret-link"] == (0o120000, os.fsencode(secret))
    assert tree[b"up"] == (0o120000, b"../../..")
    assert tree[b"binary.dat"][1] == bytes(range(256)) * 4
    assert tree[b"new\nline.txt"][1] == b"nl\n"
    assert tree[b"latin-\xe9.txt"][1] == b"latin\n"
    assert tree[b"nested/inner.txt"] == (0o100644, b"inner\n")
    assert tree[b"nested/deeper/d.txt"] == (0o100644, b"d\n")
    assert tree[b"nested/escape"][0] == 0o120000
    assert not any(b".git" in path.split(b"/") for path in tree), sorted(tree)
    assert b"big.bin" not in tree and b"fifo" not in tree
    assert all(mode != 0o160000 for mode, _ in tree.values())  # no gitlink
    assert all(b"s3cret-canary" not in content for _, content in tree.values())
    notes = "; ".join(clone.left_out)
    assert "big.bin (2.0 MiB)" in notes and "max_file_size (1.0 MiB)" in notes, notes
    assert "nested/.git" in notes and "nested/deeper/.git" in notes, notes
    assert "\n" not in notes
    assert (work / "big.bin").stat().st_size == 2 << 20  # left in place, not thrown away
    assert clone.push().state == "pushed"


def test_a_failed_run_that_swapped_tracked_paths_for_symlinks_writes_nothing_outside(
    clone: DataRepo, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_text("untouched\n")
    work = clone.path
    # a tracked directory and a tracked file become links out of the data directory
    for path in (work / "sub" / "a.txt", work / "kept.txt"):
        path.unlink()
    (work / "sub").rmdir()
    (work / "sub").symlink_to(outside)
    (work / "kept.txt").symlink_to(victim)
    commit = clone.commit_failed_run("run-1", "failed", {}, push=False)
    assert commit is not None
    assert victim.read_text() == "untouched\n"  # libgit2's reset would have written "kept\n" through the link
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]  # and sub/a.txt into outside/
    assert not (work / "sub").is_symlink() and (work / "sub" / "a.txt").read_text() == "tracked\n"
    assert not (work / "kept.txt").is_symlink() and (work / "kept.txt").read_text() == "kept\n"
    failed = tree_of(clone, "maomao/failed/run-1")
    assert failed[b"sub"] == (0o120000, os.fsencode(outside))


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (["config", "core.fsmonitor", "touch /tmp/maomao-pwned"], "core.fsmonitor"),
        (["config", "remote.origin.pushurl", "/tmp/elsewhere.git"], "remote.origin.pushurl"),
        (["config", "remote.origin.url", "/tmp/elsewhere.git"], "points origin elsewhere"),
        (["config", "include.path", "/etc/shadow"], "include.path"),
        (["config", "url./tmp/x.insteadOf", "/"], "url."),
        (["config", "core.hooksPath", "/tmp"], "core.hookspath"),
        (["config", "core.worktree", "/etc"], "core.worktree"),
    ],
)
def test_a_rewritten_config_is_found_out(clone: DataRepo, damage: list[str], expected: str) -> None:
    assert clone.problems() == []
    git("-C", clone.path, *damage)
    problems = clone.problems()
    assert problems and expected in "; ".join(problems), problems


def test_other_damage_is_found_out_and_restored(clone: DataRepo, tmp_path: Path) -> None:
    dot_git = clone.path / ".git"
    hook = dot_git / "hooks" / "pre-commit"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\ntouch /tmp/maomao-pwned\n")
    assert any("hook" in p for p in clone.problems())
    clone.restore(tmp_path / "aside1")
    assert clone.problems() == [] and (tmp_path / "aside1" / "git" / "hooks" / "pre-commit").exists()
    (dot_git / "objects" / "info" / "alternates").write_text("/etc\n")
    assert any("alternates" in p for p in clone.problems())
    clone.restore(tmp_path / "aside2")
    subprocess.run(["rm", "-rf", str(dot_git)], check=True)
    assert clone.problems() == [".git is gone"]
    clone.restore(tmp_path / "aside3")
    assert clone.problems() == []
    dot_git.rename(tmp_path / "real-git")
    dot_git.symlink_to(tmp_path / "real-git")
    assert clone.problems() == [".git is a symlink"]
    clone.restore(tmp_path / "aside4")
    assert (tmp_path / "aside4" / "git").is_symlink() and (tmp_path / "real-git" / "HEAD").exists()
    # objects gone: the branch's commit cannot be read
    for entry in (dot_git / "objects").iterdir():
        if entry.name not in ("info", "pack"):
            subprocess.run(["rm", "-rf", str(entry)], check=True)
    assert any("cannot be read" in p or "missing" in p for p in clone.problems()), clone.problems()
    clone.restore(tmp_path / "aside5")
    assert clone.problems() == []
    # after all that, the work tree is what the remote has, and a commit works
    (clone.path / "after.txt").write_text("after\n")
    assert clone.commit_run("after", {}) is not None and clone.push().state == "pushed"


def test_snapshot_sees_changes_to_config_and_hooks(clone: DataRepo) -> None:
    before = clone.snapshot()
    (clone.path / "data.csv").write_text("1\n")
    clone.commit_run("data", {})
    assert clone.snapshot() == before  # a commit is not a change of the clone's own files
    (clone.path / ".git" / "hooks").mkdir(exist_ok=True)
    (clone.path / ".git" / "hooks" / "post-checkout").write_text("#!/bin/sh\n")
    assert clone.snapshot() != before


def test_a_failed_runs_huge_file_stays_in_the_data_directory(clone: DataRepo) -> None:
    (clone.path / "huge.bin").write_bytes(b"\0" * (3 << 20))
    (clone.path / "small.txt").write_text("small\n")
    commit = clone.commit_failed_run("run-2", "failed", {}, push=False)
    assert commit is not None
    failed = tree_of(clone, "maomao/failed/run-2")
    assert b"small.txt" in failed and b"huge.bin" not in failed
    assert "huge.bin (3.0 MiB)" in "; ".join(clone.left_out)
    assert not (clone.path / "small.txt").exists()  # the work tree is back at the branch
    assert (clone.path / "huge.bin").stat().st_size == 3 << 20  # committed nowhere: kept, not thrown away

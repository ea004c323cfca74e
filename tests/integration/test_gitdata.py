"""maomao.gitdata against real git repositories: bare remotes in temporary directories."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from maomao.errors import MaomaoError, ValidationError
from maomao.gitdata import DataRepo, GitError, PushResult, RemoteUnavailable
from tests.support.git import git

pytestmark = [pytest.mark.integration]




def make_remote(tmp: Path, files: dict[str, str] | None = None) -> Path:
    """A bare remote on branch main with one seeded commit."""
    remote = tmp / "remote.git"
    git("init", "-q", "--bare", "-b", "main", remote)
    seed = tmp / "seed"
    git("clone", "-q", remote, seed)
    for name, text in (files or {"README": "data\n"}).items():
        (seed / name).parent.mkdir(parents=True, exist_ok=True)
        (seed / name).write_text(text)
    git("-C", seed, "add", "-A")
    git("-C", seed, "commit", "-q", "-m", "seed")
    git("-C", seed, "push", "-q", "origin", "HEAD:main")
    return remote


def data_repo(path: Path, remote: Path | str, **kw: object) -> DataRepo:
    return DataRepo(path, str(remote), author_name="Mao Mao", author_email="mao@example.org", **kw)  # type: ignore[arg-type]


def remote_head(remote: Path, ref: str = "main") -> str:
    return git("-C", remote, "rev-parse", ref).strip()


def remote_file(remote: Path, ref: str, name: str) -> str:
    return git("-C", remote, "show", f"{ref}:{name}")


@pytest.mark.timeout(30)
def test_first_use_clones_and_bad_url_leaves_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "later.git"
    repo = data_repo(tmp_path / "import" / "tool", missing)
    with pytest.raises(GitError) as info:
        repo.ensure()
    assert str(missing) in str(info.value)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "import" / "tool").exists()
    assert list((tmp_path / "import").iterdir()) == []
    # The remote appears; the next run clones.
    (tmp_path / "r").mkdir()
    remote = make_remote(tmp_path / "r", {"control-1.csv": "a,b\n"})
    os.rename(remote, missing)
    repo.ensure()
    assert (tmp_path / "import" / "tool" / "control-1.csv").read_text() == "a,b\n"
    assert repo.head() == remote_head(missing)
    assert repo.ahead_of_remote() == 0
    # ensure() again fetches and fast-forwards to what others pushed.
    seed = tmp_path / "r" / "seed"
    (seed / "control-2.csv").write_text("c\n")
    git("-C", seed, "add", "-A")
    git("-C", seed, "commit", "-q", "-m", "more")
    git("-C", seed, "push", "-q", missing, "HEAD:main")
    repo.ensure()
    assert repo.head() == remote_head(missing)
    assert (tmp_path / "import" / "tool" / "control-2.csv").read_text() == "c\n"


@pytest.mark.timeout(30)
def test_commit_with_trailers_lands_on_remote(tmp_path: Path) -> None:
    remote = make_remote(tmp_path, {"old.csv": "x\n", "keep.csv": "k\n"})
    work = tmp_path / "work"
    repo = data_repo(work, f"file://{remote}")
    repo.ensure()
    assert repo.commit_run("nothing", {"Maomao-Run": "r0"}) is None
    (work / "control-1.csv").write_text("1,2\n")
    (work / "sub" / "dir").mkdir(parents=True)
    (work / "sub" / "dir" / "deep.txt").write_text("deep\n")
    (work / "keep.csv").write_text("changed\n")
    (work / "old.csv").unlink()
    commit = repo.commit_run("tool t run r1 on m1", {"Maomao-Run": "r1", "Maomao-Slot": "2026-01-01T00:00Z"})
    assert commit is not None and repo.head() == commit
    assert repo.ahead_of_remote() == 1
    result = repo.push()
    assert (result.state, result.commit, result.branch) == ("pushed", commit, "main")
    assert repo.ahead_of_remote() == 0
    assert remote_head(remote) == commit
    body = git("-C", remote, "log", "-1", "--format=%B")
    assert body.startswith("tool t run r1 on m1\n\n")
    assert "Maomao-Run: r1\nMaomao-Slot: 2026-01-01T00:00Z" in body
    assert git("-C", remote, "log", "-1", "--format=%an <%ae>").strip() == "Mao Mao <mao@example.org>"
    files = set(git("-C", remote, "ls-tree", "-r", "--name-only", "main").split())
    assert files == {"control-1.csv", "keep.csv", "sub/dir/deep.txt"}
    assert remote_file(remote, "main", "keep.csv") == "changed\n"
    assert repo.commit_run("again", {}) is None


@pytest.mark.timeout(30)
def test_two_clones_pushing_both_land(tmp_path: Path) -> None:
    remote = make_remote(tmp_path, {"a.csv": "a\n", "b.csv": "b\n"})
    one = data_repo(tmp_path / "one", remote)
    two = data_repo(tmp_path / "two", remote)
    one.ensure()
    two.ensure()
    (tmp_path / "one" / "a.csv").write_text("a1\n")
    (tmp_path / "two" / "b.csv").write_text("b2\n")
    (tmp_path / "two" / "new.csv").write_text("n\n")
    c1 = one.commit_run("run one", {"Maomao-Run": "one"})
    c2 = two.commit_run("run two", {"Maomao-Run": "two"})
    assert c1 and c2
    assert one.push().state == "pushed"
    result = two.push()
    assert result.state == "rebased"
    assert result.commit != c2 and result.commit == remote_head(remote)
    log = git("-C", remote, "log", "--format=%s", "main").split("\n")
    assert log[:3] == ["run two", "run one", "seed"]
    assert remote_file(remote, "main", "a.csv") == "a1\n"
    assert remote_file(remote, "main", "b.csv") == "b2\n"
    assert remote_file(remote, "main", "new.csv") == "n\n"
    assert "Maomao-Run: two" in git("-C", remote, "log", "-1", "--format=%B")
    assert (tmp_path / "two" / "a.csv").read_text() == "a1\n"
    assert two.ahead_of_remote() == 0
    one.ensure()
    assert one.head() == remote_head(remote)


@pytest.mark.timeout(30)
def test_conflict_goes_to_conflicts_branch(tmp_path: Path) -> None:
    remote = make_remote(tmp_path, {"data.csv": "line\n"})
    one = data_repo(tmp_path / "one", remote)
    two = data_repo(tmp_path / "two", remote)
    one.ensure()
    two.ensure()
    (tmp_path / "one" / "data.csv").write_text("one's line\n")
    (tmp_path / "two" / "data.csv").write_text("two's line\n")
    c1 = one.commit_run("run one", {"Maomao-Run": "run-1"})
    c2 = two.commit_run("run two", {"Maomao-Run": "run-2"})
    assert one.push().state == "pushed"
    result = two.push()
    assert result.state == "conflict"
    assert result.branch == "maomao/conflicts/run-2"
    assert result.commit == c2
    assert "run-2" in result.detail
    assert remote_head(remote, "maomao/conflicts/run-2") == c2
    assert remote_file(remote, "maomao/conflicts/run-2", "data.csv") == "two's line\n"
    assert remote_head(remote) == c1
    # The local clone follows the remote again and works.
    assert two.head() == c1
    assert two.ahead_of_remote() == 0
    assert (tmp_path / "two" / "data.csv").read_text() == "one's line\n"
    (tmp_path / "two" / "later.csv").write_text("l\n")
    assert two.commit_run("run three", {"Maomao-Run": "run-3"})
    assert two.push().state == "pushed"
    assert remote_file(remote, "main", "later.csv") == "l\n"


@pytest.mark.timeout(30)
def test_remote_down_then_back(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    work = tmp_path / "work"
    repo = data_repo(work, remote)
    repo.ensure()
    before = remote_head(remote)
    away = tmp_path / "away.git"
    os.rename(remote, away)
    with pytest.raises(RemoteUnavailable):
        repo.ensure()
    (work / "c.csv").write_text("1\n")
    c1 = repo.commit_run("run 1", {"Maomao-Run": "1"})
    result = repo.push()
    assert (result.state, result.commit) == ("pending", c1)
    assert str(remote) in result.detail
    (work / "c.csv").write_text("2\n")
    c2 = repo.commit_run("run 2", {"Maomao-Run": "2"})
    assert repo.push().state == "pending"
    assert repo.ahead_of_remote() == 2
    os.rename(away, remote)
    assert remote_head(remote) == before
    repo.ensure()  # local commits not pushed yet stay
    assert repo.head() == c2
    result = repo.push()
    assert (result.state, result.commit) == ("pushed", c2)
    assert remote_head(remote) == c2
    assert repo.ahead_of_remote() == 0


@pytest.mark.timeout(30)
def test_failed_run_goes_to_failed_branch(tmp_path: Path) -> None:
    remote = make_remote(tmp_path, {"data.csv": "good\n", "gone.csv": "g\n"})
    work = tmp_path / "work"
    repo = data_repo(work, remote)
    repo.ensure()
    main_before = remote_head(remote)
    (work / "data.csv").write_text("half written\n")
    (work / "gone.csv").unlink()
    (work / "partial").mkdir()
    (work / "partial" / "x.csv").write_text("x\n")
    commit = repo.commit_failed_run("run-9", "tool t run run-9 failed", {"Maomao-Run": "run-9"})
    assert commit is not None
    assert remote_head(remote, "maomao/failed/run-9") == commit
    assert remote_file(remote, "maomao/failed/run-9", "partial/x.csv") == "x\n"
    assert remote_file(remote, "maomao/failed/run-9", "data.csv") == "half written\n"
    assert remote_head(remote) == main_before
    assert repo.head() == main_before
    # The work tree is the main branch again, clean.
    assert (work / "data.csv").read_text() == "good\n"
    assert (work / "gone.csv").read_text() == "g\n"
    assert not (work / "partial").exists()
    assert git("-C", work, "status", "--porcelain") == ""
    assert repo.commit_failed_run("run-10", "nothing", {}) is None
    with pytest.raises(GitError):
        repo.commit_failed_run("bad..id", "x", {})


@pytest.mark.timeout(30)
def test_push_disabled(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    work = tmp_path / "work"
    repo = data_repo(work, remote, push=False)
    repo.ensure()
    (work / "c.csv").write_text("1\n")
    commit = repo.commit_run("run", {})
    result = repo.push()
    assert (result.state, result.commit) == ("disabled", commit)
    assert remote_head(remote) != commit


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "url",
    ["ext::sh -c touch% /tmp/pwned", "-uhelp", "relative/path", "ftp://host/x", "file://host/x", "http://-oProxy/x"],
)
def test_rejected_urls(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValidationError):
        data_repo(tmp_path / "work", url)
    assert not (tmp_path / "work").exists()


@pytest.mark.timeout(30)
def test_url_checked_again_before_network(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    repo = data_repo(tmp_path / "work", remote)
    repo.url = "ext::sh -c 'touch /tmp/pwned'"
    with pytest.raises(MaomaoError):
        repo.ensure()
    assert not (tmp_path / "work").exists()


@pytest.mark.timeout(30)
def test_empty_remote_first_commit(tmp_path: Path) -> None:
    remote = tmp_path / "empty.git"
    git("init", "-q", "--bare", "-b", "main", remote)
    work = tmp_path / "work"
    repo = data_repo(work, remote, branch="main")
    repo.ensure()
    assert repo.head() is None and repo.ahead_of_remote() == 0
    repo.ensure()
    (work / "control-1.csv").write_text("1\n")
    commit = repo.commit_run("first", {"Maomao-Run": "r1"})
    assert repo.ahead_of_remote() == 1
    result = repo.push()
    assert (result.state, result.commit) == ("pushed", commit)
    assert remote_head(remote) == commit


@pytest.mark.timeout(60)
def test_concurrent_pushes_all_land(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    repos = [data_repo(tmp_path / f"m{i}", remote) for i in range(6)]
    for i, repo in enumerate(repos):
        repo.ensure()
        (tmp_path / f"m{i}" / f"member-{i}.csv").write_text(f"{i}\n")
        assert repo.commit_run(f"run {i}", {"Maomao-Run": f"r{i}"})
    barrier = threading.Barrier(len(repos))

    def go(repo: DataRepo) -> PushResult:
        barrier.wait()
        return repo.push()

    with ThreadPoolExecutor(len(repos)) as pool:
        results = list(pool.map(go, repos))
    assert {r.state for r in results} <= {"pushed", "rebased"}, results
    assert [r.state for r in results].count("pushed") >= 1
    files = set(git("-C", remote, "ls-tree", "-r", "--name-only", "main").split())
    assert files == {"README"} | {f"member-{i}.csv" for i in range(6)}
    assert len(git("-C", remote, "log", "--format=%H", "main").split()) == 7


@pytest.mark.timeout(30)
def test_no_clone_is_an_error_not_a_parent_repository(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    outer = tmp_path / "outer"
    git("init", "-q", outer)
    repo = data_repo(outer / "tool", remote)
    with pytest.raises(GitError, match="no clone"):
        repo.head()
    with pytest.raises(GitError, match="no clone"):
        repo.commit_run("x", {})

"""A push that meets another member's push holding the remote's ref lock: refused for now, not a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_gitdata import data_repo
from tests.support.git import git

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.mark.parametrize("remote_has_main", [False, True])
def test_a_locked_ref_keeps_the_commit_pending(tmp_path: Path, remote_has_main: bool) -> None:
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", "-b", "main", remote)
    if remote_has_main:
        seed = tmp_path / "seed"
        git("clone", "-q", remote, seed)
        (seed / "README").write_text("data\n")
        git("-C", seed, "add", "-A")
        git("-C", seed, "commit", "-q", "-m", "seed")
        git("-C", seed, "push", "-q", "origin", "HEAD:main")
    repo = data_repo(tmp_path / "clone", remote)
    repo.ensure()
    (repo.path / "a.csv").write_text("1\n")
    commit = repo.commit_run("run a", {"Maomao-Run": "run-a"})
    lock = remote / "refs" / "heads" / "main.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("another member's push\n")
    result = repo.push()
    assert result.state == "pending" and result.commit == commit, result
    lock.unlink()
    assert repo.push().state == "pushed"
    assert git("-C", remote, "rev-parse", "main").strip() == commit

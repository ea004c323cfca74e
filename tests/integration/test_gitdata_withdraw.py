"""Fencing in git: a run whose slot was lost is taken off the way to the remote (real repositories)."""

from __future__ import annotations

from pathlib import Path

import pytest

from maomao.gitdata import LOST
from tests.integration.test_gitdata import data_repo, make_remote, remote_file, remote_head
from tests.support.git import git

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def trailers(run_id: str) -> dict[str, str]:
    return {"Maomao-Run": run_id}


def test_a_lost_run_between_two_others_is_set_aside_and_never_pushed(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    repo = data_repo(tmp_path / "clone", remote)
    repo.ensure()
    (repo.path / "a.csv").write_text("1\n")
    first = repo.commit_run("run a", trailers("run-a"))
    assert first is not None
    (repo.path / "b.csv").write_text("2\n")
    assert repo.commit_run("run b", trailers("run-b")) is not None
    (repo.path / "c.csv").write_text("3\n")
    assert repo.commit_run("run c", trailers("run-c")) is not None
    assert repo.ahead_of_remote() == 3

    assert repo.withdraw_run("run-b") == LOST + "run-b"
    # b's file is gone from the branch and the work tree; a and c stay, c replayed on a
    assert not (repo.path / "b.csv").exists()
    assert (repo.path / "a.csv").read_text() == "1\n" and (repo.path / "c.csv").read_text() == "3\n"
    assert repo.run_commit("run-b") is None and repo.run_commit("run-a") == first
    assert repo.ahead_of_remote() == 2
    result = repo.push()
    assert result.state == "pushed", result
    log = git("-C", remote, "log", "--format=%s", "main").split("\n")
    assert log[:3] == ["run c", "run a", "seed"], log
    assert remote_file(remote, "main", "c.csv") == "3\n"
    # the lost run's commit is kept here, on a branch no push sends
    assert git("-C", repo.path, "show", f"{LOST}run-b:b.csv") == "2\n"
    assert git("-C", remote, "branch", "--list", "maomao/*").strip() == ""


def test_a_lost_failed_run_branch_is_kept_local(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    repo = data_repo(tmp_path / "clone", remote)
    repo.ensure()
    head = remote_head(remote)
    (repo.path / "partial.csv").write_text("x\n")
    assert repo.commit_failed_run("run-f", "run f failed", trailers("run-f"), push=False) is not None
    assert repo.pending_failed_branches() == ["maomao/failed/run-f"]
    assert repo.withdraw_run("run-f") == LOST + "run-f"
    assert repo.pending_failed_branches() == []
    assert repo.push().state == "pushed"
    assert remote_head(remote) == head
    assert git("-C", remote, "branch", "--list", "maomao/*").strip() == ""


def test_withdrawing_a_pushed_or_unknown_run_changes_nothing(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    repo = data_repo(tmp_path / "clone", remote)
    repo.ensure()
    (repo.path / "a.csv").write_text("1\n")
    commit = repo.commit_run("run a", trailers("run-a"))
    assert repo.push().state == "pushed"
    assert repo.withdraw_run("run-a") is None
    assert repo.withdraw_run("run-zz") is None
    assert repo.head() == commit == remote_head(remote)

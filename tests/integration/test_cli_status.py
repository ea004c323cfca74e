"""``maomao ctl status``: the one screen, through the real entry points, on an embedded store and a dead etcd."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from maomao.model import Claim, Member, Run, Spike
from tests.support.cli import MAOMAO, Ctl, clean_env, embedded_ctl, run
from tests.support.etcd import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def iso(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


@pytest.fixture
def ctl(tmp_path: Path) -> Ctl:
    return embedded_ctl(tmp_path, flag=False)


def failed_run(tool: str, run_id: str, finished: datetime, state: str = "failed") -> Run:
    return Run(
        id=run_id, tool=tool, slot="20261130T030000Z", trigger="schedule", member="lab-1", state=state,
        started=iso(finished - timedelta(minutes=1)), finished=iso(finished), exit_code=3,
    )  # fmt: skip


def test_status_shows_store_members_runs_failures_and_spikes(ctl: Ctl) -> None:
    now = datetime.now(UTC)
    ctl("tool", "add", "tl", "Ada", "busybox", "/srv/d", "/srv/c", "pages").ok()
    ctl("tool", "add", "other", "Ada", "busybox", "/srv/d", "/srv/c", "pages").ok()
    ctl("tool", "schedule", "tl", "0 0 1 1 *").ok()
    ctl("tool", "schedule", "other", "@every 15m").ok()
    member = Member(name="lab-1", host="lab-1.example", version="1", runtimes=("docker",),
                    labels={"site": "lab"}, started=iso(now))  # fmt: skip
    ctl.put_raw("/maomao/members/lab-1", member.to_value())
    claim = Claim(name="r-running", tool="other", member="lab-1", slot="20261130T031500Z", trigger="schedule",
                  state="running", claimed=iso(now), started=iso(now))  # fmt: skip
    ctl.put_raw("/maomao/claims/other/r-running", claim.to_value())
    for record in (
        failed_run("tl", "r-new", now - timedelta(hours=1)),
        failed_run("tl", "r-timeout", now - timedelta(hours=2), state="timed_out"),
        failed_run("tl", "r-old", now - timedelta(days=2)),
        failed_run("tl", "r-fine", now - timedelta(hours=1), state="succeeded"),
    ):
        ctl.put_raw(f"/maomao/runs/{record.tool}/{record.id}", record.to_value())
    for name, age in (("r-new.control", timedelta(hours=1)), ("r-old.control", timedelta(days=3))):
        spike = Spike(name=name, tool="tl", metric="control", run_id=name.split(".")[0], member="lab-1",
                      point="control-41.csv", value=400.0, baseline=100.0, deviation=3.0, score=0.99,
                      detected=iso(now - age))  # fmt: skip
        ctl.put_raw(f"/maomao/spikes/tl/{name}", spike.to_value())

    result = ctl("status", "--json").ok()
    state = json.loads(result.stdout)
    assert set(state) == {"store", "members", "running", "next", "failures", "spikes"}
    assert state["store"]["backend"] == "embedded" and state["store"]["answering"] is True
    assert state["store"]["where"].endswith("store.db") and state["store"]["latency_ms"] >= 0
    assert state["members"] == [{"name": "lab-1", "host": "lab-1.example", "runtimes": ["docker"],
                                 "labels": {"site": "lab"}, "version": "1", "started": iso(now)}]  # fmt: skip
    assert [(r["tool"], r["run"], r["member"], r["state"]) for r in state["running"]] == [
        ("other", "r-running", "lab-1", "running")
    ]
    assert [n["tool"] for n in state["next"]] == ["other", "tl"]  # every 15m fires before the new year
    assert all(n["at"] > iso(now) for n in state["next"])
    assert [f["run"] for f in state["failures"]] == ["r-new", "r-timeout"]  # newest first, 24h only
    assert [s["run"] for s in state["spikes"]] == ["r-new"]

    screen = ctl("status", entry="maomao").ok().stdout
    assert screen.startswith("store:    embedded ") and "answering in" in screen
    for line in ("members:", "running:", "next runs:", "failures (24h):", "spikes (24h):"):
        assert f"\n{line}\n" in screen, screen
    assert "lab-1.example" in screen and "site=lab" in screen and "r-running" in screen
    assert "r-new" in screen and "r-timeout" in screen and "r-old" not in screen and "+300.0%" in screen


def test_status_of_an_empty_store(ctl: Ctl) -> None:
    screen = ctl("status").ok().stdout
    assert "members: none live" in screen and "next runs: no scheduled tools" in screen
    state = json.loads(ctl("status", "--json").ok().stdout)
    assert state["members"] == state["running"] == state["next"] == state["failures"] == state["spikes"] == []


@pytest.mark.timeout(60)
def test_status_with_etcd_down_is_one_line_naming_the_endpoint(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    config = tmp_path / "dead.ini"
    config.write_text(f"[store]\nbackend = etcd\nendpoints = {dead}\ntimeout = 1\n")
    for args in (["status"], ["status", "--json"]):
        result = run([MAOMAO, "ctl", *args, "--config", config], env=clean_env(tmp_path), cwd=tmp_path)
        line = result.error(1)
        assert dead in line and result.stdout == "", result


def test_status_imports_nothing_heavy(tmp_path: Path) -> None:
    config = tmp_path / "e.ini"
    config.write_text(f"[store]\nbackend = embedded\npath = {tmp_path}/store.db\n")
    code = (
        "import sys\nfrom maomao.cli import main\n"
        f"try:\n    main(['ctl', 'status', '--config', {str(config)!r}])\n"
        "except SystemExit as e:\n    assert not e.code\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'docker', 'pygit2', 'numpy', 'trio'})\n"
        "print('HEAVY', heavy)\n"
    )
    result = run([MAOMAO.parent / "python", "-c", code], env=clean_env(tmp_path), cwd=tmp_path).ok()
    assert "HEAVY []" in result.stdout, result


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_script(tmp_path: Path, shell: str) -> None:
    result = run([MAOMAO, "completion", shell], env=clean_env(tmp_path), cwd=tmp_path).ok()
    script = result.stdout
    assert script.strip() and "ctl" in script and "tool" in script and "status" in script


def test_completion_of_another_shell_is_a_usage_error(tmp_path: Path) -> None:
    assert "fish" in run([MAOMAO, "completion", "fish"], env=clean_env(tmp_path), cwd=tmp_path).error(2)
